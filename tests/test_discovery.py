"""Home Assistant's own rules, checked on the discovery configs the daemon publishes (DESIGN section 12).

Home Assistant drops an unknown option silently, refuses a wrong value with an error in its log, and turns a template
that touches an undefined value into a "Template variable warning". None of that shows in the daemon, so the rules
are written down here, each with where in Home Assistant's code or docs it comes from, and checked on:
- the configs built by `discovery.entities()` / `config_payload()` (fast, one case per entity and device kind), and
- the retained configs a real daemon publishes to a real mosquitto, with its retained `state`, and what Home
  Assistant's buttons and switches send back to it.

Templates are rendered as Home Assistant renders them: jinja2's ImmutableSandboxedEnvironment with an Undefined that
records every use of an undefined value (Home Assistant's LoggingUndefined logs a warning there), `value_json` the
parsed payload, the result stripped.

Sources (snapshots of home-assistant/core read through the code index, 2024-2026; "core:" below):
- core:homeassistant/components/mqtt/{config,schemas,sensor,binary_sensor,button,switch,event,discovery,util}.py
- core:homeassistant/components/{sensor/const.py,binary_sensor/__init__.py,button/const.py,switch/__init__.py,
  event/__init__.py}, core:homeassistant/const.py, core:homeassistant/helpers/{config_validation.py,template}
- home-assistant.io:source/_integrations/event.mqtt.markdown, /work/shared/reference/home-assistant.md (measured)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import aiomqtt
import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from aniworld_daemon import wire
from aniworld_daemon.app import Application
from aniworld_daemon.downloads.snapshot import ActiveDownload
from aniworld_daemon.downloads.ytdlp import Progress
from aniworld_daemon.events import (
    DownloadCancelled,
    DownloadComplete,
    DownloadFailed,
    DownloadProgress,
    DownloadStarted,
    EpisodesFound,
    Event,
    EventData,
    EventType,
    HealthChanged,
    QueueAction,
    QueuePaused,
    QueueResumed,
    QueueStarted,
    QueueStatus,
    QueueStopped,
    ScanComplete,
    ScanFailed,
    ScanProgress,
    ScanStarted,
    SeriesAdded,
    SeriesRemoved,
    SeriesUpdated,
    ServerShutdown,
)
from aniworld_daemon.health import HealthReport
from aniworld_daemon.models import (
    MB,
    Download,
    DownloadStatus,
    HealthStatus,
    Language,
    PauseReason,
    Priority,
    ScanReport,
    ScanStatus,
    Series,
    SeriesSource,
)
from aniworld_daemon.mqtt import bridge, discovery
from aniworld_daemon.mqtt.discovery import Device
from tests.helpers import Broker, StartApp

# =====================================================================================================================
# What Home Assistant accepts
# =====================================================================================================================


def words(text: str) -> frozenset[str]:
    """The words of a long list, written as text."""
    return frozenset(text.split())


# Options every MQTT entity platform takes. core:mqtt/config.py MQTT_BASE_SCHEMA (qos, encoding); core:mqtt/schemas.py
# MQTT_AVAILABILITY_SINGLE_SCHEMA + MQTT_AVAILABILITY_LIST_SCHEMA + MQTT_ENTITY_COMMON_SCHEMA (device, origin,
# enabled_by_default, entity_category, icon, json_attributes_*, object_id, unique_id); entity_picture:
# home-assistant.io event.mqtt.markdown; default_entity_id: core 2025.10+ (reference §"Changes" 4).
COMMON_OPTIONS = words(
    """
        qos encoding availability_topic availability_template payload_available payload_not_available availability
        availability_mode device origin enabled_by_default entity_category entity_picture icon json_attributes_topic
        json_attributes_template object_id default_entity_id unique_id
    """
)
# core:mqtt/config.py: MQTT_RO_SCHEMA (state platforms) and MQTT_RW_SCHEMA (command platforms).
READ_OPTIONS = frozenset({"state_topic", "value_template"})
WRITE_OPTIONS = frozenset({"command_topic", "optimistic", "retain", "state_topic"})

# Every option per platform, full names (abbreviations are never sent). Each DISCOVERY_SCHEMA is the platform schema
# `.extend({}, extra=vol.REMOVE_EXTRA)`: an option not listed here is dropped without a word.
PLATFORM_OPTIONS: Mapping[str, frozenset[str]] = {
    # core:mqtt/sensor.py _PLATFORM_SCHEMA_BASE (last_reset_topic was removed in 2023.6)
    "sensor": COMMON_OPTIONS
    | READ_OPTIONS
    | {
        "device_class",
        "expire_after",
        "force_update",
        "last_reset_value_template",
        "name",
        "options",
        "suggested_display_precision",
        "state_class",
        "unit_of_measurement",
    },
    # core:mqtt/binary_sensor.py PLATFORM_SCHEMA_MODERN
    "binary_sensor": COMMON_OPTIONS
    | READ_OPTIONS
    | {"device_class", "expire_after", "force_update", "name", "off_delay", "payload_off", "payload_on"},
    # core:mqtt/button.py PLATFORM_SCHEMA_MODERN (MQTT_BASE_SCHEMA: no state topic)
    "button": COMMON_OPTIONS | {"command_template", "command_topic", "device_class", "name", "payload_press", "retain"},
    # core:mqtt/switch.py PLATFORM_SCHEMA_MODERN
    "switch": COMMON_OPTIONS
    | WRITE_OPTIONS
    | {
        "command_template",
        "device_class",
        "name",
        "payload_off",
        "payload_on",
        "state_off",
        "state_on",
        "value_template",
    },
    # core:mqtt/event.py _PLATFORM_SCHEMA_BASE
    "event": COMMON_OPTIONS | READ_OPTIONS | {"device_class", "event_types", "name"},
}
# Required options (vol.Required in the same schemas).
REQUIRED_OPTIONS: Mapping[str, frozenset[str]] = {
    "sensor": frozenset({"state_topic"}),
    "binary_sensor": frozenset({"state_topic"}),
    "button": frozenset({"command_topic"}),
    "switch": frozenset({"command_topic"}),
    "event": frozenset({"state_topic", "event_types"}),
}
# The nested schemas are plain vol.Schema (extra keys forbidden): an unknown key there makes HA refuse the whole
# config. core:mqtt/schemas.py MQTT_ENTITY_DEVICE_INFO_SCHEMA, MQTT_ORIGIN_INFO_SCHEMA, the availability list items.
DEVICE_OPTIONS = words(
    """
        identifiers connections manufacturer model model_id name hw_version serial_number sw_version via_device
        suggested_area configuration_url
    """
)
ORIGIN_OPTIONS = frozenset({"name", "sw_version", "support_url"})
AVAILABILITY_OPTIONS = frozenset({"topic", "payload_available", "payload_not_available", "value_template"})
AVAILABILITY_MODES = frozenset({"all", "any", "latest"})  # core:mqtt/const.py AVAILABILITY_MODES
# DESIGN section 12: entity ids come from the device and entity names on every core, so neither is ever sent (2026.2
# logs a deprecation for object_id, 2024.3 ignores default_entity_id: reference, "Measured").
FORBIDDEN_OPTIONS = frozenset({"object_id", "default_entity_id"})

# Device classes per platform; None (no device class) is always allowed.
DEVICE_CLASSES: Mapping[str, frozenset[str]] = {
    # core:sensor/const.py SensorDeviceClass (2025 snapshot)
    "sensor": words(
        """
            date enum timestamp apparent_power aqi area atmospheric_pressure battery blood_glucose_concentration
            carbon_monoxide carbon_dioxide conductivity current data_rate data_size distance duration energy
            energy_distance energy_storage frequency gas humidity illuminance irradiance moisture monetary
            nitrogen_dioxide nitrogen_monoxide nitrous_oxide ozone ph pm1 pm10 pm25 power_factor power precipitation
            precipitation_intensity pressure reactive_power signal_strength sound_pressure speed sulphur_dioxide
            temperature volatile_organic_compounds volatile_organic_compounds_parts voltage volume volume_storage
            volume_flow_rate water weight wind_direction wind_speed
        """
    ),
    # core:binary_sensor/__init__.py BinarySensorDeviceClass
    "binary_sensor": words(
        """
            battery battery_charging carbon_monoxide cold connectivity door garage_door gas heat light lock moisture
            motion moving occupancy opening plug power presence problem running safety smoke sound tamper update
            vibration window
        """
    ),
    "button": frozenset({"identify", "restart", "update"}),  # core:button/const.py ButtonDeviceClass
    "switch": frozenset({"outlet", "switch"}),  # core:switch/__init__.py SwitchDeviceClass
    "event": frozenset({"button", "doorbell", "motion"}),  # core:event/__init__.py EventDeviceClass
}
# core:sensor/const.py SensorStateClass (measurement_angle since 2025.2).
STATE_CLASSES = frozenset({"measurement", "measurement_angle", "total", "total_increasing"})
# core:sensor/const.py NON_NUMERIC_DEVICE_CLASSES: their state is text or a date, never a number.
NON_NUMERIC_DEVICE_CLASSES = frozenset({"date", "enum", "timestamp"})
# Units per sensor device class: core:sensor/const.py DEVICE_CLASS_UNITS with the unit enums of core:const.py
# (UnitOfDataRate, UnitOfInformation, UnitOfTime); date/enum/timestamp: "Unit of measurement: `None`" (their
# SensorDeviceClass docs). MQTT warns about a unit that is not valid for the device class, "this will stop working in
# HA Core 2025.7.0" (core:mqtt/sensor.py validate_sensor_state_and_device_class_config). Only the classes this daemon
# might use are listed: a device class missing here fails the test until its units are copied from that table.
DEVICE_CLASS_UNITS: Mapping[str, frozenset[str | None]] = {
    "data_rate": frozenset(
        {"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "B/s", "kB/s", "MB/s", "GB/s", "KiB/s", "MiB/s", "GiB/s"}
    ),
    "data_size": words(
        """
            bit kbit Mbit Gbit B kB MB GB TB PB EB ZB YB KiB MiB GiB TiB PiB EiB ZiB YiB
        """
    ),
    "duration": frozenset({"d", "h", "min", "s", "ms", "µs"}),
    "date": frozenset({None}),
    "enum": frozenset({None}),
    "timestamp": frozenset({None}),
}
# core:sensor/const.py DEVICE_CLASS_STATE_CLASSES (same classes as above).
DEVICE_CLASS_STATE_CLASSES: Mapping[str, frozenset[str]] = {
    "data_rate": frozenset({"measurement"}),
    "data_size": STATE_CLASSES,
    "duration": STATE_CLASSES,
    "date": frozenset(),
    "enum": frozenset(),
    "timestamp": frozenset(),
}
# Sensors and binary sensors refuse `config` ("Entity ... cannot be added as the entity category is set to config":
# core:binary_sensor/__init__.py async_internal_added_to_hass, the same in core:sensor; home-assistant/core#101471).
# Other platforms take both values of core:const.py EntityCategory.
ENTITY_CATEGORIES: Mapping[str, frozenset[str]] = {
    "sensor": frozenset({"diagnostic"}),
    "binary_sensor": frozenset({"diagnostic"}),
    "button": frozenset({"config", "diagnostic"}),
    "switch": frozenset({"config", "diagnostic"}),
    "event": frozenset({"config", "diagnostic"}),
}
# core:mqtt/discovery.py TOPIC_MATCHER: node and object ids of [a-zA-Z0-9_-]; anything else is an "illegal discovery
# topic". DESIGN section 12: the node id is `aniworld_<install id>`, the object id the entity's key.
TOPIC_PATTERN = re.compile(
    r"(?P<prefix>.+)/(?P<component>\w+)/(?P<node_id>aniworld_[0-9a-f]{12})/(?P<object_id>[a-zA-Z0-9_-]+)/config"
)
# core:helpers/config_validation.py configuration_url -> url(value, CONFIGURATION_URL_PROTOCOL_SCHEMA_LIST) with
# vol.Url(): a scheme of these and a host.
CONFIGURATION_URL_SCHEMES = frozenset({"http", "https", "homeassistant"})
MAX_STATE_LENGTH = 255  # core:const.py MAX_LENGTH_STATE_STATE; core:mqtt/util.py check_state_too_long warns above it
PAYLOAD_NONE = "None"  # core:mqtt/const.py: a rendered "None" makes the state unknown, without a warning
# Defaults: payload_on/off "ON"/"OFF" (binary_sensor, switch), payload_press "PRESS" (button), payload_available
# "online", payload_not_available "offline" (core:mqtt/*.py DEFAULT_*).
DEFAULTS: Mapping[str, str] = {
    "payload_on": "ON",
    "payload_off": "OFF",
    "payload_press": "PRESS",
    "payload_available": "online",
    "payload_not_available": "offline",
}


# =====================================================================================================================
# The checks: each returns the rules a config breaks (empty: Home Assistant takes it as it is)
# =====================================================================================================================

BASE = "aniworld"
PREFIX = "homeassistant"
INSTALL_ID = "0123456789ab"
DEVICES = {
    "dashboard": Device(INSTALL_ID, "1.2.3", "http://nas.local:8099/"),
    "ingress": Device(INSTALL_ID, "1.2.3", "homeassistant://hassio/ingress/a0d7b954_aniworld"),
    "no-url": Device(INSTALL_ID, "1.2.3", None),
    "bad-url": Device(INSTALL_ID, "1.2.3", "nas.local:8099/"),  # HA would refuse it: left out
}
ENTITIES = {entity.key: entity for entity in discovery.entities(BASE)}


def option(config: Mapping[str, Any], name: str) -> Any:
    """An option's value, or Home Assistant's default for it."""
    return config.get(name, DEFAULTS.get(name))


def subscribe_topic_problems(topic: Any) -> list[str]:
    """core:mqtt/util.py valid_subscribe_topic: a non-empty string; `+` a whole level, `#` only the last level."""
    if not isinstance(topic, str) or not topic or "\0" in topic:
        return [f"{topic!r} is not a topic"]
    levels = topic.split("/")
    if any("+" in level and level != "+" for level in levels) or (
        "#" in topic and topic != "#" and not topic.endswith("/#")
    ):
        return [f"{topic!r} has a misplaced wildcard"]
    return []


def publish_topic_problems(topic: Any) -> list[str]:
    """core:mqtt/util.py valid_publish_topic: a topic without wildcards."""
    problems = subscribe_topic_problems(topic)
    if not problems and ("+" in topic or "#" in topic):
        problems.append(f"{topic!r}: wildcards cannot be used in topic names")
    return problems


def url_problems(value: Any, what: str) -> list[str]:
    """core:helpers/config_validation.py configuration_url (also used for the origin's support_url)."""
    parsed = urlparse(value if isinstance(value, str) else "")
    if parsed.scheme not in CONFIGURATION_URL_SCHEMES or not parsed.netloc:
        return [f"{what} {value!r} is not an http(s):// or homeassistant:// URL"]
    return []


def availability_problems(config: Mapping[str, Any], base: str) -> list[str]:
    """Either `availability_topic` or an `availability` list (vol.Exclusive), and always the daemon's status topic."""
    problems: list[str] = []
    if "availability_topic" in config and "availability" in config:
        problems.append("availability_topic and availability are exclusive")
    items: list[Any] = []
    if "availability_topic" in config:
        items.append({"topic": config["availability_topic"]})
    elif isinstance(config.get("availability"), list) and config["availability"]:
        items = config["availability"]
        if option(config, "availability_mode") not in AVAILABILITY_MODES | {None}:
            problems.append(f"availability_mode {config['availability_mode']!r}")
    else:
        problems.append("no availability: the entity would not follow the daemon's will `offline`")
    for item in items:
        if not isinstance(item, dict) or "topic" not in item:
            problems.append(f"availability item {item!r} has no topic")
            continue
        problems += [f"availability item key {key!r} is unknown" for key in sorted(set(item) - AVAILABILITY_OPTIONS)]
        problems += subscribe_topic_problems(item["topic"])
    if f"{base}/status" not in [item.get("topic") for item in items if isinstance(item, dict)]:
        problems.append(f"availability does not include {base}/status (DESIGN section 12)")
    if "availability" in config and option(config, "availability_mode") != "all":
        # Several conditions: the entity is available only while the daemon is online AND the value exists.
        problems.append("an availability list must use availability_mode all")
    return problems


def sensor_problems(config: Mapping[str, Any]) -> list[str]:
    """Device class, state class and unit of a sensor, as core:sensor and core:mqtt/sensor.py check them."""
    problems: list[str] = []
    device_class = config.get("device_class")
    state_class = config.get("state_class")
    unit = config.get("unit_of_measurement")
    if state_class is not None and state_class not in STATE_CLASSES:
        problems.append(f"state_class {state_class!r} is not one of {sorted(STATE_CLASSES)}")
    if device_class is not None:
        if device_class not in DEVICE_CLASS_UNITS:
            problems.append(f"device class {device_class!r}: copy its units from HA's DEVICE_CLASS_UNITS into the test")
        elif unit not in DEVICE_CLASS_UNITS[device_class]:
            problems.append(f"unit {unit!r} is not valid for device class {device_class!r}")
        elif state_class is not None and state_class not in DEVICE_CLASS_STATE_CLASSES[device_class]:
            problems.append(f"state class {state_class!r} is impossible for device class {device_class!r}")
    if "options" in config and (device_class != "enum" or state_class or unit):
        problems.append("options need device_class enum and neither a state class nor a unit")
    if "last_reset_value_template" in config and state_class != "total":
        problems.append("last_reset_value_template needs state_class total")
    return problems


def config_problems(component: str, config: Any, *, base: str = BASE) -> list[str]:
    """Every rule of Home Assistant (and DESIGN section 12) this discovery config breaks."""
    if component not in PLATFORM_OPTIONS:
        return [f"platform {component!r} is not one of {sorted(PLATFORM_OPTIONS)}"]
    if not isinstance(config, dict):
        return ["the config is not a JSON object"]
    problems = [
        f"unknown option {key!r} (Home Assistant drops it silently)"
        for key in sorted(set(config) - PLATFORM_OPTIONS[component])
    ]
    problems += [
        f"sends {key!r} (DESIGN section 12: neither object_id nor default_entity_id)"
        for key in FORBIDDEN_OPTIONS & set(config)
    ]
    problems += [f"required option {key!r} is missing" for key in sorted(REQUIRED_OPTIONS[component] - set(config))]
    if not isinstance(config.get("unique_id"), str) or not config["unique_id"]:
        problems.append("no unique_id: 'MQTT items without a unique ID will not be added at startup'")
    problems += availability_problems(config, base)

    device = config.get("device")
    if not isinstance(device, dict):
        problems.append("no device")
    else:
        problems += [
            f"unknown device key {key!r} (the config is refused)" for key in sorted(set(device) - DEVICE_OPTIONS)
        ]
        if not device.get("identifiers") and not device.get("connections"):
            problems.append("the device needs identifiers (validate_device_has_at_least_one_identifier)")
        if not isinstance(device.get("name"), str) or not device["name"]:
            problems.append("the device has no name (entity ids come from it)")
        elif isinstance(config.get("name"), str) and config["name"].startswith(device["name"]):
            # core:mqtt/entity.py (mixins.py before) _set_entity_name: "MQTT entity name starts with the device name"
            problems.append("the entity name starts with the device name")
        if "configuration_url" in device:
            problems += url_problems(device["configuration_url"], "configuration_url")
    origin = config.get("origin")
    if not isinstance(origin, dict) or not isinstance(origin.get("name"), str) or not origin["name"]:
        problems.append("no origin with a name (MQTT_ORIGIN_INFO_SCHEMA: name is required)")
    else:
        problems += [
            f"unknown origin key {key!r} (the config is refused)" for key in sorted(set(origin) - ORIGIN_OPTIONS)
        ]
        if "support_url" in origin:
            problems += url_problems(origin["support_url"], "support_url")

    if option(config, "qos") not in (0, 1, 2, None):
        problems.append(f"qos {config['qos']!r}")
    if "icon" in config and ":" not in str(config["icon"]):
        problems.append('icon: "Icons should be specified in the form prefix:name"')
    for key in ("state_topic", "json_attributes_topic"):
        if key in config:
            problems += subscribe_topic_problems(config[key])
    if "command_topic" in config:
        problems += publish_topic_problems(config["command_topic"])
        if config.get("retain", False):
            problems.append("retained commands would be replayed to the daemon at every (re)subscribe")
    device_class = config.get("device_class")
    if device_class is not None and device_class not in DEVICE_CLASSES[component]:
        problems.append(f"device class {device_class!r} is not one of the {component} device classes")
    if "entity_category" in config and config["entity_category"] not in ENTITY_CATEGORIES[component]:
        problems.append(f"entity_category {config['entity_category']!r} is refused for a {component}")
    if component == "sensor":
        problems += sensor_problems(config)
    if component == "event":
        types = config.get("event_types")
        if not isinstance(types, list) or not types or not all(isinstance(item, str) for item in types):
            problems.append("event_types must be a non-empty list of strings")
    for key in ("value_template", "json_attributes_template", "availability_template"):
        if key in config:
            try:
                template_environment([]).parse(config[key])
            except jinja2.TemplateSyntaxError as err:
                problems.append(f"{key} does not compile: {err}")
    return problems


def topic_problems(topic: str, component: str, key: str, *, prefix: str = PREFIX) -> list[str]:
    """`<prefix>/<component>/aniworld_<12 hex>/<key>/config` (core:mqtt/discovery.py TOPIC_MATCHER)."""
    match = TOPIC_PATTERN.fullmatch(topic)
    if match is None:
        return [f"{topic!r} is not <prefix>/<component>/aniworld_<12 hex>/<key>/config"]
    problems = []
    if match["prefix"] != prefix:
        problems.append(f"{topic!r} is not under {prefix}/")
    if match["component"] != component:
        problems.append(f"{topic!r} is not the {component} platform's")
    if match["object_id"] != key:
        problems.append(f"{topic!r} does not end in the entity's key {key!r}")
    return problems


# =====================================================================================================================
# Templates, rendered as Home Assistant renders them
# =====================================================================================================================


def template_environment(undefined_uses: list[str]) -> ImmutableSandboxedEnvironment:
    """core:helpers/template TemplateEnvironment: ImmutableSandboxedEnvironment with loopcontrols and do, and an
    Undefined that (like HA's LoggingUndefined, a jinja2.Undefined) records printing, iterating or testing an
    undefined value, which Home Assistant logs as "Template variable warning"; other uses raise (an error there)."""

    class RecordingUndefined(jinja2.Undefined):
        def _record(self) -> None:
            undefined_uses.append(self._undefined_message)

        def __str__(self) -> str:
            self._record()
            return super().__str__()

        def __iter__(self) -> Iterator[Any]:
            self._record()
            return super().__iter__()

        def __bool__(self) -> bool:
            self._record()
            return super().__bool__()

    return ImmutableSandboxedEnvironment(
        undefined=RecordingUndefined, extensions=["jinja2.ext.loopcontrols", "jinja2.ext.do"]
    )


def render(template: str, payload: str) -> str:
    """core:helpers/template Template.async_render_with_possible_json_value: `value`, `value_json` when the payload
    is JSON, the result stripped. Fails on anything Home Assistant would log (an error or a variable warning)."""
    undefined_uses: list[str] = []
    variables: dict[str, Any] = {"value": payload}
    with contextlib.suppress(ValueError):
        variables["value_json"] = json.loads(payload)
    result = template_environment(undefined_uses).from_string(template.strip()).render(variables).strip()
    assert not undefined_uses, f"Template variable warning: {undefined_uses} rendering {template!r}"
    return result


def is_number(text: str) -> bool:
    """What core:sensor accepts as a numeric state (it raises "has the non-numeric value" otherwise)."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def is_timestamp(text: str) -> bool:
    """core:mqtt/sensor.py parses with dt_util.parse_datetime; core:sensor refuses a datetime "which is missing
    timezone information"."""
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def availability_of(config: Mapping[str, Any], topic: str, payload: str) -> str | None:
    """What the config's availability conditions on `topic` say about `payload` (None: no condition there)."""
    for item in config.get("availability", []):
        if item["topic"] == topic:
            value = render(item["value_template"], payload) if "value_template" in item else payload
            assert value in (option(item, "payload_available"), option(item, "payload_not_available")), value
            return "online" if value == option(item, "payload_available") else "offline"
    return None


def switch_states(config: Mapping[str, Any]) -> tuple[str, str]:
    """A switch's state_on and state_off (core:mqtt/switch.py: they default to payload_on and payload_off)."""
    return config.get("state_on", option(config, "payload_on")), config.get("state_off", option(config, "payload_off"))


def state_problems(component: str, config: Mapping[str, Any], state_topic: str, payload: str) -> list[str]:
    """Render the config's templates on a message of `state_topic` and check Home Assistant takes the results."""
    problems: list[str] = []
    available = availability_of(config, state_topic, payload)
    if config.get("state_topic") == state_topic:
        value = render(config["value_template"], payload) if "value_template" in config else payload
        if component == "sensor":
            device_class = config.get("device_class")
            if value == PAYLOAD_NONE and available != "offline":
                problems.append("renders None (unknown) while available")
            elif value == PAYLOAD_NONE:
                pass  # unavailable, and "None" leaves it unknown without a warning
            elif device_class == "timestamp" and not is_timestamp(value):
                problems.append(f"{value!r} is not an ISO 8601 time with a timezone")
            elif device_class not in NON_NUMERIC_DEVICE_CLASSES and (
                # core:mqtt/sensor.py _numeric_state_expected
                device_class is not None
                or {"state_class", "unit_of_measurement", "suggested_display_precision"} & set(config)
            ):
                if not is_number(value):
                    problems.append(f"{value!r} is not a number")
            elif not value or len(value) > MAX_STATE_LENGTH:
                problems.append(f"{value!r}: empty, or over {MAX_STATE_LENGTH} characters (refused with a warning)")
        elif component == "binary_sensor":
            if value not in (option(config, "payload_on"), option(config, "payload_off")):
                problems.append(f"{value!r}: 'No matching payload found' (neither payload_on nor payload_off)")
        elif component == "switch" and value not in switch_states(config):
            problems.append(f"{value!r} is neither state_on nor state_off")
    if config.get("json_attributes_topic") == state_topic:
        attributes = (
            render(config["json_attributes_template"], payload) if "json_attributes_template" in config else payload
        )
        if not isinstance(json.loads(attributes), dict):
            problems.append("json_attributes_template does not render a JSON object")
    return problems


# =====================================================================================================================
# States and events as the daemon serialises them (wire.py), to render the templates on
# =====================================================================================================================

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SERIES = {"one-piece": Series("one-piece", "One Piece", "One Piece (1999)")}
LONG_TITLE = "Tensei Shitara " * 20  # 300 characters: more than a state may have


def active(series_key: str = "one-piece", progress: Progress | None = None) -> ActiveDownload:
    """One running download of S01E02."""
    item = Download("d1", series_key, 1, 2, Priority.NORMAL, 0, DownloadStatus.DOWNLOADING, NOW, Language.DE_SUB)
    return ActiveDownload(item, progress)


def state_json(
    *,
    running: tuple[ActiveDownload, ...] = (),
    series: Mapping[str, Series] = SERIES,
    scanned: bool = True,
    problems: tuple[str, ...] = (),
    paused: bool = False,
    auto_download: bool = True,
) -> str:
    """`<base>/state` as the bridge publishes it (wire.mqtt_state_json)."""
    scan = ScanReport("s1", "schedule", ScanStatus.COMPLETE, NOW - timedelta(hours=1), NOW - timedelta(minutes=59))
    return json.dumps(
        wire.mqtt_state_json(
            counts={DownloadStatus.PENDING: 3, DownloadStatus.DOWNLOADING: len(running), DownloadStatus.FAILED: 1},
            active=running,
            running=True,
            paused=paused,
            series=series,
            missing=4,
            awaiting_language=0,
            auto_download=auto_download,
            last_scan=scan if scanned else None,
            next_scan=NOW + timedelta(hours=3) if scanned else None,
            health=HealthReport(HealthStatus.DEGRADED if problems else HealthStatus.HEALTHY, problems),
            version="1.2.3",
        )
    )


STATES = {
    "idle, never scanned": state_json(scanned=False),
    "downloading": state_json(
        running=(active(progress=Progress(12 * MB, 40 * MB, 2.5 * MB, 11.2)),), problems=("low disk space",)
    ),
    "downloading, no progress yet": state_json(running=(active(),)),
    "downloading a long title": state_json(
        running=(active("long", Progress(1, None, None, None)),), series={"long": Series("long", LONG_TITLE, "x")}
    ),
    "paused, auto download off": state_json(paused=True, auto_download=False),
}
# What each entity shows for two of them: the templates read the right fields, not only valid ones.
EXPECTED_VALUES: Mapping[str, Mapping[str, str]] = {
    "idle, never scanned": {
        "pending_downloads": "3",
        "active_downloads": "0",
        "failed_downloads": "1",
        "download_progress": "0",
        "download_speed": "0",
        "current_download": "idle",
        "missing_episodes": "4",
        "followed_series": "1",
        "last_rescan": PAYLOAD_NONE,
        "next_rescan": PAYLOAD_NONE,
        "downloading": "OFF",
        "problem": "OFF",
        "downloads_paused": "OFF",
        "auto_download": "ON",
    },
    "downloading": {
        "active_downloads": "1",
        "download_progress": "30.0",
        "download_speed": "2.5",
        "current_download": "One Piece S01E02",
        "last_rescan": (NOW - timedelta(minutes=59)).isoformat(),
        "next_rescan": (NOW + timedelta(hours=3)).isoformat(),
        "downloading": "ON",
        "problem": "ON",
    },
}


@dataclass(frozen=True)
class EventCase:
    """A bus event and what the `event` entity makes of it (None: nothing, HA ignores the empty render)."""

    data: EventData
    event_type: str | None
    attributes: Mapping[str, Any]


QUOTED = 'He said "no" </script> & left \\ ü'  # the template must keep this valid JSON
EVENT_CASES = [
    EventCase(
        DownloadComplete("d1", "one-piece", 1, 2, "/lib/One Piece/S01E02.mkv", 700 * MB),
        "downloaded",
        {"series": "one-piece", "season": 1, "episode": 2},
    ),
    EventCase(
        DownloadFailed("d1", "one-piece", 1, 2, "hoster_failed", QUOTED, will_retry=False),
        "failed",
        {"series": "one-piece", "season": 1, "episode": 2, "error": QUOTED},
    ),
    EventCase(
        DownloadFailed("d1", "one-piece", 1, 2, "hoster_failed", "timeout", True, NOW + timedelta(minutes=2)),
        None,
        {},
    ),
    EventCase(
        EpisodesFound("one-piece", ((1, 3), (1, 4), (2, 1))), "new_episodes", {"series": "one-piece", "count": 3}
    ),
    EventCase(DownloadStarted("d1", "one-piece", 1, 2, Language.DE_SUB, "voe"), None, {}),
    EventCase(DownloadProgress("d1", 1, 2, 3.0, 4.0, 50.0), None, {}),
    EventCase(DownloadCancelled("d1", "one-piece", 1, 2), None, {}),
    EventCase(QueueStatus(QueueAction.ITEMS_ADDED, ("d1",)), None, {}),
    EventCase(QueueStarted(), None, {}),
    EventCase(QueueStopped(), None, {}),
    EventCase(QueuePaused(PauseReason.USER), None, {}),
    EventCase(QueueResumed(), None, {}),
    EventCase(ScanStarted("s1", "schedule", 3), None, {}),
    EventCase(ScanProgress("s1", 1, 3, 4, "one-piece"), None, {}),
    EventCase(ScanComplete("s1", ScanStatus.COMPLETE, 3, 9, 2, 4), None, {}),
    EventCase(ScanFailed("s1", "site_down", QUOTED), None, {}),
    EventCase(SeriesAdded("one-piece", "One Piece", SeriesSource.API), None, {}),
    EventCase(SeriesRemoved("one-piece"), None, {}),
    EventCase(SeriesUpdated("one-piece", ("languages",)), None, {}),
    EventCase(HealthChanged(HealthStatus.DEGRADED, ("low disk space",)), None, {}),
    EventCase(ServerShutdown(), None, {}),
]


def event_payload(data: EventData) -> str:
    """`<base>/event` as the bridge publishes it (wire.event_json)."""
    return json.dumps(wire.event_json(Event(seq=7, timestamp=NOW, data=data)))


def event_problems(config: Mapping[str, Any], payload: str, expected: EventCase | None = None) -> list[str]:
    """core:mqtt/event.py message_received: an empty render is ignored; otherwise a JSON object whose `event_type`
    is one of `event_types` (else "Invalid event type" / "No valid JSON event payload", warnings)."""
    rendered = render(config["value_template"], payload)
    if not rendered:
        return [] if expected is None or expected.event_type is None else [f"{payload}: renders nothing"]
    try:
        attributes = json.loads(rendered)
    except ValueError:
        return [f"{rendered!r}: No valid JSON event payload"]
    if not isinstance(attributes, dict):
        return [f"{rendered!r}: No valid JSON event payload"]
    event_type = attributes.pop("event_type", None)
    problems = []
    if event_type not in config["event_types"]:
        problems.append(f"{rendered!r}: invalid event type {event_type!r}")
    if expected is not None and (event_type, attributes) != (expected.event_type, dict(expected.attributes)):
        problems.append(f"{rendered!r} is not {expected.event_type!r} with {dict(expected.attributes)}")
    return problems


def built(key: str, device: str = "dashboard") -> dict[str, Any]:
    """The config discovery.py builds for one entity."""
    return discovery.config_payload(ENTITIES[key], DEVICES[device], BASE)


def keys_of(component: str) -> list[str]:
    """The keys of the entities of one platform."""
    return [key for key, entity in ENTITIES.items() if entity.component == component]


# =====================================================================================================================
# The checks themselves catch what Home Assistant refuses (so the tests below can fail)
# =====================================================================================================================

BROKEN: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
    # (case, entity key, how the config is broken, a problem that must be reported)
    ("abbreviated key", "pending_downloads", lambda c: c.update(stat_t=c.pop("state_topic")), "'stat_t'"),
    ("misspelled key", "pending_downloads", lambda c: c.update(unit_of_measure="x"), "unknown option"),
    ("object_id", "pending_downloads", lambda c: c.update(object_id="x"), "object_id"),
    ("default_entity_id", "pending_downloads", lambda c: c.update(default_entity_id="sensor.x"), "default_entity_id"),
    ("no unique_id", "pending_downloads", lambda c: c.pop("unique_id"), "unique_id"),
    ("no availability", "pending_downloads", lambda c: c.pop("availability_topic"), "no availability"),
    ("both availabilities", "last_rescan", lambda c: c.update(availability_topic="a/status"), "exclusive"),
    ("latest mode", "last_rescan", lambda c: c.update(availability_mode="latest"), "availability_mode all"),
    ("no device ids", "pending_downloads", lambda c: c["device"].pop("identifiers"), "identifiers"),
    ("device key", "pending_downloads", lambda c: c["device"].update(mf="x"), "unknown device key"),
    ("bad url", "pending_downloads", lambda c: c["device"].update(configuration_url="nas:8099"), "configuration_url"),
    ("no origin", "pending_downloads", lambda c: c.pop("origin"), "origin"),
    ("origin key", "pending_downloads", lambda c: c["origin"].update(url="https://x.y"), "unknown origin key"),
    ("config category", "pending_downloads", lambda c: c.update(entity_category="config"), "entity_category"),
    ("config category", "problem", lambda c: c.update(entity_category="config"), "entity_category"),
    ("unknown class", "downloading", lambda c: c.update(device_class="download"), "device class"),
    ("button class", "rescan", lambda c: c.update(device_class="problem"), "device class"),
    ("event class", "episode", lambda c: c.update(device_class="button_press"), "device class"),
    ("state class", "pending_downloads", lambda c: c.update(state_class="gauge"), "state_class"),
    ("data rate unit", "download_speed", lambda c: c.update(unit_of_measurement="MBps"), "unit"),
    ("no unit", "download_speed", lambda c: c.pop("unit_of_measurement"), "unit"),
    ("rate total", "download_speed", lambda c: c.update(state_class="total"), "impossible"),
    ("timestamp class", "last_rescan", lambda c: c.update(state_class="measurement"), "impossible"),
    ("icon", "rescan", lambda c: c.update(icon="refresh"), "icon"),
    ("retained command", "downloads_paused", lambda c: c.update(retain=True), "retained"),
    ("wildcard command", "rescan", lambda c: c.update(command_topic="aniworld/request/+"), "wildcard"),
    ("no event types", "episode", lambda c: c.update(event_types=[]), "event_types"),
    ("template", "pending_downloads", lambda c: c.update(value_template="{{ value_json.queue.pending "), "compile"),
    ("name prefix", "pending_downloads", lambda c: c.update(name="AniWorld Daemon pending"), "device name"),
]


