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


@pytest.fixture(scope="module")
def rendered():
    """Open every page once; return {page: (static html, rendered DOM)} and the request log."""
    recorder = _Recorder()
    server, base = _start_server(recorder)
    proxy = _start_refusing_proxy()
    results = {}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            profile, net_log = Path(scratch) / "profile", Path(scratch) / "net-log.json"
            for page in pages():
                url = f"{base}/{page.relative_to(HTML).as_posix()}"
                command = [
                    CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={profile}", f"--proxy-server=http://127.0.0.1:{proxy.server_address[1]}",
                    "--proxy-bypass-list=<-loopback>;127.0.0.1:" + str(server.server_address[1]),
                    f"--log-net-log={net_log}", "--virtual-time-budget=20000", "--dump-dom", url,
                ]
                dom = subprocess.run(command, capture_output=True, text=True, timeout=180).stdout
                results[page] = (page.read_text(encoding="utf-8"), dom)
                for _, requested in _page_requests(net_log):
                    if urlsplit(requested).hostname != "127.0.0.1":
                        recorder.foreign.append(f"{page.name}: {requested}")
    finally:
        server.shutdown()
        proxy.shutdown()
    return results, recorder


def test_every_page_rendered(rendered):
    results, _ = rendered
    empty = [p.name for p, (_, dom) in results.items() if "</body>" not in dom]
    assert not empty, f"Chromium returned no DOM for {empty}"


def test_math_is_typeset(rendered):
    results, _ = rendered
    problems = []
    for page, (static, dom) in results.items():
        wanted = len(BeautifulSoup(static, "html.parser").select(".math"))
        typeset = len(BeautifulSoup(dom, "html.parser").find_all("mjx-container"))
        if wanted and typeset < wanted:
            problems.append(f"{page.name}: {wanted} math elements, {typeset} typeset")
    assert not problems, "math not typeset by MathJax:\n" + "\n".join(problems)


def test_mermaid_diagrams_became_svg(rendered):
    results, _ = rendered
    problems = []
    for page, (static, dom) in results.items():
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
    for page, (_, dom) in results.items():
        ids = [svg.get("id") for svg in BeautifulSoup(dom, "html.parser").select(".mermaid svg[id]")]
        if len(ids) != len(set(ids)):
            problems.append(f"{page.name}: {ids}")
    assert not problems, "mermaid diagrams share ids:\n" + "\n".join(problems)


def test_images_are_not_broken(rendered):
    results, recorder = rendered
    problems = []
    served = dict(recorder.local)
    for page, (_, dom) in results.items():
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
    # Chromium asks every site for /favicon.ico by itself; the book has none and needs none.
    failed = [path for path, code in served.items() if code >= 400 and path != "/favicon.ico"]
    problems += [f"request failed: {path}" for path in failed]
    assert not problems, "\n".join(problems)


def test_nothing_requested_from_another_host(rendered):
    _, recorder = rendered
    assert not recorder.foreign, "pages requested other hosts:\n" + "\n".join(sorted(set(recorder.foreign)))


def test_solutions_are_collapsed(rendered):
    """Exercise solutions appear only inside a closed dropdown, never inline."""
    results, _ = rendered
    inline = []
    for page, (static, _) in results.items():
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
    for page, (_, dom) in results.items():
        soup = BeautifulSoup(dom, "html.parser")
        in_header = len(soup.select(".bd-header .search-button-field"))
        in_sidebar = len(soup.select(".bd-sidebar-primary .search-button-field"))
        if soup.select(".bd-sidebar-primary") and (in_header, in_sidebar) != (0, 1):
            problems.append(f"{page.name}: {in_header} search field(s) in the header, {in_sidebar} in the sidebar")
    assert not problems, "expected exactly one search field, in the sidebar:\n" + "\n".join(problems)
