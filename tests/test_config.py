"""Config loading and validation: exact messages for bad configs, defaults, secrets, the add-on's JSON."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import time, timedelta
from pathlib import Path

import pytest
import voluptuous as vol
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aniworld_daemon.config import CronSchedule, DailySchedule, IntervalSchedule, load_config, rescan_schedule
from aniworld_daemon.errors import ConfigError
from aniworld_daemon.models import Language
from aniworld_daemon.validators import (
    base_url,
    clock,
    crontab,
    duration,
    hosters,
    languages,
    mqtt_topic,
    naming_template,
    series_key,
    series_url,
    site_series_url,
    size,
    window,
)
from tests.helpers import ROOT

LIB = "library:\n  path: ./lib\n"

# (id, config text, expected error lines; {f} is the config file's path)
BAD_CONFIGS = [
    (
        "wrong-type",
        LIB + "downloads:\n  auto_download: maybe\n",
        ["{f}:4: downloads -> auto_download: expected true or false (got 'maybe')"],
    ),
    (
        "port-not-a-number",
        LIB + "mqtt:\n  port: abc\n",
        ["{f}:4: mqtt -> port: expected an integer between 1 and 65535 (got 'abc')"],
    ),
    (
        "port-out-of-range",
        LIB + "api:\n  port: 70000\n",
        ["{f}:4: api -> port: expected an integer between 1 and 65535 (got 70000)"],
    ),
    (
        "unknown-key-with-suggestion",
        LIB + "mqtt:\n  hostname: broker\n",
        ["{f}:4: mqtt -> hostname: unknown key 'hostname', did you mean 'host'?"],
    ),
    (
        "unknown-section-with-suggestion",
        LIB + "shedule:\n  run_on_start: false\n",
        ["{f}:3: shedule: unknown key 'shedule', did you mean 'schedule'?"],
    ),
    (
        "missing-required-key",
        "library:\n  naming: '{title}/{season}x{episode}'\n",
        ["{f}:1: library -> path: required key is missing"],
    ),
    (
        "missing-required-section",
        "data_dir: ./data\n",
        ["{f}:1: library: required key is missing"],
    ),
    (
        "bad-duration",
        LIB + "provider:\n  cooldown: 15 minutes\n",
        ["{f}:4: provider -> cooldown: expected a duration like 30s, 15m, 2h or 7d (got '15 minutes')"],
    ),
    (
        "bad-stall-timeout",
        LIB + "downloads:\n  stall_timeout: 0s\n",
        ["{f}:4: downloads -> stall_timeout: expected a duration like 30s, 15m, 2h or 7d (got '0s')"],
    ),
    (
        "bad-size",
        LIB + "downloads:\n  min_free_space: 2 gigs\n",
        ["{f}:4: downloads -> min_free_space: expected a size like 500M, 2G or 1.5G (got '2 gigs')"],
    ),
    (
        "bad-crontab",
        LIB + "schedule:\n  rescan: '0 25 * * *'\n",
        [
            "{f}:4: schedule -> rescan: invalid crontab: Error validating expression '25': "
            "the last value (25) is higher than the maximum value (23) (got '0 25 * * *')"
        ],
    ),
    (
        "crontab-wrong-field-count",
        LIB + "schedule:\n  rescan: '0 3 * *'\n",
        [
            "{f}:4: schedule -> rescan: expected a crontab like '0 3 * * *' (minute hour day month weekday) "
            "(got '0 3 * *')"
        ],
    ),
    (
        "bad-window",
        LIB + "downloads:\n  window: 1am-7am\n",
        ["{f}:4: downloads -> window: expected a time window as HH:MM-HH:MM, like 01:00-07:00 (got '1am-7am')"],
    ),
    (
        "unknown-language",
        LIB + "provider:\n  languages: [de-dub, de_sub]\n",
        [
            "{f}:4: provider -> languages[1]: unknown language 'de_sub', did you mean 'de-sub'? "
            "(expected one of de-dub, de-sub, en-sub, en-dub)"
        ],
    ),
    (
        "unknown-hoster",
        LIB + "provider:\n  hosters:\n    - voe\n    - streamtap\n",
        [
            "{f}:6: provider -> hosters[1]: unknown hoster 'streamtap', did you mean 'streamtape'? "
            "(expected one of voe, vidoza, vidmoly, doodstream, filemoon, speedfiles, luluvdo, streamtape)"
        ],
    ),
    (
        "unknown-log-level",
        LIB + "logging:\n  level: warn\n",
        [
            "{f}:4: logging -> level: unknown log level 'warn', did you mean 'warning'? "
            "(expected one of debug, info, warning, error, critical)"
        ],
    ),
    (
        "bad-series-url",
        LIB + "series:\n  - https://s.to/serie/stream/breaking-bad\n",
        [
            "{f}:4: series[0]: expected a series URL like https://aniworld.to/anime/stream/one-piece "
            "(got 'https://s.to/serie/stream/breaking-bad')"
        ],
    ),
    (
        "series-url-and-key",
        LIB + "series:\n  - url: https://aniworld.to/anime/stream/one-piece\n    key: one-piece\n",
        ["{f}:4: series[0]: give either url or key, not both"],
    ),
    (
        "series-twice",
        LIB + "series:\n  - one-piece\n  - url: https://aniworld.to/anime/stream/one-piece\n",
        ["{f}:5: series[1]: series 'one-piece' is listed twice (also entry 0)"],
    ),
    (
        "language-twice",
        LIB + "provider:\n  languages: [de-sub, en-sub, de-sub]\n",
        ["{f}:4: provider -> languages[2]: language 'de-sub' is listed twice (also entry 0)"],
    ),
    (
        "series-not-a-list",
        LIB + "series: 42\n",
        ["{f}:3: series: expected a list (lines starting with '- ', or comma-separated text) (got 42)"],
    ),
    (
        "missing-secret",
        LIB + "api:\n  key: !secret api_key\n",
        ["{f}:4: api -> key: secret 'api_key' not found in {d}/secrets.yaml"],
    ),
    (
        "unset-env",
        LIB + "mqtt:\n  password: !env ANIWORLD_TEST_UNSET_VARIABLE\n",
        ["{f}:4: mqtt -> password: environment variable ANIWORLD_TEST_UNSET_VARIABLE is not set"],
    ),
    (
        "unknown-tag",
        LIB + "data_dir: !include data.yaml\n",
        ["{f}:3: data_dir: unknown tag !include (supported: !secret, !env)"],
    ),
    (
        "yaml-syntax-error",
        LIB + "provider:\n  languages: [de-dub\n  hosters: [voe]\n",
        ["{f}:5: YAML syntax error: expected ',' or ']', but got ':'"],
    ),
    (
        "nested-too-deeply",
        "library: " + "[" * 3000 + "\n",
        ["{f}:1: YAML error: nested too deeply"],
    ),
    (
        "integer-too-long",
        LIB + "api:\n  port: " + "9" * 5000 + "\n",
        ["{f}:1: YAML error: Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits"],
    ),
    (
        "alias-refers-to-itself",
        "library: &lib\n  path: *lib\n",
        ["{f}:2: library -> path: an alias refers to itself"],
    ),
    (
        "duplicate-key",
        LIB + "api:\n  port: 8099\n  port: 8100\n",
        ["{f}:5: api -> port: duplicate key (first given on line 4)"],
    ),
    (
        "empty-file",
        "",
        ["{f}:1: the file is empty; it needs at least 'library:' with 'path:'"],
    ),
    (
        "only-comments",
        "# nothing here yet\n",
        ["{f}:1: the file is empty; it needs at least 'library:' with 'path:'"],
    ),
    (
        "top-level-list",
        "- library\n",
        ["{f}:1: expected a mapping of sections like 'library:' at the top level"],
    ),
    (
        "section-not-a-mapping",
        LIB + "downloads: 3\n",
        ["{f}:3: downloads: expected a mapping of 'key: value' lines (got 3)"],
    ),
    (
        "naming-unknown-field",
        "library:\n  path: ./lib\n  naming: '{tilte}/S{season}E{episode}'\n",
        [
            "{f}:3: library -> naming: unknown field {{tilte}}, did you mean 'title'? "
            "(fields: title, year, season, episode, episode_title, key, language, imdb_id) "
            "(got '{{tilte}}/S{{season}}E{{episode}}')"
        ],
    ),
    (
        "naming-escapes-library",
        "library:\n  path: ./lib\n  naming: '../{title}/{season}x{episode}'\n",
        [
            "{f}:3: library -> naming: the template must be a path inside the library (no leading '/' or '..') "
            "(got '../{{title}}/{{season}}x{{episode}}')"
        ],
    ),
    (
        "naming-series-folder-with-episode-fields",
        "library:\n  path: ./lib\n  naming: '{title} S{season:02}/E{episode:02}'\n",
        [
            "{f}:3: library -> naming: the first folder names the series: use only {{title}}, {{year}}, {{key}}, "
            "{{imdb_id}} in it (got '{{title}} S{{season:02}}/E{{episode:02}}')"
        ],
    ),
    (
        "mqtt-topic-wildcard",
        LIB + "mqtt:\n  base_topic: aniworld/#\n",
        [
            "{f}:4: mqtt -> base_topic: expected a topic without spaces, '+', '#' or leading/trailing '/', "
            "like aniworld (got 'aniworld/#')"
        ],
    ),
    (
        "short-api-key-from-secret-is-not-echoed",
        LIB + "api:\n  key: !env ANIWORLD_TEST_SHORT_KEY\n",
        ["{f}:4: api -> key: use at least 16 characters (generate one with: openssl rand -hex 16), or leave it out"],
    ),
    (
        "schedule-every-bad-duration",
        LIB + "schedule:\n  rescan:\n    every: often\n",
        ["{f}:5: schedule -> rescan -> every: expected a duration like 30s, 15m, 2h or 7d (got 'often')"],
    ),
    (
        "schedule-days-typo",
        LIB + "schedule:\n  rescan: {time: '03:00', days: [mon, thurs]}\n",
        [
            "{f}:4: schedule -> rescan -> days[1]: unknown weekday 'thurs', did you mean 'thu'? "
            "(expected one of mon, tue, wed, thu, fri, sat, sun)"
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_renders_exact_message(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, text: str, expected: list[str]
) -> None:
    monkeypatch.delenv("ANIWORLD_TEST_UNSET_VARIABLE", raising=False)
    monkeypatch.setenv("ANIWORLD_TEST_SHORT_KEY", "hunter2")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = write_config(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [line.format(f=path, d=path.parent) for line in expected]
    assert "hunter2" not in str(caught.value)


def test_all_errors_are_collected_in_line_order(write_config: Callable[..., Path]) -> None:
    path = write_config(
        "libary:\n  path: ./lib\n"
        "mqtt:\n  port: 0\n"
        "downloads:\n  retries: -1\n  max_concurrent: many\n"
        "logging:\n  level: loud\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [
        f"{path}:1: libary: unknown key 'libary', did you mean 'library'?",
        f"{path}:1: library: required key is missing",
        f"{path}:4: mqtt -> port: expected an integer between 1 and 65535 (got 0)",
        f"{path}:6: downloads -> retries: expected an integer between 1 and 100 (got -1)",
        f"{path}:7: downloads -> max_concurrent: expected an integer between 1 and 10 (got 'many')",
        f"{path}:9: logging -> level: unknown log level 'loud' (expected one of debug, info, warning, error, critical)",
    ]


def test_example_config_is_valid_and_states_the_defaults(write_config: Callable[..., Path]) -> None:
    example = load_config(ROOT / "config.example.yaml")
    # The example spells out every default: a minimal config in the same folder must come out identical.
    minimal = load_config(write_config("library:\n  path: ./library\n"))
    moved = dataclasses.replace(
        minimal,
        source=example.source,
        library=dataclasses.replace(minimal.library, path=example.library.path),
        data_dir=example.data_dir,
    )
    assert moved == example
    assert example.library.path == ROOT / "library"
    assert example.data_dir == ROOT / "data"
    assert example.mqtt.enabled is False
    assert example.series == ()


def test_defaults_and_relative_paths(write_config: Callable[..., Path], tmp_path: Path) -> None:
    config = load_config(write_config("library:\n  path: media/anime\n"))
    assert config.library.path == tmp_path / "media" / "anime"
    assert config.data_dir == tmp_path / "data"
    assert config.provider.languages == (Language.DE_SUB, Language.DE_DUB, Language.EN_SUB)
    assert config.provider.cooldown == timedelta(minutes=15)
    assert config.downloads.min_free_space == 2 * 1024**3
    assert config.downloads.stall_timeout == timedelta(minutes=1)
    assert config.downloads.rate_limit is None
    assert config.schedule.rescan == CronSchedule("0 3 * * *")
    assert config.schedule.full_refresh == timedelta(days=7)
    assert config.api.port == 8099
    assert config.api.key is None


def test_full_config_values(write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANIWORLD_TEST_MQTT_PASSWORD", "s3cret-mqtt")
    config = load_config(
        write_config(
            "library:\n  path: /srv/anime\n  write_nfo: no\n"
            "provider:\n  base_url: http://127.0.0.1:8800/\n  languages: [en-dub]\n  hosters: [VOE, vidoza]\n"
            "  requests_per_second: 0.5\n"
            "downloads:\n  rate_limit: 5M\n  window: '22:30-06:00'\n  retry_backoff: 1h30m\n"
            "schedule:\n  rescan: {time: '03:15', days: [mon, thu]}\n"
            "series:\n  - https://aniworld.to/anime/stream/frieren-beyond-journeys-end/staffel-1\n"
            "  - {key: one-piece, seasons: [21, 0], languages: [de-dub], monitored: false}\n"
            "mqtt:\n  host: broker.lan\n  password: !env ANIWORLD_TEST_MQTT_PASSWORD\n"
        )
    )
    assert config.library.path == Path("/srv/anime")
    assert config.library.write_nfo is False
    assert config.provider.base_url == "http://127.0.0.1:8800"
    assert config.provider.hosters == ("voe", "vidoza")
    assert config.provider.requests_per_second == 0.5
    assert config.downloads.rate_limit == 5 * 1024**2
    assert config.downloads.window == (time(22, 30), time(6, 0))
    assert config.downloads.retry_backoff == timedelta(hours=1, minutes=30)
    assert config.schedule.rescan == DailySchedule(time(3, 15), ("mon", "thu"))
    first, second = config.series
    assert (first.key, first.url, first.languages, first.seasons) == (
        "frieren-beyond-journeys-end",
        "https://aniworld.to/anime/stream/frieren-beyond-journeys-end/staffel-1",
        None,
        None,
    )
    assert (second.key, second.seasons, second.languages, second.monitored) == (
        "one-piece",
        (0, 21),
        (Language.DE_DUB,),
        False,
    )
    assert config.mqtt.enabled is True
    assert config.mqtt.password == "s3cret-mqtt"
    assert "s3cret-mqtt" not in repr(config)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'0 3 * * *'", CronSchedule("0 3 * * *")),
        ("every 6h", IntervalSchedule(timedelta(hours=6))),
        ("'03:00'", DailySchedule(time(3), ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))),
        ("'03:00 mon,thu'", DailySchedule(time(3), ("mon", "thu"))),
        ("{every: 1s}", IntervalSchedule(timedelta(seconds=1))),
        ("{time: '23:59', days: [sun]}", DailySchedule(time(23, 59), ("sun",))),
    ],
)
def test_rescan_schedule_forms(write_config: Callable[..., Path], text: str, expected: object) -> None:
    assert load_config(write_config(LIB + f"schedule:\n  rescan: {text}\n")).schedule.rescan == expected


def test_addon_options_json(write_config: Callable[..., Path]) -> None:
    """The add-on's options.json: JSON input, lists as comma-separated strings, empty optional strings."""
    options = {
        "library": {"path": "/media/anime", "write_nfo": True},
        "data_dir": "/data",
        "provider": {"languages": "de-dub, de-sub", "hosters": "voe,vidoza", "cooldown": "30m"},
        "downloads": {"window": "", "rate_limit": ""},
        "schedule": {"rescan": "every 6h", "run_on_start": False},
        "series": [{"url": "https://aniworld.to/anime/stream/kaiju-no-8", "seasons": "1,2", "languages": "de-sub"}],
        "api": {"host": "0.0.0.0", "port": 8099, "password": ""},
        "mqtt": {"host": "core-mosquitto", "port": 1883, "username": "addons", "password": "pw1234"},
        "logging": {"level": "debug"},
    }
    config = load_config(write_config(json.dumps(options, indent=2), name="options.json"))
    assert config.data_dir == Path("/data")
    assert config.provider.languages == (Language.DE_DUB, Language.DE_SUB)
    assert config.provider.hosters == ("voe", "vidoza")
    assert config.schedule.rescan == IntervalSchedule(timedelta(hours=6))
    assert config.series[0].seasons == (1, 2)
    assert config.series[0].languages == (Language.DE_SUB,)
    assert config.api.password is None
    assert (config.downloads.window, config.downloads.rate_limit) == (None, None)
    assert (config.mqtt.enabled, config.mqtt.host, config.mqtt.username) == (True, "core-mosquitto", "addons")


