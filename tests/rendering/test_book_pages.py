"""Rendering check: every page of the built book, opened in headless Chromium.

Fails when math is not typeset (no ``mjx-container``), a mermaid diagram did not become an SVG, an
image is broken, or a page requested anything from a host other than the local server.

Chromium records every request in a NetLog. A request that a *page* made (its initiator is the
page's origin) to any host other than the local server fails the check; Chromium's own background
traffic (update checks, sign-in; initiator "not an origin") is not the page's doing and is
ignored. A local proxy refuses everything bound for another host, so nothing leaves the machine
and a request to a CDN is caught even offline. Run after ``jupyter-book build``; ``tasks.py test``
does both.
"""

from __future__ import annotations

import http.server
import json
import os
import socketserver
import subprocess
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from bs4 import BeautifulSoup

HTML = Path(__file__).resolve().parents[2] / "_build" / "html"
CHROMIUM = os.environ.get("LLM_TUTORIAL_CHROMIUM", "")
pytestmark = pytest.mark.skipif(
    not CHROMIUM, reason="headless Chromium is not available (install Debian's 'chromium'); rendering check skipped"
)
MEASURE = Path(__file__).with_name("measure.js")
DESKTOP, PHONE = (1280, 900), (390, 844)
IMAGE_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"<svg", b"<?xml", b"RIFF")


def pages() -> list[Path]:
    if not HTML.is_dir():
        pytest.fail(f"{HTML} does not exist: build the book first (python3 tasks.py book)")
    skip = {"genindex.html", "search.html"}
    return sorted(p for p in HTML.rglob("*.html") if not p.name.startswith("_") and p.name not in skip and "_static" not in p.parts)


class _Recorder:
    def __init__(self):
        self.local: list[tuple[str, int]] = []
        self.foreign: list[str] = []  # "page: url" for each request a page sent to another host
        self.lock = threading.Lock()


def _page_requests(net_log: Path) -> list[tuple[str, str]]:
    """(initiator, url) of every request in a Chromium NetLog that a web page initiated."""
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requests = []
    for event in log["events"]:
        params = event.get("params") or {}
        initiator = params.get("initiator", "")
        if event["type"] == start_job and initiator.startswith("http"):
            requests.append((initiator, params["url"]))
    return requests


def _start_server(recorder: _Recorder) -> tuple[socketserver.TCPServer, str]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(HTML), **kwargs)

        def do_GET(self):
            path = urlsplit(self.path).path
            if path == "/__measure__.js":
                return self._send(MEASURE.read_bytes(), "text/javascript")
            if path.endswith(".html") and (HTML / path.lstrip("/")).is_file():
                page = (HTML / path.lstrip("/")).read_text(encoding="utf-8")
                page = page.replace("<head>", '<head><script src="/__measure__.js"></script>', 1)
                return self._send(page.encode(), "text/html; charset=utf-8")
            return super().do_GET()

        def _send(self, body: bytes, kind: str):
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_request(self, code="-", size="-"):
            with recorder.lock:
                recorder.local.append((self.path, int(code) if str(code).isdigit() else 0))

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _start_refusing_proxy() -> socketserver.TCPServer:
    """Any request bound for another host arrives here and is refused: nothing leaves the machine."""

    class Proxy(socketserver.StreamRequestHandler):
        def handle(self):
            self.rfile.readline(65536)
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    proxy = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Proxy)
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy


def _chromium(url: str, profile: Path, window: tuple[int, int], *extra: str) -> str:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}", "--hide-scrollbars",
        *extra, "--virtual-time-budget=20000", "--dump-dom", url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180).stdout


