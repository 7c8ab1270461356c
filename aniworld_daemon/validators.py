"""Small named voluptuous validators shared by the config, API bodies and MQTT payloads; messages say what to type."""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Callable, Iterator
from datetime import time as dt_time
from datetime import timedelta
from typing import Any
from urllib.parse import SplitResult, urlsplit

import voluptuous as vol
from apscheduler.triggers.cron import CronTrigger

from aniworld_daemon.errors import ValidationError
from aniworld_daemon.models import Language
from aniworld_daemon.provider.hosters import RESOLVERS
from aniworld_daemon.provider.urls import KEY_RE, SERIES_PATH_RE, is_site_host, not_on_site

HOSTERS = tuple(resolver.name for resolver in RESOLVERS)  # the config's default order is the registry's
LANGUAGES = tuple(language.value for language in Language)
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Crontab weekday numbers: 0 and 7 are Sunday.
_CRON_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_WEEKDAY_ITEM_RE = re.compile(r"^(\*|[a-z]+|[0-9]+)(?:-([a-z]+|[0-9]+))?(?:/([0-9]+))?$")
NAMING_FIELDS = ("title", "year", "season", "episode", "episode_title", "key", "language", "imdb_id")
# The template's first folder is the series folder: one per series, so it may only use fields of the series.
SERIES_NAMING_FIELDS = ("title", "year", "key", "imdb_id")

# [0-9], not \d: str.isdigit() and \d accept digits like '²' that int() refuses.
INTEGER_RE = re.compile(r"^ *-?[0-9]+ *$")
DURATION_RE = re.compile(r"([0-9]+)\s*(w|d|h|m|s)")
SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
CLOCK_RE = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
TOPIC_RE = re.compile(r"^[^/#+\s][^#+\s]*(?<!/)$")

_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


KeyPath = tuple[str | int, ...]


class QuotedInvalid(vol.Invalid):
    """An error whose message already quotes the offending value, so rendering adds no `(got ...)`."""


def suggest(value: str, choices: tuple[str, ...] | list[str]) -> str:
    """A ", did you mean 'x'?" suffix for the closest choice, or an empty string."""
    matches = difflib.get_close_matches(value.lower(), [choice.lower() for choice in choices], n=1, cutoff=0.6)
    if not matches:
        return ""
    original = next(choice for choice in choices if choice.lower() == matches[0])
    return f", did you mean '{original}'?"


def boolean(value: Any) -> bool:
    """True or false (YAML's yes/no/on/off arrive as booleans already)."""
    if isinstance(value, bool):
        return value
    raise vol.Invalid("expected true or false")


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and INTEGER_RE.match(value):
        return int(value)
    return None


def int_range(low: int, high: int | None = None) -> Callable[[Any], int]:
    """An integer in [low, high] (high open when None)."""

    def validate(value: Any) -> int:
        number = _integer(value)
        if number is None or number < low or (high is not None and number > high):
            if high is None:
                raise vol.Invalid(f"expected an integer of at least {low}")
            raise vol.Invalid(f"expected an integer between {low} and {high}")
        return number

    validate.__name__ = f"int_range_{low}_{high}"
    return validate


port = int_range(1, 65535)


def positive_number(value: Any) -> float:
    """A number greater than zero (requests per second may be fractional, like 0.5)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise vol.Invalid("expected a number greater than 0, like 2 or 0.5")


def non_empty_string(value: Any) -> str:
    """A non-empty string."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise vol.Invalid("expected a non-empty text value")


def optional_string(value: Any) -> str | None:
    """A string, or null/empty for 'not set'."""
    if value is None or value == "":
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise vol.Invalid("expected a text value or null")


