"""Queue operations in generated orders, through the command table, against the real engine, store and downloads.

Hypothesis generates sequences of `queue.*` commands (looked up by name in the Application's command table, exactly as
the REST, WebSocket and MQTT adapters do), interleaved with short waits, while real downloads from the fake site run
(slowed, so items stay active across several steps). After every step the queue is read until it holds still and
these invariants are checked against the database rows, the engine and both snapshots:

- one row per item, every status one of DownloadStatus, at most one live (pending/downloading) item per episode;
- positions: the store keeps no dense numbering (`add_downloads` appends at max(pending position)+1,
  `reorder_download` renumbers the pending queue 0..n-1, an item that starts or ends leaves a gap), and the queue runs
  in (priority, position, created_at, id) order. So the invariant is the one that order needs: no two pending items
  share a position; a tie would leave the order a reorder set to the items' creation time and random ids;
- the engine's active downloads are exactly the `downloading` rows (once settled: a claim and a worker's end are each
  a database write away from the engine's own record);
- `engine.status()` (QueueFigures) and `GET /api/queue/status` count exactly the rows of each status, and list the
  pending items in the queue's order;
- every live item's episode is `queued`, and every `queued` episode has a live item;
- the commands' own promises: an add returns new items only, removed ids are gone (and were counted), cancelled ids
  are not live, while paused or stopped no item starts, a stop leaves nothing downloading.

The generation is derandomized, so CI runs the same sequences every time; the downloads' timing still varies, which
is the point: the invariants must hold whatever the timing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from aniworld_daemon.app import Application
from aniworld_daemon.errors import AniworldError
from aniworld_daemon.models import DownloadStatus, EpisodeState, Priority
from tests.fakesite.server import FakeSite
from tests.helpers import StartApp, api_session

SERIES = "blade-of-dawn"  # season 1: six episodes in German sub on doodstream; 1x7, 1x8 and season 9 do not exist
BANDWIDTH = 3_000_000  # bytes/s per connection: an episode (~1.9 MB) stays active for a step or two
SETTLE = 20.0  # seconds the queue may take to hold still after a step
EXAMPLES = int(os.environ.get("QUEUE_FUZZ_EXAMPLES", "25"))  # generated sequences; more: a deeper (longer) run
STEPS = 20  # at most this many steps per sequence
pytestmark = [
    pytest.mark.timeout(120 + 6 * EXAMPLES),  # a sequence takes about a second, or a few with long waits
    # The daemon, on the test's loop, draws from `random` (jitter, backoff) while Hypothesis generates the next
    # input in its worker thread; Hypothesis takes that for a strategy using `random`. Ours do not.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]
LIVE = (DownloadStatus.PENDING, DownloadStatus.DOWNLOADING)
# Refusals the commands may give for generated arguments (an id that is not pending, an episode queued again).
EXPECTED_CODES = {"not_found", "conflict", "validation_error"}

T = TypeVar("T")


def queue_yaml(site: FakeSite) -> str:
    """Lines after minimal_config's `api:`: one followed series on the fake site, one attempt per item, no rescans."""
    return (
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
        "  cooldown: 1s\n  languages: [de-sub]\n  hosters: [doodstream]\n"
        "schedule:\n  run_on_start: false\n"
        "downloads:\n  auto_start: true\n  max_concurrent: 2\n  retries: 1\n  min_free_space: 0\n"
        "  retry_backoff: 1s\n"
        f"series:\n  - key: {SERIES}\n    seasons: [1, 2]\n"
    )


@dataclass(frozen=True, slots=True)
class Step:
    """One generated step: a command of the table (or `wait`) with its raw choices.

    `picks` index the ids seen so far (modulo their number; a pick p with p % 7 == 6 names an id that never existed),
    so a sequence stays meaningful while the queue changes under it.
    """

    name: str
    picks: tuple[int, ...] = ()
    places: tuple[tuple[int, int], ...] = ()
    priority: str = Priority.NORMAL.value
    position: int = 0
    seconds: float = 0.0


