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
