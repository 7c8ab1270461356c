"""Hoster resolvers: encoder/decoder round trips, robustness, and each resolver against its fake hoster over HTTP."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aniworld_daemon.config import default_provider_config
from aniworld_daemon.errors import Blocked, HosterError, NotFound, ProviderError
from aniworld_daemon.provider.hosters import (
    RESOLVERS,
    HosterRegistry,
    MediaKind,
    MediaSource,
    doodstream,
    filemoon,
    hoster_key,
    luluvdo,
    speedfiles,
    streamtape,
    vidmoly,
    vidoza,
    voe,
)
from aniworld_daemon.provider.hosters.base import media_url, origin_of
from aniworld_daemon.provider.http import HttpClient
from aniworld_daemon.validators import HOSTERS
from tests.fakesite.core import HosterContext, Knobs, Media, RequestLog, observe
from tests.fakesite.encoders import (
    dood_script,
    pack,
    speedfiles_encode,
    streamtape_script,
    voe_encode,
    voe_encode_text,
    voe_hls,
)
from tests.fakesite.hosters import HOSTER_DISPLAY, VOE_MIRROR, VOE_VARIANTS, create_hoster_app, embed_path, jw_setup
from tests.fakesite.server import FakeSite

BY_NAME = {resolver.name: resolver for resolver in RESOLVERS}
VIDEO_ID = "k3f9Xa2b"
# hoster -> (media kind, headers the resolver must return, whether the fake CDN refuses a bare request)
EXPECTED: dict[str, tuple[MediaKind, frozenset[str], bool]] = {
    "voe": (MediaKind.HLS, frozenset({"Referer", "Origin", "User-Agent"}), True),
    "vidoza": (MediaKind.MP4, frozenset(), False),
    "vidmoly": (MediaKind.HLS, frozenset({"Referer"}), True),
    "doodstream": (MediaKind.MP4, frozenset({"Referer", "User-Agent"}), True),
    "filemoon": (MediaKind.HLS, frozenset({"Referer"}), True),
    "speedfiles": (MediaKind.MP4, frozenset({"User-Agent"}), True),
    "luluvdo": (MediaKind.HLS, frozenset({"Referer", "Origin"}), True),
    "streamtape": (MediaKind.MP4, frozenset(), False),
}

StartHoster = Callable[..., Awaitable[HosterContext]]

# --- strategies ---------------------------------------------------------------------------------------------------

_host = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,15}[a-z0-9])?(\.[a-z]{2,8}){1,2}", fullmatch=True)
_segment = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~-", min_size=1, max_size=16
)
_query = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789=&_-", max_size=30)
urls = st.builds(
    lambda scheme, host, port, segments, query: (
        f"{scheme}://{host}{port}/{'/'.join(segments)}{'?' + query if query else ''}"
    ),
    st.sampled_from(["http", "https"]),
    _host,
    st.sampled_from(["", ":8443", ":41234"]),
    st.lists(_segment, min_size=1, max_size=5),
    _query,
)
hls_urls = st.builds(lambda url: url.split("?")[0] + "/master.m3u8?t=x", urls)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=10,
)


# --- pure decoders: round trips -----------------------------------------------------------------------------------


@given(st.dictionaries(st.text(), json_values, max_size=5), st.integers(0, 1000), st.integers(1, 12))
def test_voe_json_round_trip(data: dict[str, Any], seed: int, junk_every: int) -> None:
    assert voe.decode_payload(voe_encode(data, seed=seed, junk_every=junk_every)) == data


@given(hls_urls, st.integers(0, 100))
def test_voe_json_script_in_a_page_round_trip(url: str, seed: int) -> None:
    payload = voe_encode({"source": url, "title": "x.mp4"}, seed=seed)
    page = f'<script type="application/json">{{"a":1}}</script>\n<script type="application/json">["{payload}"]</script>'
    assert voe.source_of(voe.decode_json_script(page)) == url
    assert voe.locate(page) == (url, False)


@given(hls_urls)
def test_voe_hls_round_trip(url: str) -> None:
    page = f"var sources = {{\n  'hls': '{voe_hls(url)}',\n  'video_height': 1080,\n}};"
    assert voe.decode_hls(page) == url
    assert voe.locate(page) == (url, False)


@given(st.text(), st.integers(2, 62))
def test_filemoon_packer_round_trip(source: str, radix: int) -> None:
    assert filemoon.unpack(pack(source, radix)) == source


@given(hls_urls, st.integers(10, 62))
def test_filemoon_page_round_trip(url: str, radix: int) -> None:
    page = f"<html><script>{pack(jw_setup(url, 'https://img.example/p.jpg'), radix)}</script></html>"
    assert filemoon.extract(page) == url


@given(st.text())
def test_speedfiles_round_trip(text: str) -> None:
    assert speedfiles.decode(speedfiles_encode(text)) == text


@given(urls)
def test_speedfiles_page_round_trip(url: str) -> None:
    assert speedfiles.extract(f'<script>var _0x5opu234 = "{speedfiles_encode(url)}";</script>') == url


@given(urls, st.integers(0, 200), st.booleans())
def test_streamtape_round_trip(url: str, cut: int, substrings: bool) -> None:
    scheme, link = url.split(":", 1)
    page = (
        f"<script>{streamtape_script('//decoy.example/get_video?token=bad', 5, 'ideoolink')}\n"
        f"{streamtape_script(link, min(cut, len(link)), substrings=substrings)}</script>"
    )
    assert streamtape.extract(page, scheme) == url


@given(_segment, st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=32), urls)
def test_doodstream_parsing_round_trip(sig: str, token: str, base: str) -> None:
    pass_path = f"/pass_md5/{sig}/abc123"
    assert doodstream.parse_page(f"<script>{dood_script(pass_path, token)}</script>") == (pass_path, token)
    built = doodstream.build_media_url(base + "\n", token, expiry=1735689600000, noise="AbCdEfGhIj")
    assert built == f"{base}AbCdEfGhIj?token={token}&expiry=1735689600000"


@given(hls_urls)
def test_jw_player_pages_round_trip(url: str) -> None:
    page = f"<script>{jw_setup(url, 'https://img.example/p.jpg')}</script>"
    assert vidmoly.extract(page) == url
    assert luluvdo.extract(page) == url
    mp4 = url.split("?", maxsplit=1)[0] + ".mp4"
    assert vidoza.extract(f'sourcesCode: [{{ src: "{mp4}", type: "video/mp4", label:"SD", res:"720"}}]') == mp4


# --- pure decoders: nothing but HosterError for any text ----------------------------------------------------------

_SAMPLE_URL = "https://cdn.example/engine/hls2/01/abc/master.m3u8?t=tok"
SAMPLES: dict[str, tuple[Callable[[str], object], str]] = {
    "voe.decode_payload": (voe.decode_payload, voe_encode({"source": _SAMPLE_URL})),
    "voe.decode_json_script": (
        voe.decode_json_script,
        f'<script type="application/json">["{voe_encode({"source": _SAMPLE_URL})}"]</script>',
    ),
    "voe.decode_hls": (voe.decode_hls, f"'hls': '{voe_hls(_SAMPLE_URL)}'"),
    "voe.locate": (
        voe.locate,
        f'<script>window.location.href = \'https://x.example/e/1\';</script> prompt("Node", "{_SAMPLE_URL}")',
    ),
    "vidoza.extract": (vidoza.extract, 'sourcesCode: [{ src: "https://a.example/v.mp4", type: "video/mp4"}]'),
    "vidmoly.extract": (vidmoly.extract, jw_setup(_SAMPLE_URL, "https://a.example/p.jpg")),
    "luluvdo.extract": (luluvdo.extract, jw_setup(_SAMPLE_URL, "https://a.example/p.jpg")),
    "luluvdo.file_code": (luluvdo.file_code, "https://luluvdo.example/e/abc123"),
    "doodstream.parse_page": (doodstream.parse_page, dood_script("/pass_md5/1-2/abc", "tok123")),
    "filemoon.unpack": (filemoon.unpack, pack(jw_setup(_SAMPLE_URL, "https://a.example/p.jpg"))),
    "filemoon.extract": (filemoon.extract, pack(jw_setup(_SAMPLE_URL, "https://a.example/p.jpg"), 36)),
    "speedfiles.decode": (speedfiles.decode, speedfiles_encode("https://a.example/v.mp4")),
    "speedfiles.extract": (speedfiles.extract, f'var _0x5opu234 = "{speedfiles_encode("https://a.example/v.mp4")}";'),
    "streamtape.extract": (streamtape.extract, streamtape_script("//a.example/get_video?id=1&token=t", 20)),
    "media_url": (lambda text: media_url(text, "VOE"), "https://a.example:8080/v.mp4"),
}


def _edits(sample: str) -> st.SearchStrategy[str]:
    """The sample truncated, or with a slice replaced by random text (from a single character to a chunk)."""
    size = len(sample)
    return st.one_of(
        st.integers(0, size).map(lambda end: sample[:end]),
        st.tuples(st.integers(0, size), st.integers(0, 8), st.text(max_size=4)).map(
            lambda edit: sample[: edit[0]] + edit[2] + sample[edit[0] + edit[1] :]
        ),
    )


@pytest.mark.parametrize("name", SAMPLES)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_decoders_raise_only_hoster_error(name: str, data: st.DataObject) -> None:
    function, sample = SAMPLES[name]
    function(sample)  # the sample itself decodes
    text = data.draw(st.one_of(st.text(), st.binary().map(lambda raw: raw.decode("latin-1")), _edits(sample)))
    problem: HosterError | None = None
    try:
        function(text)
    except HosterError as err:
        problem = err
    assert problem is None or problem.details["hoster"] in HOSTERS


def test_filemoon_refuses_unsupported_radix() -> None:
    packed = pack("var a = 1;", 62).replace(",62,", ",95,")
    with pytest.raises(HosterError, match="radix"):
        filemoon.unpack(packed)


def test_voe_garbled_payload_is_a_hoster_error() -> None:
    payload = voe_encode_text('{"source": "https://a.example/x.m3u8"')  # cut JSON
    with pytest.raises(HosterError, match="not JSON"):
        voe.decode_payload(payload)


# --- registry -----------------------------------------------------------------------------------------------------


def test_hoster_key_and_display_names() -> None:
    assert hoster_key("SpeedFiles") == "speedfiles"
    assert hoster_key("VOE") == "voe"
    assert {resolver.name for resolver in RESOLVERS} == set(HOSTERS) == set(HOSTER_DISPLAY)
    for resolver in RESOLVERS:
        assert resolver.display_name == HOSTER_DISPLAY[resolver.name]
        assert hoster_key(resolver.display_name) == resolver.name


def test_registry_orders_by_preference_and_ignores_unknown() -> None:
    registry = HosterRegistry(["filemoon", "LoadX", "VOE", "voe", "streamtape"])
    assert [resolver.name for resolver in registry.ordered()] == ["filemoon", "voe", "streamtape"]
    assert registry.rank("Filemoon") == 0
    assert registry.rank("voe") == 1
    assert registry.rank("Streamtape") == 2
    assert registry.rank("Vidoza") is None  # known but not preferred
    assert registry.rank("LoadX") is None  # not supported at all
    voe_resolver = registry.get("VOE")
    assert voe_resolver is not None
    assert voe_resolver.name == "voe"
    assert registry.get("vidoza") is None
    assert HosterRegistry(HOSTERS).get("SpeedFiles") is BY_NAME["speedfiles"]


# --- resolvers against the fake hosters over real HTTP ------------------------------------------------------------


@pytest.fixture
async def start_hoster(media: Media) -> AsyncIterator[StartHoster]:
    """Start fake hoster apps on free 127.0.0.1 ports (as FakeSite does: observe() appended); cleaned up after."""
    runners: list[web.AppRunner] = []

    async def start(name: str, knobs: Knobs | None = None) -> HosterContext:
        knobs = knobs or Knobs()
        ctx = HosterContext(name=name, knobs=knobs, log=RequestLog(), media=media)
        app = create_hoster_app(name, ctx)
        app.middlewares.insert(0, observe(name, knobs, ctx.log))
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        ctx.port = runner.addresses[0][1]
        return ctx

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    """The real HTTP client with a generous budget and short retries."""
    config = dataclasses.replace(
        default_provider_config("http://127.0.0.1"),
        requests_per_second=1000.0,
        max_connections=8,
        cooldown=timedelta(seconds=30),
    )
    async with HttpClient(config, retry_base=0.01) as client:
        yield client


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client, like yt-dlp: sends only the headers it is given (its own UA is not a browser's)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


async def fetch(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    async with session.get(url, headers=headers) as response:
        return response.status, await response.read()


async def check_media(session: aiohttp.ClientSession, source: MediaSource, media: Media) -> None:
    """The media URL works with the returned headers: the MP4 (also a Range), or the playlist and a segment."""
    headers = dict(source.headers)
    if source.kind is MediaKind.MP4:
        status, body = await fetch(session, source.url, headers)
        assert (status, body) == (200, media.mp4.read_bytes())
        status, body = await fetch(session, source.url, {**headers, "Range": "bytes=10-19"})
        assert (status, body) == (206, media.mp4.read_bytes()[10:20])
        return
    status, body = await fetch(session, source.url, headers)
    assert status == 200
    playlist = body.decode()
    assert playlist.startswith("#EXTM3U")
    segment = next(line for line in playlist.splitlines() if line and not line.startswith("#"))
    status, body = await fetch(session, urljoin(source.url, segment), headers)
    assert (status, body) == (200, (media.hls_dir / segment).read_bytes())


async def resolve(http: HttpClient, ctx: HosterContext, video_id: str = VIDEO_ID) -> MediaSource:
    return await BY_NAME[ctx.name].resolve(http, ctx.origin() + embed_path(ctx.name, video_id))


@pytest.mark.parametrize("name", list(EXPECTED))
async def test_resolver_gets_working_media(
    name: str, start_hoster: StartHoster, http: HttpClient, session: aiohttp.ClientSession, media: Media
) -> None:
    ctx = await start_hoster(name)
    source = await resolve(http, ctx)
    kind, header_names, checked = EXPECTED[name]
    assert (source.kind, source.hoster) == (kind, name)
    assert set(source.headers) == header_names
    if "Referer" in header_names:
        assert source.headers["Referer"] == ctx.origin() + "/"
    if "Origin" in header_names:
        assert source.headers["Origin"] == ctx.origin()
    if "User-Agent" in header_names:
        assert source.headers["User-Agent"] == http.user_agent
    await check_media(session, source, media)
    status, _ = await fetch(session, source.url, {})
    assert status == (403 if checked else 200)


@pytest.mark.parametrize("variant", VOE_VARIANTS)
async def test_voe_variants(
    variant: str, start_hoster: StartHoster, http: HttpClient, session: aiohttp.ClientSession, media: Media
) -> None:
    ctx = await start_hoster("voe", Knobs(variants={"voe": variant}))
    source = await resolve(http, ctx)
    assert source.kind is MediaKind.HLS
    await check_media(session, source, media)
    pages = [record.path for record in ctx.log.select("voe") if "/e/" in record.path]
    hop = [f"{VOE_MIRROR}/e/{VIDEO_ID}"] if variant == "redirect" else []
    assert pages == [f"/e/{VIDEO_ID}", *hop]


async def test_voe_embed_on_another_path_and_host(
    start_hoster: StartHoster, http: HttpClient, session: aiohttp.ClientSession, media: Media
) -> None:
    """VOE's domains rotate: `/e/<id>` anywhere works, and the media headers name the embed's own origin."""
    ctx = await start_hoster("voe")
    source = await voe.VoeResolver().resolve(http, f"{ctx.origin()}{VOE_MIRROR}/e/{VIDEO_ID}")
    await check_media(session, source, media)
    other = await start_hoster("voe")  # a second domain of the same hoster
    source = await BY_NAME["voe"].resolve(http, other.origin() + embed_path("voe", VIDEO_ID))
    assert source.headers["Referer"] == other.origin() + "/"
    await check_media(session, source, media)


async def test_voe_media_needs_a_browser_user_agent(
    start_hoster: StartHoster, http: HttpClient, session: aiohttp.ClientSession
) -> None:
    ctx = await start_hoster("voe")
    source = await resolve(http, ctx)
    referer_only = {"Referer": source.headers["Referer"]}
    assert (await fetch(session, source.url, referer_only))[0] == 403
    origin_and_ua = {"Origin": source.headers["Origin"], "User-Agent": http.user_agent}
    assert (await fetch(session, source.url, origin_and_ua))[0] == 200


async def test_doodstream_checks_user_agent_token_and_pass_md5_referer(
    start_hoster: StartHoster, http: HttpClient, session: aiohttp.ClientSession
) -> None:
    ctx = await start_hoster("doodstream")
    source = await resolve(http, ctx)
    pass_md5 = ctx.log.select("doodstream", "/pass_md5/")
    assert len(pass_md5) == 1
    assert pass_md5[0].headers["Referer"] == ctx.origin() + embed_path("doodstream", VIDEO_ID)
    headers = dict(source.headers)
    assert (await fetch(session, source.url, {**headers, "User-Agent": "Mozilla/5.0 (other)"}))[0] == 403
    assert (await fetch(session, source.url.replace("token=", "token=x"), headers))[0] == 403
    assert (await fetch(session, source.url.split("&expiry=")[0] + "&expiry=1000", headers))[0] == 403
    assert (await fetch(session, ctx.origin() + pass_md5[0].path, {}))[0] == 403


async def test_streamtape_ignores_the_decoy_link(start_hoster: StartHoster, http: HttpClient) -> None:
    ctx = await start_hoster("streamtape")
    page = await http.get(ctx.origin() + embed_path("streamtape", VIDEO_ID))
    assert page.text.count("get_video") >= 3  # the decoy divs and scripts are there
    source = await resolve(http, ctx)
    assert "/get_video?" in source.url


@pytest.mark.parametrize("name", list(EXPECTED))
async def test_dead_hoster_is_a_hoster_error(name: str, start_hoster: StartHoster, http: HttpClient) -> None:
    ctx = await start_hoster(name, Knobs(dead_hosters={name}))
    url = ctx.origin() + embed_path(name, VIDEO_ID)
    with pytest.raises(HosterError) as caught:
        await BY_NAME[name].resolve(http, url)
    assert caught.value.details == {"hoster": name, "url": url}
    if name == "streamtape":  # answers 404 for a deleted video
        assert isinstance(caught.value.__cause__, NotFound)
    else:
        assert "gone" in caught.value.message


@pytest.mark.parametrize("name", list(EXPECTED))
async def test_garbled_page_is_a_hoster_error(name: str, start_hoster: StartHoster, http: HttpClient) -> None:
    ctx = await start_hoster(name, Knobs(garbled_hosters={name}))
    url = ctx.origin() + embed_path(name, VIDEO_ID)
    with pytest.raises(HosterError) as caught:
        await BY_NAME[name].resolve(http, url)
    assert caught.value.details == {"hoster": name, "url": url}
    assert "gone" not in caught.value.message


@pytest.mark.parametrize("mode", ["403", "captcha"])
@pytest.mark.parametrize("name", list(EXPECTED))
async def test_refusal_propagates_as_blocked(name: str, mode: str, start_hoster: StartHoster, http: HttpClient) -> None:
    knobs = Knobs()
    knobs.block(name, mode=mode)
    ctx = await start_hoster(name, knobs)
    with pytest.raises(Blocked):
        await resolve(http, ctx)


@pytest.fixture
async def plain_server() -> AsyncIterator[Callable[[int, str], Awaitable[str]]]:
    """A server answering every path with one status and body (`{origin}` filled in); returns its origin."""
    runners: list[web.AppRunner] = []

    async def start(status: int, body: str) -> str:
        async def handler(request: web.Request) -> web.Response:
            text = body.replace("{origin}", f"http://{request.host}")
            return web.Response(status=status, text=text, content_type="text/html")

        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize("name", list(EXPECTED))
async def test_404_and_server_errors_are_hoster_errors(
    name: str, plain_server: Callable[[int, str], Awaitable[str]], http: HttpClient
) -> None:
    for status, cause in ((404, NotFound), (500, ProviderError)):
        url = await plain_server(status, "<html><body>nope</body></html>") + embed_path(name, VIDEO_ID)
        with pytest.raises(HosterError) as caught:
            await BY_NAME[name].resolve(http, url)
        assert caught.value.details == {"hoster": name, "url": url}
        assert isinstance(caught.value.__cause__, cause)


@pytest.mark.parametrize(
    "body",
    ["", "<html></html>", "eval(function(p,a,c,k,e,d){}('", 'var _0xab = "QUJDRA==QUJDRA==";', "\x00\ufffd" * 50],
)
async def test_junk_pages_are_hoster_errors(
    body: str, plain_server: Callable[[int, str], Awaitable[str]], http: HttpClient
) -> None:
    origin = await plain_server(200, body)
    for name, resolver in BY_NAME.items():
        with pytest.raises(HosterError):
            await resolver.resolve(http, origin + embed_path(name, VIDEO_ID))


async def test_voe_hop_loop_is_a_hoster_error(
    plain_server: Callable[[int, str], Awaitable[str]], http: HttpClient
) -> None:
    origin = await plain_server(200, "<script>window.location.href = '{origin}/e/x';</script>")
    with pytest.raises(HosterError, match="hops"):
        await BY_NAME["voe"].resolve(http, origin + "/e/x")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/e/x", "http://[/e/x", "http://127.0.0.1:0/e/x", "/e/x", ""])
async def test_resolver_refuses_malformed_urls(url: str, http: HttpClient) -> None:
    for resolver in RESOLVERS:
        with pytest.raises(HosterError) as caught:
            await resolver.resolve(http, url)
        assert caught.value.details == {"hoster": resolver.name, "url": url}
    assert http.requests_made == 0


def test_origin_of() -> None:
    assert origin_of("https://voe.sx:8443/e/abc?x=1") == "https://voe.sx:8443"


async def test_site_redirects_resolve_on_every_hoster(
    fakesite: FakeSite, http: HttpClient, session: aiohttp.ClientSession, media: Media
) -> None:
    """The whole chain: the site's /redirect/<id> -> the hoster's embed page -> media that downloads."""
    registry = HosterRegistry(HOSTERS)
    resolved = set()
    for name in fakesite.hosters:
        try:
            link_id, _ = fakesite.any_redirect(name)
        except KeyError:  # the catalog does not use this hoster
            continue
        embed_url = await http.final_url(fakesite.url(f"/redirect/{link_id}"))
        assert embed_url.startswith(fakesite.hoster_origin(name) + "/")
        resolver = registry.get(HOSTER_DISPLAY[name])
        assert resolver is not None
        await check_media(session, await resolver.resolve(http, embed_url), media)
        resolved.add(name)
    assert resolved >= {"voe", "vidoza", "filemoon", "doodstream"}
