"""HTML → blocks of text, each with the heading path it sits under.

Navigation, scripts and styles are dropped; headings, paragraphs, list items, code and
tables become blocks. lxml's HTML parser (libxml2, the parser BeautifulSoup used here before)
hands its events to a walker that builds no tree: a page takes ~1 ms instead of ~5 ms, and no
nesting depth is too deep (lxml's own tree stops at 256 levels). The blocks are those of the
BeautifulSoup tree walk it replaced, string for string (VERSION is unchanged: compared on the
corpus, on 60,000 generated hostile pages and on 3,000 damaged corpus pages).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from lxml import etree

DROP = frozenset({"script", "style", "nav", "noscript", "template", "iframe", "svg", "form",
                  "button", "select", "header", "footer", "aside", "head", "object", "embed"})
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
BLOCKS = frozenset({"p", "div", "section", "article", "main", "body", "html", "blockquote", "li",
                    "ul", "ol", "dl", "dt", "dd", "figure", "figcaption", "details", "summary",
                    "br", "hr", "address", "center", "table", "thead", "tbody", "tfoot", "tr", "caption"})
CELLS = frozenset({"td", "th"})              # inline, each followed by " | ": a row reads "a | b | c"
UNREAD = frozenset({"script", "style", "template", "rt", "rp"})    # no text of theirs in a heading or <pre>
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
    parser = etree.HTMLParser(target=_Walk(), recover=True)
    parser.feed(html[:MAX_HTML_CHARS].lstrip("\ufeff"))
    return parser.close()


class _Walk:
    """The parser's target: start/end/data events in document order, blocks out at close().

    An end tag closes every element opened since the one it names (none open by that name:
    ignored), as a tree would nest them. Headings and <pre> are read whole: all the text under
    them, but none inside UNREAD elements (even ones around the heading), each run of text
    between two tags one string (a heading's strings joined by a space)."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.path: list[tuple[int, str]] = []     # (level, text) of open headings
        self.inline: list[str] = []               # text of the block being read
        self.items = 0                            # open list items
        self.open: list[str] = []                 # the open elements' tags, outermost first
        self.counts: Counter[str] = Counter()     # ...by tag
        self.dropped = 0                          # open elements at or under a DROP one
        self.unread = 0                           # open UNREAD elements
        self.whole: tuple[str, int] | None = None     # the heading or <pre> being read whole, its depth
        self.strings: list[str] = []              # ...its text so far
        self.fresh = True                         # a tag since the last text: the next text is a new string

    def start(self, tag: str, attrib: object) -> None:
        self.fresh = True
        self.open.append(tag)
        self.counts[tag] += 1
        self.unread += tag in UNREAD
        if self.dropped:
            self.dropped += 1
        elif self.whole is not None:
            return
        elif tag in DROP:
            self.dropped = 1
        elif tag in HEADINGS or tag == "pre":
            self._flush()
            self.whole, self.strings = (tag, len(self.open)), []
        elif tag in BLOCKS:
            self._flush()
            self.items += tag == "li"

    def end(self, tag: str) -> None:
        self.fresh = True
        if not self.counts[tag]:
            return
        while True:
            name = self.open.pop()
            self.counts[name] -= 1
            self._closed(name)
            if name == tag:
                return

    def data(self, text: str) -> None:
        if self.dropped:
            return
        if self.whole is None:
            self.inline.append(text)
        elif not self.unread:
            if self.fresh:
                self.strings.append(text)
            else:
                self.strings[-1] += text
        self.fresh = False

    def comment(self, text: str) -> None:
        self.fresh = True

    def pi(self, target: str, data: str | None = None) -> None:
        self.fresh = True

    def close(self) -> list[Block]:
        while self.open:
            self.end(self.open[-1])
        self._flush()
        return self.blocks

    def _closed(self, tag: str) -> None:
        self.unread -= tag in UNREAD
        if self.dropped:
            self.dropped -= 1
        elif self.whole is not None:
            if len(self.open) < self.whole[1]:
                self._read_whole(self.whole[0])
        elif tag in BLOCKS:
            self._flush()
            self.items -= tag == "li"
        elif tag in CELLS:
            self.inline.append(" | ")

    def _read_whole(self, tag: str) -> None:
        self.whole = None
        if tag == "pre":
            code = "".join(self.strings).strip("\n")
            if code.strip():
                self.blocks.append(Block(self._headings(), "code", code))
            return
        text = _SPACE.sub(" ", " ".join(self.strings)).strip().rstrip(_HEADING_JUNK)
        level = HEADINGS[tag]
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        if text:
            self.path.append((level, text))

    def _flush(self) -> None:
        text = _SPACE.sub(" ", "".join(self.inline)).strip().removesuffix(" |").strip()
        self.inline.clear()
        if text:
            self.blocks.append(Block(self._headings(), "item" if self.items else "text", text))

    def _headings(self) -> tuple[str, ...]:
        return tuple(t for _, t in self.path)
