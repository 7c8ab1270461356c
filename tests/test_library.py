"""The library on disk: naming template round trips, safe names, scanning a messy library, folder matching, NFO."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aniworld_daemon.config import load_config
from aniworld_daemon.downloads.tempfiles import TEMP_DIR_NAME, write_file_atomic
from aniworld_daemon.errors import StorageError, ValidationError
from aniworld_daemon.library import (
    MIN_EPISODE_BYTES,
    VIDEO_EXTENSIONS,
    EpisodeFile,
    FolderScan,
    ShowMetadata,
    is_partial,
    library_path,
    list_folders,
    match_folder,
    needs_poster,
    scan_folder,
    write_poster,
    write_show_nfo,
)
from aniworld_daemon.models import Language
from aniworld_daemon.naming import (
    MIN_CUT_TITLE_CHARS,
    NamingTemplate,
    SeriesNaming,
    folder_season,
    parse_episode_name,
    sanitize_component,
)
from tests.fakesite.catalog import load_catalog

DEFAULT = "{title} ({year})/Season {season:02}/{title} - S{season:02}E{episode:02} - {episode_title}"
TOOL = "{title} [imdbid-{imdb_id}]/Season {season:02}/{title} S{season:02}E{episode:03}"
SHORT = "{key}/{season}x{episode:02} {episode_title}"
FRIEREN = SeriesNaming("Frieren: Beyond Journey's End", 2023, "frieren", "tt22248376")
BIG = MIN_EPISODE_BYTES + 1
WINDOWS_FORBIDDEN = set('<>:"\\|?*')
FAKE_CATALOG = load_catalog()


def test_default_template_is_the_configs(write_config: Callable[..., Path]) -> None:
    assert load_config(write_config("library:\n  path: ./lib\n")).library.naming == DEFAULT


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------

RENDER_CASES = [
    pytest.param(
        DEFAULT,
        FRIEREN,
        (1, 2, "Der Held", None, ".mkv"),
        "Frieren - Beyond Journey's End (2023)/Season 01/Frieren - Beyond Journey's End - S01E02 - Der Held.mkv",
        id="default",
    ),
    pytest.param(
        DEFAULT,
        SeriesNaming("Frieren", None, "frieren"),
        (0, 1, "", None, ".mp4"),
        "Frieren/Season 00/Frieren - S00E01.mp4",
        id="no-year-no-episode-title",
    ),
    pytest.param(
        DEFAULT,
        SeriesNaming("Fate/Zero: Part 2", 2011, "fate-zero"),
        (2, 25, 'Say "Hi" / Bye?', None, ".mkv"),
        "Fate-Zero - Part 2 (2011)/Season 02/Fate-Zero - Part 2 - S02E25 - Say 'Hi' - Bye.mkv",
        id="forbidden-characters",
    ),
    pytest.param(
        DEFAULT,
        SeriesNaming("...", 2020, "dots"),
        (1, 1, "..", None, ".mkv"),
        "(2020)/Season 01/S01E01.mkv",
        id="title-of-dots",
    ),
    pytest.param(
        TOOL,
        FRIEREN,
        (1, 2, "ignored", None, ".mkv"),
        "Frieren - Beyond Journey's End [imdbid-tt22248376]/Season 01/Frieren - Beyond Journey's End S01E002.mkv",
        id="tool-with-imdb",
    ),
    pytest.param(
        TOOL,
        SeriesNaming("Frieren", 2023, "frieren"),
        (12, 1100, "", None, ".mkv"),
        "Frieren/Season 12/Frieren S12E1100.mkv",
        id="tool-without-imdb-drops-the-tag",
    ),
    pytest.param(SHORT, FRIEREN, (3, 7, "Titel", "de-dub", ".webm"), "frieren/3x07 Titel.webm", id="short"),
    pytest.param(
        "{title}/{title} - {language} - S{season}E{episode}",
        SeriesNaming("CON", None, "con"),
        (1, 2, "", None, ".mkv"),
        "CON_/CON_ - S1E2.mkv",
        id="empty-language-and-reserved-title",
    ),
    pytest.param(
        "{title}/{title} - {language} - S{season}E{episode}",
        SeriesNaming("Show", None, "show"),
        (1, 2, "", Language.EN_SUB, ".mkv"),
        "Show/Show - en-sub - S1E2.mkv",
        id="language",
    ),
]


@pytest.mark.parametrize(("template", "naming", "arguments", "expected"), RENDER_CASES)
def test_episode_path(
    template: str, naming: SeriesNaming, arguments: tuple[int, int, str, str | None, str], expected: str
) -> None:
    naming_template = NamingTemplate(template)
    path = naming_template.episode_path(naming, *arguments)
    assert path == expected
    assert path.split("/")[0] == naming_template.series_folder(naming)
    assert naming_template.parse(path.split("/", 1)[1], naming) == arguments[:2]


def test_long_episode_title_is_cut_first() -> None:
    path = NamingTemplate(DEFAULT).episode_path(FRIEREN, 1, 2, "Abenteuer " * 40, None, ".mkv")
    name = path.split("/")[-1]
    assert name.startswith("Frieren - Beyond Journey's End - S01E02 - Abenteuer Abenteuer")
    assert name.endswith(".mkv")
    assert 250 <= len(name.encode()) <= 255


def test_long_title_is_cut_after_the_episode_title_and_numbers_stay() -> None:
    naming = SeriesNaming("Ü" * 300, 2020, "long")
    path = NamingTemplate(DEFAULT).episode_path(naming, 1, 2, "Episode title", None, ".mkv")
    folder, season, name = path.split("/")
    assert folder == "Ü" * 124 + " (2020)"  # "Ü" is two bytes: 248 + 7 = 255
    assert season == "Season 01"
    assert name == "Ü" * 121 + " - S01E02.mkv"  # the episode title went first, completely
    assert all(len(part.encode()) <= 255 for part in (folder, name))


BLACKSMITH = FAKE_CATALOG.series["reincarnated-as-a-village-blacksmith"].title  # the fake site's longest title
# The file name is "<title> - S01E02 - <episode title>.mkv": a title of n characters leaves 239 - n for the episode.
CUT_CASES = [
    pytest.param(
        BLACKSMITH,
        "Töpfe, Pfannen und ein Held",
        f"{sanitize_component(BLACKSMITH)} - S01E02.mkv",  # its ': ' is ' - ' in names: 238 characters
        id="fake-site-title-left-one-letter",
    ),
    pytest.param("x" * 229, "Abenteuer im Wald", "x" * 229 + " - S01E02 - Abenteuer.mkv", id="cut-at-a-space"),
    pytest.param("x" * 231, "Abenteuer im Wald", "x" * 231 + " - S01E02 - Abenteue.mkv", id="eight-letters-stay"),
    pytest.param("x" * 232, "Abenteuer im Wald", "x" * 232 + " - S01E02.mkv", id="seven-letters-go"),
    # Letters and digits count, not bytes or punctuation: "Töpfe, Pfa" is 11 bytes and 8 letters.
    pytest.param("x" * 228, "Töpfe, Pfannen", "x" * 228 + " - S01E02 - Töpfe, Pfa.mkv", id="punctuation-eight"),
    pytest.param("x" * 229, "Töpfe, Pfannen", "x" * 229 + " - S01E02.mkv", id="punctuation-seven"),
]


@pytest.mark.parametrize(("title", "episode_title", "expected"), CUT_CASES)
def test_a_cut_episode_title_keeps_enough_letters_or_goes(title: str, episode_title: str, expected: str) -> None:
    naming = SeriesNaming(title, None, "k")
    template = NamingTemplate(DEFAULT)
    path = template.episode_path(naming, 1, 2, episode_title, None, ".mkv")
    name = path.split("/", 1)[1]
    assert name == f"Season 01/{expected}"
    assert len(expected.encode()) <= 255
    assert template.parse(name, naming) == (1, 2)


@pytest.mark.parametrize(
    "template",
    [
        "{title} S{season}E{episode}",  # no series folder
        "{title}/S{season}",  # no {episode}
        "{tilte}/{season}x{episode}",
        "",
    ],
)
def test_invalid_template_is_refused(template: str) -> None:
    with pytest.raises(ValueError, match="invalid naming template"):
        NamingTemplate(template)


def test_episode_path_refuses_bad_arguments() -> None:
    template = NamingTemplate(DEFAULT)
    with pytest.raises(ValueError, match="extension"):
        template.episode_path(FRIEREN, 1, 1, "", None, "/../x")
    with pytest.raises(ValueError, match="negative"):
        template.episode_path(FRIEREN, -1, 1, "", None, ".mkv")


# ---------------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------------

PARSE_NAME_CASES = [
    ("Show - S01E01 - Title.mkv", None, (1, 1)),
    ("Show S01E001.mkv", None, (1, 1)),
    ("show.s1e1.mkv", None, (1, 1)),
    ("Show.S01.E05.mkv", None, (1, 5)),
    ("Show_S01E02.mkv", None, (1, 2)),
    ("[Group]S03E04[1080p].mkv", None, (3, 4)),
    ("Show 2x07.mkv", None, (2, 7)),
    ("Show S01E010.mkv", None, (1, 10)),
    ("Show S01E0100.mkv", None, (1, 100)),
    ("Show S01E1100.mkv", 1, (1, 1100)),
    ("xS01E01.mkv", None, None),
    ("2S01E01.mkv", None, None),
    ("Video 1920x1080.mkv", None, None),
    ("Show S02E03 - S01E05.mkv", 1, (1, 5)),
    ("Show S02E03 - S01E05.mkv", None, (2, 3)),
    ("Show S02E03 - S01E05.mkv", 4, (2, 3)),
    ("Show 1x05 - S02E03.mkv", None, (1, 5)),  # the first by position, whichever pattern found it
    ("Episode 05.mkv", 2, (2, 5)),
    ("Episode 05.mkv", None, None),
    ("Folge 12 - Titel.mp4", 1, (1, 12)),
    ("Ep 3.mkv", 1, (1, 3)),
    ("Ep.03.mkv", 1, (1, 3)),
    ("E07.mkv", 3, (3, 7)),
    ("Title E07.mkv", 3, (3, 7)),
    ("TitleE07.mkv", 3, None),
    ("01 - Title.mkv", 1, (1, 1)),
    ("01.mkv", 2, (2, 1)),
    ("1080p Title.mkv", 1, None),
    ("Film 2.mkv", 0, (0, 2)),
    ("Movie 1 - Name.mkv", 0, (0, 1)),
    ("Film 2.mkv", 1, None),
    ("Title.mkv", 1, None),
    ("Show S\u0661E\u0662.mkv", None, None),  # non-ASCII digits are not episode numbers
]


@pytest.mark.parametrize(("name", "hint", "expected"), PARSE_NAME_CASES)
def test_parse_episode_name(name: str, hint: int | None, expected: tuple[int, int] | None) -> None:
    assert parse_episode_name(name, hint) == expected


FOLDER_SEASON_CASES = [
    ("Season 1", 1),
    ("Season 01", 1),
    ("season 12", 12),
    ("Season1", 1),
    ("Staffel 2", 2),
    ("S02", 2),
    ("s3", 3),
    ("Season 00", 0),
    ("Staffel 0", 0),
    ("Specials", 0),
    ("FILME", 0),
    ("Movies", 0),
    ("Extras", None),
    ("Season", None),
    ("Season 1 extra", None),
    ("Seasons 1", None),
    ("Show (2019)", None),
]


@pytest.mark.parametrize(("name", "expected"), FOLDER_SEASON_CASES)
def test_folder_season(name: str, expected: int | None) -> None:
    assert folder_season(name) == expected


PARSE_PATH_CASES = [
    # The title holds another episode's code: only the template knows which numbers are ours.
    pytest.param(DEFAULT, "S02E03", "Season 02/S02E03 - S02E07.mkv", (2, 7), id="ours-title-like-episode"),
    pytest.param(DEFAULT, None, "Season 02/S02E03 - S02E07.mkv", (2, 3), id="generic-takes-the-first"),
    pytest.param(SHORT, "x", "2x07 1x05.mkv", (2, 7), id="short-episode-title-like-episode"),
    pytest.param(SHORT, "x", "1x05.mkv", (1, 5), id="short-without-episode-title"),
    # Another tool's names in a folder of a followed series fall back to the generic patterns.
    pytest.param(DEFAULT, "Show", "Season 01/Show S01E001.mkv", (1, 1), id="other-tool"),
    pytest.param(DEFAULT, "Show", "Season 03/Episode 4.mkv", (3, 4), id="season-folder-hint"),
    pytest.param(DEFAULT, "Show", "Season 03/Extras/Episode 4.mkv", (3, 4), id="nearest-season-folder"),
    pytest.param(DEFAULT, "Show", "Season 01/Show - S01E02 - 3.mkv", (1, 2), id="digit-episode-title"),
    pytest.param(DEFAULT, "Show", "Season 01/Show - S01E023.mkv", (1, 23), id="longer-number-than-rendered"),
    pytest.param(DEFAULT, "Show", "Season 01/notes.mkv", None, id="unrecognised"),
    pytest.param(DEFAULT, "Show", "", None, id="empty"),
]


@pytest.mark.parametrize(("template", "title", "relative", "expected"), PARSE_PATH_CASES)
def test_parse_path(template: str, title: str | None, relative: str, expected: tuple[int, int] | None) -> None:
    naming = None if title is None else SeriesNaming(title, None, "x")
    assert NamingTemplate(template).parse(relative, naming) == expected


def test_parse_does_not_read_a_number_inside_a_longer_one() -> None:
    # The title is cut, so only neighbouring digit runs are candidates: "1 2" in the title would render a prefix
    # ending in "S01E02", which the name starts with, but there it goes on as "S01E023".
    naming = SeriesNaming("A 1 2 " + "x" * 300, None, "a")
    template = NamingTemplate(DEFAULT)
    ours = template.episode_path(naming, 1, 2, "", None, ".mkv").split("/", 1)[1]
    assert template.parse(ours, naming) == (1, 2)
    assert template.parse(ours.replace("S01E02", "S01E023"), naming) == (1, 23)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("x.mp4.part", True),
        ("x.mp4.ytdl", True),
        ("x.temp.mp4", True),
        ("x.f137.mp4.part-Frag3", True),
        ("X.PART", True),
        ("Show - S01E01 - Temperature.mkv", False),
        ("Show - S01E01 - Teil 1.part 2.mkv", False),
    ],
)
def test_is_partial(name: str, expected: bool) -> None:
    assert is_partial(name) is expected


# ---------------------------------------------------------------------------------------------------------------
# Safe names and paths
# ---------------------------------------------------------------------------------------------------------------

SANITIZE_CASES = [
    ("Re:Zero", "Re-Zero"),
    ("Frieren: Beyond", "Frieren - Beyond"),
    ("a/b\\c|d*e", "a-b-c-d-e"),
    ('Say "Hi"? <now>', "Say 'Hi' now"),
    ("..", "_"),
    (".", "_"),
    ("", "_"),
    ("   ", "_"),
    (" .hidden. ", "hidden"),
    ("CON", "CON_"),
    ("con.mkv", "con_.mkv"),
    ("NUL .txt", "NUL_ .txt"),
    ("LPT9.tar.gz", "LPT9_.tar.gz"),
    ("COM¹", "COM¹_"),
    ("CONSOLE", "CONSOLE"),
    ("a\x00b\nc\td", "a b c d"),
    ("e\u0301", "é"),
    ("bad\udcffbyte", "badbyte"),
    ("a" * 300, "a" * 255),
    ("あ" * 100, "あ" * 85),
    ("x" * 254 + "é", "x" * 254),
    ("x" * 254 + ". y", "x" * 254),
]


@pytest.mark.parametrize(("text", "expected"), SANITIZE_CASES)
def test_sanitize_component(text: str, expected: str) -> None:
    assert sanitize_component(text) == expected


def assert_safe_component(part: str) -> None:
    assert part not in ("", ".", "..")
    assert len(part.encode()) <= 255
    assert not WINDOWS_FORBIDDEN & set(part)
    assert "/" not in part
    assert not any(ord(char) < 32 for char in part)
    assert part == part.strip(" ")
    assert not part.endswith(".")
    assert part.partition(".")[0].rstrip(" ").upper() not in {"CON", "PRN", "AUX", "NUL", "COM1", "LPT1"}


@given(st.text())
@example("CON.")
@example("..\x00..")
@example(" : ")
def test_sanitize_component_is_safe_and_idempotent(text: str) -> None:
    result = sanitize_component(text)
    assert_safe_component(result)
    assert sanitize_component(result) == result


@pytest.mark.parametrize(
    "relative", ["", "/etc/passwd", "../x", "a/../../x", "a/..", "a\x00b", "Show/../../outside.mkv"]
)
def test_library_path_refuses(tmp_path: Path, relative: str) -> None:
    with pytest.raises(ValidationError) as caught:
        library_path(tmp_path, relative)
    assert caught.value.details["path"] == relative


@pytest.mark.parametrize("relative", ["Show/Season 01/x.mkv", "...", "a/./b", "Show"])
def test_library_path_accepts(tmp_path: Path, relative: str) -> None:
    assert library_path(tmp_path, relative) == tmp_path / relative


def test_library_path_refuses_a_symlink_out(tmp_path: Path) -> None:
    root = tmp_path / "library"
    (root / "Show").mkdir(parents=True)
    (root / "Show" / "escape").symlink_to(tmp_path)
    (root / "Inside").symlink_to(root / "Show")
    with pytest.raises(ValidationError, match="out of the library"):
        library_path(root, "Show/escape/x.mkv")
    assert library_path(root, "Inside/x.mkv") == root / "Inside" / "x.mkv"


# ---------------------------------------------------------------------------------------------------------------
# Round trip of any series through the templates
# ---------------------------------------------------------------------------------------------------------------

NASTY = st.sampled_from(["S02E03", "../", "/", "\x00", "..", "CON", "1x05", " - ", ":", "Season 01", "E07", "(2019)"])
TEXT = st.one_of(st.text(max_size=60), st.lists(NASTY | st.text(max_size=5), max_size=8).map("".join))
NAMINGS = st.builds(
    SeriesNaming,
    title=TEXT | st.text(min_size=200, max_size=500),
    year=st.none() | st.integers(1900, 2100),
    key=st.from_regex(r"[a-z0-9]{1,20}(-[a-z0-9]{1,10}){0,3}", fullmatch=True),
    imdb_id=st.none() | st.integers(1, 10**9).map(lambda number: f"tt{number:07}"),
)
ROUND_TRIP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def round_trip_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("round-trip")


@pytest.mark.parametrize("template", [DEFAULT, TOOL, SHORT])
@ROUND_TRIP
@given(
    naming=NAMINGS,
    season=st.integers(0, 99),
    episode=st.integers(0, 2000),
    episode_title=TEXT | st.text(min_size=200, max_size=500),
    language=st.none() | st.sampled_from(Language),
    extension=st.sampled_from(sorted(VIDEO_EXTENSIONS)),
)
@example(SeriesNaming("Show S02E03", 2019, "show"), 1, 5, "S02E03", None, ".mkv")
@example(SeriesNaming("../../etc", None, "etc"), 2, 7, "../passwd", None, ".mkv")
@example(SeriesNaming("a/b\\c", None, "a"), 0, 0, "/", None, ".mp4")
@example(SeriesNaming("x\x00y", None, "x", "tt1"), 3, 3, "\x00", Language.DE_DUB, ".mkv")
@example(SeriesNaming("T" * 500, 2000, "t"), 99, 2000, "E" * 500, None, ".webm")
@example(SeriesNaming("S01E01 " * 70, None, "s"), 1, 2, "S03E04 " * 70, None, ".mkv")
@example(SeriesNaming("Ü" * 500, None, "u"), 1, 2, "", None, ".mkv")
@example(SeriesNaming("CON", None, "con"), 1, 1, "NUL", None, ".mkv")
@example(SeriesNaming("LPT1.txt", None, "aux", "tt0"), 1, 1, "COM1", None, ".ts")
@example(SeriesNaming("...", None, "k"), 1, 1, "...", None, ".mkv")
@example(SeriesNaming("9", None, "k"), 1, 1, "2", None, ".mkv")
@example(SeriesNaming("x" * 232, None, "k"), 1, 2, "Abenteuer im Wald", None, ".mkv")  # 7 letters would fit
def test_rendered_paths_parse_back_and_stay_inside(
    round_trip_root: Path,
    template: str,
    naming: SeriesNaming,
    season: int,
    episode: int,
    episode_title: str,
    language: Language | None,
    extension: str,
) -> None:
    naming_template = NamingTemplate(template)
    path = naming_template.episode_path(naming, season, episode, episode_title, language, extension)
    parts = path.split("/")
    assert len(parts) == template.count("/") + 1
    assert parts[0] == naming_template.series_folder(naming)
    for part in parts:
        assert_safe_component(part)
    assert parts[-1].endswith(extension)
    assert naming_template.parse("/".join(parts[1:]), naming) == (season, episode)
    assert library_path(round_trip_root, path).resolve().is_relative_to(round_trip_root.resolve())
    # A cut episode title is absent or keeps at least the minimum of letters and digits. Without the title the
    # name is the one of an untitled episode; with it, that name plus the title's part (the title comes last).
    untitled = naming_template.episode_path(naming, season, episode, "", language, extension).split("/")[-1]
    if "{episode_title}" in template and parts[-1] != untitled:
        stem, untitled_stem = parts[-1].removesuffix(extension), untitled.removesuffix(extension)
        assert stem.startswith(untitled_stem)
        shown = stem[len(untitled_stem) :]
        if letters(shown) < letters(sanitize_component(episode_title)):  # the title was cut
            assert letters(shown) >= MIN_CUT_TITLE_CHARS, parts[-1]


def letters(text: str) -> int:
    """How many letters and digits `text` has."""
    return sum(1 for char in text if char.isalnum())


# ---------------------------------------------------------------------------------------------------------------
# Scanning a messy library
# ---------------------------------------------------------------------------------------------------------------


def make_file(path: Path, size: int = BIG) -> None:
    """A sparse file of `size` bytes (cheap even above MIN_EPISODE_BYTES)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)


