"""Hoster resolvers: from a hoster's embed page to a direct media URL, ordered by the user's preference."""

from __future__ import annotations

import re
from collections.abc import Sequence

from aniworld_daemon.provider.hosters.base import MediaKind, MediaSource, Resolver
from aniworld_daemon.provider.hosters.doodstream import DoodstreamResolver
from aniworld_daemon.provider.hosters.filemoon import FilemoonResolver
from aniworld_daemon.provider.hosters.luluvdo import LuluvdoResolver
from aniworld_daemon.provider.hosters.speedfiles import SpeedFilesResolver
from aniworld_daemon.provider.hosters.streamtape import StreamtapeResolver
from aniworld_daemon.provider.hosters.vidmoly import VidmolyResolver
from aniworld_daemon.provider.hosters.vidoza import VidozaResolver
from aniworld_daemon.provider.hosters.voe import VoeResolver

__all__ = ["RESOLVERS", "HosterRegistry", "MediaKind", "MediaSource", "Resolver", "hoster_key"]

# One instance each: resolvers are stateless, every request goes through the HttpClient passed in.
RESOLVERS: tuple[Resolver, ...] = (
    VoeResolver(),
    VidozaResolver(),
    VidmolyResolver(),
    DoodstreamResolver(),
    FilemoonResolver(),
    SpeedFilesResolver(),
    LuluvdoResolver(),
    StreamtapeResolver(),
)
_NOT_KEY_RE = re.compile(r"[^a-z0-9]")


def hoster_key(display_name: str) -> str:
    """The config key of a hoster name as the site shows it: "VOE" -> "voe", "SpeedFiles" -> "speedfiles"."""
    return _NOT_KEY_RE.sub("", display_name.lower())


class HosterRegistry:
    """The resolvers the user wants, in the order of the config's `provider.hosters`."""

    def __init__(self, preference: Sequence[str]) -> None:
        known = {resolver.name: resolver for resolver in RESOLVERS}
        chosen: dict[str, Resolver] = {}
        for name in preference:
            resolver = known.get(hoster_key(name))
            if resolver is not None and resolver.name not in chosen:
                chosen[resolver.name] = resolver
        self._ordered = tuple(chosen.values())
        self._by_key = chosen

    def get(self, name: str) -> Resolver | None:
        """The preferred resolver for a display or key name ("VOE", "voe", "SpeedFiles"), else None."""
        return self._by_key.get(hoster_key(name))

    def ordered(self) -> tuple[Resolver, ...]:
        """The preferred resolvers, most preferred first."""
        return self._ordered

    def rank(self, name: str) -> int | None:
        """The position of `name` in the preference (0 = most preferred), None when not preferred or unknown."""
        resolver = self.get(name)
        return None if resolver is None else self._ordered.index(resolver)