def _open_every_page(window: tuple[int, int], *extra: str, only=None):
    """Open every page (or those ``only`` names) once at ``window``; return {page: (static html,
    rendered DOM, measurements)} and the request log."""
    recorder = _Recorder()
    server, base = _start_server(recorder)
    proxy = _start_refusing_proxy()
    results = {}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            profile, net_log = Path(scratch) / "profile", Path(scratch) / "net-log.json"
            for page in pages():
                static = page.read_text(encoding="utf-8")
                if only is not None and not only(static):
                    continue
                url = f"{base}/{page.relative_to(HTML).as_posix()}"
                dom = _chromium(
                    url, profile, window, *extra,
                    f"--proxy-server=http://127.0.0.1:{proxy.server_address[1]}",
                    "--proxy-bypass-list=<-loopback>;127.0.0.1:" + str(server.server_address[1]),
                    f"--log-net-log={net_log}",
                )
                results[page] = (static, dom, _measurements(dom))
                for _, requested in _page_requests(net_log):
                    if urlsplit(requested).hostname != "127.0.0.1":
                        recorder.foreign.append(f"{page.name}: {requested}")
    finally:
        server.shutdown()
        proxy.shutdown()
    return results, recorder


def _measurements(dom: str) -> dict | None:
    found = BeautifulSoup(dom, "html.parser").find(id="__measurements__")
    return json.loads(found.get_text()) if found else None


@pytest.fixture(scope="module")
def rendered():
    """Every page at a laptop's 1280 px: {page: (static html, rendered DOM, measurements)}."""
    return _open_every_page(DESKTOP)


@pytest.fixture(scope="module")
def on_a_phone():
    """Every page at a phone's 390 px."""
    return _open_every_page(PHONE)[0]


def _has_diagram(static: str) -> bool:
    return 'class="mermaid' in static


@pytest.fixture(scope="module")
def in_dark_mode():
    """The pages with diagrams, with the reader's system in dark mode (the theme follows it)."""
    return _open_every_page(DESKTOP, "--force-dark-mode", "--blink-settings=preferredColorScheme=0",
                            only=_has_diagram)[0]


def test_every_page_rendered(rendered):
    results, _ = rendered
    empty = [p.name for p, (_, dom, _m) in results.items() if "</body>" not in dom]
    assert not empty, f"Chromium returned no DOM for {empty}"


def test_math_is_typeset(rendered):
    results, _ = rendered
    problems = []
    for page, (static, dom, _m) in results.items():
        wanted = len(BeautifulSoup(static, "html.parser").select(".math"))
        typeset = len(BeautifulSoup(dom, "html.parser").find_all("mjx-container"))
        if wanted and typeset < wanted:
            problems.append(f"{page.name}: {wanted} math elements, {typeset} typeset")
    assert not problems, "math not typeset by MathJax:\n" + "\n".join(problems)


def test_mermaid_diagrams_became_svg(rendered):
    results, _ = rendered
    problems = []
    for page, (static, dom, _m) in results.items():
        diagrams = BeautifulSoup(dom, "html.parser").select(".mermaid")
        expected = len(BeautifulSoup(static, "html.parser").select(".mermaid"))
        drawn = sum(1 for d in diagrams if d.find("svg") is not None)
        if drawn < expected:
            problems.append(f"{page.name}: {expected} diagrams, {drawn} drawn as SVG")
    assert not problems, "mermaid diagrams not rendered:\n" + "\n".join(problems)


def test_diagram_ids_are_unique(rendered):
    """Each diagram is drawn into its own SVG (clock-based ids once drew two diagrams into one)."""
    results, _ = rendered
    problems = []
    for page, (_, dom, _m) in results.items():
        ids = [svg.get("id") for svg in BeautifulSoup(dom, "html.parser").select(".mermaid svg[id]")]
        if len(ids) != len(set(ids)):
            problems.append(f"{page.name}: {ids}")
    assert not problems, "mermaid diagrams share ids:\n" + "\n".join(problems)


