"""File and folder names: safe path components, the naming template (render and read back), episode numbers in names.

Pure functions of strings: no file system access.
"""

from __future__ import annotations

import itertools
import re
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

import voluptuous as vol

from aniworld_daemon.models import Language
from aniworld_daemon.validators import naming_template

MAX_COMPONENT_BYTES = 255


# Windows refuses these as a name, also with any extension ("CON.mkv"); ¹²³ count as digits there.
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{digit}" for port in ("COM", "LPT") for digit in "0123456789¹²³"}
)
# Characters Windows or SMB refuse in names, mapped to readable stand-ins (':' is handled before, see _replace_chars).
_FORBIDDEN = str.maketrans({"/": "-", "\\": "-", "|": "-", "*": "-", '"': "'", "<": "", ">": "", "?": ""})
_COLON_RE = re.compile(r"\s*:\s+")
_SPACES_RE = re.compile(r"\s+")
_DIGITS_RE = re.compile(r"[0-9]+")

# Markers used while rendering: control characters, which _replace_chars removes from every value and literal.
_MARK = "\x00"  # the end of the prefix parse() compares (after the later of the first {season} and {episode})
_EMPTY = "\x01"  # a field that rendered empty
_FILLED = "\x02"  # the start of a field that rendered something
_SLOTS = {"season": "\x04", "episode": "\x05"}  # number placeholders for building parse()'s pattern
# A bracket group holding an empty field and no filled one vanishes: "({year})" and "[imdbid-{imdb_id}]".
_GROUP_BODY = r"[^()\[\]{}\x02]*\x01[^()\[\]{}\x02]*"
_EMPTY_GROUP_RE = re.compile(rf"\({_GROUP_BODY}\)|\[{_GROUP_BODY}\]|\{{{_GROUP_BODY}\}}")
_DOUBLE_SPACE_RE = re.compile(r" {2,}")
_DANGLING_DASH_RE = re.compile(r" -(?: -)+ ")  # "Title - - S01E01" left by an empty field in the middle
_SEPARATORS = " -_."
# Text fields in the order they are shortened when a component is too long; numbers and the extension never are.
_CUT_ORDER = ("episode_title", "title", "key", "imdb_id", "language")
# An episode title cut to fewer letters and digits than this is left out instead: such a stub ("T", "Das Schw") is a
# word fragment nobody recognises the episode by, while S01E01 already says which episode it is. Eight letters keep
# a short word or two ("Das Schwert"), which is enough to tell episodes apart at a glance.
MIN_CUT_TITLE_CHARS = 8
_CONVERSIONS: dict[str, Callable[[object], str]] = {"s": str, "r": repr, "a": ascii}
_MAX_NUMBER = 99_999  # larger digit runs are not episode numbers (and would make {season:c} overflow)

# Generic episode names (re.ASCII: IGNORECASE alone lets the long s and the Kelvin sign match). A letter or digit before
# the pattern or a digit right after it means it is part of something else ("xS01E01", "S01E010").
_FLAGS = re.IGNORECASE | re.ASCII
_SEASON_EPISODE_RE = re.compile(r"(?<![a-z0-9])s([0-9]{1,4})[ ._-]?e([0-9]{1,4})(?![0-9])", _FLAGS)
_CROSS_RE = re.compile(r"(?<![a-z0-9])([0-9]{1,2})x([0-9]{1,4})(?![0-9])", _FLAGS)  # 1x01; not 1920x1080
_EPISODE_RE = re.compile(r"(?<![a-z0-9])(?:episode|folge|ep\.?|e)[ ._-]*([0-9]{1,4})(?![0-9])", _FLAGS)
_MOVIE_RE = re.compile(r"(?<![a-z0-9])(?:film|movie)[ ._-]*([0-9]{1,3})(?![0-9])", _FLAGS)
_LEADING_RE = re.compile(r"([0-9]{1,4})(?=\s*[-._]|\s|$)", _FLAGS)
_SEASON_FOLDER_RE = re.compile(r"(?:season|staffel|s)[ ._-]*([0-9]{1,4})", _FLAGS)
_SPECIAL_FOLDERS = frozenset({"specials", "filme", "movies"})


def _replace_chars(text: str) -> str:
    """Text without control characters or characters Windows/SMB refuse, whitespace runs as one space, NFC."""
    kept = (" " if unicodedata.category(char) == "Cc" else char for char in text)
    # Lone surrogates (undecodable bytes of os.fsdecode) cannot be written as UTF-8: drop them.
    text = "".join(char for char in kept if unicodedata.category(char) != "Cs")
    text = _COLON_RE.sub(" - ", text).replace(":", "-").translate(_FORBIDDEN)
    return unicodedata.normalize("NFC", _SPACES_RE.sub(" ", text))


