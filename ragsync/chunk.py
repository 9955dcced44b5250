"""Blocks → chunks that fit the model's window, with boundaries that survive local edits.

A chunk never crosses a heading, and inside a section it ends (a) before it would exceed
the token budget or (b) after a block whose content hash is 0 mod ANCHOR_EVERY. Rule (b)
ties boundaries to the content itself rather than to a running offset, so inserting or
editing a paragraph changes the chunk around it and the cascade stops at the next anchor:
the rest of the page keeps its chunks, their ids and their vectors.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tokenizers import Tokenizer

from ragsync.extract import Block

ANCHOR_EVERY = 5
VERSION = "1"                 # bump when the chunks a list of blocks gives change
MAX_PREFIX_TOKENS = 40
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n+")
_POINT_NS = uuid.UUID("5b0f3c4e-9a77-4d1e-8f0e-2b6a1c9d7e55")


@dataclass(frozen=True)
class Chunk:
    text: str                       # page_content: what a reader sees
    heading_path: tuple[str, ...]
    embed_text: str                 # what the model sees: heading context + text
    content_hash: str               # of embed_text: equal hash ⇔ equal vector


def point_id(source: str, doc_id: str, content_hash: str, occurrence: int) -> str:
    """Deterministic: the same chunk of the same page always lands on the same point."""
    return str(uuid.uuid5(_POINT_NS, f"{source}\x1f{doc_id}\x1f{content_hash}\x1f{occurrence}"))


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def counting_tokenizer(tokenizer_file: Path) -> Tokenizer:
    """The model's tokenizer for counting tokens: whole texts, neither padded nor cut off."""
    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_truncation()
    tok.no_padding()
    return tok


class Chunker:
    def __init__(self, tokenizer_file: Path, max_tokens: int = 200) -> None:
        self.tokenizer_file = tokenizer_file
        self.max_tokens = max_tokens

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return counting_tokenizer(self.tokenizer_file)

    def counts(self, texts: list[str]) -> list[int]:
        """Tokens in each text, counted in one call (one call per block was most of a page's
        chunking time)."""
        return [len(e.ids) for e in self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]

    def chunk(self, blocks: list[Block]) -> list[Chunk]:
        chunks: list[Chunk] = []
        section: list[str] = []
        size = 0
        path: tuple[str, ...] | None = None
        prefixes: dict[tuple[str, ...], str] = {}

        def close() -> None:
            nonlocal size
            if section:
                chunks.append(self._make(path or (), "\n\n".join(section), prefixes))
            section.clear()
            size = 0

        texts = [f"- {block.text}" if block.kind == "item" else block.text for block in blocks]
        for block, text, tokens in zip(blocks, texts, self.counts(texts)):
            if block.path != path:
                close()
                path = block.path
            for piece, tokens in self._pieces(text, tokens):
                if section and size + tokens > self.max_tokens:
                    close()
                section.append(piece)
                size += tokens
                if int(content_hash(piece), 16) % ANCHOR_EVERY == 0:
                    close()
        close()
        return chunks

    def _make(self, path: tuple[str, ...], text: str, prefixes: dict[tuple[str, ...], str]) -> Chunk:
        """The heading path goes into what the model reads (it locates the text); the page
        title does not, so renaming a page is a payload update, not a re-embed. `prefixes`:
        the page's heading paths already cut to MAX_PREFIX_TOKENS."""
        if (prefix := prefixes.get(path)) is None:
            prefix = " > ".join(path)
            ids = self.tokenizer.encode(prefix, add_special_tokens=False).ids
            if len(ids) > MAX_PREFIX_TOKENS:
                prefix = self.tokenizer.decode(ids[:MAX_PREFIX_TOKENS])
            prefixes[path] = prefix
        embed_text = f"{prefix}\n\n{text}" if prefix else text
        return Chunk(text=text, heading_path=path, embed_text=embed_text, content_hash=content_hash(embed_text))

    def _pieces(self, text: str, tokens: int) -> list[tuple[str, int]]:
        """A block's text (`tokens` long) as one piece, or split at sentences (then words)
        when it alone is over budget; the split depends on the block only, so it is stable too."""
        if tokens <= self.max_tokens:
            return [(text, tokens)]
        units = [u for u in _SENTENCE.split(text) if u.strip()]
        if len(units) == 1:
            units = text.split()
        pieces: list[tuple[str, int]] = []
        current: list[str] = []
        size = 0
        for unit, n in zip(units, self.counts(units)):
            if n > self.max_tokens:                     # one giant token run: cut by tokens
                ids = self.tokenizer.encode(unit, add_special_tokens=False).ids
                for i in range(0, len(ids), self.max_tokens):
                    part = self.tokenizer.decode(ids[i:i + self.max_tokens])
                    if current:
                        pieces.append((" ".join(current), size))
                        current, size = [], 0
                    pieces.append((part, len(ids[i:i + self.max_tokens])))
                continue
            if current and size + n + 1 > self.max_tokens:
                pieces.append((" ".join(current), size))
                current, size = [], 0
            current.append(unit)
            size += n + 1
        if current:
            pieces.append((" ".join(current), size))
        return pieces
