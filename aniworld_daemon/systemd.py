"""sd_notify without dependencies: READY, STATUS, WATCHDOG and STOPPING to systemd's notify socket."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

LOGGER = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends state lines to `$NOTIFY_SOCKET`; every call is a no-op when not started by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # A leading '@' names a socket in the abstract namespace.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._watchdog_usec = self._parse_watchdog(env)
        self._socket: socket.socket | None = None

    @staticmethod
    def _parse_watchdog(env: Mapping[str, str]) -> int | None:
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        pid = env.get("WATCHDOG_PID")
        if usec <= 0 or (pid and pid != str(os.getpid())):
            return None  # the watchdog is meant for another process
        return usec

    @property
    def enabled(self) -> bool:
        """True when a notify socket was given."""
        return bool(self._address)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half the configured period), or None without a watchdog."""
        return None if self._watchdog_usec is None else self._watchdog_usec / 2_000_000

    def notify(self, *lines: str) -> None:
        """Send one datagram with the given `KEY=value` lines; errors are logged, never raised."""
        if not self._address:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)  # never stall the event loop on a full receiver
            self._socket.sendto("\n".join(lines).encode(), self._address)
        except OSError as err:
            LOGGER.warning("Could not notify systemd (%s): %s", self._address.lstrip("\0"), err)

    def ready(self, status: str) -> None:
        """Tell systemd start-up is complete."""
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        """Update the free-text status shown by `systemctl status`."""
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        """Ping the watchdog."""
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        """Tell systemd we are stopping."""
        self.notify("STOPPING=1", "STATUS=Stopping")

    def close(self) -> None:
        """Close the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
