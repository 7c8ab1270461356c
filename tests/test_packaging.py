"""Packaging: the Home Assistant add-on and the systemd unit stay in step with the daemon's configuration."""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import aiomqtt
import jsonschema  # type: ignore[import-untyped]  # no stubs in the test extras (types-jsonschema)
import pytest
import yaml
from aiohttp import web

from aniworld_daemon.config import CONFIG_SCHEMA, Config, MqttTls, SeriesConfig, load_config
from aniworld_daemon.errors import ConfigError
from tests.helpers import ROOT, Broker, Daemon, free_port

ADDON = ROOT / "addon"
ADDON_CONFIG: dict[str, Any] = yaml.safe_load((ADDON / "config.yaml").read_text(encoding="utf-8"))
OPTIONS: dict[str, Any] = ADDON_CONFIG["options"]
SCHEMA: dict[str, Any] = ADDON_CONFIG["schema"]
SERVICE_DIR = ADDON / "rootfs" / "etc" / "services.d" / "aniworld-daemon"
RUN_SCRIPT = SERVICE_DIR / "run"
FINISH_SCRIPT = SERVICE_DIR / "finish"
# The Supervisor's default ingress port (supervisor/addons/validate.py): config.yaml leaves it out, the run script
# puts the daemon's API there.
INGRESS_PORT = 8099
LINTER_SCHEMA: dict[str, Any] = json.loads((ROOT / "tests" / "addon_schema.json").read_text(encoding="utf-8"))
UNIT = ROOT / "systemd" / "aniworld-daemon.service"
SYSUSERS = ROOT / "systemd" / "aniworld-daemon.sysusers"

