"""Who may use the API: the API key, password login sessions, the add-on's ingress proxy, and the login rate limit.

Every route but the public ones needs `X-Api-Key: <key>` or `Authorization: Bearer <key or session token>`. The key is
`api.key` from the config, else one generated on the first start and kept in `<data_dir>/api_key` (mode 0600). With
`api.password`, `POST /api/auth/login` trades the password for a session token that expires; only its SHA-256 is
stored (in the database, so a restart keeps sessions). Under the Home Assistant add-on (the Supervisor sets
SUPERVISOR_TOKEN), requests from the ingress proxy are trusted: Home Assistant has authenticated its user already.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from aniworld_daemon.config import ApiConfig
from aniworld_daemon.downloads.tempfiles import write_file_atomic
from aniworld_daemon.errors import Forbidden, RateLimited, StorageError, Unauthorized
from aniworld_daemon.store.database import Database

LOGGER = logging.getLogger(__name__)

KEY_FILE = "api_key"
KEY_BYTES = 32  # token_urlsafe(32): 43 characters, 256 bits
SESSION_LIFETIME = timedelta(days=30)
LOGIN_ATTEMPTS = 5  # failed logins per client address within LOGIN_WINDOW, then 429
LOGIN_WINDOW = 60.0  # seconds
INGRESS_PROXY = "172.30.32.2"  # the Supervisor's ingress proxy (fixed address on the hassio network)
WEBSOCKET_ROUTE = "/ws/connect"
# The dashboard's page and files are public too: the page asks for a login or the API key itself.
PUBLIC_ROUTES = frozenset(
    {"/health", "/api/auth/login", "/api/auth/status", "/api/openapi.yaml", "/", "/static/{path}"}
)
PUBLIC_PREFIX = "/static/"  # every path under it is public (the route `/static/{path}` above)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_hash(token: str) -> str:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def read_key(data_dir: Path) -> str | None:
    """The API key generated in `data_dir`, or None when there is none (never made here). Raises StorageError."""
    path = data_dir / KEY_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StorageError(f"cannot read the API key {path}: {err.strerror or err}") from err
    return text if len(text) >= 16 else None


def load_or_create_key(data_dir: Path) -> str:
    """The generated API key in `data_dir`, created (mode 0600) on the first call. Raises StorageError."""
    path = data_dir / KEY_FILE
    text = read_key(data_dir)
    if text is not None:
        return text
    key = secrets.token_urlsafe(KEY_BYTES)
    # Created 0600 from the start: the umask must not leave a moment in which others could read it.
    old = os.umask(0o077)
    try:
        write_file_atomic(path, (key + "\n").encode())
    finally:
        os.umask(old)
    LOGGER.info("Generated an API key in %s (show it with: aniworld-daemon token)", path)
    return key


@dataclass(frozen=True, slots=True)
class Session:
    """A login session handed to a client."""

    token: str
    expires_at: datetime


class LoginLimiter:
    """Failed login attempts per client address in a sliding window."""

    def __init__(self, attempts: int = LOGIN_ATTEMPTS, window: float = LOGIN_WINDOW) -> None:
        self._attempts = attempts
        self._window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def check(self, client: str) -> None:
        """RateLimited (with the seconds to wait) when `client` used up its attempts."""
        failures = self._recent(client)
        if len(failures) >= self._attempts:
            retry_after = max(1, int(failures[0] + self._window - time.monotonic()) + 1)
            raise RateLimited(
                f"too many failed logins; try again in {retry_after} s", details={"retry_after": retry_after}
            )

    def failed(self, client: str) -> None:
        """Count one failed attempt of `client`."""
        self._recent(client).append(time.monotonic())

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures[client]
        horizon = time.monotonic() - self._window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            # Forget idle clients, so the table cannot grow with every address that ever knocked.
            self._failures.pop(client, None)
            failures = self._failures[client]
        return failures


class Auth:
    """Checks the credentials of requests; owns the API key, the sessions and the login rate limit."""

    def __init__(
        self, config: ApiConfig, data_dir: Path, db: Database, environ: Mapping[str, str] = os.environ
    ) -> None:
        self._config = config
        self._data_dir = data_dir
        self._db = db
        self._generated: str | None = None  # the key in data_dir, used while the config names none
        # Only the add-on runs under the Supervisor, which sets SUPERVISOR_TOKEN; elsewhere 172.30.32.2 is nobody.
        self._trust_ingress = bool(environ.get("SUPERVISOR_TOKEN"))
        self.limiter = LoginLimiter()

    async def start(self) -> None:
        """Load (or create) the generated API key and forget expired sessions."""
        self._generated = await asyncio.to_thread(load_or_create_key, self._data_dir)
        await self._db.delete_expired_sessions(datetime.now(UTC))

    @property
    def key(self) -> str:
        """The API key in force: `api.key`, else the generated one (after start)."""
        key = self._config.key or self._generated
        if key is None:
            raise StorageError("the API key is not loaded yet")
        return key

    @property
    def password_enabled(self) -> bool:
        """Whether `api.password` is set (login sessions are possible)."""
        return self._config.password is not None

    async def authenticate(self, request: web.Request) -> str:
        """How `request` is authorised ("ingress", "key", "session"); Unauthorized when it is not."""
        if self._trust_ingress and request.remote == INGRESS_PROXY:
            return "ingress"
        if "api_key" in request.query and request.path != WEBSOCKET_ROUTE:
            # Query strings end up in logs and browser histories: REST takes credentials in headers only. A browser's
            # WebSocket cannot send headers, so its upgrade may carry the key in the URL.
            raise Unauthorized("send the API key in the X-Api-Key header, not in the URL")
        offered = request.headers.get("X-Api-Key") or (
            request.query.get("api_key") if request.path == WEBSOCKET_ROUTE else None
        )
        if offered is None:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                offered = value.strip()
        if not offered:
            raise Unauthorized("this needs credentials: an X-Api-Key header or Authorization: Bearer <key or token>")
        if hmac.compare_digest(offered.encode(), self.key.encode()):
            return "key"
        if await self._db.session_expiry(token_hash(offered), datetime.now(UTC)) is not None:
            return "session"
        raise Unauthorized("the API key or session token is not valid")

    def _check_origin(self, request: web.Request) -> None:
        """Refuse a cross-origin WebSocket upgrade (another site's page using the user's browser) unless allowed."""
        origin = request.headers.get("Origin")
        if origin is None:
            return  # not a browser: a script or a test client, which authenticated itself
        parts = urlsplit(origin)
        if parts.netloc and parts.netloc == request.host:
            return  # the dashboard itself
        if origin.rstrip("/") in self._config.allowed_origins:
            return
        raise Forbidden(
            f"WebSocket upgrades from {origin} are refused; list it in api.allowed_origins to allow it",
            details={"origin": origin},
        )

    async def login(self, password: str, client: str) -> Session:
        """A new session for the right password; Unauthorized or RateLimited otherwise."""
        self.limiter.check(client)
        expected = self._config.password
        if expected is None:
            raise Unauthorized("password login is off: set api.password, or use the API key")
        if not hmac.compare_digest(password.encode(), expected.encode()):
            self.limiter.failed(client)
            LOGGER.warning("Failed login from %s", client)
            raise Unauthorized("wrong password")
        token = secrets.token_urlsafe(KEY_BYTES)
        now = datetime.now(UTC)
        session = Session(token, now + SESSION_LIFETIME)
        await self._db.add_session(token_hash(token), now, session.expires_at, client)
        LOGGER.info("Login from %s", client)
        return session

    async def logout(self, request: web.Request) -> bool:
        """Revoke the session the request carries; whether there was one."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return False
        return await self._db.delete_session(token_hash(value.strip()))

    def middleware(self) -> Middleware:
        """The aiohttp middleware that refuses requests without credentials (the public routes excepted)."""

        @web.middleware
        async def require_credentials(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path not in PUBLIC_ROUTES and not request.path.startswith(PUBLIC_PREFIX):
                method = await self.authenticate(request)
                if request.path == WEBSOCKET_ROUTE and method != "ingress":
                    self._check_origin(request)
            return await handler(request)

        return require_credentials


def client_address(request: web.Request) -> str:
    """The peer's address, for the rate limit and logs (the proxy's own under ingress)."""
    with contextlib.suppress(Exception):
        if request.remote:
            return request.remote
    return "unknown"