@pytest.mark.parametrize(("key", "breaks", "problem"), [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN])
def test_the_checks_report_a_config_home_assistant_refuses(
    key: str, breaks: Callable[[dict[str, Any]], None], problem: str
) -> None:
    config = built(key)
    assert config_problems(ENTITIES[key].component, config) == []
    breaks(config)
    found = config_problems(ENTITIES[key].component, config)
    assert any(problem in text for text in found), found


def test_the_checks_report_bad_topics_and_values() -> None:
    assert config_problems("light", {}) != []
    assert topic_problems(f"{PREFIX}/sensor/aniworld_0123456789AB/x/config", "sensor", "x") != []
    assert topic_problems(f"{PREFIX}/sensor/aniworld_0123456789ab/a.b/config", "sensor", "a.b") != []
    assert topic_problems(f"{PREFIX}/sensor/aniworld_0123456789ab/x/config", "switch", "x") != []
    speed, stamp, binary = built("download_speed"), built("last_rescan"), built("downloading")
    assert state_problems("sensor", {**speed, "value_template": "fast"}, f"{BASE}/state", "{}") != []
    naive = {**stamp, "value_template": "2026-05-01T12:00:00"}  # no timezone
    assert state_problems("sensor", naive, f"{BASE}/state", STATES["downloading"]) != []
    assert state_problems("binary_sensor", {**binary, "value_template": "on"}, f"{BASE}/state", "{}") != []
    with pytest.raises(AssertionError, match="Template variable warning"):
        render("{{ value_json.pending }}", "{}")  # printed: HA logs a warning
    with pytest.raises(jinja2.UndefinedError):
        render("{{ value_json.queue.pending }}", "{}")  # an attribute of an undefined value: HA logs an error
    wrong = EventCase(QueueStarted(), "downloaded", {})
    assert event_problems(built("episode"), event_payload(QueueStarted()), wrong) != []