FRIEREN_FILES = {
    "Season 01/Frieren - S01E01 - Start.mkv": BIG,
    "Season 01/Frieren - S01E02.mkv": BIG,
    "Season 01/Frieren - S01E03 - Ende.mp4.part": BIG,
    "Season 01/Frieren - S01E04 - Ende.temp.mp4": BIG,
    "Season 01/Frieren - S01E05 - Ende.f137.mp4.part-Frag3": BIG,
    "Season 01/Frieren - S01E06 - Ende.mp4.ytdl": BIG,
    "Season 01/Frieren - S01E07 - Winzig.mkv": 1000,
    "Season 01/Frieren - S02E03 - S01E08 - Titel.mkv": BIG,  # a title like an episode code, in the title
    "Season 01/poster.jpg": BIG,
    "Season 01/Frieren - S01E01 - Start.nfo": 100,
    "Season 00/Frieren - S00E01 - Special.mkv": BIG,
    f"{TEMP_DIR_NAME}/Frieren - S01E09.mkv": BIG,
    ".hidden/Frieren - S01E10.mkv": BIG,
    ".Frieren - S01E11.mkv": BIG,
    "tvshow.nfo": 100,
}
GOBLIN_FILES = {
    "Season 1/Goblin Slayer S01E001.mkv": BIG + 10,
    "Season 1/goblin.slayer.s1e2.mkv": BIG,
    "Season 1/Goblin Slayer 1x03.mp4": BIG,
    "Season 1/Episode 4.mkv": BIG,
    "Season 1/05 - Title.avi": BIG,
    "Season 1/Goblin Slayer S01E010.MKV": BIG,
    "Season 1/Goblin Slayer S01E01.webm": BIG,  # the same episode as S01E001, smaller
    "Season 1/Extras/Making of.mkv": BIG,
    "Staffel 2/Folge 1.mkv": BIG,
    "Staffel 2/S02.E02.m4v": BIG,
    "Filme/Film 1.mkv": BIG,
    "Specials/Movie 2.mov": BIG,
    "random video.mkv": BIG,
    "notes.txt": 10,
}


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "library"
    for folder, files in (("Frieren (2023)", FRIEREN_FILES), ("Goblin Slayer", GOBLIN_FILES)):
        for name, size in files.items():
            make_file(root / folder / name, size)
    make_file(root / "Unrelated Stuff" / "holiday.mp4")
    make_file(root / TEMP_DIR_NAME / "Show - S01E01.mkv")
    (root / ".Trash").mkdir()
    make_file(root / "loose file.mkv")
    return root


