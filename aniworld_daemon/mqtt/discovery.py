"""Home Assistant MQTT discovery: the entity table and the config payload of each entity (DESIGN section 12).

Per-entity config topics `<prefix>/<component>/aniworld_<install id>/<entity>/config` work on every Home Assistant
version (device-based discovery needs a late-2024 core). No `object_id` and no `default_entity_id`: the entity ids
come from the device name and the entity names (`sensor.aniworld_daemon_pending_downloads`) on every core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

DEVICE_NAME = "AniWorld Daemon"
SUPPORT_URL = "https://github.com/aniworld-daemon/aniworld-daemon"
MAX_STATE_LENGTH = 255  # Home Assistant's limit for a state (homeassistant/const.py MAX_LENGTH_STATE_STATE)
# The `event` entity's types, and the bus events they come from (others render nothing and are ignored).
EVENT_TYPES = ("downloaded", "failed", "new_episodes")
EVENT_TEMPLATE = (
    "{% if value_json.type == 'download_complete' %}"
    '{"event_type": "downloaded", "series": {{ value_json.data.series_key | tojson }}, '
    '"season": {{ value_json.data.season }}, "episode": {{ value_json.data.episode }}}'
    "{% elif value_json.type == 'download_failed' and not value_json.data.will_retry %}"
    '{"event_type": "failed", "series": {{ value_json.data.series_key | tojson }}, '
    '"season": {{ value_json.data.season }}, "episode": {{ value_json.data.episode }}, '
    '"error": {{ value_json.data.error_message | tojson }}}'
    "{% elif value_json.type == 'episodes_found' %}"
    '{"event_type": "new_episodes", "series": {{ value_json.data.series_key | tojson }}, '
    '"count": {{ value_json.data.episodes | length }}}'
    "{% endif %}"
)


@dataclass(frozen=True, slots=True)
class Entity:
    """One Home Assistant entity: its platform, its id (part of the topic and unique_id) and its own options."""

    component: str  # sensor, binary_sensor, button, switch, event
    key: str  # [a-z0-9_]: the last part of the config topic and of the unique_id
    name: str  # the entity's name; with the device's it makes the entity id
    options: dict[str, Any] = field(default_factory=dict)
    # Only available while the state has a value here (a timestamp before the first scan): never an invalid value.
    needs: str | None = None


def entities(base: str) -> tuple[Entity, ...]:
    """Every entity the daemon announces, with its topics under `base` (the `mqtt.base_topic`)."""
    state = f"{base}/state"
    request = f"{base}/request"

    def sensor(key: str, name: str, template: str, **options: Any) -> Entity:
        return Entity("sensor", key, name, {"state_topic": state, "value_template": template, **options})

    return (
        sensor(
            "pending_downloads",
            "Pending downloads",
            "{{ value_json.queue.pending }}",
            state_class="measurement",
            icon="mdi:download-multiple",
        ),
        sensor(
            "active_downloads",
            "Active downloads",
            "{{ value_json.queue.active }}",
            state_class="measurement",
            icon="mdi:download",
        ),
        sensor(
            "failed_downloads",
            "Failed downloads",
            "{{ value_json.queue.failed }}",
            state_class="measurement",
            icon="mdi:download-off",
        ),
        sensor(
            "download_progress",
            "Download progress",
            "{{ value_json.current.percent if value_json.current and value_json.current.percent is not none else 0 }}",
            unit_of_measurement="%",
            state_class="measurement",
            icon="mdi:progress-download",
        ),
        sensor(
            "download_speed",
            "Download speed",
            "{{ value_json.current.speed_mbps if value_json.current and value_json.current.speed_mbps is not none"
            " else 0 }}",
            device_class="data_rate",
            unit_of_measurement="MB/s",
            state_class="measurement",
        ),
        sensor(
            "current_download",
            "Current download",
            # A state has at most 255 characters (HA's MAX_LENGTH_STATE_STATE; a longer one is refused with a
            # warning): a very long title is cut, with an ellipsis, instead.
            f"{{{{ value_json.current.label | truncate({MAX_STATE_LENGTH}, true, '…', 0) if value_json.current"
            " else 'idle' }}",
            icon="mdi:television-play",
        ),
        sensor(
            "missing_episodes",
            "Missing episodes",
            "{{ value_json.library.missing }}",
            state_class="measurement",
            icon="mdi:television-off",
        ),
        sensor(
            "followed_series",
            "Followed series",
            "{{ value_json.library.series }}",
            state_class="measurement",
            icon="mdi:television-classic",
        ),
        Entity(
            "sensor",
            "last_rescan",
            "Last rescan",
            {"state_topic": state, "value_template": "{{ value_json.last_scan }}", "device_class": "timestamp"},
            needs="last_scan",
        ),
        Entity(
            "sensor",
            "next_rescan",
            "Next rescan",
            {"state_topic": state, "value_template": "{{ value_json.next_scan }}", "device_class": "timestamp"},
            needs="next_scan",
        ),
        Entity(
            "binary_sensor",
            "downloading",
            "Downloading",
            {
                "state_topic": state,
                "value_template": "{{ 'ON' if value_json.queue.active > 0 else 'OFF' }}",
                "device_class": "running",
            },
        ),
        Entity(
            "binary_sensor",
            "problem",
            "Problem",
            {
                "state_topic": state,
                "value_template": "{{ 'ON' if value_json.health.problems else 'OFF' }}",
                "device_class": "problem",
                "entity_category": "diagnostic",
                "json_attributes_topic": state,
                "json_attributes_template": "{{ {'problems': value_json.health.problems} | tojson }}",
            },
        ),
        Entity("button", "rescan", "Rescan", {"command_topic": f"{request}/rescan", "icon": "mdi:refresh"}),
        Entity("button", "retry_failed", "Retry failed", {"command_topic": f"{request}/retry", "icon": "mdi:restart"}),
        Entity(
            "button",
            "clear_completed",
            "Clear completed",
            {"command_topic": f"{request}/clear_completed", "icon": "mdi:playlist-check"},
        ),
        Entity(
            "switch",
            "downloads_paused",
            "Downloads paused",
            {
                "command_topic": f"{base}/set/queue",
                "payload_on": "pause",
                "payload_off": "resume",
                "state_topic": state,
                "value_template": "{{ 'ON' if value_json.queue.paused else 'OFF' }}",
                "state_on": "ON",
                "state_off": "OFF",
                "icon": "mdi:pause-circle",
            },
        ),
        Entity(
            "switch",
            "auto_download",
            "Auto download",
            {
                "command_topic": f"{base}/set/auto_download",
                "payload_on": "ON",
                "payload_off": "OFF",
                "state_topic": state,
                "value_template": "{{ 'ON' if value_json.auto_download else 'OFF' }}",
                "state_on": "ON",
                "state_off": "OFF",
                "icon": "mdi:download-circle",
            },
        ),
        Entity(
            "event",
            "episode",
            "Episode",
            {"state_topic": f"{base}/event", "event_types": list(EVENT_TYPES), "value_template": EVENT_TEMPLATE},
        ),
    )


@dataclass(frozen=True, slots=True)
class Device:
    """What every config says about the daemon: its install id, version and where its dashboard is."""

    install_id: str  # 12 hex characters, generated once and kept in the database
    version: str
    configuration_url: str | None


def config_topic(prefix: str, install_id: str, entity: Entity) -> str:
    """`<prefix>/<component>/aniworld_<install id>/<entity>/config`."""
    return f"{prefix}/{entity.component}/aniworld_{install_id}/{entity.key}/config"


def _link_accepted(url: str | None) -> bool:
    """Whether Home Assistant takes `url` as the device's configuration_url: http(s):// or homeassistant:// with a host.

    Any other value (say `nas:8099` in ANIWORLD_CONFIGURATION_URL) makes it refuse every config of the device
    (helpers/config_validation.py configuration_url), so the link is left out instead.
    """
    if not url:
        return False
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https", "homeassistant") and bool(parsed.netloc)


def config_payload(entity: Entity, device: Device, base: str) -> dict[str, Any]:
    """The discovery config of one entity."""
    node = f"aniworld_{device.install_id}"
    status = f"{base}/status"
    payload: dict[str, Any] = {
        "name": entity.name,
        "unique_id": f"{node}_{entity.key}",
        **entity.options,
        "device": {
            "identifiers": [node],
            "name": DEVICE_NAME,
            "manufacturer": "aniworld-daemon",
            "model": "aniworld-daemon",
            "sw_version": device.version,
            **({"configuration_url": device.configuration_url} if _link_accepted(device.configuration_url) else {}),
        },
        "origin": {"name": "aniworld-daemon", "sw_version": device.version, "support_url": SUPPORT_URL},
        "qos": 1,
    }
    if entity.needs is None:
        payload["availability_topic"] = status
    else:
        # Available only while the daemon is online AND the value is there: a null timestamp leaves it unknown.
        payload["availability"] = [
            {"topic": status},
            {
                "topic": f"{base}/state",
                "value_template": f"{{{{ 'online' if value_json.{entity.needs} else 'offline' }}}}",
            },
        ]
        payload["availability_mode"] = "all"
    return payload
