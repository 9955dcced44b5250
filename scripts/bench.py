"""ragsync benchmark: prints numbers (not a test). Run through `scripts/bench`.

On the shared corpus served by a fake WordPress, with the real model and the default
embedded store, in one run: the model's raw encode throughput (the baseline), initial sync
throughput and its ratio to it, an unchanged republish (embeds, writes), a one-paragraph
edit of a ~2,000-word page (embeds); then at each `--points` size `ragsync serve` in its own
process: RSS, disk, start-up, search latency, webhook → searchable freshness, recall@10 of the
default search against exact search; the reconcile of 10,000 pages with 1 % drift.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import random
import re
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from ragsync import config as config_mod  # noqa: E402
from ragsync import reconcile  # noqa: E402
from ragsync.chunk import Chunker  # noqa: E402
from ragsync.config import Config  # noqa: E402
from ragsync.embed import EmbeddingConfig  # noqa: E402
from ragsync.daemon import Daemon  # noqa: E402
from ragsync.embed import LocalEmbedder  # noqa: E402
from ragsync.extract import extract  # noqa: E402
from ragsync.index import PageRecord, SearchFilter, embedded_root, open_catalog  # noqa: E402
from ragsync.search import nearest, probe_for  # noqa: E402
from tests.support import ADMIN_TOKEN, SECRET, SECRET_ENV, ServeProcess, free_port, run_main, signed  # noqa: E402
from tests.fakes import FakeWordPress  # noqa: E402

import bench_search  # noqa: E402  (its query sets; scripts/ is on the path when run as scripts/bench.py)

MODES = ("dense", "keyword", "hybrid")


class CachingEmbedder(LocalEmbedder):
    """The real model, plus vectors the benchmark preloads only *after* the measured runs,
    so that replicating the corpus to 50k points costs no embedding. Misses are embedded
    (and counted) as usual."""

    def __init__(self, cache_dir: Path) -> None:
        super().__init__(EmbeddingConfig(), cache_dir)       # the default backend
        self.cache: dict[str, list[float]] = {}
        self.seen: dict[str, list[float]] = {}      # every vector computed, for preloading later

    def embed(self, texts: list[str]) -> list[list[float]]:
        missing = [t for t in texts if t not in self.cache]
        fresh = dict(zip(missing, super().embed(missing)))
        self.seen.update(fresh)
        return [self.cache.get(t) or fresh[t] for t in texts]


def line(label: str, value: str) -> None:
    print(f"  {label:<58} {value}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus" / "rust-docs.jsonl"))
    ap.add_argument("--points", type=int, nargs="+", default=[50_000],
                    help="grow the index to each of these sizes and measure `ragsync serve` there")
    ap.add_argument("--edits", type=int, default=40, help="timed webhook edits at each size")
    ap.add_argument("--queries", type=int, default=200, help="timed searches (and recall queries) at each size")
    ap.add_argument("--memory-mb", type=int, help="run `ragsync serve` in a memory cgroup of this size (needs root)")
    ap.add_argument("--reconcile-pages", type=int, default=10_000,
                    help="pages of the reconcile and polling part (at least 20; 0 skips it)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the raw encode (no ratio)")
    args = ap.parse_args()
    if 0 < args.reconcile_pages < 20:
        ap.error("--reconcile-pages must be at least 20 (the polling part edits and deletes pages apart), or 0")
    os.environ[SECRET_ENV] = SECRET
    os.environ["RAGSYNC_ADMIN_TOKEN"] = ADMIN_TOKEN
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    rows = [json.loads(x) for x in open(args.corpus, encoding="utf-8")]
    tmp = Path(tempfile.mkdtemp(prefix="ragsync-bench-"))
    wp = FakeWordPress()
    for i, row in enumerate(rows, 1):
        wp.publish(i, row["title"], row["html"])
    config = config_mod.load(_config_file(tmp, wp))
    embedder = CachingEmbedder(config.data_dir / "models")             # `ragsync serve` finds the ONNX export there
    print(f"ragsync bench — {len(rows)} pages, data in {tmp}")

    # 1. baseline: the model alone on exactly the chunks ragsync makes
    chunker = Chunker(embedder.tokenizer_file, config.max_tokens)
    texts = [c.embed_text for row in rows for c in chunker.chunk(extract(row["html"]))]
    embedder.encode(texts[:256])                                       # warm-up (and load)
    baseline = None
    if not args.no_baseline:
        t = time.perf_counter()
        embedder.encode(texts)
        base_s = time.perf_counter() - t
        baseline = len(texts) / base_s
        print("model")
        line(f"raw encode of the corpus chunks, one call, batch {embedder.batch_size} (baseline)",
             f"{len(texts)} chunks in {base_s:.1f}s = {baseline:.1f} chunks/s")

    # 2. initial sync through webhooks → queue → passes (cache empty: every chunk really embedded)
    daemon = Daemon(config, embedder=embedder, port=0)          # started as `ragsync serve` starts
    daemon.start()
    engine = daemon.engine
    http = httpx.Client(base_url=daemon.url, timeout=30)

    def webhook(post_id: int) -> None:
        raw, headers = signed({"type": "post.updated", "id": post_id, "post_type": "post"})
        assert http.post("/webhooks/blog", content=raw, headers=headers).status_code == 202

    def idle() -> None:
        while engine.queue.pending():
            time.sleep(0.01)

    t = time.perf_counter()
    for i in range(1, len(rows) + 1):
        webhook(i)
    idle()
    sync_s = time.perf_counter() - t
    chunks = engine.store.count_chunks()
    print("initial sync (webhook → fetch → extract → chunk → embed → upsert)")
    line("initial sync", f"{chunks} chunks, {embedder.embedded} embedded in {sync_s:.1f}s = "
                         f"{embedder.embedded / sync_s:.1f} chunks/s")
    if baseline:
        line("ratio to baseline (goal >= 0.85)", f"{embedder.embedded / sync_s / baseline:.2f}")

    # 3. unchanged republish of every page
    embedded, writes = embedder.embedded, engine.store.writes
    t = time.perf_counter()
    for i in range(1, len(rows) + 1):
        webhook(i)
    idle()
    print("unchanged republish of every page")
    line("embeds / Qdrant writes (goal 0 / 0)", f"{embedder.embedded - embedded} / {engine.store.writes - writes}"
                                                f"  ({time.perf_counter() - t:.1f}s for {len(rows)} passes)")

    # 4. one-paragraph edit of a ~2,000-word page
    sizes = {i: len(" ".join(b.text for b in extract(row["html"])).split()) for i, row in enumerate(rows, 1)}
    target = min(sizes, key=lambda i: abs(sizes[i] - 2000))
    embedded = embedder.embedded
    html = wp.posts[target].html
    paragraphs = [m.start() for m in re.finditer("<p>", html)]
    at = paragraphs[len(paragraphs) // 2] + 3
    wp.edit(target, html=html[:at] + "Edited for the benchmark: one new sentence. " + html[at:])
    webhook(target)
    idle()
    print(f"one-paragraph edit of a {sizes[target]}-word page ({rows[target - 1]['slug']})")
    line("chunks embedded (goal <= 2)", str(embedder.embedded - embedded))

    # 4b. a new ~2,000-word page: signed webhook → searchable (every chunk really embedded)
    wp.publish(999, rows[target - 1]["title"], wp.posts[target].html)
    modified = wp.posts[999].modified.strftime("%Y-%m-%dT%H:%M:%SZ")
    embedded = embedder.embedded
    t = time.perf_counter()
    webhook(999)
    while (rec := engine.store.page("blog", "999")) is None or rec.modified != modified:
        time.sleep(0.002)
    line("new page of that size: signed webhook → searchable", f"{(time.perf_counter() - t) * 1000:.0f} ms "
                                                              f"({embedder.embedded - embedded} chunks embedded)")
    idle()

    http.close()
    daemon.stop()
    bench_scale(config, embedder, wp, [row["slug"] for row in rows], sorted(args.points), args.edits, args.queries,
                args.memory_mb)
    wp.close()

    if args.reconcile_pages:
        bench_reconcile(args.reconcile_pages, embedder.seen, tmp / "reconcile")


def bench_scale(config: Config, embedder: LocalEmbedder, wp: FakeWordPress, slugs: list[str], targets: list[int],
                edits: int, queries: int, memory_mb: int | None) -> None:
    """Grow the synced index to each target by replicas of the corpus, written straight into
    the store (vectors perturbed, so no two points are equal and recall means something),
    then start `ragsync serve` as its own process — this one keeps the fake CMS — on a cold
    page cache and measure it: start-up, RSS, search latency over HTTP (the default mode
    first, on the cold cache, then each mode), webhook → searchable freshness, disk; then
    recall@10 of the default (quantized) search against an exact scan, and each mode's
    hit@10 / MRR@10 on bench-search's identifier and question sets (`slugs`: the corpus pages'
    names, in post id order; a replica counts as its page)."""
    catalog = open_catalog(config, embedder.dim)
    live = catalog.live()
    store = catalog.open(live)
    pages = [p for p in store.iter_pages("blog") if p.state == "live"]
    chunks = {pid: (vec, payload) for pid, vec, payload in store.iter_vectors()}
    store.close()
    rnd, noise = random.Random(3), np.random.default_rng(3)
    texts = [chunks[pid][1]["page_content"] for pid in sorted(chunks)]      # the same queries every run
    asked = [" ".join(t.split("\n\n", 1)[-1].split()[:12]) for t in rnd.sample(texts, queries)]
    vectors = [embedder.embed_query(q) for q in asked]
    copies = 0
    rows = []
    print(f"scale (replicas of the corpus; `ragsync serve` in its own process"
          f"{f' capped at {memory_mb} MB' if memory_mb else ''}; {queries} searches, {edits} edits)")
    for target in targets:
        store = catalog.open(live)
        t = time.perf_counter()
        while store.count_chunks() < target:
            copies += 1
            _replica(store, pages, chunks, copies, noise)
        store.optimize()
        grown = time.perf_counter() - t
        store.close()
        root = embedded_root(config.data_dir) / live
        _evict(root)
        t = time.perf_counter()
        catalog.open(live).close()
        open_s = time.perf_counter() - t
        _evict(root)
        t = time.perf_counter()
        serve = ServeProcess(config.path, config.data_dir / "serve.log", _capped(memory_mb))
        ready_s = time.perf_counter() - t
        try:
            search = _timed_searches(serve, asked)
            by_mode = {mode: _timed_searches(serve, asked, mode) for mode in MODES}
            fresh, marks = _timed_edits(serve, wp, edits, rnd)
            rss = _proc_memory(serve.proc.pid)
            points = serve.admin("/admin/status")["points"]
        finally:
            serve.stop()
        store = catalog.open(live)
        recall = sum(_found(store.search(v, 10), store.search(v, 10, exact=True)) for v in vectors) / (10 * len(vectors))
        quality = _quality(store, embedder, slugs)
        store.close()
        disk = sum(f.stat().st_blocks * 512 for f in root.rglob("*") if f.is_file())
        rows.append((points, rss))
        print(f"  at {points:,} points (grown in {grown:.0f}s)")
        line("RSS of `ragsync serve` (goal <= 1,500 MB at 1M)", f"{rss['VmRSS']:.0f} MB (anon {rss['RssAnon']:.0f}, "
             f"file-backed {rss['RssFile']:.0f}), peak {rss['VmHWM']:.0f} MB")
        line("disk", f"{disk / 2**20:.0f} MB ({disk / points:.0f} B/point)")
        line("store open / serve start-up to ready (goal <= 30 s)", f"{open_s:.2f} s / {ready_s:.1f} s")
        line(f"search over HTTP, {len(asked)} queries (goal p99 <= 100 ms)", _percentiles(search))
        for mode, seconds in by_mode.items():
            line(f"  mode={mode}", _percentiles(seconds))
        line(f"webhook → searchable, {edits} edits (goal p50 <= 100, p99 <= 500 ms)", _percentiles(fresh))
        line("  where an edit's pass spends it (p50 ms per step)", _pass_steps(config.data_dir / "serve.log", edits))
        line("  an edit's timeline (p50 ms)", _timeline(config.data_dir / "serve.log", marks))
        line(f"recall@10 default vs exact, {len(vectors)} queries (goal >= 0.98)", f"{recall:.3f}")
        for mode, kinds in quality.items():
            line(f"  {mode}: hit@10 / MRR@10", ", ".join(f"{kind} {hit:.3f} / {mrr:.3f}" for kind, (hit, mrr) in kinds.items()))
    for (p0, r0), (p1, r1) in zip(rows, rows[1:]):
        line(f"RSS growth {p0:,} → {p1:,} points (goal <= 0.3 KB/point)",
             f"{(r1['VmRSS'] - r0['VmRSS']) * 1024 / (p1 - p0):.2f} KB/point "
             f"(anon {(r1['RssAnon'] - r0['RssAnon']) * 1024 / (p1 - p0):.2f})")


def _passes(log_path: Path) -> list[dict]:
    """The daemon's pass log lines (JSON), oldest first."""
    return [json.loads(ln) for ln in log_path.read_text().splitlines() if ln.startswith("{") and '"ms"' in ln]


