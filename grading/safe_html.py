"""HTML and markdown from a student's notebook, made safe to render in a browser.

Autograded notebooks are rendered by the formgrader, inside the instructor's Jupyter
session, and turned into students' feedback pages; what a student's code displays or
a markdown cell holds must not run there. :func:`clean_html` keeps an allow-list of
tags, attributes, URL forms and inline CSS properties, with `nh3
<https://nh3.readthedocs.io>`_ (the ammonia sanitizer, which parses as browsers do):
no script, event handler, frame, object, embed, form, ``<style>``, SVG or MathML
survives, links are http(s) or mailto only, images are inline PNG/JPEG/GIF data or
https, and inline styles keep only properties that can neither load anything nor
move an element over the page. :func:`safe_markdown` leaves a markdown cell as it is
when its rendering holds no raw HTML and no link or image outside those forms, and
otherwise turns it into cleaned HTML that every markdown renderer passes through as is.
"""

from __future__ import annotations

import base64
import binascii
import re

import nh3
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "col", "colgroup", "dd", "del",
    "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small",
    "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr",
    "u", "ul", "var", "wbr",
}  # fmt: skip
# Removed with everything inside them (the rest keep their text when their tag goes).
CLEAN_CONTENT_TAGS = {
    "script", "style", "template", "iframe", "frame", "frameset", "object", "embed", "applet",
    "noscript", "noembed", "noframes", "svg", "math", "textarea", "select", "title", "head", "xmp",
}  # fmt: skip
ATTRIBUTES = {
    "*": {"title", "style"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align", "scope"},
    "ol": {"start"},
    "col": {"span"},
    "colgroup": {"span"},
}
# Inline CSS that styles text and tables in place; nothing that positions, layers or loads.
STYLE_PROPERTIES = {
    "color", "background-color", "font-weight", "font-style", "font-size", "font-family",
    "text-align", "text-decoration", "vertical-align", "white-space", "border", "border-collapse",
    "padding", "padding-left", "padding-right", "padding-top", "padding-bottom", "width", "height",
}  # fmt: skip
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
LINK = re.compile(r"(https?://|mailto:)", re.I)
IMAGE_SOURCE = re.compile(r"(https://|data:image/(png|jpeg|gif);base64,[A-Za-z0-9+/=\s]*$)", re.I)
# A style value that could fetch (url, image-set), compute (expression, var, attr) or be escaped.
UNSAFE_STYLE = re.compile(r"url|image|expression|var\(|attr\(|env\(|\\|@|/\*|<", re.I)


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "href":
        return value if LINK.match(value) else None
    if attribute == "src":
        return value if IMAGE_SOURCE.match(value) else None
    if attribute == "style":
        return None if UNSAFE_STYLE.search(value) else value
    return value


def clean_html(html: str) -> str:
    """``html`` (a fragment) with only the allowed tags, attributes, URLs and styles."""
    return nh3.clean(
        html,
        tags=TAGS,
        clean_content_tags=CLEAN_CONTENT_TAGS,
        attributes=ATTRIBUTES,
        attribute_filter=_attribute_filter,
        url_schemes={"http", "https", "mailto", "data"},
        url_relative="deny",
        filter_style_properties=STYLE_PROPERTIES,
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
    )


def is_base64(data) -> bool:
    if not isinstance(data, str):
        return False
    try:
        base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def safe_attachments(attachments) -> dict:
    """The image attachments of a markdown cell (PNG, JPEG, GIF as base64), nothing else."""
    if not isinstance(attachments, dict):
        return {}
    kept = {}
    for name, bundle in attachments.items():
        if isinstance(name, str) and isinstance(bundle, dict):
            images = {mime: data for mime, data in bundle.items() if mime in IMAGE_TYPES and is_base64(data)}
            if images:
                kept[name] = images
    return kept


class _InspectingRenderer(IPythonRenderer):
    """nbconvert's markdown renderer that notes what would be unsafe to render as is."""

    def __init__(self, attachments: dict):
        super().__init__(escape=False, attachments=attachments, exclude_anchor_links=True)
        self.unsafe: list[str] = []

    def block_html(self, html: str) -> str:
        self.unsafe.append("raw HTML")
        return super().block_html(html)

    def inline_html(self, html: str) -> str:
        self.unsafe.append("raw HTML")
        return super().inline_html(html)

    def link(self, text: str, url: str, title: str | None = None) -> str:
        if not (LINK.match(url) or url.startswith("#")):
            self.unsafe.append(f"a link to {url[:40]!r}")
        return super().link(text, url, title)

    def image(self, text: str, url: str, title: str | None = None) -> str:
        name = url.removeprefix("attachment:")
        if url.startswith("attachment:") and name not in self.attachments:
            self.unsafe.append(f"a missing or unsafe attachment {name[:40]!r}")
            url = ""
        elif not url.startswith("attachment:") and not IMAGE_SOURCE.match(url):
            self.unsafe.append(f"an image from {url[:40]!r}")
        return super().image(text, url, title)


def render_markdown(source: str, attachments: dict | None = None) -> tuple[str, list[str]]:
    """``source`` rendered to HTML as nbconvert renders markdown (math kept for MathJax), with
    only the safe ``attachments`` inlined; and what in it is unsafe to render as is."""
    renderer = _InspectingRenderer(safe_attachments(attachments or {}))
    html = MarkdownWithMath(renderer=renderer).render(source)
    return html, renderer.unsafe


def as_html_block(html: str) -> str:
    """Cleaned ``html`` as one line in one ``<div>``: a CommonMark HTML block, which markdown
    renderers pass through untouched (no blank line inside can end it and reopen markdown)."""
    return "<div>" + clean_html(html).replace("\r", "").replace("\n", "&#10;") + "</div>"


def safe_markdown(source: str, attachments: dict | None = None) -> tuple[str, list[str]]:
    """Markdown safe to render: ``source`` itself when nothing in it is unsafe, else its
    cleaned rendering (:func:`as_html_block`); and what was unsafe."""
    html, unsafe = render_markdown(source, attachments)
    if not unsafe:
        return source, []
    return as_html_block(html), unsafe
