"""systemd-analyze on the unit: `verify` finds nothing to complain about, `security --offline` rates it at most 1.5.

Both run on the unit file alone, without systemd as the init system (Debian's `systemd` package provides
`systemd-analyze`; `make test` installs it). `verify` checks that every command of the unit is an executable file, and
the daemon is not installed at /usr/bin here: the tests check a copy whose `ExecStartPre=`/`ExecStart=` name this
venv's `aniworld-daemon` console script instead, the same program with the same arguments (the path is the only
difference, and test_packaging.py checks that the unit's own lines name /usr/bin/aniworld-daemon).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

UNIT = ROOT / "systemd" / "aniworld-daemon.service"
INSTALLED = "/usr/bin/aniworld-daemon"  # where the unit expects the console script (systemd/README.md, step 1)
MAX_EXPOSURE = 1.5
EXPOSURE_LINE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+)")
# The unit's sandbox settings: without them the exposure must rise above MAX_EXPOSURE, or the rating proves nothing.
SANDBOX_LINE = re.compile(
    r"^(Protect\w+|Private\w+|Restrict\w+|SystemCall\w+|CapabilityBoundingSet|AmbientCapabilities|NoNewPrivileges"
    r"|LockPersonality|RemoveIPC|DevicePolicy)=.*\n",
    re.MULTILINE,
)


def systemd_analyze(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run systemd-analyze; fail with a clear message when it is not installed."""
    executable = shutil.which("systemd-analyze")
    if executable is None:
        pytest.fail("systemd-analyze is missing: run `make test` (it installs Debian's systemd package)")
    return subprocess.run([executable, *args], capture_output=True, text=True, timeout=60, check=False)


def exposure(unit: Path) -> float:
    """The overall exposure level that `systemd-analyze security --offline=true` gives the unit file."""
    result = systemd_analyze("security", "--offline=true", unit)
    match = EXPOSURE_LINE.search(result.stdout)
    assert match is not None, result.stdout + result.stderr
    return float(match.group(1))


def write_unit(folder: Path, text: str) -> Path:
    """The unit text as `aniworld-daemon.service` in `folder` (systemd-analyze names the unit after its file)."""
    path = folder / UNIT.name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def console_script() -> Path:
    """This venv's `aniworld-daemon` (beside its Python), an executable file like /usr/bin/aniworld-daemon."""
    path = Path(sys.executable).parent / "aniworld-daemon"
    assert path.is_file(), f"{path} is missing: run `make test` (it installs the package into the venv)"
    return path


@pytest.fixture
def installed_unit(tmp_path: Path, console_script: Path) -> Path:
    """A copy of the unit whose commands run the console script where this machine has it."""
    text = UNIT.read_text(encoding="utf-8")
    commands = re.findall(rf"^ExecStart(?:Pre)?={re.escape(INSTALLED)} ", text, flags=re.MULTILINE)
    assert len(commands) == 2, "the unit should start /usr/bin/aniworld-daemon in ExecStartPre= and ExecStart="
    return write_unit(tmp_path, text.replace(f"={INSTALLED} ", f"={console_script} "))


def test_verify_finds_nothing(installed_unit: Path) -> None:
    result = systemd_analyze("verify", installed_unit)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_needs_the_command_installed(tmp_path: Path) -> None:
    # The unit as it is, on a machine without /usr/bin/aniworld-daemon: why installed_unit rewrites the path.
    result = systemd_analyze("verify", write_unit(tmp_path, UNIT.read_text(encoding="utf-8")))
    assert f"Command {INSTALLED} is not executable" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("ProtectSystem=strict", "ProtectSystm=strict", "Unknown key 'ProtectSystm' in section [Service]"),
        ("WatchdogSec=60s", "WatchdogSec=a minute", "Failed to parse sec value, ignoring: a minute"),
        ("Type=notify", "Type=notified", "Failed to parse service type, ignoring: notified"),
    ],
    ids=["misspelt-key", "bad-time-span", "bad-type"],
)
def test_verify_reports_a_broken_setting(installed_unit: Path, old: str, new: str, complaint: str) -> None:
    text = installed_unit.read_text(encoding="utf-8")
    assert old in text
    result = systemd_analyze("verify", write_unit(installed_unit.parent, text.replace(old, new)))
    # systemd-analyze exits 0 after such warnings: test_verify_finds_nothing checks the output, not the status.
    assert complaint in result.stdout + result.stderr


def test_exposure_is_at_most_1_5(installed_unit: Path) -> None:
    level = exposure(installed_unit)
    assert level <= MAX_EXPOSURE, systemd_analyze("security", "--offline=true", installed_unit).stdout


def test_exposure_without_the_sandbox_is_above_1_5(installed_unit: Path) -> None:
    text, removed = SANDBOX_LINE.subn("", installed_unit.read_text(encoding="utf-8"))
    assert removed >= 20, "the unit's sandbox settings were not found"
    assert exposure(write_unit(installed_unit.parent, text)) > MAX_EXPOSURE
