"""Logging set-up: readable lines on stderr, or journald priority lines when systemd runs the daemon."""

from __future__ import annotations

import logging
import os
import sys

_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    """`<priority>logger: message` lines so journald keeps the level; journald adds the time itself."""

    def format(self, record: logging.LogRecord) -> str:
        """Prefix the syslog priority of the record's level to every line (a traceback's lines too)."""
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        # journald makes an entry of each line: without its own prefix a traceback line would be logged at info.
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def logging_to_journal() -> bool:
    """True when stderr is systemd's journal stream (JOURNAL_STREAM names our stderr's device and inode)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        stat = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return bool(expected) and expected == f"{stat.st_dev}:{stat.st_ino}"


def configure_logging(level: str, *, verbose: bool = False) -> None:
    """Readable lines on stderr, or journald-style priority lines when run by systemd."""
    handler = logging.StreamHandler(sys.stderr)
    if logging_to_journal():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    apply_log_level(level, verbose=verbose)


def apply_log_level(level: str, *, verbose: bool = False) -> None:
    """Set the root level (debug when -v was given) and quiet chatty libraries below debug."""
    effective = logging.DEBUG if verbose else logging.getLevelName(level.upper())
    logging.getLogger().setLevel(effective)
    quiet = logging.DEBUG if effective <= logging.DEBUG else logging.WARNING
    for name in ("aiohttp.access", "aiosqlite", "apscheduler"):
        logging.getLogger(name).setLevel(quiet)