# =====================================================================================================================
# The configs discovery.py builds
# =====================================================================================================================


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("key", ENTITIES)
def test_every_config_is_one_home_assistant_takes(key: str, device: str) -> None:
    entity = ENTITIES[key]
    config = built(key, device)
    assert json.loads(json.dumps(config)) == config  # what goes on the wire
    assert config_problems(entity.component, config) == []
    topic = discovery.config_topic(PREFIX, INSTALL_ID, entity)
    assert topic_problems(topic, entity.component, key) == []
    assert config["qos"] == 1
    link = DEVICES[device].configuration_url
    assert config["device"].get("configuration_url") == (None if device == "bad-url" else link)


def test_ids_are_unique_and_entity_ids_come_from_the_names() -> None:
    configs = [(entity, built(entity.key)) for entity in ENTITIES.values()]
    unique_ids = [config["unique_id"] for _, config in configs]
    assert len(set(unique_ids)) == len(unique_ids)
    assert all(re.fullmatch(rf"aniworld_{INSTALL_ID}_[a-z0-9_]+", unique_id) for unique_id in unique_ids)
    topics = [discovery.config_topic(PREFIX, INSTALL_ID, entity) for entity, _ in configs]
    assert len(set(topics)) == len(topics)
    # With neither object_id nor default_entity_id, HA names the entity `<platform>.<slug of device + entity name>`.
    entity_ids = [
        f"{entity.component}.{re.sub(r'[^a-z0-9]+', '_', (discovery.DEVICE_NAME + ' ' + config['name']).lower())}"
        for entity, config in configs
    ]
    assert len(set(entity_ids)) == len(entity_ids)
    assert "sensor.aniworld_daemon_pending_downloads" in entity_ids  # DESIGN section 12's example
    assert {entity.component for entity, _ in configs} == set(PLATFORM_OPTIONS)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("key", ENTITIES)