def test_bad_options_json_names_the_line(write_config: Callable[..., Path]) -> None:
    path = write_config('{\n  "library": {"path": "/media/anime"},\n  "api": {"port": "high"}\n}\n', "options.json")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [f"{path}:3: api -> port: expected an integer between 1 and 65535 (got 'high')"]


def test_secret_from_secrets_yaml(write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    write_config("api_key: 0123456789abcdef0123\nmqtt_password: pw\n", name="secrets.yaml")
    config = load_config(write_config(LIB + "api:\n  key: !secret api_key\nmqtt:\n  password: !secret mqtt_password\n"))
    assert config.api.key == "0123456789abcdef0123"
    assert config.mqtt.password == "pw"


def test_secret_from_systemd_credentials(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "api_key").write_text("fedcba9876543210fedcba\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    config = load_config(write_config(LIB + "api:\n  key: !secret api_key\n"))
    assert config.api.key == "fedcba9876543210fedcba"
    path = write_config(LIB + "api:\n  key: !secret other\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [
        f"{path}:4: api -> key: secret 'other' not found in {path.parent}/secrets.yaml or $CREDENTIALS_DIRECTORY"
    ]


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"library:\n  path: /m\xe9dia\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [f"{path}:2: the file is not UTF-8 text (byte 0xe9); save it as UTF-8"]


def test_non_utf8_credential_is_a_config_error(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "api_key").write_bytes(b"\xff\xfe-not-text")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    path = write_config(LIB + "api:\n  key: !secret api_key\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert len(caught.value.errors) == 1
    assert caught.value.errors[0].startswith(f"{path}:4: api -> key: cannot read the credential {credentials}/api_key:")


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.yaml")
    assert caught.value.errors == [f"{tmp_path}/missing.yaml: cannot read the file: No such file or directory"]


@pytest.mark.parametrize(
    ("args", "text", "status", "expected"),
    [
        (["check-config"], "library:\n  path: ./lib\n", 0, "valid (0 series, library {d}/lib, MQTT off)"),
        (["check-config"], "library:\n  path: ./lib\nmqtt:\n  port: x\n", 1, "{f}:4: mqtt -> port:"),
        (
            ["check-config"],
            "library:\n  path: ./lib\nseries:\n  - url: https://example.com/anime/stream/foo\n",
            1,
            "{f}:4: series[0] -> url: the URL is on example.com, not on the site (aniworld.to)",
        ),
        (["run"], "library: {}\n", 1, "{f}:1: library -> path: required key is missing"),
    ],
    ids=["valid", "invalid", "series-url-of-another-host", "run-refuses-invalid"],
)
def test_cli_exit_status(
    write_config: Callable[..., Path], args: list[str], text: str, status: int, expected: str
) -> None:
    path = write_config(text)
    result = subprocess.run(
        [sys.executable, "-m", "aniworld_daemon", *args, "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == status, result.stderr
    assert expected.format(f=path, d=path.parent) in (result.stdout + result.stderr)


# -- the named validators -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1w", 604800), ("1h30m", 5400), (" 2H ", 7200)],
)
def test_duration_accepts(text: str, seconds: int) -> None:
    assert duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "15", "0s", "15x", "m15", "1h 30", "-5m", "1.5h", None, 15, True])
def test_duration_rejects(text: object) -> None:
    with pytest.raises(vol.Invalid):
        duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0 3 * * *", "0 3 * * *"),
        ("  */15  *  * * * ", "*/15 * * * *"),
        ("0 3 * * 7", "0 3 * * 7"),  # cron: 0 and 7 are Sunday
        ("0 3 * * sun-sat", "0 3 * * sun-sat"),
        ("0 3 1 * mon", "0 3 1 * mon"),
    ],
)
def test_crontab_accepts(text: str, expected: str) -> None:
    assert crontab(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 3 * * 8", "invalid weekday '8'"),
        ("0 3 * * fri-mon", "invalid weekday field"),
        ("60 3 * * *", "higher than the maximum value"),
        ("0 3 * *", "minute hour day month weekday"),
    ],
)
def test_crontab_rejects(text: str, message: str) -> None:
    with pytest.raises(vol.Invalid, match=message):
        crontab(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("500M", 500 * 1024**2), ("2G", 2 * 1024**3), ("1.5G", int(1.5 * 1024**3)), ("2GiB", 2 * 1024**3), (1024, 1024)],
)
def test_size_accepts(text: object, expected: int) -> None:
    assert size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("01:00-07:00", (time(1), time(7))), ("22:00-06:30", (time(22), time(6, 30))), (None, None)],
)
def test_window_accepts(text: str | None, expected: object) -> None:
    assert window(text) == expected


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://aniworld.to/anime/stream/one-piece", "one-piece"),
        ("https://aniworld.to/anime/stream/one-piece/", "one-piece"),
        ("https://aniworld.to/anime/stream/one-piece/staffel-2/episode-3", "one-piece"),
        ("http://127.0.0.1:8800/anime/stream/test-series", "test-series"),
    ],
)
def test_series_url_accepts(url: str, key: str) -> None:
    assert series_url(url) == key


