"""The one error tree: every error the daemon raises on purpose, each with a stable code."""

from __future__ import annotations

from typing import Any, ClassVar


class AniworldError(Exception):
    """Base of every error the daemon raises on purpose; `code` is stable and part of the API."""

    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class ConfigError(AniworldError):
    """The configuration is invalid; `errors` holds one rendered line per problem."""

    code = "config_invalid"

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors), details={"errors": list(errors)})
        self.errors = list(errors)


class ProviderError(AniworldError):
    """The anime site could not be read."""

    code = "provider_error"


class NotFound(ProviderError):
    """The site answered 404 for a page."""

    code = "provider_not_found"


class Blocked(ProviderError):
    """The site refused us (403 or a captcha page); the host is in cooldown until `until`."""

    code = "provider_blocked"


class Unreachable(ProviderError):
    """The site did not answer at all (connection refused, timeouts, DNS), even after retries."""

    code = "provider_unreachable"


class ParseError(ProviderError):
    """A page did not have the structure we expect."""

    code = "provider_parse_error"


class HosterError(AniworldError):
    """A hoster's embed page could not be resolved to a media URL."""

    code = "hoster_error"


class DownloadError(AniworldError):
    """A download failed."""

    code = "download_error"


class TransferCancelled(DownloadError):
    """A download was cancelled (by the user, a queue stop or shutdown); the caller keeps or removes its files."""

    code = "download_cancelled"


class ImportRefused(DownloadError):
    """A finished download is not what its source promised (container, length or duration): it is not imported."""

    code = "import_refused"


class NoWantedLanguage(DownloadError):
    """The episode page offers no hoster in any wanted language: the episode waits (`awaiting_language`)."""

    code = "no_wanted_language"


class StorageError(AniworldError):
    """The database or the library file system failed."""

    code = "storage_error"


class NotFoundError(AniworldError):
    """A requested object (series, queue item, scan) does not exist."""

    code = "not_found"


class ConflictError(AniworldError):
    """The request conflicts with the current state."""

    code = "conflict"


class ValidationError(AniworldError):
    """A request body or payload is invalid; `details` names the field."""

    code = "validation_error"


class Unauthorized(AniworldError):
    """A request without valid credentials (API key, session token, or a wrong password)."""

    code = "unauthorized"


class RateLimited(AniworldError):
    """Too many failed attempts from one client; `details.retry_after` says how many seconds to wait."""

    code = "rate_limited"


class Forbidden(AniworldError):
    """Credentials are fine, but this request is not allowed (a WebSocket upgrade from another site's page)."""

    code = "forbidden"


class DaemonUnreachable(AniworldError):
    """The running daemon did not answer a command that asks it (`status`): not running, another address, not us."""

    code = "daemon_unreachable"