def test_templates_render_values_home_assistant_takes(key: str, state: str) -> None:
    entity, config = ENTITIES[key], built(key)
    payload = STATES[state]
    assert state_problems(entity.component, config, f"{BASE}/state", payload) == []
    if (expected := EXPECTED_VALUES.get(state, {}).get(key)) is not None:
        assert render(config["value_template"], payload) == expected


@pytest.mark.parametrize("key", [key for key, entity in ENTITIES.items() if entity.needs is not None])
def test_a_time_not_known_yet_leaves_its_sensor_unavailable(key: str) -> None:
    config = built(key)
    assert config["device_class"] == "timestamp"
    assert availability_of(config, f"{BASE}/state", STATES["idle, never scanned"]) == "offline"
    assert availability_of(config, f"{BASE}/state", STATES["downloading"]) == "online"
    # The daemon's will still counts: an availability condition on its status topic without a template.
    assert availability_of(config, f"{BASE}/status", "offline") == "offline"


def test_the_problem_sensor_carries_the_health_problems_as_attributes() -> None:
    config = built("problem")
    attributes = render(config["json_attributes_template"], STATES["downloading"])
    assert json.loads(attributes) == {"problems": ["low disk space"]}
    assert json.loads(render(config["json_attributes_template"], STATES["idle, never scanned"])) == {"problems": []}


