"""Sphinx extension for the book's site: "et al." citations, one copy of each script, and a
light first visit.

A BibTeX author list that ends in ``and others`` reads "Brown et al." both in the text and in the
bibliography (pybtex's styles would print "Brown and others").

When the build has finished, the pages lose what a reader never uses and everyone downloads: the
theme's Font Awesome script (1.5 MB; its stylesheet already draws the same icons from local web
fonts), and, outside the search page, the search index that only the theme's search-as-you-type
box reads (switched off here). The theme's stylesheet keeps the rules of the icons that the pages
and scripts name, and its icon fonts shrink to those glyphs (a few dozen of about 2,000). The copy
of MathJax keeps only the components that the pages load (``mathjax3_config`` in
``_config.yml``) and those that TeX input may load on demand, and each opaque figure is stored
with a palette of at most 256 colours (a third of the bytes) when that moves its pixels by less
than half a level on average.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pybtex.plugin
import sphinxcontrib.bibtex.plugin
from pybtex.richtext import Text
from pybtex.style import template as tpl
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.template import FieldIsMissing, first_of, node, optional, sentence, tag
from sphinxcontrib.bibtex.style.referencing import PersonStyle
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle
from sphinxcontrib.bibtex.style.template import join

ET_AL = "et al."


def _names(data, role: str) -> tuple[list, bool]:
    if role not in data["entry"].persons:
        raise FieldIsMissing(role, data["entry"])
    persons = list(data["entry"].persons[role])
    others = bool(persons) and str(persons[-1]) == "others"
    return (persons[:-1] if others else persons), others


@node
def names_et_al(children, data, role, sep=", ", sep2=" and ", last_sep=", and ", short=False):
    """Names of ``role``; a trailing "others" (or, when ``short``, a third name) reads et al."""
    persons, others = _names(data, role)
    formatter = data["style"]
    if hasattr(formatter, "person"):  # an in-text (referencing) style
        plugin, abbreviate = formatter.person.style_plugin, formatter.person.abbreviate
        formatted = [plugin.format(p, abbreviate) for p in persons]
    else:  # a bibliography (formatting) style
        formatted = [formatter.format_name(p, formatter.abbreviate_names) for p in persons]
    formatted = [n.format_data(data) if hasattr(n, "format_data") else n for n in formatted]
    if others or (short and len(formatted) > 2):
        return Text(formatted[0] if short else Text(sep).join(formatted), " ", ET_AL)
    return join(sep=sep, sep2=sep2, last_sep=last_sep)[formatted].format_data(data)


class AuthorYearLabelStyle(BaseLabelStyle):
    """Bibliography labels that repeat the in-text citation: "Vaswani et al., 2017"."""

    def format_labels(self, sorted_entries):
        labels = []
        for entry in sorted_entries:
            persons = [p for p in entry.persons.get("author", []) if str(p) != "others"]
            last = [" ".join(p.last_names) for p in persons]
            if not last:
                title = entry.fields.get("title", entry.key)
                for tex, text in (("{", ""), ("}", ""), ("``", "\u201c"), ("''", "\u201d")):
                    title = title.replace(tex, text)
                who = title
            elif len(last) == 1 and len(entry.persons["author"]) == 1:
                who = last[0]
            elif len(last) == 2 and len(entry.persons["author"]) == 2:
                who = f"{last[0]} and {last[1]}"
            else:
                who = f"{last[0]} {ET_AL}"
            labels.append(f"{who}, {entry.fields.get('year', 'n.d.')}")
        counts = Counter(labels)
        seen: Counter = Counter()
        for label in labels:  # two works with one label get 2019a, 2019b
            if counts[label] > 1:
                seen[label] += 1
                label += "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            yield label


class BookBibliographyStyle(PlainStyle):
    """pybtex's plain style with author-year labels and "et al." for a list ending in "others"."""

    default_label_style = "author_year"

    def format_names(self, role, as_sentence=True):
        formatted = names_et_al(role)
        return sentence[formatted] if as_sentence else formatted