def test_images_are_not_broken(rendered):
    results, recorder = rendered
    problems = []
    served = dict(recorder.local)
    for page, (_, dom, _m) in results.items():
        for image in BeautifulSoup(dom, "html.parser").find_all("img"):
            source = image.get("src", "")
            if source.startswith("data:"):
                continue
            parts = urlsplit(source)
            if parts.netloc and not parts.netloc.startswith("127.0.0.1"):
                problems.append(f"{page.name}: image from another host {source}")
                continue
            target = (page.parent / parts.path).resolve() if not parts.path.startswith("/") else HTML / parts.path[1:]
            if not target.is_file() or not target.read_bytes()[:5].lstrip().startswith(IMAGE_SIGNATURES):
                problems.append(f"{page.name}: broken image {source}")
    failed = [path for path, code in served.items() if code >= 400]
    problems += [f"request failed: {path}" for path in failed]
    assert not problems, "\n".join(problems)


def test_nothing_requested_from_another_host(rendered):
    _, recorder = rendered
    assert not recorder.foreign, "pages requested other hosts:\n" + "\n".join(sorted(set(recorder.foreign)))


def test_solutions_are_collapsed(rendered):
    """Exercise solutions appear only inside a closed dropdown, never inline."""
    results, _ = rendered
    inline = []
    for page, (static, _d, _m) in results.items():
        for block in BeautifulSoup(static, "html.parser").find_all("pre"):
            if "BEGIN SOLUTION" in block.get_text():
                dropdown = block.find_parent("details")
                if dropdown is None or dropdown.has_attr("open"):
                    inline.append(page.name)
    assert not inline, f"solution code shown inline on {sorted(set(inline))}"


def test_one_search_field_per_page(rendered):
    """pydata-sphinx-theme's default adds a second search field in a header strip above every page
    (cutting the site title); the book keeps only the sidebar's (``navbar_persistent: []``)."""
    results, _ = rendered
    problems = []
    for page, (_, dom, _m) in results.items():
        soup = BeautifulSoup(dom, "html.parser")
        in_header = len(soup.select(".bd-header .search-button-field"))
        in_sidebar = len(soup.select(".bd-sidebar-primary .search-button-field"))
        if soup.select(".bd-sidebar-primary") and (in_header, in_sidebar) != (0, 1):
            problems.append(f"{page.name}: {in_header} search field(s) in the header, {in_sidebar} in the sidebar")
    assert not problems, "expected exactly one search field, in the sidebar:\n" + "\n".join(problems)


def _measured(results) -> dict:
    missing = [p.name for p, (_, _d, m) in results.items() if m is None]
    assert not missing, f"the measuring script did not report on {missing}"
    return {page: m for page, (_, _d, m) in results.items()}


def test_no_console_errors(rendered):
    """A script error on a page (a duplicate include, a failed import) is a defect readers can hit."""
    problems = [f"{p.name}: {e}" for p, m in _measured(rendered[0]).items() for e in m["errors"]]
    assert not problems, "console errors:\n" + "\n".join(problems)


def test_display_math_fits_the_column_on_a_laptop(rendered):
    problems = [
        f"{p.name}: {eq['width']} px > {eq['boxWidth']} px: {eq['text']!r}"
        for p, m in _measured(rendered[0]).items() for eq in m["math"] if eq["width"] > eq["boxWidth"] + 1
    ]
    assert not problems, "display equations wider than the column at 1280 px:\n" + "\n".join(problems)


def test_wide_math_on_a_phone_shows_a_scroll_cue(on_a_phone):
    problems = [
        f"{p.name}: {eq['text']!r}" for p, m in _measured(on_a_phone).items() for eq in m["math"]
        if eq["width"] > eq["boxWidth"] + 1 and not eq["scrollable"]
    ]
    assert not problems, "equations cut off at 390 px with no scroll cue:\n" + "\n".join(problems)


def test_no_page_is_wider_than_a_phone(on_a_phone):
    problems = [
        f"{p.name}: {m['pageWidth']} px ({'; '.join(m['wideElements'][:3])})"
        for p, m in _measured(on_a_phone).items() if m["pageWidth"] > m["viewport"]
    ]
    assert not problems, "pages wider than the 390 px viewport:\n" + "\n".join(problems)


