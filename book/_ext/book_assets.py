"""The book's own Sphinx extension: everything a page needs is made by the build, offline-ready.

``jupyter-book build .`` and ``python3 tasks.py book`` give the same site because the assets are
made here, by the build, not by a script run before it:

* **Diagrams** — mermaid's classic (non-module) build, fetched once from the npm registry, checked
  against the registry's sha512 and cached. A classic ``<script>`` also runs when the book is
  opened from disk (``file://``), where Chrome refuses the ES-module import that
  sphinxcontrib-mermaid writes; so this extension replaces that script with ``book.js``, which draws
  each diagram at its natural size (labels at mermaid's 16 px), redraws it in the reader's colour
  theme, and adds a text "Enlarge" button (the old ⛶ glyph is missing from common fonts).
* **Chinese glyphs** — a subset of Noto Sans SC (SIL Open Font License) holding exactly the
  characters the built pages use, regenerated at every build from the pages' text, so a reader
  without a CJK font sees Chinese, not boxes.
* **Bibliography labels** in the author–year style the text cites with ("Vaswani et al., 2017"),
  instead of alpha labels ("[VSP+17]").
* One copy of each script per page (sphinx-thebe's set-up script was included twice, a console
  ``SyntaxError``).

Downloads come only from the npm registry and are cached in ``~/.cache/llm-tutorial`` (or
``$LLM_TUTORIAL_CACHE``); a build with a warm cache needs no network.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import tarfile
import urllib.request
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

MERMAID = {
    "url": "https://registry.npmjs.org/mermaid/-/mermaid-11.12.1.tgz",
    "sha512": "UlIZrRariB11TY1RtTgUWp65tphtBv4CSq7vyS2ZZ2TgoMjs2nloq+wFqxiwcxlhHUvs7DPGgMjs2aeQxz5h9g==",
    "files": {"package/dist/mermaid.min.js": "mermaid.min.js", "package/LICENSE": "LICENSE"},
}
NOTO_SANS_SC = {
    "url": "https://registry.npmjs.org/@fontsource/noto-sans-sc/-/noto-sans-sc-5.3.0.tgz",
    "sha512": "HeqIlGm0+ohOKxZLuHj1qW6r6avHH0OWdKERAcSDI0RQ+MXrteuLKA+M+5eOA8rYy0MFvOR5AT0fQo2rUkye0Q==",
}
CJK_FAMILY = "Noto Sans SC subset"
# CJK ideographs, CJK punctuation and full-width forms: what the subset font must cover.
CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")


def cache_folder() -> Path:
    return Path(os.environ.get("LLM_TUTORIAL_CACHE", Path.home() / ".cache" / "llm-tutorial"))


def _fetch_checked(url: str, sha512: str) -> bytes:
    """The tarball at ``url`` from the npm registry, refused unless its sha512 is the published one."""
    logger.info(f"[book_assets] fetching {url}")
    with urllib.request.urlopen(url, timeout=300) as response:
        payload = response.read()
    digest = base64.b64encode(hashlib.sha512(payload).digest()).decode()
    if digest != sha512:
        raise RuntimeError(f"{url}: sha512 {digest} is not the registry's published {sha512}; refusing it")
    return payload


def _unpacked(package: dict, name: str, wanted) -> Path:
    """A cache folder holding the members of the package's tarball that ``wanted(member_name)`` names."""
    folder = cache_folder() / f"{name}-{package['sha512'][:16].replace('/', '_')}"
    done = folder / ".complete"
    if done.exists():
        return folder
    payload = _fetch_checked(package["url"], package["sha512"])
    partial = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as archive:
        for member in archive.getmembers():
            target = wanted(member.name)
            if member.isfile() and target:
                path = partial / target
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(archive.extractfile(member).read())
    (partial / ".complete").write_text(package["url"])
    try:
        partial.rename(folder)  # a second build racing this one may have finished first: keep its copy
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def mermaid_folder() -> Path:
    return _unpacked(MERMAID, "mermaid", MERMAID["files"].get)