# Daemon config keys that are not add-on options, each with the reason. Every other key of the daemon's schema must be
# an add-on option, so a new config key fails test_every_daemon_key_is_an_addon_option until the add-on (options,
# schema, translations, DOCS.md) has it or it is listed here.
ADDON_FIXED_KEYS = {
    "data_dir": "the run script sets /data: the add-on's persistent folder, included in backups",
    "api.host": "the run script sets 0.0.0.0: ingress connects from the Supervisor's network",
    "api.port": "the run script sets 8099, the Supervisor's default ingress_port",
    "api.key": "generated on first start and kept in /data; ingress needs no key",
    "api.allowed_origins": "ingress upgrades are trusted without an origin check, and the add-on exposes no port",
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
    "mqtt": {
        **OPTIONS["mqtt"],
        "host": "broker.lan",
        "port": 8883,
        "username": "ani",
        "password": "pw",
        "keepalive": 30,
        "tls": {
            "enabled": True,
            "ca": "/config/ca.pem",
            "cert": "/config/client.pem",
            "key": "/config/client.key",
            "insecure": True,
        },
    },
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
        ("mqtt.keepalive", 4),
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


def schema_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """The dotted path of every option and section of the add-on schema, however deep (list items: their list's)."""
    paths: set[str] = set()
    for name, typ in schema.items():
        paths.add(f"{prefix}{name}")
        inner = typ[0] if isinstance(typ, list) else typ
        if isinstance(inner, dict):
            paths |= schema_paths(inner, f"{prefix}{name}.")
    return paths


def translation_paths(entries: dict[str, Any], prefix: str = "") -> set[str]:
    """The dotted path of every translated option, however deep (`fields` nest as the schema does)."""
    paths: set[str] = set()
    for name, entry in entries.items():
        assert entry.get("name"), f"{prefix}{name}: the Supervisor rejects a translation without a name"
        paths.add(f"{prefix}{name}")
        paths |= translation_paths(entry.get("fields", {}), f"{prefix}{name}.")
    return paths


def test_every_option_has_a_translation() -> None:
    translations = yaml.safe_load((ADDON / "translations" / "en.yaml").read_text(encoding="utf-8"))["configuration"]
    assert translation_paths(translations) == schema_paths(SCHEMA)


def test_every_option_is_documented() -> None:
    # DOCS.md names each option in its section's table: `path`, and `tls.ca` for one a level deeper.
    docs = (ADDON / "DOCS.md").read_text(encoding="utf-8")
    paths = schema_paths(SCHEMA)
    options = {path for path in paths if "." in path and not any(other.startswith(f"{path}.") for other in paths)}
    assert "mqtt.tls.ca" in options
    missing = sorted(path for path in options if f"`{path.split('.', 1)[1]}`" not in docs)
    assert missing == []


def test_addon_tls_options_are_the_daemons_and_a_switch() -> None:
    # The Supervisor has no optional sections, so the add-on's mqtt.tls is always there and `enabled` switches it;
    # the run script removes `enabled` (the daemon has no such key) and the section when it is off. Everything else
    # is the daemon's own key.
    daemon_tls = CONFIG_SCHEMA({"library": {"path": "/media/anime"}, "mqtt": {"tls": {}}})["mqtt"]["tls"]
    assert set(SCHEMA["mqtt"]["tls"]) == set(daemon_tls) | {"enabled"}
    assert OPTIONS["mqtt"]["tls"]["enabled"] is False, "TLS must stay off unless asked for"


def test_addon_metadata() -> None:
    assert ADDON_CONFIG["slug"] == "aniworld_daemon"
    assert ADDON_CONFIG["init"] is False
    assert ADDON_CONFIG["ingress"] is True
    assert set(ADDON_CONFIG["map"]) == {"media:rw", "addon_config:rw"}
    assert ADDON_CONFIG["services"] == ["mqtt:want"]
    assert "hassio_api" not in ADDON_CONFIG, "the services API needs only services: mqtt:want"
    assert set(ADDON_CONFIG["arch"]) == {"amd64", "aarch64"}


def test_addon_version_is_the_package_version() -> None:
    # The image installs aniworld_daemon-${BUILD_VERSION} (the wheel, else the index): the two versions must agree.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert ADDON_CONFIG["version"] == project["version"]


# ---------------------------------------------------------------------------------------------------------------
# The Supervisor's and the add-on linter's rules, as JSON schema (tests/addon_schema.json says where each comes from)
# ---------------------------------------------------------------------------------------------------------------
def _repeats_default(
    validator: Any, properties: dict[str, Any], instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """The linter's `properties`: the standard checks, plus an error for a key that only repeats its default."""
    if validator.is_type(instance, "object"):
        for name, subschema in properties.items():
            if "default" in subschema and name in instance and instance[name] == subschema["default"]:
                yield jsonschema.ValidationError(f"'{name}' should be removed, it uses a default value")
    yield from jsonschema.Draft7Validator.VALIDATORS["properties"](validator, properties, instance, schema)


def _deprecated(
    validator: Any, deprecated: bool, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """Any use of a key flagged `deprecated` is an error; its `$comment` says why."""
    if deprecated:
        yield jsonschema.ValidationError(f"deprecated: {schema.get('$comment', 'no longer supported')}")


AddonLinter = jsonschema.validators.extend(
    jsonschema.Draft7Validator, {"properties": _repeats_default, "deprecated": _deprecated}
)


def lint_problems(document: Any, definition: str) -> list[str]:
    """Every rule of tests/addon_schema.json's `definition` that `document` breaks, as `path: message`."""
    schema = {"$ref": f"#/definitions/{definition}", "definitions": LINTER_SCHEMA["definitions"]}
    validator = AddonLinter(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    return sorted(f"{error.json_path}: {error.message}" for error in validator.iter_errors(document))


def test_the_linter_schema_is_valid_json_schema() -> None:
    jsonschema.Draft7Validator.check_schema(LINTER_SCHEMA)


def test_addon_config_follows_the_supervisors_rules() -> None:
    assert lint_problems(ADDON_CONFIG, "config") == []


def test_addon_translations_follow_the_supervisors_rules() -> None:
    for file in sorted((ADDON / "translations").glob("*.yaml")):
        assert lint_problems(yaml.safe_load(file.read_text(encoding="utf-8")), "translations") == [], file.name


def test_build_yaml_is_gone() -> None:
    # Deprecated since Supervisor 2026.04: the base image and the labels live in the Dockerfile.
    assert not any((ADDON / f"build.{suffix}").exists() for suffix in ("yaml", "yml", "json"))


LINT_CASES = [
    # (id, document, definition, a problem the linter must report)
    ("boot-default", {**ADDON_CONFIG, "boot": "auto"}, "config", "'boot' should be removed, it uses a default value"),
    ("startup-default", {**ADDON_CONFIG, "startup": "application"}, "config", "'startup' should be removed"),
    ("ingress-port-default", {**ADDON_CONFIG, "ingress_port": 8099}, "config", "'ingress_port' should be removed"),
    ("init-default", {**ADDON_CONFIG, "init": True}, "config", "'init' should be removed"),
    ("dropped-arch", {**ADDON_CONFIG, "arch": ["amd64", "armv7"]}, "config", "'armv7' is not one of"),
    ("app-config-map", {**ADDON_CONFIG, "map": ["app_config:rw"]}, "config", "$.map[0]"),
    ("watchdog", {**ADDON_CONFIG, "watchdog": "tcp://[HOST]:[PORT:8099]"}, "config", "use the Docker HEALTHCHECK"),
    ("unknown-key", {**ADDON_CONFIG, "build_from": "x"}, "config", "'build_from' was unexpected"),
    ("bad-option-type", {**ADDON_CONFIG, "schema": {"x": "string"}}, "config", "$.schema: {'x': 'string'} is not"),
    ("list-in-list", {**ADDON_CONFIG, "schema": {"x": [["str"]]}}, "config", "$.schema: {'x': [['str']]} is not"),
    ("timeout-too-long", {**ADDON_CONFIG, "timeout": 600}, "config", "600 is greater than the maximum of 300"),
    ("translation-without-name", {"configuration": {"library": {"description": "x"}}}, "translations", "'name'"),
]


@pytest.mark.parametrize(
    ("document", "definition", "problem"), [case[1:] for case in LINT_CASES], ids=[c[0] for c in LINT_CASES]
)
def test_the_linter_schema_reports(document: dict[str, Any], definition: str, problem: str) -> None:
    problems = lint_problems(document, definition)
    assert any(problem in line for line in problems), problems


# ---------------------------------------------------------------------------------------------------------------
# The image: the Dockerfile's base, labels and how it installs the daemon
# ---------------------------------------------------------------------------------------------------------------
def dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions, each on one line (continuation lines joined, comments dropped)."""
    instructions: list[str] = []
    pending = ""
    for line in (ADDON / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1]
        else:
            instructions.append(pending)
            pending = ""
    return instructions


def test_dockerfile_names_the_multi_arch_base_image() -> None:
    text = (ADDON / "Dockerfile").read_text(encoding="utf-8")
    build_from = re.search(r"^ARG BUILD_FROM=(\S+)$", text, re.M)
    assert build_from is not None, "the base image is a default of ARG BUILD_FROM (the Supervisor no longer passes it)"
    assert re.fullmatch(r"ghcr\.io/home-assistant/base-python:3\.\d+-alpine3\.\d+", build_from.group(1))
    assert re.search(r"^FROM \$\{?BUILD_FROM\}?$", text, re.M)
    for label in ('io.hass.type="addon"', 'io.hass.version="${BUILD_VERSION}"', "org.opencontainers.image.title="):
        assert label in text


@pytest.mark.parametrize("wheel", [True, False], ids=["wheel-from-make-addon", "no-wheel"])
def test_image_installs_the_wheel_else_the_package_of_its_version(tmp_path: Path, wheel: bool) -> None:
    # The Dockerfile's install step, run by sh (busybox's in the image) with a stand-in pip that records its arguments;
    # /tmp/addon, where the Dockerfile copies the add-on folder, is a temporary folder here.
    install = [text for text in dockerfile_instructions() if text.startswith("RUN ") and "pip install" in text]
    assert len(install) == 1, install
    context = tmp_path / "addon"
    context.mkdir()
    version = ADDON_CONFIG["version"]
    if wheel:
        (context / f"aniworld_daemon-{version}-py3-none-any.whl").write_bytes(b"")
    (context / "aniworld_daemon-0.0.1-py3-none-any.whl").write_bytes(b"")  # an old build: never installed
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pip").write_text('#!/bin/sh\nprintf "%s\\n" "$*" >> "$PIP_CALLS"\n', encoding="utf-8")
    (bin_dir / "pip").chmod(0o755)
    calls = tmp_path / "pip-calls"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PIP_CALLS": str(calls)}
    env["BUILD_VERSION"] = version  # an ARG is in the environment of every RUN after it
    script = install[0].removeprefix("RUN ").replace("/tmp/addon", str(context))
    result = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    wanted = f"{context}/aniworld_daemon-{version}-py3-none-any.whl" if wheel else f"aniworld-daemon=={version}"
    assert calls.read_text(encoding="utf-8").splitlines() == [f"install --no-cache-dir {wanted}"]
    assert ("make addon" in result.stdout) is not wheel, "without the wheel the build log says how to make one"
    assert not context.exists(), "the copy of the add-on folder is removed from the image"


# ---------------------------------------------------------------------------------------------------------------
# The run script: options -> effective config -> the daemon's own loader
# ---------------------------------------------------------------------------------------------------------------
# Just enough of bashio for the run script, with the real functions' semantics: the Supervisor's API is asked with
# the add-on's token, and an error answer makes the function fail and log an ERROR line, as the real one does (so a
# script that reads a service no add-on provides logs "Got unexpected response from the API: Service not enabled");
# services.available asks with that output thrown away (bashio:lib/api.sh `bashio::api.supervisor`,
# lib/services.sh, lib/addons.sh, lib/log.sh: logs go to stderr). Where bashio runs curl, the stub runs
# `supervisor-get`, a small Python script on PATH (SUPERVISOR_GET), so the tests need no curl.
BASHIO_STUB = r"""
bashio::var.true() { [[ "$1" == true ]]; }
bashio::api.supervisor() {
    local response status
    response=$(supervisor-get "$1" "$2") || return 1
    status=${response##*$'\n'}
    response=${response%$'\n'*}
    if [[ "$status" == 401 ]]; then
        bashio::log.error "Unable to authenticate with the API, permission denied"
        return 1
    fi
    if [[ "$(jq -r '.result' <<<"$response")" == error ]]; then
        bashio::log.error "Got unexpected response from the API:" "$(jq -r '.message // empty' <<<"$response")"
        return 1
    fi
    [[ "$status" == 200 ]] || return 1
    jq -c 'if .data == {} then empty else .data end' <<<"$response"
}
bashio::services.available() { bashio::api.supervisor GET "/services/$1" > /dev/null 2>&1; }
bashio::services() {
    local config
    config=$(bashio::api.supervisor GET "/services/$1") || return 1
    jq -r --arg key "$2" '.[$key] | if . == null then "null" else . end' <<<"$config"
}
bashio::addon.slug() {
    local info
    info=$(bashio::api.supervisor GET /addons/self/info) || return 1
    jq -r '.slug' <<<"$info"
}
bashio::log.info() { echo "INFO: $*" >&2; }
bashio::log.warning() { echo "WARNING: $*" >&2; }
bashio::log.error() { echo "ERROR: $*" >&2; }
"""

# bashio from June 2026 on: add-ons are apps (`bashio::app.*`); the old names still work but warn.
NEW_BASHIO = r"""
bashio::app.slug() {
    local info
    info=$(bashio::api.supervisor GET /addons/self/info) || return 1
    jq -r '.slug' <<<"$info"
}
bashio::addon.slug() { echo "WARNING: bashio::addon.slug is deprecated, use bashio::app.slug" >&2; bashio::app.slug; }
"""

# curl's part: GET a path of the Supervisor's API (bashio's __BASHIO_SUPERVISOR_API, http://supervisor in an add-on)
# with `Authorization: Bearer $SUPERVISOR_TOKEN`; print the body, a newline and the HTTP status (curl --write-out).
SUPERVISOR_GET = """
import os
import sys
import urllib.error
import urllib.request

method, path = sys.argv[1], sys.argv[2]
request = urllib.request.Request(
    os.environ["__BASHIO_SUPERVISOR_API"] + path,
    method=method,
    headers={"Authorization": "Bearer " + os.environ.get("SUPERVISOR_TOKEN", "")},
)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # straight to 127.0.0.1, whatever *_proxy says
try:
    with opener.open(request, timeout=10) as response:
        body, status = response.read(), response.status
except urllib.error.HTTPError as error:
    body, status = error.read(), error.code
sys.stdout.write(body.decode() + "\\n" + str(status))
"""

SUPERVISOR_TOKEN = "3f1c0d2b9a8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e"
SLUG = "local_aniworld_daemon"  # the full slug the Supervisor reports: <repository>_<slug of config.yaml>

# What the Supervisor's services API answers for the Mosquitto add-on (`port` is a string there).
MOSQUITTO = {
    "addon": "core_mosquitto",
    "host": "core-mosquitto",
    "port": "1883",
    "ssl": False,
    "protocol": "3.1.1",
    "username": "addons",
    "password": "Ahx3zaePhoh",
}


class Supervisor:
    """A stand-in for the Supervisor's API on 127.0.0.1: the two paths the run script's bashio calls ask for.

    `GET /services/mqtt` answers `mqtt` in the Supervisor's envelope (`{"result": "ok", "data": ...}`), or its error
    when no add-on provides the service; `GET /addons/self/info` answers the slug (an error when `slug` is None).
    Both want the add-on's token, as the real one does (401 otherwise).
    """

    def __init__(self) -> None:
        self.mqtt: dict[str, Any] | None = None
        self.slug: str | None = SLUG
        self.requests: list[tuple[str, bool]] = []  # (path, whether it carried the token)
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Serve on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_get("/services/mqtt", self._mqtt)
        app.router.add_get("/addons/self/info", self._info)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorized(self, request: web.Request) -> bool:
        carried = request.headers.get("Authorization") == f"Bearer {SUPERVISOR_TOKEN}"
        self.requests.append((request.path, carried))
        return carried

    async def _mqtt(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"result": "error", "message": "Unauthorized"}, status=401)
        if self.mqtt is None:  # supervisor/api/services.py get_service: APIError, HTTP 400
            return web.json_response({"result": "error", "message": "Service not enabled"}, status=400)
        return web.json_response({"result": "ok", "data": self.mqtt})

    async def _info(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"result": "error", "message": "Unauthorized"}, status=401)
        if self.slug is None:
            return web.json_response({"result": "error", "message": "Add-on is not available"}, status=400)
        info = {"slug": self.slug, "name": ADDON_CONFIG["name"], "ingress": True, "ingress_port": INGRESS_PORT}
        return web.json_response({"result": "ok", "data": info})


@dataclasses.dataclass(frozen=True)
class ScriptRun:
    """One run of the run script: its exit status, what it logged (stderr), and the config file it was to write."""

    returncode: int
    log: str
    config_file: Path
    daemon_args: list[str] | None  # how it started the daemon; None when it did not
    configuration_url: str | None  # ANIWORLD_CONFIGURATION_URL as the daemon got it; None when it was not set


@dataclasses.dataclass(frozen=True)
class AddonRun:
    """What a successful run of the run script made: the effective config (file and loaded), environment, log."""

    config_file: Path
    config: Config
    configuration_url: str | None  # ANIWORLD_CONFIGURATION_URL as the daemon got it; None when it was not set
    log: str  # what the script logged (stderr)


class RunScript(Protocol):
    """The `run_script` fixture: run the run script on options (and aniworld.yaml), with `mqtt_service` offered."""

    async def __call__(
        self,
        options: dict[str, Any],
        mqtt_service: dict[str, Any] | None,
        *,
        overrides: str | None = None,
        bashio_extra: str = "",
    ) -> ScriptRun: ...


class RunAddon(Protocol):
    """The `run_addon` fixture: run the run script, expect it to start the daemon, and load the config it made."""

    async def __call__(
        self,
        options: dict[str, Any],
        mqtt_service: dict[str, Any] | None,
        *,
        overrides: str | None = None,
        bashio_extra: str = "",
    ) -> AddonRun: ...


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    """The stand-in Supervisor, serving on 127.0.0.1 for the test."""
    server = Supervisor()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def run_script(tmp_path: Path, supervisor: Supervisor) -> RunScript:
    """Run the add-on's run script up to its `exec aniworld-daemon` (a stand-in on PATH records how it was called).

    The add-on's paths move into tmp_path: /data/options.json, /data/effective-config.json and the add-on config
    folder's aniworld.yaml (written from `overrides` when given). `python3` is this test's Python, which has PyYAML
    as the image's Python has (the daemon's dependency).
    """
    if shutil.which("jq") is None:
        pytest.fail("the add-on tests need jq (apt-get install jq), as the add-on's run script does")

    async def run(
        options: dict[str, Any],
        mqtt_service: dict[str, Any] | None,
        *,
        overrides: str | None = None,
        bashio_extra: str = "",
    ) -> ScriptRun:
        supervisor.mqtt = mqtt_service
        options_file, config_file = tmp_path / "options.json", tmp_path / "effective.json"
        args_file, url_file = tmp_path / "args", tmp_path / "configuration-url"
        overrides_file = tmp_path / "addon_config" / "aniworld.yaml"
        for stale in (args_file, url_file, overrides_file):
            stale.unlink(missing_ok=True)
        options_file.write_text(json.dumps(options), encoding="utf-8")
        if overrides is not None:
            overrides_file.parent.mkdir(exist_ok=True)
            overrides_file.write_text(overrides, encoding="utf-8")
        script = RUN_SCRIPT.read_text(encoding="utf-8")
        for path, replacement in (
            ("/data/options.json", options_file),
            ("/data/effective-config.json", config_file),
            ("/config/aniworld.yaml", overrides_file),
        ):
            assert path in script
            script = script.replace(path, str(replacement))
        (tmp_path / "run").write_text(script, encoding="utf-8")
        (tmp_path / "bashio-stub").write_text(BASHIO_STUB + bashio_extra, encoding="utf-8")
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        fake_daemon = bin_dir / "aniworld-daemon"
        fake_daemon.write_text(
            '#!/bin/sh\nprintf "%s\\n" "$@" > "$STUB_ARGS"\n'
            'if [ "${ANIWORLD_CONFIGURATION_URL+set}" = set ]; then\n'
            '    printf "%s" "$ANIWORLD_CONFIGURATION_URL" > "$STUB_URL"\nfi\n',
            encoding="utf-8",
        )
        supervisor_get = bin_dir / "supervisor-get"
        supervisor_get.write_text(f"#!{sys.executable}\n{SUPERVISOR_GET}", encoding="utf-8")
        python3 = bin_dir / "python3"
        python3.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
        for program in (fake_daemon, supervisor_get, python3):
            program.chmod(0o755)
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "STUB_ARGS": str(args_file),
            "STUB_URL": str(url_file),
            "__BASHIO_SUPERVISOR_API": supervisor.url,
            "SUPERVISOR_TOKEN": SUPERVISOR_TOKEN,
        }
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            'source "$1" && source "$2"',
            "run",
            str(tmp_path / "bashio-stub"),
            str(tmp_path / "run"),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, errors = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode is not None
        return ScriptRun(
            returncode=process.returncode,
            log=errors.decode(errors="replace"),
            config_file=config_file,
            daemon_args=args_file.read_text(encoding="utf-8").split() if args_file.exists() else None,
            configuration_url=url_file.read_text(encoding="utf-8") if url_file.exists() else None,
        )

    return run


@pytest.fixture
def run_addon(run_script: RunScript) -> RunAddon:
    """Run the add-on's run script; it must start the daemon with the config it wrote, which must load."""

    async def run(
        options: dict[str, Any],
        mqtt_service: dict[str, Any] | None,
        *,
        overrides: str | None = None,
        bashio_extra: str = "",
    ) -> AddonRun:
        result = await run_script(options, mqtt_service, overrides=overrides, bashio_extra=bashio_extra)
        assert result.returncode == 0, result.log
        assert result.daemon_args == ["run", "-c", str(result.config_file)], result.log
        return AddonRun(result.config_file, load_config(result.config_file), result.configuration_url, result.log)

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
async def test_default_options_make_a_valid_config(
    run_addon: RunAddon,
    mqtt: dict[str, Any],
    service: dict[str, Any] | None,
    expected: tuple[bool, str, int, str | None, str | None],
) -> None:
    result = await run_addon({**OPTIONS, "mqtt": {**OPTIONS["mqtt"], **mqtt}}, service)
    config = result.config
    assert config.library.path == Path("/media/anime")
    assert config.data_dir == Path("/data")
    assert (config.api.host, config.api.port, config.api.key) == ("0.0.0.0", INGRESS_PORT, None)
    mq = config.mqtt
    assert (mq.enabled, mq.host, mq.port, mq.username, mq.password) == expected
    assert (mq.keepalive, mq.tls) == (60, None)
    assert stat.S_IMODE(result.config_file.stat().st_mode) == 0o600, "the effective config holds the MQTT password"
    # Without an MQTT service too: the script asks whether it is there before reading it.
    assert [line for line in result.log.splitlines() if line.startswith(("ERROR", "WARNING"))] == []


async def test_reading_a_missing_service_logs_an_error_in_the_stand_in(tmp_path: Path, supervisor: Supervisor) -> None:
    # What the run script avoids by asking first: bashio's own ERROR line when no add-on provides MQTT. The stand-in
    # reproduces it, so the check above would catch a script that reads the service without asking.
    supervisor.mqtt = None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "supervisor-get").write_text(f"#!{sys.executable}\n{SUPERVISOR_GET}", encoding="utf-8")
    (bin_dir / "supervisor-get").chmod(0o755)
    (tmp_path / "bashio-stub").write_text(BASHIO_STUB, encoding="utf-8")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "__BASHIO_SUPERVISOR_API": supervisor.url,
        "SUPERVISOR_TOKEN": SUPERVISOR_TOKEN,
    }
    script = 'source "$1"; bashio::services.available mqtt || echo "not available"; bashio::services mqtt host || true'
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        "check",
        str(tmp_path / "bashio-stub"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, errors = await asyncio.wait_for(process.communicate(), 30)
    assert out.decode() == "not available\n"
    assert errors.decode().splitlines() == ["ERROR: Got unexpected response from the API: Service not enabled"]


async def test_the_stand_in_supervisor_wants_the_token(tmp_path: Path, supervisor: Supervisor) -> None:
    # The run script's questions reach the stand-in only with the token; without it bashio sees an error, as with
    # the real Supervisor, so a stub that forgot the header would leave MQTT off and fail the tests above.
    supervisor.mqtt = MOSQUITTO
    script = tmp_path / "supervisor-get"
    script.write_text(SUPERVISOR_GET, encoding="utf-8")

    async def ask(token: str) -> tuple[str, str]:
        env = {**os.environ, "__BASHIO_SUPERVISOR_API": supervisor.url, "SUPERVISOR_TOKEN": token}
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(script), "GET", "/services/mqtt", env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        body, _, status = out.decode().rpartition("\n")
        return status, body

    assert (await ask("wrong"))[0] == "401"
    status, body = await ask(SUPERVISOR_TOKEN)
    assert (status, json.loads(body)) == ("200", {"result": "ok", "data": MOSQUITTO})
    assert supervisor.requests == [("/services/mqtt", False), ("/services/mqtt", True)]


TLS_CASES = [
    # (id, mqtt options on top of the defaults, MQTT service, expected mqtt.tls)
    ("plain-service", {}, MOSQUITTO, None),
    ("service-asks-for-tls", {}, {**MOSQUITTO, "port": "8883", "ssl": True}, MqttTls(None, None, None, False)),
    (
        "own-broker-with-a-ca",
        {"host": "broker.lan", "port": 8883, "tls": {"enabled": True, "ca": "/config/ca.pem", "insecure": False}},
        None,
        MqttTls(Path("/config/ca.pem"), None, None, False),
    ),
    (
        "own-broker-system-cas",
        {"host": "broker.lan", "port": 8883, "tls": {"enabled": True, "insecure": False}},
        None,
        MqttTls(None, None, None, False),
    ),
    (
        "own-plain-broker-ignores-the-service-ssl",
        {"host": "broker.lan", "tls": {"enabled": False, "ca": "/config/ca.pem", "insecure": False}},
        {**MOSQUITTO, "ssl": True},
        None,
    ),
    (
        "own-settings-for-the-service-broker",
        {"tls": {"enabled": True, "ca": "/config/mosquitto-ca.pem", "insecure": True}},
        {**MOSQUITTO, "ssl": True},
        MqttTls(Path("/config/mosquitto-ca.pem"), None, None, True),
    ),
]


@pytest.mark.parametrize(
    ("mqtt", "service", "expected"), [case[1:] for case in TLS_CASES], ids=[c[0] for c in TLS_CASES]
)
async def test_tls_comes_from_the_options_or_the_mqtt_service(
    run_addon: RunAddon, mqtt: dict[str, Any], service: dict[str, Any] | None, expected: MqttTls | None
) -> None:
    result = await run_addon({**OPTIONS, "mqtt": {**OPTIONS["mqtt"], **mqtt}}, service)
    assert result.config.mqtt.enabled
    assert result.config.mqtt.tls == expected
    assert "enabled" not in json.loads(result.config_file.read_text(encoding="utf-8"))["mqtt"].get("tls", {})
    assert "WARNING" not in result.log, "the daemon speaks TLS: nothing to warn about"
    if service is not None and "host" not in mqtt:
        assert result.config.mqtt.port == int(service["port"])


@pytest.mark.parametrize("bashio", ["bashio-addon", "bashio-app"])
async def test_the_device_links_to_the_ingress_panel(run_addon: RunAddon, bashio: str) -> None:
    # The slug comes from the Supervisor (bashio::addon.slug, or bashio::app.slug where bashio has it: no warning).
    result = await run_addon(OPTIONS, MOSQUITTO, bashio_extra=NEW_BASHIO if bashio == "bashio-app" else "")
    assert result.configuration_url == f"homeassistant://hassio/ingress/{SLUG}"
    assert "WARNING" not in result.log


async def test_without_a_slug_the_device_links_to_the_api(run_addon: RunAddon, supervisor: Supervisor) -> None:
    supervisor.slug = None
    result = await run_addon(OPTIONS, MOSQUITTO)
    assert result.configuration_url is None, "the daemon then links to http://<host>:8099/ itself"
    assert "WARNING: Could not read the add-on's slug" in result.log
    assert result.config.mqtt.enabled


async def test_every_option_filled_in_makes_a_valid_config(run_addon: RunAddon) -> None:
    config = (await run_addon(FULL_OPTIONS, MOSQUITTO)).config
    assert config.library.path == Path("/media/tv/anime")
    assert [language.value for language in config.provider.languages] == ["de-dub", "en-sub"]
    assert config.downloads.rate_limit == 5 * 1024**2
    assert [(s.key, s.seasons, s.monitored) for s in config.series] == [
        ("frieren-beyond-journeys-end", None, True),
        ("one-piece", (0, 21), False),
        ("kaiju-no-8", None, True),
    ]
    assert (config.mqtt.enabled, config.mqtt.host, config.mqtt.port) == (True, "broker.lan", 8883)
    assert config.mqtt.keepalive == 30
    assert config.mqtt.tls == MqttTls(
        Path("/config/ca.pem"), Path("/config/client.pem"), Path("/config/client.key"), True
    )
    assert config.api.password == "correct horse battery staple"
    assert config.logging.level == "debug"


async def test_cleared_optional_fields_fall_back_to_defaults(run_addon: RunAddon) -> None:
    # A field emptied in the UI may arrive as "" or null; the daemon would reject "" for a window or a size.
    options = {
        **FULL_OPTIONS,
        "downloads": {**FULL_OPTIONS["downloads"], "window": "", "rate_limit": None},
        "series": [{"url": "https://aniworld.to/anime/stream/one-piece", "key": "", "seasons": ""}],
        "api": {"password": ""},
        "mqtt": {**OPTIONS["mqtt"], "host": "", "username": ""},
    }
    config = (await run_addon(options, None)).config
    assert (config.downloads.window, config.downloads.rate_limit) == (None, None)
    assert [(s.key, s.seasons) for s in config.series] == [("one-piece", None)]
    assert config.api.password is None
    assert config.mqtt.enabled is False


async def test_cleared_tls_files_fall_back_to_the_system_cas(run_addon: RunAddon) -> None:
    tls = {"enabled": True, "ca": "", "cert": None, "key": "", "insecure": False}
    config = (await run_addon({**OPTIONS, "mqtt": {**OPTIONS["mqtt"], "host": "broker.lan", "tls": tls}}, None)).config
    assert config.mqtt.tls == MqttTls(None, None, None, False)


OVERRIDE_CASES = [
    # (id, aniworld.yaml, what the daemon gets: (dotted key, value) pairs)
    (
        "nested-keys-over-the-form",
        "downloads:\n  max_concurrent: 4\nprovider:\n  base_url: https://aniworld.example\n",
        [("downloads.max_concurrent", 4), ("downloads.retries", 5), ("provider.base_url", "https://aniworld.example")],
    ),
    (
        "lists-replace-and-may-be-yaml-lists",
        "provider:\n  languages: [de-dub]\nseries:\n  - key: kaiju-no-8\n    seasons: [1, 2]\n",
        [("provider.languages", ["de-dub"]), ("series", [{"key": "kaiju-no-8", "seasons": [1, 2]}])],
    ),
    (
        "null-clears-an-option",
        "library:\n  write_nfo: false\nschedule:\n  rescan: null\n",
        [("library.write_nfo", False), ("schedule.rescan", None), ("library.path", "/media/anime")],
    ),
    (
        "the-add-on-keeps-its-own-places",
        "data_dir: /config/data\napi:\n  port: 9000\n  password: a-long-enough-password\n",
        [("data_dir", "/data"), ("api.port", INGRESS_PORT), ("api.password", "a-long-enough-password")],
    ),
    (
        "mqtt-broker-from-the-file-wins-over-the-service",
        "mqtt:\n  host: broker.lan\n  tls:\n    enabled: true\n",
        [("mqtt.host", "broker.lan"), ("mqtt.username", None), ("mqtt.tls", {"insecure": False})],
    ),
    ("empty-file", "# nothing yet\n", [("downloads.max_concurrent", 2), ("mqtt.host", "core-mosquitto")]),
]


@pytest.mark.parametrize(
    ("overrides", "expected"), [case[1:] for case in OVERRIDE_CASES], ids=[c[0] for c in OVERRIDE_CASES]
)
async def test_aniworld_yaml_is_merged_over_the_options(
    run_addon: RunAddon, overrides: str, expected: list[tuple[str, Any]]
) -> None:
    result = await run_addon(OPTIONS, MOSQUITTO, overrides=overrides)
    effective = json.loads(result.config_file.read_text(encoding="utf-8"))
    for dotted, value in expected:
        found: Any = effective
        for key in dotted.split("."):
            found = found.get(key) if isinstance(found, dict) else None
        assert found == value, dotted
    assert f"Merging {result.config_file.parent / 'addon_config' / 'aniworld.yaml'} over the options" in result.log


async def test_without_aniworld_yaml_nothing_is_merged(run_addon: RunAddon) -> None:
    result = await run_addon(OPTIONS, MOSQUITTO)
    assert "Merging" not in result.log


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ("downloads: [max_concurrent: 4\n", "while parsing a flow sequence"),
        ("- downloads\n", "expected settings like the options"),
        ("mqtt:\n  password: !secret mqtt_password\n", "could not determine a constructor for the tag '!secret'"),
    ],
    ids=["invalid-yaml", "not-a-mapping", "secret-tag"],
)
async def test_an_unreadable_aniworld_yaml_stops_the_start_with_its_reason(
    run_script: RunScript, overrides: str, problem: str
) -> None:
    result = await run_script(OPTIONS, None, overrides=overrides)
    assert result.returncode == 1
    assert result.daemon_args is None
    assert problem in result.log
    assert "ERROR: Could not read" in result.log


async def test_aniworld_yaml_with_a_wrong_key_fails_in_the_daemons_check(run_addon: RunAddon) -> None:
    # The merge passes what it reads; the daemon's validation names the problem (here: when the add-on starts it).
    with pytest.raises(ConfigError, match="downloads -> max_parallel"):
        await run_addon(OPTIONS, None, overrides="downloads:\n  max_parallel: 4\n")


# ---------------------------------------------------------------------------------------------------------------
# `make addon`: the wheel the image installs, in a clean venv
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def addon_wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding only the wheel `make addon` put into addon/ and its dependencies (from the package index)."""
    build = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "addon"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    wheels = [wheel.name for wheel in ADDON.glob("aniworld_daemon-*.whl")]
    assert wheels == [f"aniworld_daemon-{ADDON_CONFIG['version']}-py3-none-any.whl"], "the name the Dockerfile installs"
    venv = tmp_path_factory.mktemp("addon-wheel") / "venv"
    # No pip of its own (ensurepip takes seconds): this venv's pip installs into it with --python.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            ADDON / wheels[0],
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return venv


def test_make_addon_builds_a_wheel_git_ignores(addon_wheel_venv: Path) -> None:
    wheel = f"addon/aniworld_daemon-{ADDON_CONFIG['version']}-py3-none-any.whl"
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--quiet", wheel], timeout=30, check=False)
    assert ignored.returncode == 0, f"{wheel} must be ignored by git (.gitignore)"


async def test_the_wheel_passes_check_config_on_what_the_run_script_makes(
    addon_wheel_venv: Path, run_addon: RunAddon
) -> None:
    result = await run_addon(OPTIONS, MOSQUITTO)
    # The installed package is the wheel's copy, not this checkout (the test venv has it as an editable install).
    where = await asyncio.create_subprocess_exec(
        addon_wheel_venv / "bin" / "python",
        "-c",
        "import aniworld_daemon; print(aniworld_daemon.__file__)",
        stdout=asyncio.subprocess.PIPE,
        cwd=result.config_file.parent,
    )
    out, _ = await asyncio.wait_for(where.communicate(), 60)
    assert Path(out.decode().strip()).is_relative_to(addon_wheel_venv)
    check = await asyncio.create_subprocess_exec(
        addon_wheel_venv / "bin" / "aniworld-daemon",
        "check-config",
        "-c",
        result.config_file,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, errors = await asyncio.wait_for(check.communicate(), 60)
    assert (check.returncode, errors.decode()) == (0, "")
    assert out.decode() == (
        f"{result.config_file}: valid (0 series, library /media/anime, MQTT on core-mosquitto:1883)\n"
    )


async def retained_messages(
    broker: Broker, tls: ssl.SSLContext | None, process: Daemon, wanted: Callable[[dict[str, bytes]], bool]
) -> dict[str, bytes]:
    """Subscribe as a new client, again and again, until the retained messages it is handed satisfy `wanted`.

    A retained message is one the broker kept: each new subscription gets them first, flagged retained.
    """
    deadline = time.monotonic() + 30
    while True:
        seen: dict[str, bytes] = {}
        async with aiomqtt.Client(
            "127.0.0.1",
            broker.port,
            username="addons",
            password=broker.users["addons"],
            tls_context=tls,
            identifier="packaging-test",
        ) as client:
            await client.subscribe("aniworld/#")
            await client.subscribe("homeassistant/+/+/+/config")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    async for message in client.messages:
                        if message.retain and isinstance(message.payload, bytes):
                            seen[str(message.topic)] = message.payload
        if wanted(seen):
            return seen
        if process.process.poll() is not None and not seen:
            pytest.fail(f"the daemon exited ({process.process.returncode}):\n{process.log}")
        if time.monotonic() > deadline:
            pytest.fail(f"retained messages after 30 s: {sorted(seen)}; daemon log:\n{process.log}")
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("use_tls", [False, True], ids=["plain", "tls"])
async def test_the_config_the_run_script_makes_gets_the_daemon_connected_and_publishing(
    run_addon: RunAddon,
    start_broker: Callable[..., Broker],
    daemon: Callable[..., Daemon],
    tmp_path: Path,
    use_tls: bool,
) -> None:
    # The Mosquitto add-on's way: a password for the `addons` user, handed out by the Supervisor's services API.
    broker = start_broker(users={"addons": str(MOSQUITTO["password"])}, tls=use_tls)
    service = {**MOSQUITTO, "host": "127.0.0.1", "port": str(broker.port), "ssl": use_tls}
    options = {**OPTIONS, "schedule": {**OPTIONS["schedule"], "run_on_start": False}}
    result = await run_addon(options, service)
    mq = result.config.mqtt
    assert (mq.enabled, mq.host, mq.port, mq.username) == (True, "127.0.0.1", broker.port, "addons")
    assert (mq.tls is not None) is use_tls
    assert result.configuration_url == f"homeassistant://hassio/ingress/{SLUG}"

    # Only the add-on's own places change (/data, /media, 0.0.0.0:8099, and the site: a port nothing listens on, so
    # no request leaves this machine); the mqtt section stays exactly as the run script wrote it.
    effective = json.loads(result.config_file.read_text(encoding="utf-8"))
    local = {
        **effective,
        "data_dir": str(tmp_path / "data"),
        "library": {**effective["library"], "path": str(tmp_path / "library")},
        "api": {**effective["api"], "host": "127.0.0.1", "port": free_port()},
        "provider": {**effective["provider"], "base_url": f"http://127.0.0.1:{free_port()}"},
    }
    config_file = tmp_path / "local-config.json"
    config_file.write_text(json.dumps(local), encoding="utf-8")
    env = {"ANIWORLD_CONFIGURATION_URL": result.configuration_url}
    if use_tls:
        env["SSL_CERT_FILE"] = str(broker.ca_file)  # `tls: {}` trusts the system's CAs; the test CA becomes one
    process = daemon(config_file, env)
    context = ssl.create_default_context(cafile=str(broker.ca_file)) if use_tls else None

    seen = await retained_messages(
        broker, context, process, lambda seen: seen.get("aniworld/status") == b"online" and "aniworld/state" in seen
    )
    state = json.loads(seen["aniworld/state"])
    assert state["queue"]["pending"] == 0
    assert state["version"] == ADDON_CONFIG["version"]
    configs = [json.loads(payload) for topic, payload in seen.items() if topic.startswith("homeassistant/")]
    assert configs, "no discovery configs"
    assert {config["device"]["configuration_url"] for config in configs} == {result.configuration_url}

    process.signal(signal.SIGTERM)
    assert await process.exited(40) == 0, process.log
    seen = await retained_messages(broker, context, process, lambda seen: "aniworld/status" in seen)
    assert seen["aniworld/status"] == b"offline"


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