def episodes(scan: FolderScan) -> dict[tuple[int, int], str]:
    return {(item.season, item.number): item.path.split("/", 1)[1] for item in scan.files}


def test_list_folders(library: Path, tmp_path: Path) -> None:
    assert list_folders(library) == ["Frieren (2023)", "Goblin Slayer", "Unrelated Stuff"]
    assert list_folders(tmp_path / "missing") == []


def test_scan_our_folder(library: Path) -> None:
    naming = SeriesNaming("Frieren", 2023, "frieren")
    scan = scan_folder(library, "Frieren (2023)", NamingTemplate(DEFAULT), naming)
    assert episodes(scan) == {
        (0, 1): "Season 00/Frieren - S00E01 - Special.mkv",
        (1, 1): "Season 01/Frieren - S01E01 - Start.mkv",
        (1, 2): "Season 01/Frieren - S01E02.mkv",
        (1, 8): "Season 01/Frieren - S02E03 - S01E08 - Titel.mkv",
    }
    assert scan.files[1] == EpisodeFile(1, 1, "Frieren (2023)/Season 01/Frieren - S01E01 - Start.mkv", BIG)
    assert scan.skipped == tuple(
        f"Frieren (2023)/Season 01/Frieren - {name}"
        for name in (
            "S01E03 - Ende.mp4.part",
            "S01E04 - Ende.temp.mp4",
            "S01E05 - Ende.f137.mp4.part-Frag3",
            "S01E06 - Ende.mp4.ytdl",
            "S01E07 - Winzig.mkv",
        )
    )