def duration(value: Any) -> timedelta:
    """A duration like 30s, 15m, 2h, 7d, 1w or 1h30m."""
    text = value.strip().lower() if isinstance(value, str) else ""
    total = 0
    position = 0
    for match in DURATION_RE.finditer(text):
        if text[position : match.start()].strip():
            break
        total += int(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    else:
        if text and position == len(text) and total > 0:
            return timedelta(seconds=total)
    raise vol.Invalid("expected a duration like 30s, 15m, 2h or 7d")


def size(value: Any) -> int:
    """A size in bytes like 500M, 2G or 1.5G (binary units), or a plain number of bytes."""
    number = _integer(value)
    if number is not None and number >= 0:
        return number
    match = SIZE_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise vol.Invalid("expected a size like 500M, 2G or 1.5G")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


def optional_size(value: Any) -> int | None:
    """A size, or null (or an empty string, as the add-on sends cleared fields) for 'no limit'."""
    return None if value in (None, "") else size(value)


def crontab(value: Any) -> str:
    """A five-field crontab expression like '0 3 * * *' (weekdays as in cron: 0 and 7 are Sunday)."""
    if not isinstance(value, str) or len(value.split()) != 5:
        raise vol.Invalid("expected a crontab like '0 3 * * *' (minute hour day month weekday)")
    minute, hour, day, month, weekday = value.split()
    try:
        CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=cron_weekdays(weekday))
    except ValueError as err:
        raise vol.Invalid(f"invalid crontab: {err}") from err
    return " ".join(value.split())