picks = st.lists(st.integers(0, 40), min_size=1, max_size=3).map(tuple)
places = st.lists(
    st.tuples(st.sampled_from([1, 1, 1, 2, 9]), st.integers(1, 8)), min_size=1, max_size=4, unique=True
).map(tuple)
STEP = st.one_of(
    st.builds(
        Step, st.just("queue.add"), places=places, priority=st.sampled_from([priority.value for priority in Priority])
    ),
    st.builds(Step, st.just("queue.remove"), picks),
    st.builds(Step, st.just("queue.cancel"), picks),
    st.builds(Step, st.just("queue.reorder"), picks, position=st.integers(0, 12)),
    st.builds(Step, st.just("queue.retry"), picks | st.just(())),
    st.sampled_from(
        [
            Step(name)
            for name in (
                "queue.pause",
                "queue.resume",
                "queue.start",
                "queue.stop",
                "queue.clear_completed",
                "queue.clear_failed",
            )
        ]
    ),
    st.builds(Step, st.just("wait"), seconds=st.sampled_from([0.2, 0.6, 1.5])),
)


@dataclass
class Rig:
    """The running Application, an HTTP client on it, and what the steps of one example have seen so far."""

    app: Application
    http: aiohttp.ClientSession
    loop: asyncio.AbstractEventLoop
    seen: list[str] = field(default_factory=list)  # every item id returned by an add, in order
    frozen: set[str] | None = None  # while paused or stopped: the only ids that may be downloading
    stopped: bool = False
    reached: set[DownloadStatus] = field(default_factory=set)  # every status a settled queue showed, over all examples

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the app's loop from Hypothesis' worker thread; bounded."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def ids(self, step: Step) -> list[str]:
        """The ids a step's picks name (an id that never existed for every seventh pick)."""
        named = [
            f"no-such-item-{pick}" if pick % 7 == 6 or not self.seen else self.seen[pick % len(self.seen)]
            for pick in step.picks
        ]
        return list(dict.fromkeys(named))  # a repeated id is refused by the table's schema before anything runs


@pytest.fixture
async def rig(fakesite: FakeSite, start_app: StartApp) -> AsyncIterator[Rig]:
    """The Application on the fake site with slowed media, an API client, and the test's loop."""
    fakesite.knobs.bandwidth = BANDWIDTH
    app = await start_app(queue_yaml(fakesite))
    async with api_session(app, timeout=30) as http:
        yield Rig(app, http, asyncio.get_running_loop())
        # Quiet the queue before the app stops: nothing is left half way for the next test's temp folder.
        await app.commands.call("queue.stop")


# ------------------------------------------------------------------------------------------------ one step