def noto_folder() -> Path:
    """Noto Sans SC's regular weight, as the WOFF slices fontsource publishes (fontTools reads WOFF
    without extra modules), its CSS (which slice covers which characters) and its licence."""

    def wanted(name: str):
        if re.fullmatch(r"package/files/noto-sans-sc-\d+-400-normal\.woff", name):
            return name.removeprefix("package/files/")
        return {"package/400.css": "400.css", "package/LICENSE": "LICENSE"}.get(name)

    return _unpacked(NOTO_SANS_SC, "noto-sans-sc", wanted)


def write_favicon_ico(path: Path) -> None:
    """/favicon.ico beside the pages' SVG icon: browsers still ask for it at the site's root."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, 31, 31), radius=6, fill=(44, 95, 138, 255))
    draw.rectangle((9, 7, 13, 24), fill="white")  # an "L", drawn without needing a font
    draw.rectangle((9, 20, 23, 24), fill="white")
    image.save(path, format="ICO", sizes=[(32, 32), (16, 16)])


# ------------------------------------------------------------------------------------ diagrams --


def _replace_mermaid_script(app: Sphinx) -> None:
    """Drop sphinxcontrib-mermaid's ES-module script: book.js draws the diagrams instead."""
    listeners = app.events.listeners.get("html-page-context", [])
    for listener in list(listeners):
        if getattr(listener.handler, "__module__", "") == "sphinxcontrib.mermaid":
            app.disconnect(listener.id)


def _page_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Per page: mermaid only where a diagram is; and every script included once."""
    from sphinxcontrib.mermaid import mermaid as mermaid_node

    if doctree is not None and doctree.next_node(mermaid_node) is not None:
        app.add_js_file("mermaid/mermaid.min.js", priority=400)
    seen, unique = set(), []
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {})
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    if "script_files" in context:
        context["script_files"][:] = unique


# ------------------------------------------------------------------------------------- fonts --


def _used_characters(outdir: Path) -> set[str]:
    chars: set[str] = set()
    for page in outdir.rglob("*.html"):
        if "_static" not in page.parts:
            chars |= set(CJK.findall(page.read_text(encoding="utf-8", errors="ignore")))
    return chars


def write_cjk_font(outdir: Path) -> tuple[int, int]:
    """Subset Noto Sans SC to the characters in the built pages; write ``_static/cjk/``.

    One small WOFF per fontsource slice that holds a used character, each declared with the
    ``unicode-range`` of the characters it carries, so the browser fetches only what a page shows.
    Returns (characters used, bytes written).
    """
    from fontTools import subset
    from fontTools.ttLib import TTFont

    target = outdir / "_static" / "cjk"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    used = _used_characters(outdir)
    faces, size = [], 0
    if used:
        source = noto_folder()
        remaining = set(used)
        for path in sorted(source.glob("noto-sans-sc-*-400-normal.woff"), key=lambda p: int(p.name.split("-")[3])):
            font = TTFont(path)
            covered = {c for c in remaining if ord(c) in font.getBestCmap()}
            if not covered:
                continue
            remaining -= covered
            options = subset.Options()
            options.flavor = "woff"
            options.layout_features = ["*"]
            options.name_IDs = ["*"]
            options.notdef_outline = True
            subsetter = subset.Subsetter(options)
            subsetter.populate(text="".join(sorted(covered)))
            subsetter.subset(font)
            name = f"noto-sans-sc-subset-{len(faces)}.woff"
            font.flavor = "woff"
            font.save(target / name)
            size += (target / name).stat().st_size
            ranges = ",".join(f"U+{ord(c):x}" for c in sorted(covered))
            faces.append(
                f"@font-face {{ font-family: '{CJK_FAMILY}'; font-style: normal; font-weight: 100 900;"
                f" font-display: swap; src: url(./{name}) format('woff'); unicode-range: {ranges}; }}"
            )
        if remaining:
            logger.warning(f"[book_assets] Noto Sans SC has no glyph for {''.join(sorted(remaining))!r}")
        shutil.copyfile(source / "LICENSE", target / "LICENSE-noto-sans-sc.txt")
    (target / "cjk.css").write_text(
        "/* Noto Sans SC (SIL Open Font License 1.1), subset at build time to the characters the book uses. */\n"
        + "\n".join(faces) + "\n",
        encoding="utf-8",
    )
    return len(used), size


# --------------------------------------------------------------------------------- dropdowns --

# What a folded code cell holds, named on its button instead of myst-nb's "Show code cell source".
FOLDED_LABELS = {
    "set-up": ("Show set-up", "Hide set-up"),
    "solution": ("Show solution", "Hide solution"),
    "test": ("Show hidden test", "Hide hidden test"),
    "code": ("Show code", "Hide code"),
}


def folded_kind(cell: dict, first_code_cell: bool) -> str:
    source = "".join(cell.get("source", ""))
    if first_code_cell:
        return "set-up"
    if "BEGIN SOLUTION" in source:
        return "solution"
    nbgrader = cell.get("metadata", {}).get("nbgrader", {})
    if nbgrader.get("grade") and not nbgrader.get("solution"):
        return "test"
    return "code"


def label_folded_cells(notebook: dict) -> dict:
    """Fold every chapter's Colab set-up cell, and name what each folded cell holds."""
    first = True
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        metadata = cell.setdefault("metadata", {})
        tags = metadata.setdefault("tags", [])
        if first and "hide-input" not in tags:
            tags.append("hide-input")
        if "hide-input" in tags or "hide-cell" in tags:
            show, hide = FOLDED_LABELS[folded_kind(cell, first)]
            metadata.setdefault("mystnb", {}).update(code_prompt_show=show, code_prompt_hide=hide)
        first = False
    return notebook