def test_the_current_download_is_short_enough_for_a_state() -> None:
    value = render(built("current_download")["value_template"], STATES["downloading a long title"])
    assert value.startswith(LONG_TITLE[:100])
    assert len(value) <= MAX_STATE_LENGTH


@pytest.mark.parametrize(
    "case",
    EVENT_CASES,
    ids=[
        case.data.TYPE.value + ("_retry" if isinstance(case.data, DownloadFailed) and case.data.will_retry else "")
        for case in EVENT_CASES
    ],
)
def test_the_event_entity_fires_for_downloads_failures_and_new_episodes(case: EventCase) -> None:
    config = built("episode")
    assert config["event_types"] == list(discovery.EVENT_TYPES) == ["downloaded", "failed", "new_episodes"]
    payload = event_payload(case.data)
    assert event_problems(config, payload, case) == []
    if case.event_type is None:
        assert render(config["value_template"], payload) == ""


def test_every_event_type_has_a_case() -> None:
    assert {case.data.TYPE for case in EVENT_CASES} == set(EventType)


# =====================================================================================================================
# Commands: what Home Assistant sends is what the bridge takes
# =====================================================================================================================


@pytest.mark.parametrize("key", keys_of("button"))
def test_buttons_press_a_request_topic_of_the_bridge(key: str) -> None:
    config = built(key)
    command = config["command_topic"].removeprefix(f"{BASE}/request/")
    assert config["command_topic"] == f"{BASE}/request/{command}"
    assert command in bridge.REQUESTS
    # HA sends payload_press (default PRESS); the bridge reads it as "no arguments".
    assert bridge._request_payload(option(config, "payload_press").encode()) == {}