async def perform(rig: Rig, step: Step) -> str:
    """Run one step through the command table and check the command's own promise; returns a line for the trace."""
    table = rig.app.commands
    if step.name == "wait":
        await asyncio.sleep(step.seconds)
        return f"wait {step.seconds}"
    ids = rig.ids(step)
    arguments: dict[str, Any] = {}
    if step.name == "queue.add":
        episodes = [{"season": season, "episode": number} for season, number in step.places]
        arguments = {"series": SERIES, "episodes": episodes, "priority": step.priority}
    elif step.name in ("queue.remove", "queue.cancel"):
        arguments = {"ids": ids}
    elif step.name == "queue.reorder":
        arguments = {"id": ids[0], "position": step.position}
    elif step.name == "queue.retry":
        arguments = {"ids": ids or None}
    before = {item.id: item.status for item in await rig.app.db.list_downloads()}
    refused: AniworldError | None = None
    try:
        result = await table.call(step.name, arguments)
    except AniworldError as err:
        refused = err
    if refused is not None:
        assert refused.code in EXPECTED_CODES, f"{step.name} {arguments}: [{refused.code}] {refused.message}"
        return f"{step.name} {arguments} -> [{refused.code}]"
    after = {item.id: item.status for item in await rig.app.db.list_downloads()}
    if step.name == "queue.add":
        new = [item.id for item in result]
        assert not set(new) & set(before), "an add returned an item that existed already"
        rig.seen += new
        result = len(new)
    elif step.name == "queue.remove":
        assert not set(ids) & set(after), f"removed ids are still stored: {set(ids) & set(after)}"
        assert result == len(set(ids) & set(before)), "queue.remove counted other items than those that existed"
    elif step.name == "queue.cancel":
        live = [item_id for item_id in ids if after.get(item_id) in LIVE]
        assert not live, f"cancelled items are still live: {[(item_id, after[item_id]) for item_id in live]}"
    elif step.name in ("queue.pause", "queue.stop"):
        rig.stopped = rig.stopped or step.name == "queue.stop"
        if rig.stopped:
            downloading = [item_id for item_id, status in after.items() if status is DownloadStatus.DOWNLOADING]
            assert not downloading, f"downloading after queue.stop returned: {downloading}"
        if rig.frozen is None:
            rig.frozen = {item_id for item_id, status in after.items() if status is DownloadStatus.DOWNLOADING}
    elif step.name in ("queue.resume", "queue.start"):
        rig.stopped = rig.stopped and step.name != "queue.start"
        if not rig.stopped and not rig.app.downloader.paused:
            rig.frozen = None
    return f"{step.name} {arguments} -> {result!r}"


# ------------------------------------------------------------------------------------------------ invariants


async def settled(rig: Rig) -> None:
    """Wait until the queue holds still (rows, engine and snapshots agree in one window), then check the invariants."""
    app = rig.app
    deadline = time.monotonic() + SETTLE
    last: str = ""
    while True:
        active = {entry.item.id for entry in app.downloader.active()}
        rows = await app.db.list_downloads()
        snapshot = await app.downloader.status(limit=100)
        async with rig.http.get("/api/queue/status") as response:
            assert response.status == 200, await response.text()
            served = await response.json()
        episodes = {(episode.season, episode.number): episode.state for episode in await app.db.list_episodes(SERIES)}
        again = await app.db.list_downloads()
        still = {entry.item.id for entry in app.downloader.active()}
        marks = [(item.id, item.status, item.position) for item in rows]
        downloading = {item.id for item in rows if item.status is DownloadStatus.DOWNLOADING}
        if marks == [(item.id, item.status, item.position) for item in again] and active == still == downloading:
            break
        last = f"engine {sorted(active)} / {sorted(still)}, downloading rows {sorted(downloading)}"
        if time.monotonic() > deadline:
            pytest.fail(f"the queue did not settle within {SETTLE} s: {last}")
        await asyncio.sleep(0.05)

    rig.reached |= {item.status for item in rows}
    # One row per item, a known status each, one live item per episode.
    assert len({item.id for item in rows}) == len(rows)
    assert all(isinstance(item.status, DownloadStatus) for item in rows)
    live_places = [(item.season, item.number) for item in rows if item.status in LIVE]
    assert len(live_places) == len(set(live_places)), f"an episode is queued twice: {sorted(live_places)}"

    # The position rule: distinct among the pending items.
    pending = [item for item in rows if item.status is DownloadStatus.PENDING]
    positions = [item.position for item in pending]
    assert len(positions) == len(set(positions)), (
        f"pending items share a position: {[(item.id[:8], item.priority.value, item.position) for item in pending]}"
    )

    # Counts: the engine's figures and the REST snapshot against the rows.
    counts = {status: sum(item.status is status for item in rows) for status in DownloadStatus}
    stats = snapshot.statistics
    assert (
        stats.total_items,
        stats.pending_count,
        stats.active_count,
        stats.completed_count,
        stats.failed_count,
        stats.cancelled_count,
    ) == (
        len(rows),
        counts[DownloadStatus.PENDING],
        counts[DownloadStatus.DOWNLOADING],
        counts[DownloadStatus.COMPLETED],
        counts[DownloadStatus.FAILED],
        counts[DownloadStatus.CANCELLED],
    ), (stats, counts)
    assert [item.id for item in snapshot.pending] == [item.id for item in pending]
    assert {entry.item.id for entry in snapshot.active} == downloading
    rest = served["statistics"]
    assert (rest["total_items"], rest["pending_count"], rest["active_count"]) == (
        len(rows),
        counts[DownloadStatus.PENDING],
        counts[DownloadStatus.DOWNLOADING],
    ), rest
    assert (rest["completed_count"], rest["failed_count"]) == (
        counts[DownloadStatus.COMPLETED],
        counts[DownloadStatus.FAILED],
    ), rest
    assert [item["id"] for item in served["status"]["pending_queue"]] == [item.id for item in pending]

    # Episodes: a live item's episode is queued, and a queued episode has a live item.
    for item in rows:
        if item.status in LIVE:
            assert episodes.get((item.season, item.number)) is EpisodeState.QUEUED, (item, episodes)
    queued = {place for place, state in episodes.items() if state is EpisodeState.QUEUED}
    assert queued == set(live_places), f"queued episodes {sorted(queued)} vs live items {sorted(live_places)}"

    # While paused or stopped nothing starts.
    if rig.frozen is not None:
        started = downloading - rig.frozen
        assert not started, f"items started while the queue was paused or stopped: {started}"
    if rig.stopped:
        assert not downloading, f"downloading while the queue is stopped: {downloading}"


