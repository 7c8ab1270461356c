"""Packaging: the Home Assistant add-on and the systemd unit stay in step with the daemon's configuration."""

from __future__ import annotations

import configparser
import dataclasses
import json
import os
import re
import shutil
import stat
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from aniworld_daemon.config import CONFIG_SCHEMA, Config, SeriesConfig, load_config
from tests.helpers import ROOT

ADDON = ROOT / "addon"
ADDON_CONFIG: dict[str, Any] = yaml.safe_load((ADDON / "config.yaml").read_text(encoding="utf-8"))
OPTIONS: dict[str, Any] = ADDON_CONFIG["options"]
SCHEMA: dict[str, Any] = ADDON_CONFIG["schema"]
SERVICE_DIR = ADDON / "rootfs" / "etc" / "services.d" / "aniworld-daemon"
RUN_SCRIPT = SERVICE_DIR / "run"
FINISH_SCRIPT = SERVICE_DIR / "finish"
UNIT = ROOT / "systemd" / "aniworld-daemon.service"
SYSUSERS = ROOT / "systemd" / "aniworld-daemon.sysusers"

# Daemon config keys that are not add-on options, each with the reason. Every other key of the daemon's schema must be
# an add-on option, so a new config key fails test_every_daemon_key_is_an_addon_option until the add-on (options,
# schema, translations, DOCS.md) has it or it is listed here.
ADDON_FIXED_KEYS = {
    "data_dir": "the run script sets /data: the add-on's persistent folder, included in backups",
    "api.host": "the run script sets 0.0.0.0: ingress connects from the Supervisor's network",
    "api.port": "the run script sets 8099, the add-on's ingress_port",
    "api.key": "generated on first start and kept in /data; ingress needs no key",
    "provider.base_url": "always https://aniworld.to; only the tests point it at the fake site",
}

# ---------------------------------------------------------------------------------------------------------------
# The Supervisor's option types (supervisor/addons/options.py), checked the way it checks them
# ---------------------------------------------------------------------------------------------------------------
HA_TYPE_RE = re.compile(
    r"^(?P<type>str|password|int|float|bool|port|url|email|match|list)(?:\((?P<args>.*)\))?(?P<optional>\?)?$"
)


def _ha_range(args: str | None) -> tuple[float | None, float | None]:
    if not args:
        return None, None
    low, _, high = args.partition(",")
    return (float(low) if low else None, float(high) if high else None)


def _ha_scalar_problem(typ: str, value: Any) -> str | None:
    """Why `value` does not fit the Supervisor type `typ`, or None when it fits."""
    match = HA_TYPE_RE.match(typ)
    if match is None:
        return f"unknown type {typ!r}"
    kind, args = match.group("type"), match.group("args")
    if kind in ("str", "password"):
        ok = isinstance(value, str)
    elif kind in ("int", "float", "port"):
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        ok = numeric and (kind == "float" or isinstance(value, int))
        low, high = (1, 65535) if kind == "port" else _ha_range(args)
        ok = ok and (low is None or value >= low) and (high is None or value <= high)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "url":
        ok = isinstance(value, str) and re.match(r"^https?://[^/\s]+", value) is not None
    elif kind == "email":
        ok = isinstance(value, str) and "@" in value
    elif kind == "match":
        ok = re.match(args or "", str(value)) is not None
    else:  # list(a|b|c): one of the choices
        ok = str(value) in (args or "").split("|")
    return None if ok else f"{value!r} does not fit {typ!r}"


def _is_optional(typ: Any) -> bool:
    """The Supervisor lets an option be absent only when its type (or a list's item type) ends with '?'."""
    if isinstance(typ, list) and typ:
        typ = typ[0]
    return isinstance(typ, str) and typ.endswith("?")