def _cut_bytes(text: str, limit: int) -> str:
    """The longest prefix of `text` whose UTF-8 encoding fits in `limit` bytes."""
    data = text.encode()
    return text if len(data) <= limit else data[:limit].decode(errors="ignore")


def _meaningful_cut(text: str) -> bool:
    """Whether a cut episode title keeps enough to mean something: at least MIN_CUT_TITLE_CHARS letters or digits."""
    return sum(1 for char in text if char.isalnum()) >= MIN_CUT_TITLE_CHARS


def _reserved_stem_end(text: str) -> int | None:
    """Where '_' must go to make `text` a name Windows accepts, or None when it is not a reserved name."""
    stem = text.partition(".")[0].rstrip(" ")
    return len(stem) if stem.upper() in _RESERVED else None


def sanitize_component(text: str) -> str:
    """One path component safe on Linux, Windows and SMB.

    NFC; no control characters; ': ' -> ' - '; ':', '/', backslash, '|', '*' -> '-'; '"' -> "'"; '<', '>', '?' dropped;
    no leading or trailing dots/spaces (so never '.' or '..'); Windows reserved names get '_' after the name
    ("CON" -> "CON_", "CON.mkv" -> "CON_.mkv"); at most 255 bytes UTF-8, cut at a character boundary; '_' when empty.
    """
    text = _replace_chars(text).strip(" .")
    end = _reserved_stem_end(text)
    if end is not None:
        text = f"{text[:end]}_{text[end:]}"
    return _cut_bytes(text, MAX_COMPONENT_BYTES).rstrip(" .") or "_"


def _clean_field(text: str) -> str:
    """A field value for the template: sanitised, or '' when nothing usable is left (so it counts as missing)."""
    return sanitize_component(text) if _replace_chars(text).strip(" .") else ""


def folder_season(name: str) -> int | None:
    """Season of a folder name, case-insensitive.

    'Season 1', 'Season 01', 'Staffel 2', 'S02' -> n; 'Season 00', 'Staffel 0', 'Specials', 'Filme', 'Movies' -> 0;
    anything else (also 'Extras') -> None.
    """
    name = name.strip()
    if name.lower() in _SPECIAL_FOLDERS:
        return 0
    match = _SEASON_FOLDER_RE.fullmatch(name)
    return int(match.group(1)) if match else None


def parse_episode_name(name: str, season_hint: int | None) -> tuple[int, int] | None:
    """(season, episode) of a file name by generic patterns, or None.

    S01E01, S01E001, s1e1, S01.E01, 1x01 anywhere; with a season hint (from the folder) also 'E01', 'Episode 01',
    'Folge 01', 'Ep 01' or a leading number '01 - Title', and with hint 0 'Film 1'/'Movie 1'. Of several S/E matches
    the first whose season is the hint wins, else the first one.
    """
    found = [
        (match.start(), int(match.group(1)), int(match.group(2)))
        for pattern in (_SEASON_EPISODE_RE, _CROSS_RE)
        for match in pattern.finditer(name)
    ]
    if found:
        found.sort()
        preferred = [item for item in found if item[1] == season_hint] or found
        return preferred[0][1], preferred[0][2]
    if season_hint is None:
        return None
    movie = _MOVIE_RE.search(name) if season_hint == 0 else None
    match = movie or _EPISODE_RE.search(name) or _LEADING_RE.match(name)
    return (season_hint, int(match.group(1))) if match else None


@dataclass(frozen=True, slots=True)
class SeriesNaming:
    """The series' fields the naming template can use."""

    title: str
    year: int | None
    key: str
    imdb_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Field:
    """A replacement field of the template, like {season:02}."""

    name: str
    spec: str
    conversion: str | None


_Values = dict[str, str | int]