async def reset(rig: Rig) -> None:
    """Empty the queue and run it unpaused: every example starts from the same state (the library may hold files)."""
    app = rig.app
    await app.commands.call("queue.stop")
    ids = [item.id for item in await app.db.list_downloads()]
    if ids:
        await app.commands.call("queue.remove", {"ids": ids})
    await app.commands.call("queue.resume")
    await app.commands.call("queue.start")
    rig.seen.clear()
    rig.frozen = None
    rig.stopped = False
    await settled(rig)


# ------------------------------------------------------------------------------------------------ the test


async def test_generated_queue_operations_keep_the_queue_consistent(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Generated sequences of queue commands: every invariant holds after every step, and nothing logs a traceback."""
    caplog.set_level(logging.INFO)
    examples = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: each run reaches real downloads with other timing
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(steps=st.lists(STEP, min_size=3, max_size=STEPS))
    # Found by a deep run: two items start, the third is moved to the front, the stop puts the two back to pending
    # with positions of their own from before the reorder (0 and 1), and one of them shares 0 with the moved item.
    @example(
        steps=[
            Step("queue.add", places=((1, 1), (1, 2), (1, 3))),
            Step("queue.reorder", picks=(2,), position=0),
            Step("queue.stop"),
        ]
    )
    # Every state at least once, whatever the generated sequences reach: 9x1 fails (no such episode), 1x5 is
    # cancelled, 1x4 downloads to the end.
    @example(
        steps=[
            Step("queue.add", places=((9, 1), (1, 4), (1, 5))),
            Step("queue.cancel", picks=(2,)),
            *[Step("wait", seconds=1.5)] * 4,
        ]
    )
    def sequence(steps: list[Step]) -> None:
        nonlocal examples
        examples += 1
        rig.run(reset(rig))
        trace: list[str] = []
        for step in steps:
            try:
                trace.append(rig.run(perform(rig, step)))
                rig.run(settled(rig))
            except AssertionError as err:
                done = "\n  ".join(trace)
                raise AssertionError(f"after the steps:\n  {done}\nat {step}:\n{err}") from None

    await asyncio.to_thread(sequence)
    assert examples == EXAMPLES + 2  # the explicit examples, then the generated ones
    # The sequences reached every state with real downloads, or the invariants were checked on too little.
    assert rig.reached == set(DownloadStatus), rig.reached
    tracebacks = [record for record in caplog.records if record.exc_info and record.levelno >= logging.WARNING]
    assert not tracebacks, [record.getMessage() for record in tracebacks]
