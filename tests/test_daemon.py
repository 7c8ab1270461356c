"""The daemon as a real subprocess: signals, systemd notification and watchdog, reload, journald logging."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aniworld_daemon import __version__
from aniworld_daemon.log import JournalFormatter
from tests.helpers import Daemon, minimal_config

STOP_LIMIT = 5.0  # seconds from SIGTERM to exit


def get_health(port: int) -> tuple[int, dict[str, object]]:
    """GET /health synchronously: (status, body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_healthy(port: int, process: Daemon, timeout: float = 15) -> None:
    """Poll /health until it answers (bounded), failing early if the daemon died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.process.poll() is None, f"daemon exited early:\n{process.log}"
        try:
            if get_health(port)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"daemon did not answer /health within {timeout}s:\n{process.log}")


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """A real AF_UNIX datagram socket standing in for systemd's notify socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def receive(sock: socket.socket, until: Callable[[list[str]], bool], timeout: float) -> list[str]:
    """Collect notify datagrams until `until(messages)` holds or the time is up."""
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until(messages):
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return messages


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly(
    write_config: Callable[..., Path], port: int, daemon: Callable[..., Daemon], sig: signal.Signals
) -> None:
    process = daemon(write_config(minimal_config(port)))
    wait_healthy(port, process)
    started = time.monotonic()
    process.signal(sig)
    assert process.wait(timeout=STOP_LIMIT + 5) == 0, process.log
    elapsed = time.monotonic() - started
    assert elapsed < STOP_LIMIT, f"stop took {elapsed:.2f}s"
    assert f"Got {sig.name}, stopping" in process.log
    assert "Stopped" in process.log


def test_systemd_ready_watchdog_stopping(
    write_config: Callable[..., Path],
    port: int,
    daemon: Callable[..., Daemon],
    notify_socket: socket.socket,
    tmp_path: Path,
) -> None:
    process = daemon(
        write_config(minimal_config(port)),
        env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"},
    )
    before_ready = receive(notify_socket, lambda got: any("READY=1" in m for m in got), timeout=20)
    # The moment READY=1 arrives, /health must already answer: the port is bound before we notify.
    status, body = get_health(port)
    assert status == 200
    assert body == {"status": "healthy", "version": __version__}
    assert before_ready == [f"READY=1\nSTATUS=Running; 0 series configured; HTTP on 127.0.0.1:{port}"]

    pings = receive(notify_socket, lambda got: got.count("WATCHDOG=1") >= 3, timeout=5)
    assert pings.count("WATCHDOG=1") >= 3  # every half of the 0.4 s period

    process.signal(signal.SIGTERM)
    after = receive(notify_socket, lambda got: "STOPPING=1\nSTATUS=Stopping" in got, timeout=STOP_LIMIT)
    assert "STOPPING=1\nSTATUS=Stopping" in after
    assert process.wait(timeout=STOP_LIMIT) == 0, process.log


def test_sighup_with_broken_config_keeps_running(
    write_config: Callable[..., Path], port: int, daemon: Callable[..., Daemon]
) -> None:
    path = write_config(minimal_config(port))
    process = daemon(path)
    wait_healthy(port, process)

    path.write_text(minimal_config(port, "downloads:\n  window: whenever\n"))
    process.signal(signal.SIGHUP)
    process.wait_for_log("Reload refused, keeping the running configuration; 1 problem(s):")
    process.wait_for_log(f"{path}:8: downloads -> window: expected a time window as HH:MM-HH:MM")
    assert process.process.poll() is None
    assert get_health(port)[0] == 200

    path.write_text(minimal_config(port, "logging:\n  level: debug\n"))
    process.signal(signal.SIGHUP)
    process.wait_for_log("Reloaded configuration")
    assert get_health(port)[0] == 200

    process.signal(signal.SIGTERM)
    assert process.wait(timeout=STOP_LIMIT) == 0, process.log


def test_journald_lines_carry_priorities(write_config: Callable[..., Path], port: int, tmp_path: Path) -> None:
    path = write_config(minimal_config(port))
    log_path = tmp_path / "journal.log"
    with log_path.open("wb") as log:
        stat = os.fstat(log.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
        process = subprocess.Popen(
            [sys.executable, "-m", "aniworld_daemon", "run", "-c", str(path)], stderr=log, stdout=log, env=env
        )
        try:
            deadline = time.monotonic() + 15
            while "Ready" not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=STOP_LIMIT + 5) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    lines = log_path.read_text().splitlines()
    assert "<6>aniworld_daemon.app: Ready" in lines
    assert "<6>aniworld_daemon.app: Got SIGTERM, stopping" in lines
    assert all(line.startswith("<") for line in lines), lines


def test_port_in_use_exits_with_a_clear_error(
    write_config: Callable[..., Path], port: int, daemon: Callable[..., Daemon]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        process = daemon(write_config(minimal_config(port)))
        assert process.wait(timeout=30) == 1
    assert (
        f"Start-up failed: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(is another instance running? change api.port)"
    ) in process.log


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aniworld_daemon", "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == f"aniworld-daemon {__version__}"


def test_a_traceback_keeps_its_priority_in_the_journal() -> None:
    """journald makes an entry of each line: every line of a logged traceback carries the record's priority."""
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("aniworld_daemon.x", logging.ERROR, __file__, 1, "it failed", None, sys.exc_info())
    lines = JournalFormatter("%(name)s: %(message)s").format(record).splitlines()
    assert lines[0] == "<3>aniworld_daemon.x: it failed"
    assert len(lines) > 3
    assert all(line.startswith("<3>") for line in lines), lines