def test_scan_a_mixed_folder(library: Path) -> None:
    scan = scan_folder(library, "Goblin Slayer", NamingTemplate(DEFAULT), None)
    assert episodes(scan) == {
        (0, 1): "Filme/Film 1.mkv",
        (0, 2): "Specials/Movie 2.mov",
        (1, 1): "Season 1/Goblin Slayer S01E001.mkv",
        (1, 2): "Season 1/goblin.slayer.s1e2.mkv",
        (1, 3): "Season 1/Goblin Slayer 1x03.mp4",
        (1, 4): "Season 1/Episode 4.mkv",
        (1, 5): "Season 1/05 - Title.avi",
        (1, 10): "Season 1/Goblin Slayer S01E010.MKV",
        (2, 1): "Staffel 2/Folge 1.mkv",
        (2, 2): "Staffel 2/S02.E02.m4v",
    }
    assert [item.season for item in scan.files] == sorted(item.season for item in scan.files)
    assert scan.skipped == (
        "Goblin Slayer/Season 1/Extras/Making of.mkv",
        "Goblin Slayer/Season 1/Goblin Slayer S01E01.webm",
        "Goblin Slayer/random video.mkv",
    )


def test_scan_a_folder_of_no_series(library: Path) -> None:
    scan = scan_folder(library, "Unrelated Stuff", NamingTemplate(DEFAULT), None)
    assert scan == FolderScan("Unrelated Stuff", (), ("Unrelated Stuff/holiday.mp4",))