# -- series URLs must be on the site ------------------------------------------------------------------------------

FAKE = "http://127.0.0.1:8800"  # a base_url like the tests' (the fake site)
MIRROR = "https://aniworld.info"  # a base_url on another domain
ANIWORLD = "https://aniworld.to"  # the default base_url

# (base_url or None for the default, a series URL of the key foo)
ON_THE_SITE = [
    (None, "https://aniworld.to/anime/stream/foo"),
    (None, "https://www.aniworld.to/anime/stream/foo/staffel-2/episode-3"),
    (None, "http://AniWorld.TO./anime/stream/foo"),
    (FAKE, "http://127.0.0.1:8800/anime/stream/foo"),
    (FAKE, "http://127.0.0.1:9999/anime/stream/foo"),  # the host counts, not the port
    (FAKE, "https://aniworld.to/anime/stream/foo"),  # the site's own host stays valid with another base_url
    (MIRROR, "https://www.aniworld.info/anime/stream/foo"),
]
# (base_url or None, a series URL of the key foo, the host the error names, the hosts and the origin it offers)
OFF_THE_SITE = [
    (None, "https://example.com/anime/stream/foo", "example.com", "aniworld.to", ANIWORLD),
    (None, "https://aniworld.to.example.com/anime/stream/foo", "aniworld.to.example.com", "aniworld.to", ANIWORLD),
    (None, "https://aniworld.to@example.com/anime/stream/foo", "example.com", "aniworld.to", ANIWORLD),
    (None, "http://127.0.0.1:8800/anime/stream/foo", "127.0.0.1", "aniworld.to", ANIWORLD),
    (FAKE, "http://localhost:8800/anime/stream/foo", "localhost", "aniworld.to or 127.0.0.1", FAKE),
    (FAKE, "https://s.to/anime/stream/foo", "s.to", "aniworld.to or 127.0.0.1", FAKE),
    (MIRROR, "https://example.com/anime/stream/foo", "example.com", "aniworld.to or aniworld.info", MIRROR),
]


