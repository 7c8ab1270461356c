"""Run the fake aniworld.to standalone: `python -m tests.fakesite --port 8800 [--latency S] [--bandwidth B/S]`.

It prints `site URL`, then `hoster NAME URL` per hoster, once it listens (scripts/demo reads these lines).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import tempfile
from pathlib import Path

from tests.fakesite.core import Knobs, ensure_media
from tests.fakesite.server import FakeSite


def positive_int(text: str) -> int:
    """An integer > 0 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakesite", description=__doc__)
    parser.add_argument("--port", type=int, default=8800, help="port of the site on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added before every response")
    parser.add_argument(
        "--bandwidth",
        type=positive_int,
        metavar="BYTES_PER_SECOND",
        help="throttle every media connection to this many bytes/s (default: unlimited)",
    )
    parser.add_argument("--media-dir", type=Path, help="where the ffmpeg media files are made (default: a temp dir)")
    return parser.parse_args(argv)


async def serve(knobs: Knobs, port: int, media_dir: Path) -> None:
    """Run the site with these knobs until SIGINT or SIGTERM."""
    media = await asyncio.to_thread(ensure_media, media_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with FakeSite(media, port=port, knobs=knobs) as site:
        print(f"site {site.base_url}", flush=True)
        for name in site.hosters:
            print(f"hoster {name} {site.hoster_origin(name)}", flush=True)
        await stop.wait()
    print("stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    knobs = Knobs(latency=args.latency, bandwidth=args.bandwidth)
    if args.media_dir is not None:
        asyncio.run(serve(knobs, args.port, args.media_dir))
        return
    with tempfile.TemporaryDirectory(prefix="fakesite-media-") as directory:
        asyncio.run(serve(knobs, args.port, Path(directory)))


if __name__ == "__main__":
    main()
