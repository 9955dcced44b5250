"""Embedding benchmark: prints numbers (not a test). Run through `scripts/bench-embed`.

One table per local backend on exactly the chunks ragsync makes of the shared corpus: texts/s,
ratio to torch fp32 measured in the same run, RSS of a process that holds only that backend,
agreement with fp32 (mean and min cosine over all chunks, top-10 overlap for 50 queries built
from the corpus). Then the end-to-end initial sync (webhook → fetch → extract → chunk → embed →
upsert → searchable) per backend, and through an OpenAI-compatible server when `--server` names
one. Each measurement runs in a child process of its own, so RSS and warm caches don't leak.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support import run_main  # noqa: E402

from ragsync.backends import BACKENDS  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "rust-docs.jsonl"


def rss_mb() -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def corpus(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.open(encoding="utf-8")]


def chunk_texts(rows: list[dict]) -> list[str]:
    return [text for text, _ in page_chunks(rows)]


def page_chunks(rows: list[dict]) -> list[tuple[str, int]]:
    """(embedded text, index of its page) for every chunk ragsync makes of the corpus."""
    from ragsync.chunk import Chunker
    from ragsync.embed import EmbeddingConfig
    from ragsync.embed import LocalEmbedder
    from ragsync.extract import extract
    chunker = Chunker(LocalEmbedder(EmbeddingConfig(), Path(".")).tokenizer_file, 200)
    return [(c.embed_text, i) for i, row in enumerate(rows) for c in chunker.chunk(extract(row["html"]))]


def query_pages(rows: list[dict]) -> list[int]:
    """50 queries built from the corpus: the titles of 50 pages spread over it."""
    return list(range(0, len(rows), max(1, len(rows) // 50)))[:50]


def encode_one(backend: str, out: Path, rows: list[dict], cache: Path) -> dict:
    """Child: encode every chunk and 50 queries with one backend; vectors to `out`."""
    from ragsync.embed import EmbeddingConfig
    from ragsync.embed import LocalEmbedder
    texts = chunk_texts(rows)
    queries = [rows[i]["title"] for i in query_pages(rows)]
    began = time.perf_counter()
    embedder = LocalEmbedder(EmbeddingConfig(backend=backend), cache)
    embedder.load()
    load_s = time.perf_counter() - began
    embedder.encode(texts[:64])                                    # warm-up
    began = time.perf_counter()
    docs = np.asarray(embedder.embed(texts), dtype=np.float32)
    seconds = time.perf_counter() - began
    np.save(out / f"{backend}-docs.npy", docs)
    np.save(out / f"{backend}-queries.npy", np.asarray([embedder.embed_query(q) for q in queries], dtype=np.float32))
    return {"texts": len(texts), "seconds": seconds, "load_s": load_s, "rss_mb": rss_mb()}


def sync_one(settings: dict, rows: list[dict], tmp: Path) -> dict:
    """Child: the initial sync of the corpus through real webhooks, passes and the store."""
    import logging

    import httpx

    from ragsync import config as config_mod
    from ragsync.daemon import Daemon
    from tests.fakes import FakeWordPress
    from tests.support import SECRET, SECRET_ENV, signed

    os.environ[SECRET_ENV] = SECRET
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    wp = FakeWordPress()
    for i, row in enumerate(rows, 1):
        wp.publish(i, row["title"], row["html"])
    embedding = "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    path = tmp / "ragsync.toml"
    path.write_text(f'data_dir = "var"\n[server]\nreconcile_on_start = false\n'
                    f'[reconcile]\npoll_interval_s = 0\naudit_interval_s = 0\n[embedding]\n{embedding}[[sources]]\nname = "blog"\ntype = "wordpress"\n'
                    f'base_url = "{wp.url}"\nwebhook_secret_env = "{SECRET_ENV}"\n')
    daemon = Daemon(config_mod.load(path), port=0)              # started as `ragsync serve` starts
    daemon.start()
    engine = daemon.engine
    http = httpx.Client(base_url=daemon.url, timeout=30)
    began = time.perf_counter()
    for i in range(1, len(rows) + 1):
        raw, headers = signed({"type": "post.published", "id": i, "post_type": "post"})
        assert http.post("/webhooks/blog", content=raw, headers=headers).status_code == 202
    while engine.queue.pending():
        time.sleep(0.01)
    seconds = time.perf_counter() - began
    result = {"pages": len(rows), "chunks": engine.store.count_chunks(), "embedded": engine.embedder.embedded - 1,
              "seconds": seconds, "rss_mb": rss_mb()}
    http.close()
    daemon.stop()
    wp.close()
    return result


def child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def top10(queries: np.ndarray, docs: np.ndarray) -> list[set[int]]:
    return [set(np.argsort(-row)[:10].tolist()) for row in queries @ docs.T]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(CORPUS))
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--server", help="an OpenAI-compatible /v1 URL to sync through as well")
    ap.add_argument("--server-model", default="all-MiniLM-L6-v2")
    ap.add_argument("--no-sync", action="store_true", help="skip the end-to-end syncs")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    rows = corpus(Path(args.corpus))
    if args.child:
        kind, spec = args.child
        tmp = Path(tempfile.mkdtemp(prefix="ragsync-bench-embed-"))
        if kind == "prepare":
            from ragsync.embed import EmbeddingConfig
            from ragsync.embed import LocalEmbedder
            began = time.perf_counter()
            LocalEmbedder(EmbeddingConfig(backend=spec), Path(os.environ["RAGSYNC_MODEL_CACHE"])).load()
            print(json.dumps({"seconds": time.perf_counter() - began}))
        elif kind == "encode":
            backend, out, cache = spec.split(",")
            print(json.dumps(encode_one(backend, Path(out), rows, Path(cache))))
        else:
            print(json.dumps(sync_one(json.loads(spec), rows, tmp)))
        return

    backends = [b for b in args.backends.split(",") if b]
    tmp = Path(tempfile.mkdtemp(prefix="ragsync-bench-embed-"))
    cache = tmp / "models"
    print(f"ragsync embedding bench — {len(rows)} pages; cpu count {os.cpu_count()}; load {os.getloadavg()[0]:.2f}")
    os.environ["RAGSYNC_MODEL_CACHE"] = str(cache)             # children share the ONNX exports
    for b in backends:                                         # the one-time export, outside every figure
        if b.startswith("onnx"):
            print(f"  {b}: first use (export + quantize) {child(['--child', 'prepare', b])['seconds']:.1f}s")
    results = {b: child(["--child", "encode", f"{b},{tmp},{cache}"]) for b in backends}
    ref_docs, ref_q = np.load(tmp / "torch-docs.npy"), np.load(tmp / "torch-queries.npy")
    ref_top = top10(ref_q, ref_docs)
    page_of = [page for _, page in page_chunks(rows)]
    wanted = query_pages(rows)
    base = results["torch"]["texts"] / results["torch"]["seconds"]
    print(f"\nraw encode of the corpus chunks ({results['torch']['texts']} texts, sorted by length, batch 8)")
    print(f"  {'backend':<12} {'texts/s':>8} {'× torch':>8} {'RSS MB':>7} {'load s':>7} {'cos mean':>9} "
          f"{'cos min':>8} {'top-10 overlap':>15} {'title hit@10':>13}")
    for b in backends:
        docs, queries = np.load(tmp / f"{b}-docs.npy"), np.load(tmp / f"{b}-queries.npy")
        cos = (docs * ref_docs).sum(1)
        found = top10(queries, docs)
        overlap = np.mean([len(a & r) / 10 for a, r in zip(found, ref_top)])
        hits = np.mean([any(page_of[c] == page for c in top) for top, page in zip(found, wanted)])
        rate = results[b]["texts"] / results[b]["seconds"]
        print(f"  {b:<12} {rate:8.1f} {rate / base:8.2f} {results[b]['rss_mb']:7.0f} {results[b]['load_s']:7.1f} "
              f"{cos.mean():9.4f} {cos.min():8.4f} {overlap:15.3f} {hits:13.2f}")
    if args.no_sync:
        return
    print("\ninitial sync of the corpus, end to end (webhook → fetch → extract → chunk → embed → upsert → searchable)")
    runs = [(b, {"backend": b}) for b in backends]
    if args.server:
        runs.append(("openai server", {"provider": "openai", "url": args.server, "model": args.server_model}))
    first = None
    for name, settings in runs:
        r = child(["--child", "sync", json.dumps(settings)])
        rate = r["embedded"] / r["seconds"]
        first = first or rate
        raw = results[name]["texts"] / results[name]["seconds"] if name in results else None
        print(f"  {name:<14} {r['pages']} pages, {r['chunks']} chunks, {r['embedded']} embedded in "
              f"{r['seconds']:.1f}s = {rate:.1f} chunks/s  × {runs[0][0]} {rate / first:.2f}"
              + (f"  (× its raw encode {rate / raw:.2f})" if raw else "") + f"  RSS {r['rss_mb']:.0f} MB")


if __name__ == "__main__":
    run_main(main)