def series_config(base: str | None, entry: str) -> str:
    """A config following one-piece and then `entry` (YAML list item lines), with `base` as provider.base_url."""
    provider = f"provider:\n  base_url: {base}\n" if base else ""
    return LIB + provider + "series:\n  - one-piece\n" + entry


@pytest.mark.parametrize("form", ["plain", "mapping"])
@pytest.mark.parametrize(("base", "url"), ON_THE_SITE)
def test_series_urls_on_the_site_are_accepted(
    write_config: Callable[..., Path], base: str | None, url: str, form: str
) -> None:
    entry = f"  - {url}\n" if form == "plain" else f"  - url: {url}\n    seasons: [1]\n"
    config = load_config(write_config(series_config(base, entry)))
    assert [series.key for series in config.series] == ["one-piece", "foo"]


@pytest.mark.parametrize(("base", "url", "host", "hosts", "origin"), OFF_THE_SITE)
def test_series_urls_of_another_host_are_refused_with_line_and_key_path(
    write_config: Callable[..., Path], base: str | None, url: str, host: str, hosts: str, origin: str
) -> None:
    # The series entries start on line 4 (5 and 6 with a provider section).
    first = 6 if base else 4
    message = (
        f"the URL is on {host}, not on the site ({hosts}); give the key foo or {origin}/anime/stream/foo (got '{url}')"
    )
    plain = write_config(series_config(base, f"  - {url}\n"), "plain.yaml")
    mapping = write_config(series_config(base, f"  - seasons: [1]\n    url: {url}\n"), "mapping.yaml")
    with pytest.raises(ConfigError) as refused_plain:
        load_config(plain)
    with pytest.raises(ConfigError) as refused_mapping:
        load_config(mapping)
    assert refused_plain.value.errors == [f"{plain}:{first + 1}: series[1]: {message}"]
    assert refused_mapping.value.errors == [f"{mapping}:{first + 2}: series[1] -> url: {message}"]