@dataclass
class BookPersonStyle(PersonStyle):
    """In-text names: "Brown et al." for three or more authors or a list ending in "others"."""

    def names(self, role: str, full: bool):
        return names_et_al(role=role, short=not full)

    def author_or_editor_or_title(self, full: bool):
        return first_of[
            optional[names_et_al(role="author", short=not full)],
            optional[names_et_al(role="editor", short=not full)],
            tag("em")[tpl.field("title")],
        ]


@dataclass
class BookReferenceStyle(AuthorYearReferenceStyle):
    """Author-year citations whose names follow :class:`BookPersonStyle`."""

    person: PersonStyle = field(default_factory=BookPersonStyle)


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    """Keep one copy of each script: sphinx-thebe adds its inline configuration twice, and a
    second ``const THEBE_JS_URL`` is a JavaScript error on every page."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        body = getattr(script, "attributes", {}).get("body")
        key = ("body", body) if body else ("file", str(script))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"][:] = unique


#: Scripts no page needs: the theme's Font Awesome (its CSS draws the icons from web fonts).
_UNUSED_SCRIPTS = re.compile(
    r'[ \t]*<script[^>]*src="[^"]*_static/scripts/fontawesome\.js[^"]*"[^>]*></script>\n?'
)
#: Read only by the theme's search-as-you-type box, which the book leaves off.
_SEARCH_SCRIPTS = re.compile(
    r'[ \t]*<script src="[^"]*(?:searchtools\.js|language_data\.js|searchindex\.js)"></script>\n?'
)
#: MathJax's loader, which fetches the components that ``mathjax3_config`` in _config.yml names.
MATHJAX_PATH = "mathjax/startup.js"
#: The parts of MathJax a page may load: the components named in ``mathjax3_config``, the TeX
#: extensions that ``autoload`` fetches on demand, and the web fonts of the CommonHTML output.
MATHJAX_KEEP = (
    "startup.js",
    "core.js",
    "input/tex.js",
    "input/tex/extensions/",
    "output/chtml.js",
    "output/chtml/fonts/tex.js",
    "output/chtml/fonts/woff-v2/",
    "a11y/assistive-mml.js",
)
#: A figure is stored with a palette when its pixels move by at most this, on average (of 255).
PALETTE_MEAN_ERROR = 0.5


def _lighter_pages(outdir: Path) -> None:
    for page in outdir.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        lighter = _UNUSED_SCRIPTS.sub("", text)
        if page.relative_to(outdir).as_posix() != "search.html":
            lighter = _SEARCH_SCRIPTS.sub("", lighter)
        if lighter != text:
            page.write_text(lighter, encoding="utf-8")


def _prune_mathjax(outdir: Path) -> None:
    mathjax = outdir / "_static" / "mathjax"
    if not (mathjax / "startup.js").exists():
        return
    for path in sorted(mathjax.rglob("*"), reverse=True):  # files before their folders
        name = path.relative_to(mathjax).as_posix()
        if path.is_dir():
            if not any(path.iterdir()):
                path.rmdir()
        elif not any(name == keep or name.startswith(keep) for keep in MATHJAX_KEEP):
            path.unlink()


def _palette_figures(outdir: Path) -> None:
    from PIL import Image, ImageChops, ImageStat

    for path in (outdir / "_images").glob("*.png"):
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("RGB", "RGBA"):
                continue
            if image.mode == "RGBA" and image.getchannel("A").getextrema()[0] < 255:
                continue  # a transparent figure keeps its alpha channel
            info, rgb = image.info, image.convert("RGB")
        palette = rgb.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        difference = ImageChops.difference(rgb, palette.convert("RGB"))
        if max(ImageStat.Stat(difference).mean) > PALETTE_MEAN_ERROR:
            continue
        buffer = io.BytesIO()
        palette.save(buffer, "PNG", optimize=True, dpi=info.get("dpi", (72, 72)))
        if buffer.tell() < path.stat().st_size:
            path.write_bytes(buffer.getvalue())


#: One icon's rule in the theme's stylesheet: ``.fa-github:before{content:"\\f09b"}``.
_ICON_RULE = re.compile(r'(?:\.fa-[a-z0-9-]+:(?:before|after),?)+\{content:"[^"]*"\}')
_ICON_NAME = re.compile(r"fa-[a-z0-9-]+")
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")
_FONT_FACE = re.compile(r"@font-face\{[^}]*\}")


def _glyphs(text: str) -> set[int]:
    """The icon code points that CSS text holds, escaped (``"\\f09b"``) or as characters."""
    escaped = {int(h, 16) for h in re.findall(r'"\\([0-9a-f]{4})"', text)}
    return escaped | {ord(c) for c in _PRIVATE_USE.findall(text)}


def _subset_icons(outdir: Path) -> None:
    """Keep the icon rules and glyphs that the built pages and their scripts use."""
    static = outdir / "_static"
    css_path = static / "styles" / "pydata-sphinx-theme.css"
    fonts = static / "vendor" / "fontawesome" / "webfonts"
    if not css_path.exists() or not fonts.is_dir():
        return
    from fontTools import subset

    used = set()
    for path in [*outdir.rglob("*.html"), *static.rglob("*.js")]:
        if "mathjax" not in path.parts:
            used |= set(_ICON_NAME.findall(path.read_text(encoding="utf-8", errors="ignore")))
    css = css_path.read_text(encoding="utf-8")
    kept = []

    def keep_if_used(match: re.Match) -> str:
        names = set(re.findall(r"\.(fa-[a-z0-9-]+):", match.group(0)))
        if names & used:
            kept.append(match.group(0))
            return match.group(0)
        return ""

    lighter = _ICON_RULE.sub(keep_if_used, css)
    codepoints = _glyphs("".join(kept)) | _glyphs(_ICON_RULE.sub("", lighter))

    def subset_font(face: re.Match) -> str:
        found = re.search(r"webfonts/([a-z0-9-]+)\.ttf", face.group(0))
        source = fonts / f"{found.group(1)}.ttf" if found else None
        if source is None or not source.exists():
            return face.group(0)
        options = subset.Options()
        options.flavor = "woff"  # zlib; woff2 would need brotli
        font = subset.load_font(str(source), options)
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=codepoints)
        subsetter.subset(font)
        target = source.with_name(f"{source.stem}-book.woff")
        subset.save_font(font, str(target), options)
        src = f'src:url(../vendor/fontawesome/webfonts/{target.name}) format("woff")'
        return re.sub(r"src:[^;}]*", src, face.group(0))

    lighter = _FONT_FACE.sub(subset_font, lighter)
    css_path.write_text(lighter, encoding="utf-8")


def _lighten_site(app, exception) -> None:
    """After the build (and after sphinx-mathjax-offline has copied MathJax): lighter pages."""
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    _lighter_pages(outdir)
    _subset_icons(outdir)
    _prune_mathjax(outdir)
    _palette_figures(outdir)


def _load_mathjax_in_parts(app) -> None:
    """sphinx-mathjax-offline points every page at its 1.2 MB bundle in its ``setup``; load the
    parts that ``mathjax3_config`` names instead."""
    app.config.mathjax_path = MATHJAX_PATH


def setup(app):
    app.connect("builder-inited", _load_mathjax_in_parts)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)  # after the others
    app.connect("build-finished", _lighten_site, priority=900)  # after MathJax is copied
    pybtex.plugin.register_plugin("pybtex.style.labels", "author_year", AuthorYearLabelStyle)
    pybtex.plugin.register_plugin("pybtex.style.formatting", "book", BookBibliographyStyle)
    sphinxcontrib.bibtex.plugin.register_plugin(
        "sphinxcontrib.bibtex.style.referencing", "author_year_et_al", BookReferenceStyle
    )
    return {"parallel_read_safe": True, "parallel_write_safe": True}