class NamingTemplate:
    """The configured `library.naming`: renders series folders and episode paths, and reads them back."""

    def __init__(self, template: str) -> None:
        try:
            naming_template(template)
        except vol.Invalid as err:
            raise ValueError(f"invalid naming template {template!r}: {err}") from err
        self.template = template
        # Path components, each a sequence of literal text and fields; '/' only separates outside fields.
        components: list[list[str | _Field]] = [[]]
        for literal, name, spec, conversion in string.Formatter().parse(template):
            head, *rest = literal.split("/")
            components[-1].append(_replace_chars(head))
            for text in rest:
                components.append([_replace_chars(text)])
            if name is not None:
                components[-1].append(_Field(name, spec or "", conversion))
        self._components = tuple(tuple(piece for piece in part if piece != "") for part in components)
        self._fields = tuple(frozenset(p.name for p in part if isinstance(p, _Field)) for part in self._components)
        # parse() compares names up to the later of the first {season} and the first {episode} below the series
        # folder: with both numbers known, that prefix is fixed by the series, the numbers and the language alone.
        firsts: dict[str, tuple[int, int]] = {}
        before_mark: set[str] = set()
        for index, part in enumerate(self._components[1:], start=1):
            for position, piece in enumerate(part):
                if isinstance(piece, _Field) and len(firsts) < 2:
                    before_mark.add(piece.name)
                    if piece.name in _SLOTS:
                        firsts.setdefault(piece.name, (index, position))
        self._mark = max(firsts.values())
        self._season_first = firsts["season"] < firsts["episode"]
        self._prefix_languages: tuple[Language | None, ...] = (
            (None, *Language) if "language" in before_mark else (None,)
        )
        # An episode title before the numbers makes the prefix unknowable: such names are parsed generically only.
        self._verifiable = "episode_title" not in before_mark

    def series_folder(self, naming: SeriesNaming) -> str:
        """The series folder (the template's first path component) rendered and sanitised: one component, no '/'."""
        return self._component(0, self._values(naming, 0, 0, "", None), "")

    def episode_path(  # noqa: PLR0917 - the positional signature is the one the callers were written against
        self,
        naming: SeriesNaming,
        season: int,
        episode: int,
        episode_title: str,
        language: str | None,
        extension: str,
    ) -> str:
        """The whole relative path (posix '/') below the library root, starting with series_folder().

        The extension (like '.mp4') is appended to the last component; every component is at most 255 bytes.
        """
        if season < 0 or episode < 0:
            raise ValueError(f"season and episode must not be negative, got {season}, {episode}")
        if extension and not re.fullmatch(r"\.[A-Za-z0-9]{1,16}", extension):
            raise ValueError(f"expected an extension like '.mp4', got {extension!r}")
        values = self._values(naming, season, episode, episode_title, language)
        return self._path(values, extension, start=0)

    def parse(self, relative: str, naming: SeriesNaming | None) -> tuple[int, int] | None:
        """(season, episode) of a path relative to the SERIES folder (e.g. 'Season 01/X - S01E02 - t.mkv'), or None.

        Names we rendered round-trip exactly even when titles contain 'S02E03'-like text: a candidate is accepted when
        the path starts with what the template renders for it. Other names are parsed by parse_episode_name().
        """
        parts = [part for part in relative.split("/") if part not in ("", ".")]
        if not parts:
            return None
        if naming is not None and self._verifiable:
            found = self._parse_rendered("/".join(parts), naming)
            if found is not None:
                return found
        hint = next((season for season in map(folder_season, reversed(parts[:-1])) if season is not None), None)
        return parse_episode_name(parts[-1], hint)

    def _parse_rendered(self, path: str, naming: SeriesNaming) -> tuple[int, int] | None:
        """(season, episode) when `path` starts with this template's rendering for them, else None."""
        extension = PurePosixPath(path).suffix
        # Candidates: the numbers where the template puts them, found by a pattern of the uncut rendering; then, for
        # names whose title had to be cut, every two neighbouring digit runs.
        runs = [int(match.group()) for match in _DIGITS_RE.finditer(path)]
        pairs = list(itertools.pairwise(runs))
        if not self._season_first:
            pairs = [(second, first) for first, second in pairs]
        matched: list[tuple[int, int]] = []
        for language in self._prefix_languages:
            match = self._pattern(self._values(naming, 0, 0, "", language), extension).match(path)
            if match:
                matched.append((int(match.group("season")), int(match.group("episode"))))
        for season, episode in dict.fromkeys([*matched, *pairs]):
            if season > _MAX_NUMBER or episode > _MAX_NUMBER:
                continue
            for language in self._prefix_languages:
                prefix = self._prefix(self._values(naming, season, episode, "", language), extension)
                # The prefix ends in the last number: a digit after it would make that number another one.
                if path.startswith(prefix) and _DIGITS_RE.match(path, len(prefix)) is None:
                    return season, episode
        return None

    def _prefix(self, values: _Values, extension: str, *, fit: bool = True) -> str:
        """The rendered path below the series folder up to the mark (the later of the first season/episode)."""
        rendered = self._path(values, extension, start=1, mark=True, fit=fit)
        return rendered.partition(_MARK)[0]

    def _pattern(self, values: _Values, extension: str) -> re.Pattern[str]:
        """A pattern of the prefix with the numbers open, rendered without cutting anything."""
        regex: list[str] = []
        captured: set[str] = set()
        for part in re.split("([\x04\x05])", self._prefix(dict(values, **_SLOTS), extension, fit=False)):
            name = next((field for field, slot in _SLOTS.items() if slot == part), None)
            if name is None:
                regex.append(re.escape(part))
            else:
                # The first occurrence is captured; later ones (e.g. the season again in the file name) any digits.
                regex.append("[0-9]+" if name in captured else f"(?P<{name}>[0-9]+)")
                captured.add(name)
        return re.compile("".join(regex))

    def _values(
        self, naming: SeriesNaming, season: int, episode: int, episode_title: str, language: str | None
    ) -> _Values:
        """Field values: text sanitised ('' when missing), numbers as they are."""
        return {
            "title": _clean_field(naming.title),
            "year": "" if naming.year is None else naming.year,
            "key": _clean_field(naming.key),
            "imdb_id": _clean_field(naming.imdb_id or ""),
            "season": season,
            "episode": episode,
            "episode_title": _clean_field(episode_title),
            "language": _clean_field(str(language or "")),
        }

    def _path(self, values: _Values, extension: str, *, start: int, mark: bool = False, fit: bool = True) -> str:
        """Components `start`.. joined by '/', the extension on the last one."""
        last = len(self._components) - 1
        return "/".join(
            self._component(index, values, extension if index == last else "", mark=mark, fit=fit)
            for index in range(start, last + 1)
        )

    def _component(self, index: int, values: _Values, extension: str, *, mark: bool = False, fit: bool = True) -> str:
        """One rendered component of at most 255 bytes (with `fit`), text fields shortened as needed."""
        if fit:
            values = self._fit(index, values, extension)
        text = self._render(index, values, extension, mark=mark)
        plain = text.replace(_MARK, "")
        if fit and len(plain.encode()) > MAX_COMPONENT_BYTES:
            # Only literal text of the template is left to blame; cut the name, never the extension.
            stem = plain[: len(plain) - len(extension)]
            text = _cut_bytes(stem, MAX_COMPONENT_BYTES - len(extension.encode())).rstrip(_SEPARATORS) + extension
        return text

    def _fit(self, index: int, values: _Values, extension: str) -> _Values:
        """`values` with text fields shortened, in _CUT_ORDER and at character boundaries, until the component fits.

        A field is cut to nothing before the next one is touched, so a name whose title was shortened was rendered
        with an empty episode title: parse() rebuilds its prefix exactly without knowing the episode title. An
        episode title cut to fewer than MIN_CUT_TITLE_CHARS letters or digits is left out altogether.
        """

        def fits(candidate: _Values) -> bool:
            rendered = self._render(index, candidate, extension, mark=False)
            return len(rendered.encode()) <= MAX_COMPONENT_BYTES

        for name in _CUT_ORDER:
            if fits(values):
                return values
            full = values[name]
            if name not in self._fields[index] or not isinstance(full, str) or not full:
                continue
            if not fits(dict(values, **{name: ""})):
                values = dict(values, **{name: ""})
                continue
            low, high = 0, len(full)  # fits with full[:low], not with full[:high]
            while high - low > 1:
                middle = (low + high) // 2
                if fits(dict(values, **{name: full[:middle]})):
                    low = middle
                else:
                    high = middle
            kept = full[:low]
            if name == "episode_title" and not _meaningful_cut(kept):
                kept = ""  # the stub goes: the name is rendered as if the episode had no title
            return dict(values, **{name: kept})
        return values

    def _render(self, index: int, values: _Values, extension: str, *, mark: bool) -> str:
        """Component `index` with `values` filled in, tidied up, the extension appended (no length limit)."""
        texts: list[str] = []
        for position, piece in enumerate(self._components[index]):
            if isinstance(piece, str):
                texts.append(piece)
                continue
            value = values[piece.name]
            if value == "":
                texts.append(_EMPTY)
            elif isinstance(value, str) and value in _SLOTS.values():
                texts.append(_FILLED + value)  # number slots go in raw: format specs are for numbers
            else:
                converted = _CONVERSIONS[piece.conversion](value) if piece.conversion else value
                texts.append(_FILLED + _replace_chars(format(converted, piece.spec)))
            if mark and (index, position) == self._mark:
                texts.append(_MARK)
        text = _EMPTY_GROUP_RE.sub("", "".join(texts)).replace(_EMPTY, "").replace(_FILLED, "")
        text = _DANGLING_DASH_RE.sub(" - ", _DOUBLE_SPACE_RE.sub(" ", text))
        # The mark follows a number's digits, so none of the tidying above can match across it.
        text = (text.strip(_SEPARATORS) or "_") + extension
        plain = text.replace(_MARK, "")
        end = _reserved_stem_end(plain)
        if end is not None:  # '_' goes after the stem of the plain text; the mark keeps its place around it
            at = text.find(_MARK)
            text = f"{plain[:end]}_{plain[end:]}"
            if at >= 0:
                at += 1 if at > end else 0
                text = text[:at] + _MARK + text[at:]
        return text