def _pass_steps(log_path: Path, passes: int) -> str:
    """The median milliseconds of each step over the last `passes` passes the daemon logged."""
    logged = [p["ms"] for p in _passes(log_path)]
    steps = {step: sorted(ms[step] for ms in logged[-passes:]) for step in logged[-1]}
    return ", ".join(f"{step} {values[len(values) // 2]:.1f}" for step, values in steps.items())


def _timeline(log_path: Path, marks: list[tuple[str, float, float]]) -> str:
    """Each timed edit split by its pass's log line (stamped as the pass ends, to the ms):
    signed webhook sent → pass starts → pass ends → the bench sees the new revision."""
    spans: dict[str, list[float]] = {"to the pass": [], "the pass": [], "until seen": []}
    logged = _passes(log_path)
    for doc_id, sent, seen in marks:
        ended, took = next((_stamp(p["ts"]), sum(p["ms"].values()) / 1000) for p in logged
                           if p.get("doc_id") == doc_id and sent < _stamp(p["ts"]) <= seen + 0.001)
        for span, s in zip(spans, (ended - took - sent, took, seen - ended)):
            spans[span].append(s)
    return ", ".join(f"{span} {sorted(v)[len(v) // 2] * 1000:.1f}" for span, v in spans.items())


def _stamp(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def _found(got: list, exact: list) -> int:
    """Results among the exact top 10, ann-benchmarks' way: a result scoring at least the
    exact 10th (less 1e-6) counts, so identical vectors (a page published twice, repeated
    boilerplate) are not misses for coming in another order."""
    return sum(h.score >= exact[-1].score - 1e-6 for h in got)


def _evict(root: Path) -> None:
    """Drop the index files from the page cache, as after a reboot: opening and the first
    searches read from disk, and what `ragsync serve` then reads is charged to its cgroup."""
    for f in root.rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _capped(memory_mb: int | None) -> list[str] | None:
    """A wrapper that runs `ragsync serve` in a memory cgroup of that size (page cache
    included, as on a small machine), or None. cgroup v1 or v2, whichever this machine has."""
    if not memory_mb:
        return None
    mine = Path("/proc/self/cgroup").read_text().splitlines()
    v1 = [line.split(":", 2)[2] for line in mine if line.split(":")[1] == "memory"]
    group, limit = (Path("/sys/fs/cgroup/memory" + v1[0]), "memory.limit_in_bytes") if v1 else \
        (Path("/sys/fs/cgroup" + mine[-1].split(":", 2)[2]), "memory.max")
    group = group / f"ragsync-bench-{os.getpid()}"
    group.mkdir(exist_ok=True)
    atexit.register(lambda: group.exists() and group.rmdir())
    (group / limit).write_text(str(memory_mb * 2**20))
    return ["sh", "-c", f'echo $$ > {group / "cgroup.procs"} && exec "$@"', "sh"]


def _replica(store, pages: list[PageRecord], chunks: dict, copy: int, noise) -> None:
    """One copy of every page: new ids, doc ids and URLs (another host, so a URL-prefix filter
    on an original page matches it alone); each vector nudged and renormalised."""
    batch = []
    for page in pages:
        doc_id, url = f"{copy}{int(page.doc_id):06d}", page.url.replace("://", f"://copy-{copy}.", 1)
        ids = []
        for pid in page.live_ids:
            vec, payload = chunks[pid]
            v = np.asarray(vec, dtype=np.float32) + noise.normal(0, 0.02, len(vec)).astype(np.float32)
            new = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{doc_id}:{pid}"))
            ids.append(new)
            batch.append((new, (v / np.linalg.norm(v)).tolist(),
                          {**payload, "metadata": {**payload["metadata"], "doc_id": doc_id, "url": url}}))
        store.put_page(replace(page, doc_id=doc_id, url=url, live_ids=ids, previous_ids=[]))
        if len(batch) >= 1000:
            store.upsert_chunks(batch)
            batch = []
    store.upsert_chunks(batch)


def _quality(store, embedder: LocalEmbedder, slugs: list[str]) -> dict[str, dict[str, tuple[float, float]]]:
    """hit@10 and MRR@10 of each mode's chunk search on bench-search's query sets, a replica
    (doc id: copy number, then the post id in six digits) counting as its original page."""
    def page(doc_id: str) -> str:
        return slugs[int(doc_id[-6:]) - 1]
    kinds = {"identifiers": bench_search.identifiers(bench_search.rust_pages(), 80), "questions": bench_search.QUESTIONS}
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for mode in MODES:
        out[mode] = {}
        for kind, queries in kinds.items():
            ranks = []
            for q, answers in queries:
                found = nearest(store, probe_for(q, mode, embedder.embed_query), 10, SearchFilter())
                ranks.append(bench_search.first_rank([page(r.metadata["doc_id"]) for r in found], answers))
            out[mode][kind] = bench_search.hit_and_mrr(ranks)
    return out


def _timed_searches(serve: ServeProcess, asked: list[str], mode: str | None = None) -> list[float]:
    out = []
    for q in asked:
        t = time.perf_counter()
        resp = serve.http.get("/search", params={"q": q, "limit": 10} | ({"mode": mode} if mode else {}))
        out.append(time.perf_counter() - t)
        assert resp.status_code == 200 and resp.json()["results"], resp.text
    return out


def _timed_edits(serve: ServeProcess, wp: FakeWordPress, edits: int,
                 rnd: random.Random) -> tuple[list[float], list[tuple[str, float, float]]]:
    """One-sentence edits of corpus pages, each timed from the signed webhook until the
    daemon's page record shows the new revision (its search then returns the new text): the
    page read waits for it (`until`), as a publisher would, so no polling loads the daemon;
    with each edit's doc id and wall-clock send and seen times (for _timeline)."""
    out, marks = [], []
    for n in range(edits):
        post_id = rnd.choice(sorted(wp.posts))
        html = wp.posts[post_id].html
        starts = [m.start() for m in re.finditer("<p>", html)] or [0]
        at = rnd.choice(starts) + 3 if "<p>" in html else 0
        wp.edit(post_id, html=html[:at] + f"Freshness probe {n} zqx{n}. " + html[at:])
        modified = wp.posts[post_id].modified.strftime("%Y-%m-%dT%H:%M:%SZ")
        t, sent = time.perf_counter(), time.time()
        assert serve.webhook("blog", {"type": "post.updated", "id": post_id, "post_type": "post"}).status_code == 202
        seen = serve.admin(f"/admin/pages/blog/{post_id}?until={modified}&wait_s=25")
        assert seen["modified"] == modified, seen
        out.append(time.perf_counter() - t)
        marks.append((str(post_id), sent, time.time()))
    url = serve.admin(f"/admin/pages/blog/{post_id}")["url"]
    hits = serve.http.get("/search", params={"q": f"Freshness probe {edits - 1} zqx{edits - 1}", "limit": 10,
                                             "url_prefix": url}).json()["results"]
    assert any(f"zqx{edits - 1}" in h["text"] for h in hits), "last edit not searchable"
    return out, marks


def _proc_memory(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+)", status).group(1)) / 1024 for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}


def _percentiles(seconds: list[float]) -> str:
    ms = sorted(x * 1000 for x in seconds)
    p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return f"p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms, max {ms[-1]:.0f} ms"


def bench_reconcile(n_pages: int, vectors: dict[str, list[float]], tmp: Path) -> None:
    """10,000 small pages, initial sync (vectors cached), 1 % drift, one reconcile."""
    tmp.mkdir(parents=True)
    wp = FakeWordPress()
    # one-paragraph pages whose text is a corpus chunk's body, so its vector can be reused
    reuse = {t.split("\n\n", 1)[-1]: v for t, v in vectors.items()}
    paragraphs = [t for t in reuse if 20 < len(t) < 600 and "\n" not in t and "  " not in t
                  and t == t.strip() and "<" not in t and "&" not in t]
    for i in range(1, n_pages + 1):
        wp.publish(i, f"Page {i}", f"<p>{paragraphs[i % len(paragraphs)]}</p>")
    embedder = CachingEmbedder(tmp / "models")
    embedder.cache.update(reuse)
    daemon = Daemon(config_mod.load(_config_file(tmp, wp)), embedder=embedder, port=0, workers=2)
    daemon.start()
    engine = daemon.engine
    t = time.perf_counter()
    reconcile.run(engine, ["blog"])
    print(f"reconcile ({n_pages} pages, fake CMS)")
    line("first reconcile (empty index → all pages)", f"{time.perf_counter() - t:.1f}s")
    rnd = random.Random(11)
    drift = rnd.sample(range(1, n_pages + 1), n_pages // 100)
    thirds = len(drift) // 3
    for i in drift[:thirds]:
        wp.edit(i, html=f"<p>Drifted page {i} with brand new text.</p>")
    for i in drift[thirds:2 * thirds]:
        wp.delete(i)
    for j in range(len(drift) - 2 * thirds):
        wp.publish(n_pages + 1 + j, f"New {j}", f"<p>A page created while webhooks were lost, number {j}.</p>")
    fetched_before = sum(wp.fetches.values())
    embedded = embedder.embedded
    t = time.perf_counter()
    (report,) = reconcile.run(engine, ["blog"], force=False)
    line("reconcile with 1 % drift (goal < 60 s)", f"{time.perf_counter() - t:.1f}s")
    line("bodies fetched / chunks embedded", f"{sum(wp.fetches.values()) - fetched_before} / "
                                             f"{embedder.embedded - embedded}  (drifted pages: {len(drift)})")
    line("report", report.summary())
    t = time.perf_counter()
    fetched_before, embedded = sum(wp.fetches.values()), embedder.embedded
    (again,) = reconcile.run(engine, ["blog"])
    line("second reconcile right after", f"{time.perf_counter() - t:.1f}s, {sum(wp.fetches.values()) - fetched_before} "
                                         f"fetches, {embedder.embedded - embedded} embeds")
    bench_polling(engine, wp, len(wp.posts))
    daemon.stop()
    wp.close()


def bench_polling(engine, wp: FakeWordPress, pages: int) -> None:
    """Idle cost of the two clocks at this size (CMS requests and ragsync CPU per minute at
    the default intervals, from one measured poll and audit), then the lag of lost events
    with webhooks off, on short clocks (lag − interval is what ragsync adds)."""
    from ragsync.poller import Poller
    poller = Poller(engine, "bench")
    existing = sorted(wp.posts)
    wp.clock += timedelta(hours=1)                                # the bulk is old news; one later edit
    wp.edit(existing[-1], html="<p>The site's latest edit.</p>")
    poller.audit("blog")                                          # sets the cursor
    while engine.queue.pending():
        time.sleep(0.05)

    def measured(run) -> tuple[int, int, float, float]:
        calls, fetches, rows = wp.list_calls, sum(wp.fetches.values()), wp.listed_rows
        cpu, wall = time.thread_time(), time.perf_counter()
        run()
        return (wp.list_calls - calls + sum(wp.fetches.values()) - fetches, wp.listed_rows - rows,
                (time.thread_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000)

    print(f"polling ({pages} pages, fake CMS, webhooks off)")
    idle_poll = measured(lambda: poller.poll("blog"))
    idle_audit = measured(lambda: poller.audit("blog"))
    for i in existing[:10]:
        wp.edit(i, html=f"<p>Edited without a webhook, page {i}.</p>")
    busy_poll = measured(lambda: poller.poll("blog"))
    while engine.queue.pending():
        time.sleep(0.05)
    for label, (requests, rows, cpu, wall) in (("poll, nothing changed", idle_poll),
                                               ("poll, 10 pages changed", busy_poll),
                                               ("audit (listing vs page records)", idle_audit)):
        line(label, f"{requests} CMS requests, {rows} rows listed, {cpu:.1f} ms CPU, {wall:.0f} ms")
    poll_s, audit_s = Config.poll_interval_s, Config.audit_interval_s     # the defaults
    per_min = 60 / poll_s, 60 / audit_s
    line(f"idle cost per minute at defaults (poll {poll_s:.0f} s, audit {audit_s:.0f} s)",
         f"{idle_poll[0] * per_min[0] + idle_audit[0] * per_min[1]:.1f} CMS requests, "
         f"{idle_poll[2] * per_min[0] + idle_audit[2] * per_min[1]:.0f} ms CPU")

    lost = existing[10:-1][-6:]                                   # neither edited above nor the latest
    poller.intervals = {"poll": 3.0, "audit": 10.0}
    poller.start()
    rnd = random.Random(5)
    lags: dict[str, list[float]] = {"edit": [], "delete": []}
    for n in range(6):
        time.sleep(rnd.uniform(0, 3))                             # a random phase against the clocks
        doc = str(lost[n])
        if n % 2 == 0:
            wp.edit(int(doc), html=f"<p>Lost edit number {n}.</p>")
            want = wp.posts[int(doc)].modified.strftime("%Y-%m-%dT%H:%M:%SZ")
            done = lambda: (r := engine.store.page("blog", doc)) is not None and r.modified == want  # noqa: E731
        else:
            wp.delete(int(doc))
            done = lambda: (r := engine.store.page("blog", doc)) is not None and r.state == "gone"  # noqa: E731
        t = time.perf_counter()
        while not done():
            time.sleep(0.05)
        lags["edit" if n % 2 == 0 else "delete"].append(time.perf_counter() - t)
    poller.stop()
    line("lost edit → searchable, poll every 3 s (max over 3)", f"{max(lags['edit']):.1f} s")
    line("lost delete → gone, audit every 10 s (max over 3)", f"{max(lags['delete']):.1f} s")


def _config_file(tmp: Path, wp: FakeWordPress, polling: str = "poll_interval_s = 0\naudit_interval_s = 0") -> Path:
    """Webhooks only unless `polling` sets the clocks: each part measures one mechanism."""
    path = tmp / "ragsync.toml"
    path.write_text(f'data_dir = "var"\n[server]\nport = {free_port()}\nreconcile_on_start = false\n'
                    f'search_rate_limit_per_s = 0\n[reconcile]\n{polling}\n[[sources]]\n'
                    f'name = "blog"\ntype = "wordpress"\nbase_url = "{wp.url}"\nwebhook_secret_env = "{SECRET_ENV}"\n')
    return path


if __name__ == "__main__":
    run_main(main)
