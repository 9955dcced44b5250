"""What determines the vectors and the chunks: the embedder (provider, model and its revision,
backend or quantization, dimension), the keyword vectors' language, the extractor and the
chunker (versions and settings).
Stored with each collection and in each point's metadata, so a change is seen, never silently
mixed into an index built another way."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ragsync import chunk, extract, keywords
from ragsync.config import Config
from ragsync.embed import Embedder
from ragsync.index import Found


def fingerprint(config: Config, embedder: Embedder) -> dict[str, Any]:
    return {**embedder.identity, **keywords.identity(config.search_language), "extractor": extract.VERSION,
            "chunker": chunk.VERSION, "max_tokens": config.max_tokens}


def short(fp: dict) -> str:
    """A 12-character id of a fingerprint, for point metadata and collection names."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]


def differences(old: dict, new: dict) -> str:
    """'max_tokens 200 → 120, model_revision 0.1 → 0.2': what changed, for the error message."""
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k} {old.get(k)} → {new.get(k)}" for k in keys if old.get(k) != new.get(k))


def refusal(found: Found | None, expected: dict, collection: str) -> str | None:
    """Why this config must not write into the collection it names (None: it may): vectors
    ragsync did not write, another dimension, or another fingerprint. `serve` refuses with it
    before opening the collection, and `ragsync check` reports the same line."""
    if found is None:
        return None
    if not found.ours and found.points != 0:
        return (f"the collection {collection!r} ({found.physical}) holds vectors ragsync did not write (no page "
                "records beside it): set another [qdrant] collection, or move that one away")
    if found.dim is not None and found.dim != expected.get("dim", found.dim):
        return (f"the index {collection!r} holds {found.dim}-dimension vectors and this embedder makes "
                f"{expected['dim']}: run `ragsync reindex` to rebuild it, or restore the old [embedding]")
    return mismatch(found.fingerprint, expected, collection)


def mismatch(stored: dict | None, expected: dict, collection: str) -> str | None:
    """The refusal for a collection stamped by other settings (None: unstamped or the same)."""
    if stored is None or stored == expected:
        return None
    return (f"the index {collection!r} was built differently from this config ({differences(stored, expected)}): "
            "run `ragsync reindex` to rebuild it beside the live one while search keeps working, or restore the "
            "old settings")