# (switch, its `set/` topic, the bridge's meaning of payload_on and payload_off, the state field it follows)
SWITCHES = [
    ("downloads_paused", "queue", "queue.pause", "queue.resume", ("queue", "paused")),
    ("auto_download", "auto_download", True, False, ("auto_download",)),
]


@pytest.mark.parametrize(("key", "setting", "on", "off", "field"), SWITCHES, ids=[case[0] for case in SWITCHES])
def test_switches_send_words_the_bridge_takes_and_follow_the_state(
    key: str, setting: str, on: object, off: object, field: tuple[str, ...]
) -> None:
    config = built(key)
    assert config["command_topic"] == f"{BASE}/set/{setting}"
    meanings = bridge.QUEUE_WORDS if setting == "queue" else bridge.SWITCH_WORDS
    # The bridge takes the words case-insensitively.
    assert meanings[option(config, "payload_on").strip().lower()] == on
    assert meanings[option(config, "payload_off").strip().lower()] == off
    for value, shown in zip((True, False), switch_states(config), strict=True):
        state = json.loads(STATES["downloading"])
        target = state
        for name in field[:-1]:
            target = target[name]
        target[field[-1]] = value
        assert render(config["value_template"], json.dumps(state)) == shown
    assert set(keys_of("switch")) == {case[0] for case in SWITCHES}


