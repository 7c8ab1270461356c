"""Configuration: YAML loading with line numbers, `!secret`/`!env`, the voluptuous schema and error rendering."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import time as dt_time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import voluptuous as vol
import yaml

from aniworld_daemon.errors import ConfigError
from aniworld_daemon.models import Language
from aniworld_daemon.validators import (
    HOSTERS,
    WEEKDAYS,
    KeyPath,
    QuotedInvalid,
    base_url,
    boolean,
    clock,
    crontab,
    duration,
    hosters,
    int_range,
    iter_errors,
    languages,
    log_level,
    mqtt_topic,
    naming_template,
    non_empty_string,
    optional_size,
    optional_string,
    port,
    positive_number,
    render_path,
    seasons,
    section,
    series_key,
    series_url,
    site_series_url,
    size,
    unique_list,
    weekdays,
    window,
)

SECRETS_FILE = "secrets.yaml"
_SECRET_KEYS = frozenset({"key", "password", "username"})

# ---------------------------------------------------------------------------------------------------------------
# Typed configuration (built only from validated data; every default lives in the schema below)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LibraryConfig:
    """Where the media library is and how files in it are named."""

    path: Path
    naming: str
    write_nfo: bool


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """How the anime site is reached."""

    base_url: str
    languages: tuple[Language, ...]
    hosters: tuple[str, ...]
    requests_per_second: float
    max_connections: int
    cooldown: timedelta


@dataclass(frozen=True, slots=True)
class DownloadsConfig:
    """How the download queue behaves."""

    max_concurrent: int
    retries: int
    retry_backoff: timedelta
    rate_limit: int | None  # bytes per second, per download
    min_free_space: int  # bytes
    stall_timeout: timedelta  # a transfer without progress for this long is given up (the next hoster is tried)
    window: tuple[dt_time, dt_time] | None  # start downloads only inside [start, end); may wrap midnight
    auto_download: bool
    auto_start: bool


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """Rescan on a crontab expression."""

    expression: str


@dataclass(frozen=True, slots=True)
class DailySchedule:
    """Rescan at a time of day on some weekdays."""

    at: dt_time
    days: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IntervalSchedule:
    """Rescan at a fixed interval."""

    every: timedelta


RescanSchedule = CronSchedule | DailySchedule | IntervalSchedule


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """When rescans run."""

    rescan: RescanSchedule
    run_on_start: bool
    full_refresh: timedelta


@dataclass(frozen=True, slots=True)
class SeriesConfig:
    """A series declared in the configuration file."""

    key: str
    url: str | None
    languages: tuple[Language, ...] | None  # None: provider.languages
    seasons: tuple[int, ...] | None  # None: every regular season
    monitored: bool


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """The HTTP API and dashboard."""

    host: str
    port: int
    key: str | None = field(repr=False)  # secrets stay out of reprs, and so out of logs
    password: str | None = field(repr=False)
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MqttTls:
    """TLS to the broker: the CA that signed its certificate (None: the system's), a client certificate, checks."""

    ca: Path | None
    cert: Path | None
    key: Path | None = field(repr=False)
    insecure: bool


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """The MQTT bridge; `enabled` is false when the section is absent."""

    enabled: bool
    host: str
    port: int
    username: str | None = field(repr=False)
    password: str | None = field(repr=False)
    base_topic: str = field()
    discovery: bool = field()
    discovery_prefix: str = field()
    keepalive: int = field()
    tls: MqttTls | None = field()


@dataclass(frozen=True, slots=True)
class BackupConfig:
    """Scheduled backups of the database and the config file into `<data_dir>/backups`."""

    every: timedelta | None  # None: none on a schedule (a migration still takes one)
    keep: int  # the newest this many backups are kept


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """Logging."""

    level: str


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    source: Path
    library: LibraryConfig
    data_dir: Path
    provider: ProviderConfig
    downloads: DownloadsConfig
    schedule: ScheduleConfig
    series: tuple[SeriesConfig, ...]
    api: ApiConfig
    mqtt: MqttConfig
    backup: BackupConfig
    logging: LoggingConfig
    # Key paths whose values came from !secret (like ("mqtt", "password")): redacted wherever the config is shown.
    secret_paths: frozenset[KeyPath] = field(default=frozenset(), repr=False)


# ---------------------------------------------------------------------------------------------------------------
# Named validators: each returns the normalised value or raises vol.Invalid with a message telling what to type
def rescan_schedule(value: Any) -> RescanSchedule:
    """A crontab, 'every 6h', '03:00' or '03:00 mon,thu' (strings fit the add-on), or the mapping forms."""
    if isinstance(value, str):
        words = value.split(maxsplit=1)
        if words and words[0].lower() == "every":
            return IntervalSchedule(duration(words[1] if len(words) > 1 else ""))
        if words and ":" in words[0]:
            return rescan_schedule({"time": words[0], **({"days": words[1]} if len(words) > 1 else {})})
        return CronSchedule(crontab(value))
    if isinstance(value, dict) and "every" in value:
        every = section({vol.Required("every"): duration})(value)["every"]
        return IntervalSchedule(every)
    if isinstance(value, dict) and "time" in value:
        checked = section({vol.Required("time"): clock, vol.Optional("days", default=list(WEEKDAYS)): weekdays})(value)
        return DailySchedule(checked["time"], tuple(checked["days"]))
    raise vol.Invalid(
        "expected a crontab like '0 3 * * *', 'every 6h', '03:00 mon,thu', {time: '03:00', days: [mon, thu]} "
        "or {every: 6h}"
    )


def backup_interval(value: Any) -> timedelta | None:
    """How often a backup is taken: a duration like 7d or 12h, or `off` (or null) for none on a schedule."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() == "off"):
        return None
    try:
        return duration(value)
    except vol.Invalid:
        raise vol.Invalid("expected a duration like 7d, 1d or 12h, or off for no scheduled backups") from None


def series_entry(value: Any) -> SeriesConfig:
    """One entry of `series:`: a URL or key, or a mapping with url/key, languages, seasons, monitored."""
    if isinstance(value, str):
        try:
            return series_entry({"url": value} if "/" in value else {"key": value})
        except vol.MultipleInvalid as err:
            # Report against the entry itself: the user wrote a plain string, not a url/key mapping.
            raise vol.Invalid(err.errors[0].error_message) from None
    if isinstance(value, dict) and "url" in value and "key" in value:
        raise vol.Invalid("give either url or key, not both")
    checked = section(
        {
            vol.Optional("url"): series_url,
            vol.Optional("key"): series_key,
            vol.Optional("languages"): languages,
            vol.Optional("seasons"): seasons,
            vol.Optional("monitored", default=True): boolean,
        }
    )(value)
    if "url" not in checked and "key" not in checked:
        raise vol.Invalid("expected a url (https://aniworld.to/anime/stream/<name>) or a key")
    return SeriesConfig(
        key=checked.get("url") or checked["key"],
        url=value.get("url") if "url" in checked else None,
        languages=tuple(Language(item) for item in checked["languages"]) if "languages" in checked else None,
        seasons=tuple(sorted(checked["seasons"])) if "seasons" in checked else None,
        monitored=checked["monitored"],
    )


# The followed series, each key at most once; `series:` left empty means none.
series_list = unique_list(series_entry, "series", key=lambda series: series.key, allow_empty=True)


def _final_validation(data: dict[str, Any], document: _Document) -> list[vol.Invalid]:
    """Checks across sections, after the schema (as ESPHome's final validation): one error per problem.

    A series URL must be on the site: its host needs `provider.base_url`, which the `series:` schema cannot see. The
    two sections are validated here on their own, so this runs also when another section has errors.
    """
    try:
        site = PROVIDER_SCHEMA(data.get("provider"))["base_url"]
        entries: list[SeriesConfig] = series_list(data.get("series"))
    except vol.Invalid:
        return []  # the schema reports these sections' own errors; the check needs both of them valid
    problems: list[vol.Invalid] = []
    on_site = site_series_url(site)
    for index, entry in enumerate(entries):
        if entry.url is None:
            continue
        try:
            on_site(entry.url)
        except vol.Invalid as err:
            # Reported where the URL was written: the entry's `url:` line, or the entry itself when it is plain text.
            found, raw = document.value_at(("series", index))
            path: list[Hashable] = ["series", index, "url"] if found and isinstance(raw, dict) else ["series", index]
            problems.append(vol.Invalid(err.error_message, path=path))
    return problems


def origin(value: Any) -> str:
    """A web origin: scheme and host (and port), like https://ha.example.com:8123."""
    if isinstance(value, str):
        parts = urlsplit(value.strip().rstrip("/"))
        if parts.scheme in ("http", "https") and parts.netloc and not parts.path and not parts.query:
            return f"{parts.scheme}://{parts.netloc}"
    raise vol.Invalid("expected an origin like https://ha.example.com:8123 (scheme, host and port; no path)")


def api_key(value: Any) -> str | None:
    """An API key of at least 16 characters, or null to have one generated."""
    text = optional_string(value)
    if text is not None and len(text) < 16:
        raise vol.Invalid("use at least 16 characters (generate one with: openssl rand -hex 16), or leave it out")
    return text


# A section of its own: the final validation needs `base_url` also when another section has errors.
PROVIDER_SCHEMA = section(
    {
        vol.Optional("base_url", default="https://aniworld.to"): base_url,
        vol.Optional("languages", default=["de-sub", "de-dub", "en-sub"]): languages,
        vol.Optional("hosters", default=list(HOSTERS)): hosters,
        vol.Optional("requests_per_second", default=2): positive_number,
        vol.Optional("max_connections", default=2): int_range(1, 16),
        vol.Optional("cooldown", default="15m"): duration,
    }
)

CONFIG_SCHEMA = section(
    {
        vol.Required("library"): section(
            {
                vol.Required("path"): non_empty_string,
                vol.Optional(
                    "naming",
                    default="{title} ({year})/Season {season:02}/{title} - S{season:02}E{episode:02} - {episode_title}",
                ): naming_template,
                vol.Optional("write_nfo", default=True): boolean,
            }
        ),
        vol.Optional("data_dir", default="./data"): non_empty_string,
        vol.Optional("provider", default={}): PROVIDER_SCHEMA,
        vol.Optional("downloads", default={}): section(
            {
                vol.Optional("max_concurrent", default=2): int_range(1, 10),
                vol.Optional("retries", default=5): int_range(1, 100),
                vol.Optional("retry_backoff", default="2m"): duration,
                vol.Optional("rate_limit", default=None): optional_size,
                vol.Optional("min_free_space", default="2G"): size,
                vol.Optional("stall_timeout", default="1m"): duration,
                vol.Optional("window", default=None): window,
                vol.Optional("auto_download", default=True): boolean,
                vol.Optional("auto_start", default=True): boolean,
            }
        ),
        vol.Optional("schedule", default={}): section(
            {
                vol.Optional("rescan", default="0 3 * * *"): rescan_schedule,
                vol.Optional("run_on_start", default=True): boolean,
                vol.Optional("full_refresh", default="7d"): duration,
            }
        ),
        vol.Optional("series", default=[]): series_list,
        vol.Optional("api", default={}): section(
            {
                vol.Optional("host", default="0.0.0.0"): non_empty_string,
                vol.Optional("port", default=8099): port,
                vol.Optional("key", default=None): api_key,
                vol.Optional("password", default=None): optional_string,
                # Pages of other origins whose WebSocket upgrades are allowed (the dashboard's own always is).
                vol.Optional("allowed_origins", default=[]): [origin],
            }
        ),
        # Absent means off; present means on unless `enabled: false`.
        vol.Optional("mqtt", default={"enabled": False}): section(
            {
                vol.Optional("enabled", default=True): boolean,
                vol.Optional("host", default="localhost"): non_empty_string,
                vol.Optional("port", default=1883): port,
                vol.Optional("username", default=None): optional_string,
                vol.Optional("password", default=None): optional_string,
                vol.Optional("base_topic", default="aniworld"): mqtt_topic,
                vol.Optional("discovery", default=True): boolean,
                vol.Optional("discovery_prefix", default="homeassistant"): mqtt_topic,
                vol.Optional("keepalive", default=60): int_range(5, 3600),
                # TLS: present (even empty, {}) means on; `ca` for a broker whose certificate no system CA signed,
                # `cert` and `key` for a client certificate, `insecure` to skip the host name check.
                vol.Optional("tls", default=None): vol.Any(
                    None,
                    section(
                        {
                            vol.Optional("ca", default=None): optional_string,
                            vol.Optional("cert", default=None): optional_string,
                            vol.Optional("key", default=None): optional_string,
                            vol.Optional("insecure", default=False): boolean,
                        }
                    ),
                ),
            }
        ),
        vol.Optional("backup", default={}): section(
            {
                vol.Optional("every", default="7d"): backup_interval,
                vol.Optional("keep", default=4): int_range(1, 1000),
            }
        ),
        vol.Optional("logging", default={}): section({vol.Optional("level", default="info"): log_level}),
    }
)


# ---------------------------------------------------------------------------------------------------------------
# YAML loading: values plus the line of every key path, with !secret and !env resolved
# ---------------------------------------------------------------------------------------------------------------


class _Unresolved:
    """Stands in for a !secret/!env value that could not be resolved (its error is reported once)."""


@dataclass(slots=True)
class _Document:
    """A loaded YAML file: plain data, the line of every key path, and problems found while loading."""

    file: Path
    data: Any
    lines: dict[KeyPath, int]
    errors: list[str]
    unresolved: set[KeyPath]
    building: set[int] = field(default_factory=set)  # ids of nodes under construction: catches `&a [*a]`
    secret_paths: set[KeyPath] = field(default_factory=set)  # values that came from !secret: never shown

    def line_of(self, path: KeyPath) -> int:
        """The line of the deepest known prefix of `path` (1 for the file itself)."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1

    def value_at(self, path: KeyPath) -> tuple[bool, Any]:
        """(found, value) at `path` in the loaded data."""
        value = self.data
        for part in path:
            in_list = isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
            if in_list or (isinstance(value, dict) and part in value):
                value = value[part]
            else:
                return False, None
        return True, value


class _SecretSource:
    """Resolves `!secret name` from secrets.yaml beside the config and from $CREDENTIALS_DIRECTORY."""

    def __init__(self, config_file: Path) -> None:
        self._file = config_file.parent / SECRETS_FILE
        self._credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        self._secrets: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._secrets is None:
            self._secrets = {}
            if self._file.is_file():
                document = _load_document(self._file, secrets=None)
                if document.errors:
                    raise _TagError(f"cannot read {self._file}: {document.errors[0]}")
                if isinstance(document.data, dict):
                    self._secrets = {str(key): value for key, value in document.data.items()}
                elif document.data is not None:
                    raise _TagError(f"{self._file} must be a mapping of 'name: value' lines")
        return self._secrets

    def get(self, name: str) -> Any:
        """The secret's value, or raise _TagError naming where it was looked for."""
        if self._credentials and re.fullmatch(r"[\w.-]+", name):
            credential = Path(self._credentials) / name
            if credential.is_file():
                try:
                    return credential.read_text(encoding="utf-8").rstrip("\r\n")
                except (OSError, UnicodeDecodeError) as err:
                    raise _TagError(f"cannot read the credential {credential}: {err}") from err
        secrets = self._load()
        if name in secrets:
            return secrets[name]
        places = [str(self._file)] + (["$CREDENTIALS_DIRECTORY"] if self._credentials else [])
        raise _TagError(f"secret '{name}' not found in {' or '.join(places)}")


class _TagError(Exception):
    """A !secret or !env tag could not be resolved."""


def _load_document(file: Path, secrets: _SecretSource | None, raw: bytes | None = None) -> _Document:
    """Parse one YAML (or JSON) file (or `raw`, named `file`) into a `_Document`; syntax errors become error lines."""
    document = _Document(file, None, {}, [], set())
    if raw is None:
        try:
            raw = file.read_bytes()
        except OSError as err:
            document.errors.append(f"{file}: cannot read the file: {err.strerror or err}")
            return document
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        document.errors.append(
            f"{file}:{line}: the file is not UTF-8 text (byte 0x{raw[err.start]:02x}); save it as UTF-8"
        )
        return document
    try:
        loader = yaml.SafeLoader(text)  # the reader already rejects control characters here
    except yaml.reader.ReaderError as err:
        line = text[: err.position].count("\n") + 1
        document.errors.append(f"{file}:{line}: YAML error: {err.reason} (character #x{err.character:04x})")
        return document
    try:
        node = loader.get_single_node()
        if node is not None:
            document.data = _construct(loader, node, (), document, secrets)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = err.problem or err.context or "invalid YAML"
        document.errors.append(f"{file}:{line}: YAML syntax error: {problem}")
    except yaml.YAMLError as err:
        document.errors.append(f"{file}:1: YAML error: {err}")
    except RecursionError:
        # Nested deeper than the parser recurses: no configuration, and no line to point at.
        document.errors.append(f"{file}:1: YAML error: nested too deeply")
    except ValueError as err:
        # An integer of more digits than Python converts (sys.get_int_max_str_digits): the loader gives no mark.
        document.errors.append(f"{file}:1: YAML error: {str(err).split(';', 1)[0]}")
    finally:
        loader.dispose()
    return document


def _construct(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: KeyPath,
    document: _Document,
    secrets: _SecretSource | None,
) -> Any:
    """Build plain Python data from a node, recording the line of every key path."""
    # A mapping value keeps its key's line (set by the caller); list items and the root take their node's line.
    line = document.lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in document.building:
        document.errors.append(f"{document.file}:{line}: {render_path(path)}: an alias refers to itself")
        document.unresolved.add(path)
        return _Unresolved()
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        document.building.add(id(node))
        try:
            return _construct_collection(loader, node, path, document, secrets)
        finally:
            document.building.discard(id(node))
    return _construct_scalar(loader, node, path, document, secrets)


def _construct_collection(
    loader: yaml.SafeLoader, node: yaml.Node, path: KeyPath, document: _Document, secrets: _SecretSource | None
) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<:` merge keys
        result: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int) or isinstance(key, bool):
                line = key_node.start_mark.line + 1
                document.errors.append(f"{document.file}:{line}: {render_path(path)}: keys must be plain text")
                continue
            if key in first_line:
                line = key_node.start_mark.line + 1
                document.errors.append(
                    f"{document.file}:{line}: {render_path((*path, key))}: "
                    f"duplicate key (first given on line {first_line[key]})"
                )
                continue
            first_line[key] = key_node.start_mark.line + 1
            document.lines[(*path, key)] = first_line[key]
            result[key] = _construct(loader, value_node, (*path, key), document, secrets)
        return result
    return [_construct(loader, item, (*path, index), document, secrets) for index, item in enumerate(node.value)]


def _construct_scalar(
    loader: yaml.SafeLoader, node: yaml.Node, path: KeyPath, document: _Document, secrets: _SecretSource | None
) -> Any:
    if isinstance(node, yaml.ScalarNode) and node.tag in ("!secret", "!env"):
        if node.tag == "!secret":
            document.secret_paths.add(path)
        try:
            return _resolve_tag(node.tag, str(loader.construct_scalar(node)).strip(), secrets)
        except _TagError as err:
            document.errors.append(f"{document.file}:{node.start_mark.line + 1}: {render_path(path)}: {err}")
            document.unresolved.add(path)
            return _Unresolved()
    if node.tag.startswith("!") and not node.tag.startswith("!!"):
        document.errors.append(
            f"{document.file}:{node.start_mark.line + 1}: {render_path(path)}: "
            f"unknown tag {node.tag} (supported: !secret, !env)"
        )
        document.unresolved.add(path)
        return _Unresolved()
    return loader.construct_object(node, deep=True)


def _resolve_tag(tag: str, name: str, secrets: _SecretSource | None) -> Any:
    if not name:
        raise _TagError(f"{tag} needs a name, like '{tag} mqtt_password'")
    if tag == "!env":
        if name not in os.environ:
            raise _TagError(f"environment variable {name} is not set")
        return os.environ[name]
    if secrets is None:
        raise _TagError("!secret cannot be used inside secrets.yaml")
    return secrets.get(name)


def _render_error(document: _Document, error: vol.Invalid) -> str:
    path: KeyPath = tuple(part if isinstance(part, int) else str(part) for part in error.path)
    message = error.error_message or "invalid value"
    found, value = document.value_at(path)
    got = ""
    # Secret values are never echoed back, not even in an error message.
    quoted = isinstance(error, QuotedInvalid)
    if found and not quoted and isinstance(value, str | int | float | bool) and not _is_secret_path(path):
        got = f" (got {value!r})"
    prefix = f"{document.file}:{document.line_of(path)}"
    return f"{prefix}: {render_path(path)}: {message}{got}" if path else f"{prefix}: {message}{got}"


def _is_secret_path(path: KeyPath) -> bool:
    return bool(path) and path[0] in ("api", "mqtt") and path[-1] in _SECRET_KEYS


def load_config(file: Path | str) -> Config:
    """Load, resolve and validate a config file; raises ConfigError with one rendered line per problem."""
    path = Path(file)
    return _validate(path, _load_document(path, _SecretSource(path)))


async def validate_text(text: str, beside: Path) -> Config:
    """Validate a config given as text, as if it were the file `beside` (its !secret come from there's folder).

    Raises ConfigError with the same lines as `check-config`, naming the lines of `text`.
    """
    return await asyncio.to_thread(_validate, beside, _load_document(beside, _SecretSource(beside), text.encode()))


def _validate(path: Path, document: _Document) -> Config:
    """The Config of a loaded document, or ConfigError with every problem."""
    errors = list(document.errors)
    if not errors and document.data is None:
        raise ConfigError([f"{path}:1: the file is empty; it needs at least 'library:' with 'path:'"])
    if document.data is not None and not isinstance(document.data, dict):
        raise ConfigError([*errors, f"{path}:1: expected a mapping of sections like 'library:' at the top level"])
    if isinstance(document.data, dict):
        validated: dict[str, Any] | None = None
        try:
            validated = CONFIG_SCHEMA(document.data)
        except vol.Invalid as err:
            for item in iter_errors(err):
                # A value whose !secret/!env failed was reported already; its schema error would only be noise.
                if not any(tuple(item.path[: len(bad)]) == bad for bad in document.unresolved):
                    errors.append(_render_error(document, item))
        errors += [_render_error(document, item) for item in _final_validation(document.data, document)]
        if validated is not None and not errors:
            return _build(path, validated, frozenset(document.secret_paths))
    errors.sort(key=_error_sort_key)
    raise ConfigError(errors)


def default_provider_config(base_url: str) -> ProviderConfig:
    """The provider settings of the schema's defaults for `base_url`, for commands run without a config file."""
    try:
        data = CONFIG_SCHEMA({"library": {"path": "."}, "provider": {"base_url": base_url}})
    except vol.Invalid as err:
        raise ConfigError([f"--base-url: {err.msg} (got {base_url!r})"]) from err
    return _build(Path("config.yaml"), data).provider


def _error_sort_key(line: str) -> tuple[str, int]:
    match = re.match(r"^(.*?):(\d+): ", line)
    return (match.group(1), int(match.group(2))) if match else (line, 0)


def _tls(base: Path, data: dict[str, Any] | None) -> MqttTls | None:
    """The TLS settings with their files taken from the config file's folder when relative."""
    if data is None:
        return None

    def file(value: str | None) -> Path | None:
        return base / Path(value).expanduser() if value else None

    return MqttTls(file(data["ca"]), file(data["cert"]), file(data["key"]), data["insecure"])


def _build(source: Path, data: dict[str, Any], secret_paths: frozenset[KeyPath] = frozenset()) -> Config:
    """Turn validated data into the typed Config; relative paths are taken from the config file's folder."""
    base = source.resolve().parent
    library, provider, downloads = data["library"], data["provider"], data["downloads"]
    schedule, api, mqtt = data["schedule"], data["api"], data["mqtt"]
    return Config(
        source=source.resolve(),
        library=LibraryConfig(
            path=base / Path(library["path"]).expanduser(),
            naming=library["naming"],
            write_nfo=library["write_nfo"],
        ),
        data_dir=base / Path(data["data_dir"]).expanduser(),
        provider=ProviderConfig(
            base_url=provider["base_url"],
            languages=tuple(Language(item) for item in provider["languages"]),
            hosters=tuple(provider["hosters"]),
            requests_per_second=provider["requests_per_second"],
            max_connections=provider["max_connections"],
            cooldown=provider["cooldown"],
        ),
        downloads=DownloadsConfig(**downloads),
        schedule=ScheduleConfig(**schedule),
        series=tuple(data["series"]),
        api=ApiConfig(**{**api, "allowed_origins": tuple(api["allowed_origins"])}),
        mqtt=MqttConfig(
            **{**mqtt, "tls": _tls(base, mqtt["tls"])},
        ),
        backup=BackupConfig(**data["backup"]),
        logging=LoggingConfig(**data["logging"]),
        secret_paths=secret_paths,
    )