def test_inline_math_is_not_cut_off_on_a_phone(on_a_phone):
    """MathJax cannot break an inline formula: one wider than a phone's line is cut at the edge."""
    problems = [f"{p.name}: {m['inlineMathCut'][:3]}" for p, m in _measured(on_a_phone).items() if m["inlineMathCut"]]
    assert not problems, "inline formulas running off a 390 px screen:\n" + "\n".join(problems)


@pytest.mark.parametrize("fixture", ["rendered", "on_a_phone"])
def test_diagram_labels_are_readable(fixture, request):
    results = request.getfixturevalue(fixture)
    results = results[0] if isinstance(results, tuple) else results
    problems, count = [], 0
    for page, m in _measured(results).items():
        for d in m["diagrams"]:
            count += 1
            if d["minLabelPx"] is None or d["minLabelPx"] < 12:
                problems.append(f"{page.name}: smallest label {d['minLabelPx']} px ({d['width']}×{d['height']} px)")
            if not d["enlarge"] or d["enlargeText"].strip() != "Enlarge":
                problems.append(f"{page.name}: no readable 'Enlarge' button")
    assert count >= 5, f"expected the book's diagrams, measured {count}"
    assert not problems, "diagram labels under 12 px:\n" + "\n".join(problems)


def test_diagrams_contrast_in_dark_mode(in_dark_mode):
    measured = _measured(in_dark_mode)
    assert measured, "no page with a diagram"
    problems = []
    for page, m in measured.items():
        assert m["theme"] == "dark", f"{page.name}: the theme did not follow the system's dark mode"
        problems += [f"{page.name}: label/box contrast {d['minContrast']:.2f}" for d in m["diagrams"]
                     if d["minContrast"] is None or d["minContrast"] < 4.5]
    assert not problems, "diagram labels hard to read in dark mode:\n" + "\n".join(problems)


def test_chinese_is_drawn_with_the_shipped_font(rendered):
    """Chromium here has no CJK font of its own: Chinese is readable only through the book's subset."""
    pages_with_chinese = 0
    problems = []
    for page, m in _measured(rendered[0]).items():
        if m["cjkElements"]:
            pages_with_chinese += 1
            if "loaded" not in m["cjkFaces"] or not m["cjkRendered"]:
                problems.append(f"{page.name}: Noto Sans SC subset faces {m['cjkFaces']}")
            # The subset must lead the stack: a system font before it may claim Chinese it cannot
            # draw (boxes on all-Chinese lines, with the subset loaded and listed later).
            if m["cjkWithoutFont"]:
                problems.append(f"{page.name}: Chinese in a font stack not led by the subset: {m['cjkWithoutFont'][:3]}")
    assert pages_with_chinese >= 2, f"expected Chinese on the glossary and the chapters, found {pages_with_chinese} pages"
    assert not problems, "Chinese without the shipped font:\n" + "\n".join(problems)


def test_diagrams_render_when_the_book_is_opened_from_disk(tmp_path):
    """file:// pages: Chrome refuses ES-module imports there, so the book's diagrams must not need one."""
    opened = 0
    for page in pages():
        static = page.read_text(encoding="utf-8")
        if not _has_diagram(static):
            continue
        opened += 1
        dom = _chromium(page.as_uri(), tmp_path / "profile", DESKTOP)
        expected = len(BeautifulSoup(static, "html.parser").select(".mermaid"))
        drawn = sum(1 for d in BeautifulSoup(dom, "html.parser").select(".mermaid") if d.find("svg") is not None)
        assert drawn == expected, f"{page.name} from disk: {drawn} of {expected} diagrams drawn"
    assert opened >= 3


def test_dropdowns_say_what_they_hide(rendered):
    """A folded cell's button names what is inside: a solution, a hidden test, the set-up."""
    problems = []
    for page, (static, _d, _m) in rendered[0].items():
        for summary in BeautifulSoup(static, "html.parser").select("details.hide summary"):
            label = summary.get_text(" ", strip=True)
            if "code cell" in label:
                problems.append(f"{page.name}: {label!r}")
    assert not problems, "generic dropdown labels:\n" + "\n".join(sorted(set(problems)))