def test_a_series_url_of_another_host_is_reported_with_the_other_problems(write_config: Callable[..., Path]) -> None:
    path = write_config(LIB + "series:\n  - https://example.com/anime/stream/foo\nmqtt:\n  port: x\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [
        f"{path}:4: series[0]: the URL is on example.com, not on the site (aniworld.to); give the key foo or "
        "https://aniworld.to/anime/stream/foo (got 'https://example.com/anime/stream/foo')",
        f"{path}:6: mqtt -> port: expected an integer between 1 and 65535 (got 'x')",
    ]


@given(weeks=st.integers(0, 5), days=st.integers(0, 6), hours=st.integers(0, 23), minutes=st.integers(0, 59))
def test_duration_round_trip(weeks: int, days: int, hours: int, minutes: int) -> None:
    parts = [(weeks, "w"), (days, "d"), (hours, "h"), (minutes, "m")]
    text = "".join(f"{number}{unit}" for number, unit in parts if number)
    expected = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes)
    if expected:
        assert duration(text) == expected


STRING_VALIDATORS = [
    duration,
    size,
    window,
    clock,
    crontab,
    base_url,
    series_url,
    site_series_url("http://127.0.0.1:8800"),
    series_key,
    mqtt_topic,
    naming_template,
    languages,
    hosters,
    rescan_schedule,
]