def test_scan_follows_symlinks_only_inside_the_library(tmp_path: Path) -> None:
    root = tmp_path / "library"
    make_file(tmp_path / "outside" / "S01E01.mkv")
    make_file(root / "Store" / "S01E02.mkv")
    show = root / "Show"
    (show / "Season 01").mkdir(parents=True)
    (show / "Season 01" / "S01E01.mkv").symlink_to(tmp_path / "outside" / "S01E01.mkv")
    (show / "Season 01" / "S01E02.mkv").symlink_to(root / "Store" / "S01E02.mkv")
    (show / "out").symlink_to(tmp_path / "outside")
    (show / "loop").symlink_to(show)
    (root / "Elsewhere").symlink_to(tmp_path / "outside")
    (root / "Alias").symlink_to(show)
    scan = scan_folder(root, "Show", NamingTemplate(DEFAULT), None)
    assert episodes(scan) == {(1, 2): "Season 01/S01E02.mkv"}
    assert list_folders(root) == ["Alias", "Show", "Store"]


def test_scan_refuses_escaping_folder_names(library: Path) -> None:
    with pytest.raises(ValidationError):
        scan_folder(library, "..", NamingTemplate(DEFAULT), None)


def test_unreadable_folder_is_a_storage_error(library: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_scandir = os.scandir

    def scandir(path: Path) -> Iterator[os.DirEntry[str]]:
        if Path(path).name == "Staffel 2":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(StorageError, match="Staffel 2: Permission denied"):
        scan_folder(library, "Goblin Slayer", NamingTemplate(DEFAULT), None)


# ---------------------------------------------------------------------------------------------------------------
# Matching an existing library
# ---------------------------------------------------------------------------------------------------------------

FOLDERS = [
    "Frieren (2023)",
    "One Piece [tvdbid-81797]",
    "Goblin Slayer (2018)",
    "Goblin Slayer (2024)",
    "Kaguya-sama - Love is War {imdb-tt9522300}",
    "Pokémon",
    "Hunter x Hunter (2011) [imdbid-tt2098220]",
    "!!!",
]
MATCH_CASES = [
    ("Frieren", (), 2023, "Frieren (2023)"),
    ("Frieren", (), None, "Frieren (2023)"),
    ("Frieren", (), 2020, None),
    ("Sōsō no Furīren", ("Frieren",), 2023, "Frieren (2023)"),
    ("ONE PIECE", (), 1999, "One Piece [tvdbid-81797]"),
    ("Goblin Slayer", (), 2018, "Goblin Slayer (2018)"),
    ("Goblin Slayer", (), None, None),
    ("Kaguya-sama: Love is War", (), 2019, "Kaguya-sama - Love is War {imdb-tt9522300}"),
    ("Pokemon", (), None, "Pokémon"),
    ("Hunter x Hunter (2011)", (), 2011, "Hunter x Hunter (2011) [imdbid-tt2098220]"),
    ("Unknown Show", (), None, None),
    ("???", (), None, None),
]


@pytest.mark.parametrize(("title", "alternatives", "year", "expected"), MATCH_CASES)
def test_match_folder(title: str, alternatives: tuple[str, ...], year: int | None, expected: str | None) -> None:
    assert match_folder(FOLDERS, title, alternatives, year) == expected


# ---------------------------------------------------------------------------------------------------------------
# tvshow.nfo, poster, atomic writes
# ---------------------------------------------------------------------------------------------------------------

METADATA = ShowMetadata(
    title="Kaguya-sama: <Love> & War\x07",
    year=2019,
    plot='He said "no" & she\'s <not> amused.\nZweite Zeile.',
    genres=("Komödie", "Romanze"),
    imdb_id="tt9522300",
    fsk=12,
    key="kaguya-sama-love-is-war",
)


def test_show_nfo_content(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "Kaguya-sama"
    assert write_show_nfo(folder, METADATA, tmp_path / TEMP_DIR_NAME) is True
    root = ET.fromstring((folder / "tvshow.nfo").read_bytes())
    assert root.tag == "tvshow"
    assert root.findtext("title") == "Kaguya-sama: <Love> & War"
    assert root.findtext("year") == "2019"
    assert root.findtext("plot") == METADATA.plot
    assert root.findtext("mpaa") == "FSK 12"
    assert [genre.text for genre in root.findall("genre")] == ["Komödie", "Romanze"]
    ids = {element.get("type"): (element.text, element.get("default")) for element in root.findall("uniqueid")}
    assert ids == {"imdb": ("tt9522300", "true"), "aniworld": ("kaguya-sama-love-is-war", "false")}
    assert os.listdir(folder) == ["tvshow.nfo"]


def test_show_nfo_without_optional_fields(tmp_path: Path) -> None:
    metadata = ShowMetadata("Show", None, "", (), None, None, "show")
    write_show_nfo(tmp_path, metadata, tmp_path / TEMP_DIR_NAME)
    root = ET.fromstring((tmp_path / "tvshow.nfo").read_bytes())
    assert [element.tag for element in root] == ["title", "plot", "uniqueid"]
    assert root.find("uniqueid") is not None
    assert root.find("uniqueid").attrib == {"type": "aniworld", "default": "true"}  # type: ignore[union-attr]


def test_show_nfo_is_written_once(tmp_path: Path) -> None:
    (tmp_path / "tvshow.nfo").write_text("<tvshow><title>Mine</title></tvshow>", encoding="utf-8")
    assert write_show_nfo(tmp_path, METADATA, tmp_path / TEMP_DIR_NAME) is False
    assert (tmp_path / "tvshow.nfo").read_text(encoding="utf-8") == "<tvshow><title>Mine</title></tvshow>"


def test_poster_is_written_once(tmp_path: Path) -> None:
    assert needs_poster(tmp_path / "Show") is True
    assert write_poster(tmp_path / "Show", b"\xff\xd8first", tmp_path / TEMP_DIR_NAME) is True
    assert needs_poster(tmp_path / "Show") is False
    assert write_poster(tmp_path / "Show", b"\xff\xd8second", tmp_path / TEMP_DIR_NAME) is False
    assert (tmp_path / "Show" / "poster.jpg").read_bytes() == b"\xff\xd8first"
    with pytest.raises(ValueError, match="empty"):
        write_poster(tmp_path / "Other", b"", tmp_path / TEMP_DIR_NAME)


def test_atomic_write_replaces_and_honours_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    previous = os.umask(0o027)
    try:
        write_file_atomic(target, b"new")
    finally:
        os.umask(previous)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["file.bin"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_atomic_write_keeps_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = tmp_path / "tvshow.nfo"
    target.write_bytes(b"old")

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(StorageError, match="No space left on device"):
        write_file_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["tvshow.nfo"]