def cron_weekdays(field: str) -> str:
    """A crontab weekday field (numbers with 0 or 7 for Sunday, names, ranges, steps, lists) as day names or '*'."""
    days: set[int] = set()
    for item in field.lower().split(","):
        match = _WEEKDAY_ITEM_RE.match(item)
        if match is None:
            raise ValueError(f"invalid weekday field {field!r}")
        start, end, step_text = match.groups()
        if start == "*":
            first, last = 0, 6
        else:
            first = _cron_weekday(start)
            # 'n/step' means n through the end of the week; 'fri-sun' ends on Sunday, numbered 7 here.
            last = _cron_weekday(end) if end else (6 if step_text else first)
            if last < first and last == 0:
                last = 7
        step = int(step_text) if step_text else 1
        if last < first or step < 1 or (start == "*" and end):
            raise ValueError(f"invalid weekday field {field!r}")
        days.update(day % 7 for day in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(_CRON_WEEKDAYS[day] for day in sorted(days))


def _cron_weekday(text: str) -> int:
    if text.isascii() and text.isdigit() and int(text) <= 7:
        return int(text)
    if text in _CRON_WEEKDAYS:
        return _CRON_WEEKDAYS.index(text)
    raise ValueError(f"invalid weekday {text!r}")


def clock(value: Any) -> dt_time:
    """A time of day as HH:MM."""
    match = CLOCK_RE.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise vol.Invalid("expected a time of day as HH:MM, like 03:00")
    return dt_time(int(match.group(1)), int(match.group(2)))


def window(value: Any) -> tuple[dt_time, dt_time] | None:
    """A daily window HH:MM-HH:MM (may wrap midnight), or null/empty for 'any time'."""
    if value in (None, ""):
        return None
    parts = value.split("-") if isinstance(value, str) else []
    if len(parts) != 2 or not all(CLOCK_RE.match(part.strip()) for part in parts):
        raise vol.Invalid("expected a time window as HH:MM-HH:MM, like 01:00-07:00")
    start, end = clock(parts[0]), clock(parts[1])
    if start == end:
        raise vol.Invalid("the window is empty: start and end are the same time")
    return start, end


def _items(value: Any) -> list[Any]:
    """A list, or a comma-separated string (the add-on schema cannot nest lists deeply)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return value
    raise vol.Invalid("expected a list (lines starting with '- ', or comma-separated text)")


def one_of(kind: str, choices: tuple[str, ...]) -> Callable[[Any], str]:
    """One value out of `choices` (case-insensitive), with a suggestion for typos."""

    def validate(value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        hint = suggest(value, choices) if isinstance(value, str) else ""
        raise QuotedInvalid(f"unknown {kind} {value!r}{hint} (expected one of {', '.join(choices)})")

    validate.__name__ = f"one_of_{kind}"
    return validate


def unique_list(
    item: Callable[[Any], Any],
    kind: str,
    *,
    key: Callable[[Any], Any] | None = None,
    allow_empty: bool = False,
) -> Callable[[Any], list[Any]]:
    """A list whose items pass `item` and are unique (by `key`); non-empty unless `allow_empty`."""
    item_schema = vol.Schema(item)

    def validate(value: Any) -> list[Any]:
        items = [] if value is None and allow_empty else _items(value)
        if not items and not allow_empty:
            raise vol.Invalid(f"expected at least one {kind}")
        result: list[Any] = []
        errors: list[vol.Invalid] = []
        seen: dict[Any, int] = {}
        for index, entry in enumerate(items):
            try:
                checked = item_schema(entry)
            except vol.Invalid as err:
                err.prepend([index])
                errors.append(err)
                continue
            identity = checked if key is None else key(checked)
            if identity in seen:
                message = f"{kind} '{identity}' is listed twice (also entry {seen[identity]})"
                errors.append(QuotedInvalid(message, path=[index]))
            seen.setdefault(identity, index)
            result.append(checked)
        if errors:
            raise vol.MultipleInvalid(errors)
        return result

    validate.__name__ = f"unique_list_{kind}"
    return validate


language = one_of("language", LANGUAGES)
hoster = one_of("hoster", HOSTERS)
languages = unique_list(language, "language")
hosters = unique_list(hoster, "hoster")
weekdays = unique_list(one_of("weekday", WEEKDAYS), "weekday")
seasons = unique_list(int_range(0, 1000), "season")
log_level = one_of("log level", LOG_LEVELS)


def _split(value: Any) -> SplitResult | None:
    """The parts of a URL given as text; None for other values and for malformed URLs (like `http://[::1`)."""
    if not isinstance(value, str):
        return None
    try:
        return urlsplit(value.strip())
    except ValueError:
        return None


def base_url(value: Any) -> str:
    """An http(s) URL of the site's root, like https://aniworld.to."""
    parts = _split(value)
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise vol.Invalid("expected the site's address, like https://aniworld.to")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise vol.Invalid("expected the site's root address without a path, like https://aniworld.to")
    return f"{parts.scheme}://{parts.netloc}"


def series_key(value: Any) -> str:
    """A series key: the slug in the series URL, like one-piece."""
    if isinstance(value, str) and KEY_RE.match(value.strip()):
        return value.strip()
    raise vol.Invalid("expected a series key (letters, digits and dashes), like one-piece")


def series_url(value: Any) -> str:
    """A series URL like https://aniworld.to/anime/stream/one-piece; returns its key (any host: see site_series_url)."""
    parts = _split(value)
    match = SERIES_PATH_RE.match(parts.path) if parts is not None else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or match is None:
        raise vol.Invalid("expected a series URL like https://aniworld.to/anime/stream/one-piece")
    return match["key"]


def site_series_url(site: str) -> Callable[[Any], str]:
    """A series URL on the site at `site` (a base URL) or on aniworld.to; returns its key.

    The key alone is what is followed, always at `site`: a URL of another host would silently follow whatever series
    has the same last path segment on our site, so it is refused with the key and the URL to type instead.
    """

    def validate(value: Any) -> str:
        key = series_url(value)
        parts = _split(value)  # not None: series_url accepted the value
        if parts is not None and not is_site_host(parts.hostname, site):
            raise vol.Invalid(not_on_site(parts.hostname or parts.netloc, key, site))
        return key

    validate.__name__ = "site_series_url"
    return validate


def mqtt_topic(value: Any) -> str:
    """An MQTT topic prefix without wildcards or leading/trailing slashes, like aniworld."""
    if isinstance(value, str) and TOPIC_RE.match(value):
        return value
    raise vol.Invalid("expected a topic without spaces, '+', '#' or leading/trailing '/', like aniworld")


def naming_template(value: Any) -> str:
    """A relative path template with {title}, {season}, {episode}, ... fields."""
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid("expected a path template like '{title} ({year})/Season {season:02}/...'")
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
    except ValueError as err:
        raise vol.Invalid(f"invalid template: {err}") from err
    for name in fields:
        if name not in NAMING_FIELDS:
            raise vol.Invalid(
                f"unknown field {{{name}}}{suggest(name, NAMING_FIELDS)} (fields: {', '.join(NAMING_FIELDS)})"
            )
    if "episode" not in fields or "season" not in fields:
        raise vol.Invalid("the template must contain {season} and {episode}")
    if value.startswith("/") or any(part == ".." for part in value.split("/")):
        raise vol.Invalid("the template must be a path inside the library (no leading '/' or '..')")
    if any(name not in SERIES_NAMING_FIELDS for name in _series_folder_fields(value)):
        allowed = ", ".join(f"{{{name}}}" for name in SERIES_NAMING_FIELDS)
        raise vol.Invalid(f"the first folder names the series: use only {allowed} in it")
    try:
        value.format(
            title="T",
            year=2000,
            season=1,
            episode=1,
            episode_title="E",
            key="k",
            language="de-dub",
            imdb_id="tt1",
        )
    except (ValueError, IndexError, KeyError) as err:
        raise vol.Invalid(f"invalid template: {err}") from err
    return value


def _series_folder_fields(template: str) -> list[str]:
    """The fields of a template's first path component ('/' separates components only outside of fields)."""
    fields: list[str] = []
    for literal, name, _, _ in string.Formatter().parse(template):
        if "/" in literal:
            break
        if name is not None:
            fields.append(name)
    return fields


def section(fields: dict[Any, Any]) -> Callable[[Any], dict[str, Any]]:
    """A mapping with known keys; unknown keys get a 'did you mean'; null counts as an empty mapping."""
    schema = vol.Schema(fields)
    known = [str(key) for key in fields]

    def validate(value: Any) -> dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise vol.Invalid("expected a mapping of 'key: value' lines")
        try:
            result: dict[str, Any] = schema(value)
        except vol.MultipleInvalid as err:
            raise vol.MultipleInvalid([_reword(error, known) for error in err.errors]) from None
        return result

    return validate


def _reword(error: vol.Invalid, known: list[str]) -> vol.Invalid:
    """Replace voluptuous' generic messages for unknown and missing keys with ones that say what to type."""
    if error.error_message == "extra keys not allowed" and len(error.path) == 1:
        key = str(error.path[0])
        return QuotedInvalid(f"unknown key '{key}'{suggest(key, known)}", path=error.path)
    if error.error_message == "required key not provided":
        return vol.Invalid("required key is missing", path=error.path)
    return error


def render_path(path: KeyPath) -> str:
    """`mqtt -> port`, `series[2] -> url`."""
    parts: list[str] = []
    for part in path:
        if isinstance(part, int) and parts:
            parts[-1] += f"[{part}]"
        else:
            parts.append(str(part))
    return " -> ".join(parts) if parts else "(top level)"


def iter_errors(error: vol.Invalid) -> Iterator[vol.Invalid]:
    """The single errors inside a (possibly nested) MultipleInvalid."""
    if isinstance(error, vol.MultipleInvalid):
        for item in error.errors:
            yield from iter_errors(item)
    else:
        yield error


def validate_payload(schema: Callable[[Any], Any], payload: Any) -> Any:
    """Check an API body, MQTT payload or command's arguments; ValidationError naming the field and what to send.

    `details`: `field` (the first problem's path, like `episodes[0] -> season`) and `errors` (every problem).
    """
    try:
        return schema(payload)
    except vol.Invalid as err:
        problems = []
        for error in iter_errors(err):
            path: KeyPath = tuple(part if isinstance(part, int) else str(part) for part in error.path)
            problems.append({"field": render_path(path), "message": error.error_message or "invalid value"})
        first = problems[0]
        raise ValidationError(
            f"{first['field']}: {first['message']}", details={"field": first["field"], "errors": problems}
        ) from None