# =====================================================================================================================
# A real daemon and a real broker
# =====================================================================================================================


def text(message: aiomqtt.Message) -> str:
    """A message's payload as text."""
    assert isinstance(message.payload, bytes | bytearray), message.payload
    return bytes(message.payload).decode()


async def collect(
    port: int,
    topics: list[str],
    done: Callable[[dict[str, aiomqtt.Message]], bool],
    *,
    settle: float = 0.0,
    within: float = 15.0,
) -> dict[str, aiomqtt.Message]:
    """Subscribe (qos 2, so a message keeps the qos it was published with) and collect the latest message per
    topic until `done` says enough (bounded), then for `settle` seconds more."""
    got: dict[str, aiomqtt.Message] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"test-{secrets.token_hex(4)}") as client:
        for topic in topics:
            await client.subscribe(topic, qos=2)

        async def read(until_done: bool) -> None:
            async for message in client.messages:
                got[message.topic.value] = message
                if until_done and done(got):
                    return

        try:
            async with asyncio.timeout(within):
                await read(until_done=True)
        except TimeoutError:
            pytest.fail(f"timed out after {within} s on {topics}; got {sorted(got)}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settle):
                await read(until_done=False)
    return got


@dataclass(frozen=True)
class Published:
    """What a started daemon published: its base topic, discovery prefix, configs (by entity key) and state."""

    app: Application
    base: str
    prefix: str
    configs: dict[str, aiomqtt.Message]
    state: aiomqtt.Message


async def start_daemon(start_app: StartApp, broker: Broker, extra: str = "") -> Published:
    """Start an Application on the broker with topics of its own; wait for `online`, then read what it retained."""
    base, prefix = f"aw{secrets.token_hex(3)}", f"ha{secrets.token_hex(3)}"
    app = await start_app(
        f"mqtt:\n  host: 127.0.0.1\n  port: {broker.port}\n  base_topic: {base}\n  discovery_prefix: {prefix}\n{extra}"
    )
    # `online` comes last, after the configs and the states (DESIGN section 12).
    await collect(broker.port, [f"{base}/status"], lambda got: text(got[f"{base}/status"]) == "online")
    assert app.mqtt is not None
    topics = {
        discovery.config_topic(prefix, app.mqtt.install_id, entity): entity for entity in discovery.entities(base)
    }
    got = await collect(
        broker.port,
        [f"{prefix}/#", f"{base}/state"],
        lambda got: set(topics) <= set(got) and f"{base}/state" in got,
        settle=0.3,  # anything else retained under the prefix has arrived by then: there must be nothing else
    )
    state = got.pop(f"{base}/state")
    assert set(got) == set(topics), sorted(set(got) ^ set(topics))
    return Published(app, base, prefix, {topics[topic].key: message for topic, message in got.items()}, state)


async def test_a_real_daemon_retains_configs_and_a_state_home_assistant_takes(
    start_app: StartApp, broker: Broker
) -> None:
    daemon = await start_daemon(start_app, broker)
    assert daemon.app.mqtt is not None
    problems: list[str] = []
    assert (daemon.state.qos, daemon.state.retain) == (1, True)
    state = text(daemon.state)
    unique_ids = []
    entities = {entity.key: entity for entity in discovery.entities(daemon.base)}
    for key, message in daemon.configs.items():
        entity = entities[key]
        config = json.loads(text(message))
        unique_ids.append(config.get("unique_id"))
        found = topic_problems(message.topic.value, entity.component, key, prefix=daemon.prefix)
        if (message.qos, message.retain) != (1, True):
            found.append(f"published with qos {message.qos}, retain {message.retain}")
        found += config_problems(entity.component, config, base=daemon.base)
        found += state_problems(entity.component, config, f"{daemon.base}/state", state)
        problems += [f"{message.topic.value}: {problem}" for problem in found]
        device = Device(
            daemon.app.mqtt.install_id, config["device"]["sw_version"], config["device"].get("configuration_url")
        )
        assert config == discovery.config_payload(entity, device, daemon.base)
    assert problems == []
    assert len(set(unique_ids)) == len(unique_ids) == len(ENTITIES)


async def next_message(
    client: aiomqtt.Client, wanted: Callable[[aiomqtt.Message], bool], seen: list[aiomqtt.Message], within: float = 10
) -> aiomqtt.Message:
    """The next message `wanted` takes; every message read on the way is kept in `seen`."""
    try:
        async with asyncio.timeout(within):
            async for message in client.messages:
                seen.append(message)
                if wanted(message):
                    return message
    except TimeoutError:
        pass
    pytest.fail(f"nothing wanted within {within} s; seen {[(m.topic.value, text(m)[:80]) for m in seen[-5:]]}")


def on_topic(topic: str) -> Callable[[aiomqtt.Message], bool]:
    """Wants a message on `topic`."""
    return lambda message: message.topic.value == topic


def showing(topic: str, config: Mapping[str, Any], shown: str) -> Callable[[aiomqtt.Message], bool]:
    """Wants a message on `topic` whose rendered value is `shown`."""
    return lambda message: message.topic.value == topic and render(config["value_template"], text(message)) == shown


async def test_home_assistant_buttons_and_switches_drive_a_real_daemon(start_app: StartApp, broker: Broker) -> None:
    daemon = await start_daemon(start_app, broker, "schedule:\n  run_on_start: false\n")
    base = daemon.base
    configs = {key: json.loads(text(message)) for key, message in daemon.configs.items()}
    seen: list[aiomqtt.Message] = []
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=f"ha-{secrets.token_hex(4)}") as client:
        for topic in (f"{base}/response/+", f"{base}/state", f"{base}/event"):
            await client.subscribe(topic, qos=1)
        current = text(await next_message(client, on_topic(f"{base}/state"), seen))
        for key in keys_of("button"):
            config = configs[key]
            # What HA's MqttButton publishes: payload_press on the command topic, with its qos and retain.
            await client.publish(
                config["command_topic"],
                option(config, "payload_press"),
                qos=option(config, "qos"),
                retain=config.get("retain", False),
            )
            response = await next_message(
                client, on_topic(config["command_topic"].replace("/request/", "/response/")), seen
            )
            assert json.loads(text(response))["status"] == "ok", text(response)
        for key in keys_of("switch"):
            config = configs[key]
            on, off = switch_states(config)
            # Turn it to the other side first, so the state must change for the wait to end.
            steps = [("payload_off", off), ("payload_on", on)]
            if render(config["value_template"], current) != on:
                steps.reverse()
            for payload, shown in steps:
                await client.publish(config["command_topic"], option(config, payload), qos=option(config, "qos"))
                current = text(await next_message(client, showing(f"{base}/state", config, shown), seen))
                assert state_problems("switch", config, f"{base}/state", current) == []
    # Every event the daemon sent meanwhile (scan, queue paused/resumed, ...) is unretained and renders nothing or
    # an event HA takes (core:mqtt/event.py ignores replayed retained messages: never retain events).
    events = [message for message in seen if message.topic.value == f"{base}/event"]
    assert events, "pressing rescan and pausing the queue send events"
    for message in events:
        assert not message.retain
        assert event_problems(configs["episode"], text(message)) == []