def _source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    if not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    import json

    source[0] = json.dumps(label_folded_cells(json.loads(source[0])))


# ------------------------------------------------------------------------------ bibliography --


def _register_author_year_labels() -> None:
    """pybtex style ``authoryear``: list labels as the text cites ("Vaswani et al., 2017")."""
    from pybtex.plugin import register_plugin
    from pybtex.style.formatting.unsrt import Style as UnsrtStyle
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            labels = []
            for entry in sorted_entries:
                people = entry.persons.get("author") or entry.persons.get("editor") or []
                names = [" ".join(p.last_names) for p in people]
                if not names:
                    who = entry.fields.get("organization", entry.fields.get("title", entry.key))
                elif len(names) == 1:
                    who = names[0]
                elif len(names) == 2:
                    who = f"{names[0]} and {names[1]}"
                else:
                    who = f"{names[0]} et al."
                labels.append(f"{who}, {entry.fields.get('year', 'n.d.')}")
            counts: dict[str, int] = {}
            for label in labels:
                counts[label] = counts.get(label, 0) + 1
            seen: dict[str, int] = {}
            for label in labels:
                if counts[label] > 1:  # two works by the same authors in one year: 2019a, 2019b
                    seen[label] = seen.get(label, 0) + 1
                    yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
                else:
                    yield label

    class AuthorYearStyle(UnsrtStyle):
        default_label_style = "authoryear"
        default_sorting_style = "author_year_title"

    register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels)
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


# ------------------------------------------------------------------------------------- setup --


def _builder_inited(app: Sphinx) -> None:
    _replace_mermaid_script(app)


def _build_finished(app: Sphinx, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    (static / "mermaid").mkdir(parents=True, exist_ok=True)
    source = mermaid_folder()
    for name in ("mermaid.min.js", "LICENSE"):
        shutil.copyfile(source / name, static / "mermaid" / name)
    write_favicon_ico(Path(app.outdir) / "favicon.ico")
    characters, size = write_cjk_font(Path(app.outdir))
    logger.info(f"[book_assets] Chinese font subset: {characters} characters, {size / 1024:.0f} KiB")


def setup(app: Sphinx) -> dict:
    _register_author_year_labels()
    app.connect("builder-inited", _builder_inited)
    app.connect("source-read", _source_read)
    app.connect("html-page-context", _page_scripts, priority=900)
    app.connect("build-finished", _build_finished)
    app.add_css_file("cjk/cjk.css", priority=200)
    app.add_css_file("book.css", priority=900)
    app.add_js_file("book.js", priority=900, defer="defer")
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