@given(st.text(alphabet=st.sampled_from("0123456789 */-,:.{}!%[]hmsdwGMKabc²٣") | st.characters(), max_size=40))
def test_validators_fail_only_with_invalid(text: str) -> None:
    for validator in STRING_VALIDATORS:
        try:
            validator(text)
        except vol.Invalid:
            pass


def errors_of(path: Path) -> list[str]:
    """The rendered errors of a config file, or [] when it is valid."""
    try:
        load_config(path)
    except ConfigError as err:
        return err.errors or ["ConfigError without errors"]
    return []


SECTION_KEYS = {
    "library": ["path", "naming", "write_nfo"],
    "provider": ["base_url", "languages", "hosters", "requests_per_second", "max_connections", "cooldown"],
    "downloads": [
        *("max_concurrent", "retries", "retry_backoff", "rate_limit", "min_free_space", "stall_timeout", "window"),
    ],
    "schedule": ["rescan", "run_on_start", "full_refresh"],
    "api": ["host", "port", "key", "password"],
    "mqtt": ["enabled", "host", "port", "base_topic", "discovery_prefix"],
    "logging": ["level"],
    "series": [],
}
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False), st.text(max_size=12))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
CONFIG_TREES = st.fixed_dictionaries(
    {},
    optional={
        section: st.dictionaries(st.sampled_from(keys), VALUES, max_size=len(keys))
        if keys
        else st.lists(VALUES, max_size=3)
        for section, keys in SECTION_KEYS.items()
    },
)


def test_the_suite_profile_has_no_deadline_and_no_too_slow_check() -> None:
    """conftest.py's Hypothesis profile is loaded: these property tests cannot fail on a slow or loaded machine."""
    current = settings()  # a settings object starts from the loaded profile
    assert current.deadline is None
    assert HealthCheck.too_slow in current.suppress_health_check


@given(tree=CONFIG_TREES)
def test_any_yaml_tree_gives_config_or_config_error(
    tree: dict[str, object], tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("tree") / "config.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    errors = errors_of(path)
    assert all(line.startswith(f"{path}:") for line in errors), errors


@given(text=st.text(max_size=200))
def test_any_text_gives_config_or_config_error(text: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("text") / "config.yaml"
    path.write_text(text, encoding="utf-8")
    errors = errors_of(path)
    assert all(line.startswith(f"{path}:") for line in errors), errors