def ha_problems(value: Any, typ: Any, path: str = "options") -> list[str]:
    """Every way `value` breaks the add-on schema `typ`: unknown keys, missing required keys, wrong types."""
    if isinstance(typ, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping"]
        problems = [f"{path}.{key}: not in the schema" for key in value if key not in typ]
        problems += [
            f"{path}.{key}: required by the schema but has no default in options"
            for key, item in typ.items()
            if key not in value and not _is_optional(item)
        ]
        for key in value.keys() & typ.keys():
            problems += ha_problems(value[key], typ[key], f"{path}.{key}")
        return problems
    if isinstance(typ, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [
            problem for index, item in enumerate(value) for problem in ha_problems(item, typ[0], f"{path}[{index}]")
        ]
    if value is None:
        return [f"{path}: null is rejected by the Supervisor; leave optional keys out of options instead"]
    problem = _ha_scalar_problem(typ, value)
    return [f"{path}: {problem}"] if problem else []


def schema_depth(node: Any) -> int:
    """Levels of nesting below the root: a mapping or list in the root is 1, a mapping inside that list is 2."""
    if isinstance(node, dict):
        return 1 + max((schema_depth(item) for item in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((schema_depth(item) for item in node), default=0)
    return 0


def addon_keys(schema: dict[str, Any]) -> set[str]:
    """`section.key` for every option of the add-on schema (list items count as their list's keys)."""
    keys: set[str] = set()
    for name, typ in schema.items():
        inner = typ[0] if isinstance(typ, list) else typ
        if isinstance(inner, dict):
            keys |= {f"{name}.{key}" for key in inner}
        else:
            keys.add(name)
    return keys


def daemon_keys() -> set[str]:
    """`section.key` for every key of the daemon's config schema, read from the defaults it fills in."""
    filled = CONFIG_SCHEMA({"library": {"path": "/media/anime"}, "mqtt": {}})
    keys: set[str] = set()
    for name, value in filled.items():
        if isinstance(value, dict):
            keys |= {f"{name}.{key}" for key in value}
        elif name == "series":
            keys |= {f"series.{field.name}" for field in dataclasses.fields(SeriesConfig)}
        else:
            keys.add(name)
    return keys


# ---------------------------------------------------------------------------------------------------------------
# The add-on's options and schema
# ---------------------------------------------------------------------------------------------------------------
# What a user may type into every optional field; must fit the add-on schema and the daemon's validation alike.
FULL_OPTIONS: dict[str, Any] = {
    **OPTIONS,
    "library": {**OPTIONS["library"], "path": "/media/tv/anime", "write_nfo": False},
    "provider": {**OPTIONS["provider"], "languages": "de-dub, en-sub", "requests_per_second": 0.5},
    "downloads": {**OPTIONS["downloads"], "rate_limit": "5M", "window": "23:00-06:30", "min_free_space": "1.5G"},
    "schedule": {**OPTIONS["schedule"], "rescan": "30 2 * * mon,thu", "full_refresh": "1d12h"},
    "series": [
        {"url": "https://aniworld.to/anime/stream/frieren-beyond-journeys-end", "languages": "de-dub,de-sub"},
        {"key": "one-piece", "seasons": "0, 21", "monitored": False},
        {"key": "kaiju-no-8"},
    ],
    "api": {"password": "correct horse battery staple"},
    "mqtt": {**OPTIONS["mqtt"], "host": "broker.lan", "port": 8883, "username": "ani", "password": "pw"},
    "logging": {"level": "debug"},
}


def test_options_fit_the_addon_schema() -> None:
    # Every option has a schema entry and every required schema entry a default; optional ones ('?') stay out of
    # options, because the Supervisor rejects null defaults.
    assert ha_problems(OPTIONS, SCHEMA) == []


def test_every_optional_field_filled_in_fits_the_addon_schema() -> None:
    assert ha_problems(FULL_OPTIONS, SCHEMA) == []
    assert addon_keys(SCHEMA) <= {f"{name}.{key}" for name, value in FULL_OPTIONS.items() for key in value} | {
        f"series.{key}" for entry in FULL_OPTIONS["series"] for key in entry
    }, "FULL_OPTIONS should set every add-on option at least once"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("downloads.window", "1am-7am"),
        ("downloads.rate_limit", "fast"),
        ("provider.cooldown", "15 minutes"),
        ("library.path", "/config/anime"),
        ("logging.level", "verbose"),
        ("mqtt.port", 70000),
    ],
)
def test_addon_schema_rejects_what_the_daemon_rejects(path: str, value: Any) -> None:
    section, key = path.split(".")
    options = {**FULL_OPTIONS, section: {**FULL_OPTIONS[section], key: value}}
    assert ha_problems(options, SCHEMA) != []


def test_addon_schema_nests_at_most_two_levels() -> None:
    assert max(schema_depth(typ) for typ in SCHEMA.values()) <= 2
    assert max(schema_depth(value) for value in OPTIONS.values()) <= 2
    lists_of_lists = [name for name, typ in SCHEMA.items() if isinstance(typ, list) and isinstance(typ[0], list)]
    assert lists_of_lists == [], "the Supervisor does not allow a list directly inside a list"


def test_every_daemon_key_is_an_addon_option() -> None:
    missing = daemon_keys() - addon_keys(SCHEMA) - ADDON_FIXED_KEYS.keys()
    assert missing == set(), (
        f"config keys without an add-on option: {sorted(missing)}; add them to addon/config.yaml (options and "
        "schema), addon/translations/en.yaml and addon/DOCS.md, or to ADDON_FIXED_KEYS with the reason"
    )


def test_every_addon_option_is_a_daemon_key() -> None:
    # The daemon rejects unknown keys, so an add-on option it does not know would stop the add-on.
    assert addon_keys(SCHEMA) - daemon_keys() == set()


def test_fixed_keys_are_daemon_keys_and_not_options() -> None:
    assert ADDON_FIXED_KEYS.keys() <= daemon_keys(), "ADDON_FIXED_KEYS names a key the daemon no longer has"
    assert ADDON_FIXED_KEYS.keys() & addon_keys(SCHEMA) == set(), "a fixed key is also an add-on option"


def test_every_option_has_a_translation() -> None:
    translations = yaml.safe_load((ADDON / "translations" / "en.yaml").read_text(encoding="utf-8"))["configuration"]
    translated: set[str] = set()
    for name, entry in translations.items():
        assert entry.get("name"), f"{name}: the Supervisor rejects a translation without a name"
        translated.add(name)
        for key, field in entry.get("fields", {}).items():
            assert field.get("name"), f"{name}.{key}: a translation needs a name"
            translated.add(f"{name}.{key}")
    expected = set(SCHEMA) | {key for key in addon_keys(SCHEMA) if "." in key}
    assert translated == expected


def test_addon_metadata() -> None:
    assert ADDON_CONFIG["slug"] == "aniworld_daemon"
    assert ADDON_CONFIG["init"] is False
    assert ADDON_CONFIG["ingress"] is True
    assert set(ADDON_CONFIG["map"]) == {"media:rw", "addon_config:rw"}
    assert ADDON_CONFIG["services"] == ["mqtt:want"]
    assert "hassio_api" not in ADDON_CONFIG, "the services API needs only services: mqtt:want"
    build = yaml.safe_load((ADDON / "build.yaml").read_text(encoding="utf-8"))
    assert set(build["build_from"]) == set(ADDON_CONFIG["arch"]) == {"amd64", "aarch64"}


def test_addon_installs_the_package_of_its_own_version() -> None:
    # The image runs `pip install aniworld-daemon==${BUILD_VERSION}`: the add-on's version must be a package version.
    dockerfile = (ADDON / "Dockerfile").read_text(encoding="utf-8")
    assert 'pip install --no-cache-dir "aniworld-daemon==${BUILD_VERSION}"' in dockerfile
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert ADDON_CONFIG["version"] == project["version"]


# ---------------------------------------------------------------------------------------------------------------
# The run script: options -> effective config -> the daemon's own loader
# ---------------------------------------------------------------------------------------------------------------
# Just enough of bashio for the run script, with the real functions' semantics (a missing key reads as "null").
BASHIO_STUB = r"""
bashio::config() {
    jq -r --arg key "$1" 'getpath($key | split(".")) | if . == null then "null" else . end' "$STUB_OPTIONS"
}
bashio::config.has_value() { local value; value=$(bashio::config "$1"); [[ "$value" != null && -n "$value" ]]; }
bashio::config.false() { [[ "$(bashio::config "$1")" == false ]]; }
bashio::var.true() { [[ "$1" == true ]]; }
bashio::services.available() { [[ "$1" == mqtt && -n "${STUB_MQTT:-}" ]]; }
bashio::services() { jq -r --arg key "$2" '.[$key] // empty' <<<"$STUB_MQTT"; }
bashio::log.info() { echo "INFO: $*" >&2; }
bashio::log.warning() { echo "WARNING: $*" >&2; }
"""

# What the Supervisor's services API answers for the Mosquitto add-on.
MOSQUITTO = {
    "addon": "core_mosquitto",
    "host": "core-mosquitto",
    "port": 1883,
    "ssl": False,
    "protocol": "3.1.1",
    "username": "addons",
    "password": "Ahx3zaePhoh",
}


@pytest.fixture
def run_addon(tmp_path: Path) -> Callable[[dict[str, Any], dict[str, Any] | None], tuple[Path, Config]]:
    """Run the add-on's run script on the given options (and MQTT service); return the config it wrote, loaded."""
    if shutil.which("jq") is None:
        pytest.fail("the add-on tests need jq (apt-get install jq), as the add-on's run script does")

    def run(options: dict[str, Any], mqtt_service: dict[str, Any] | None) -> tuple[Path, Config]:
        options_file, config_file, args_file = tmp_path / "options.json", tmp_path / "effective.json", tmp_path / "args"
        options_file.write_text(json.dumps(options), encoding="utf-8")
        script = RUN_SCRIPT.read_text(encoding="utf-8")
        assert "/data/options.json" in script
        assert "/data/effective-config.json" in script
        script = script.replace("/data/options.json", str(options_file))
        script = script.replace("/data/effective-config.json", str(config_file))
        (tmp_path / "run").write_text(script, encoding="utf-8")
        (tmp_path / "bashio-stub").write_text(BASHIO_STUB, encoding="utf-8")
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        fake_daemon = bin_dir / "aniworld-daemon"
        fake_daemon.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$STUB_ARGS"\n', encoding="utf-8")
        fake_daemon.chmod(0o755)
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "STUB_OPTIONS": str(options_file),
            "STUB_ARGS": str(args_file),
        }
        env.pop("STUB_MQTT", None)
        if mqtt_service is not None:
            env["STUB_MQTT"] = json.dumps(mqtt_service)
        result = subprocess.run(
            ["bash", "-c", 'source "$1" && source "$2"', "run", tmp_path / "bashio-stub", tmp_path / "run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert args_file.read_text(encoding="utf-8").split() == ["run", "-c", str(config_file)]
        return config_file, load_config(config_file)

    return run


MQTT_CASES = [
    # (id, mqtt options on top of the defaults, MQTT service, expected (enabled, host, port, username, password))
    ("no-broker", {}, None, (False, "localhost", 1883, None, None)),
    ("mosquitto-addon", {}, MOSQUITTO, (True, "core-mosquitto", 1883, "addons", "Ahx3zaePhoh")),
    (
        "own-broker-wins",
        {"host": "broker.lan", "port": 1884, "username": "u"},
        MOSQUITTO,
        (True, "broker.lan", 1884, "u", None),
    ),
    ("switched-off", {"enabled": False}, MOSQUITTO, (False, "localhost", 1883, None, None)),
]


@pytest.mark.parametrize(
    ("mqtt", "service", "expected"), [case[1:] for case in MQTT_CASES], ids=[c[0] for c in MQTT_CASES]
)
def test_default_options_make_a_valid_config(
    run_addon: Callable[[dict[str, Any], dict[str, Any] | None], tuple[Path, Config]],
    mqtt: dict[str, Any],
    service: dict[str, Any] | None,
    expected: tuple[bool, str, int, str | None, str | None],
) -> None:
    config_file, config = run_addon({**OPTIONS, "mqtt": {**OPTIONS["mqtt"], **mqtt}}, service)
    assert config.library.path == Path("/media/anime")
    assert config.data_dir == Path("/data")
    assert (config.api.host, config.api.port, config.api.key) == ("0.0.0.0", ADDON_CONFIG["ingress_port"], None)
    mq = config.mqtt
    assert (mq.enabled, mq.host, mq.port, mq.username, mq.password) == expected
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600, "the effective config holds the MQTT password"


def test_every_option_filled_in_makes_a_valid_config(
    run_addon: Callable[[dict[str, Any], dict[str, Any] | None], tuple[Path, Config]],
) -> None:
    _, config = run_addon(FULL_OPTIONS, MOSQUITTO)
    assert config.library.path == Path("/media/tv/anime")
    assert [language.value for language in config.provider.languages] == ["de-dub", "en-sub"]
    assert config.downloads.rate_limit == 5 * 1024**2
    assert [(s.key, s.seasons, s.monitored) for s in config.series] == [
        ("frieren-beyond-journeys-end", None, True),
        ("one-piece", (0, 21), False),
        ("kaiju-no-8", None, True),
    ]
    assert (config.mqtt.enabled, config.mqtt.host, config.mqtt.port) == (True, "broker.lan", 8883)
    assert config.api.password == "correct horse battery staple"
    assert config.logging.level == "debug"


def test_cleared_optional_fields_fall_back_to_defaults(
    run_addon: Callable[[dict[str, Any], dict[str, Any] | None], tuple[Path, Config]],
) -> None:
    # A field emptied in the UI may arrive as "" or null; the daemon would reject "" for a window or a size.
    options = {
        **FULL_OPTIONS,
        "downloads": {**FULL_OPTIONS["downloads"], "window": "", "rate_limit": None},
        "series": [{"url": "https://aniworld.to/anime/stream/one-piece", "key": "", "seasons": ""}],
        "api": {"password": ""},
        "mqtt": {**OPTIONS["mqtt"], "host": "", "username": ""},
    }
    _, config = run_addon(options, None)
    assert (config.downloads.window, config.downloads.rate_limit) == (None, None)
    assert [(s.key, s.seasons) for s in config.series] == [("one-piece", None)]
    assert config.api.password is None
    assert config.mqtt.enabled is False


@pytest.mark.parametrize("script", [RUN_SCRIPT, FINISH_SCRIPT], ids=["run", "finish"])
def test_s6_scripts_are_executable_bash(script: Path) -> None:
    assert script.stat().st_mode & stat.S_IXUSR, f"{script.name} must be executable"
    result = subprocess.run(["bash", "-n", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------------------------
# The systemd unit
# ---------------------------------------------------------------------------------------------------------------
def read_unit(text: str) -> configparser.ConfigParser:
    """The unit as sections of settings (for repeated settings the last one wins)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


UNIT_TEXT = UNIT.read_text(encoding="utf-8")
SERVICE = read_unit(UNIT_TEXT)["Service"]


def test_unit_has_the_three_sections() -> None:
    assert read_unit(UNIT_TEXT).sections() == ["Unit", "Service", "Install"]
    assert read_unit(UNIT_TEXT)["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("ProtectSystem", "strict"),
        ("UMask", "0002"),
        ("User", "aniworld"),
        ("Group", "media"),
        ("StateDirectory", "aniworld-daemon"),
        ("Restart", "on-failure"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("CapabilityBoundingSet", ""),
        ("NoNewPrivileges", "yes"),
    ],
)
def test_unit_setting(key: str, value: str) -> None:
    assert SERVICE.get(key) == value


def _seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match is not None, f"unexpected time span {value!r}"
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


def test_unit_watchdog_and_stop_timeout() -> None:
    assert _seconds(SERVICE["WatchdogSec"]) >= 10
    assert _seconds(SERVICE["TimeoutStopSec"]) > 30, "the daemon may take 30 s to stop"


def test_unit_checks_the_config_it_runs() -> None:
    pre = re.fullmatch(r"(\S+) check-config -c (\S+)", SERVICE["ExecStartPre"])
    start = re.fullmatch(r"(\S+) run -c (\S+)", SERVICE["ExecStart"])
    assert pre is not None, SERVICE["ExecStartPre"]
    assert start is not None, SERVICE["ExecStart"]
    assert pre.groups() == start.groups() == ("/usr/bin/aniworld-daemon", "/etc/aniworld-daemon/config.yaml")


def test_unit_leaves_memory_deny_write_execute_off() -> None:
    # ffmpeg, yt-dlp and ctypes/cffi callbacks need W+X memory; with it on, downloads crash.
    assert "MemoryDenyWriteExecute" not in SERVICE


def test_sysusers_creates_the_unit_user_and_group() -> None:
    lines = [line.split() for line in SYSUSERS.read_text(encoding="utf-8").splitlines() if line and line[0] != "#"]
    assert ["u", SERVICE["User"]] in [line[:2] for line in lines]
    assert ["g", SERVICE["Group"], "-"] in lines
    assert ["m", SERVICE["User"], SERVICE["Group"]] in lines


@pytest.fixture
def runnable_unit(tmp_path: Path) -> Path:
    """A copy of the unit whose commands exist on any machine (the daemon is not installed at /usr/bin here)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (systemd is not the init system here)")
    text, count = re.subn(r"^(ExecStart(?:Pre)?=)/usr/bin/aniworld-daemon ", r"\1/bin/true ", UNIT_TEXT, flags=re.M)
    assert count == 2
    copy = tmp_path / UNIT.name
    copy.write_text(text, encoding="utf-8")
    return copy


def test_systemd_analyze_verify_is_silent(runnable_unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", runnable_unit], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_security_exposure_stays_low(runnable_unit: Path) -> None:
    usage = subprocess.run(["systemd-analyze", "security", "--help"], capture_output=True, text=True, check=False)
    if "--offline" not in usage.stdout:
        pytest.skip("this systemd-analyze cannot rate a unit file offline (needs systemd 250 or newer)")
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", runnable_unit],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout
