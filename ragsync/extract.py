"""HTML → blocks of text, each with the heading path it sits under.

Navigation, scripts and styles are dropped; headings, paragraphs, list items, code and
tables become blocks. The walk is iterative, so hostile nesting cannot blow the stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bs4 import BeautifulSoup, Comment, Declaration, Doctype, NavigableString, ProcessingInstruction, Tag

DROP = frozenset({"script", "style", "nav", "noscript", "template", "iframe", "svg", "form",
                  "button", "select", "header", "footer", "aside", "head", "object", "embed"})
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
BLOCKS = frozenset({"p", "div", "section", "article", "main", "body", "html", "blockquote", "li",
                    "ul", "ol", "dl", "dt", "dd", "figure", "figcaption", "details", "summary",
                    "br", "hr", "address", "center", "table", "thead", "tbody", "tfoot", "tr", "caption"})
CELLS = frozenset({"td", "th"})              # inline, each followed by " | ": a row reads "a | b | c"
MAX_HTML_CHARS = 5_000_000
VERSION = "1"                                # bump when the blocks an HTML page gives change
_SPACE = re.compile(r"\s+")
_HEADING_JUNK = "#¶§🔗"        # permalink marks; stripped with rstrip: a `[#¶§🔗]+\s*$` regex was quadratic


@dataclass(frozen=True)
class Block:
    path: tuple[str, ...]     # heading texts from the outermost section inwards
    kind: str                 # "text", "item" or "code"
    text: str


def extract(html: str) -> list[Block]:
    soup = BeautifulSoup(html[:MAX_HTML_CHARS], "lxml")
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []          # (level, text) of open headings
    inline: list[str] = []
    item_depth = 0

    def flush() -> None:
        text = _SPACE.sub(" ", "".join(inline)).strip().removesuffix(" |").strip()
        inline.clear()
        if text:
            blocks.append(Block(tuple(t for _, t in path), "item" if item_depth else "text", text))

    stack: list[tuple[object, bool]] = [(soup, False)]
    while stack:
        node, leaving = stack.pop()
        if leaving:                                   # closing a block-level container
            flush()
            if getattr(node, "name", None) == "li":
                item_depth -= 1
            continue
        if isinstance(node, (Comment, Doctype, Declaration, ProcessingInstruction)):
            continue
        if isinstance(node, NavigableString):
            inline.append(str(node))
            continue
        if not isinstance(node, Tag):
            continue
        name = (node.name or "").lower()
        if name in DROP:
            continue
        if name in HEADINGS:
            flush()
            text = _SPACE.sub(" ", node.get_text(" ")).strip().rstrip(_HEADING_JUNK)
            level = HEADINGS[name]
            while path and path[-1][0] >= level:
                path.pop()
            if text:
                path.append((level, text))
        elif name == "pre":
            flush()
            code = node.get_text().strip("\n")
            if code.strip():
                blocks.append(Block(tuple(t for _, t in path), "code", code))
        elif name in BLOCKS:
            flush()
            if name == "li":
                item_depth += 1
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(node.contents))
        else:                                          # inline: keep walking, text joins the paragraph
            if name in CELLS:
                stack.append((NavigableString(" | "), False))
            stack.extend((child, False) for child in reversed(node.contents))
    flush()
    return blocks
