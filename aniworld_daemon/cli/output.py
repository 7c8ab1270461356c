"""What every CLI command group shares for its output: JSON printing, cut columns, progress only on a terminal."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO


def print_json(data: Any, out: TextIO = sys.stdout) -> None:
    """Write `data` as indented UTF-8 JSON."""
    out.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def cut(text: str, width: int) -> str:
    """`text` cut to `width` characters, with an ellipsis when it was longer."""
    return text if len(text) <= width else text[: width - 1] + "…"


def place(season: int, episode: int) -> str:
    """`S01E02`."""
    return f"S{season:02d}E{episode:02d}"


def default_progress() -> TextIO | None:
    """Stderr when it is a terminal (progress lines would litter a log or a pipe)."""
    return sys.stderr if sys.stderr.isatty() else None
