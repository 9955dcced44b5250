"""Webhook intake benchmark (run through scripts/bench-intake): wrk drives signed deliveries
into a real `ragsync serve` (cheroot, SQLite huey, embedded store), idle and then while the
workers embed the shared corpus. Every delivery is unique (own webhook-id, fresh timestamp),
so each one is verified, recorded durably and queued: nothing is answered from a cache.

First the floor, measured the same way in the same run: a receiver that does only what a 202
must (the Standard Webhooks check, one SQLite commit of the delivery, WAL + synchronous=FULL) on
the same HTTP server (cheroot, as many threads), with no Flask, queue or daemon beside it.

`--door-points N`: the door during an initial sync of at least N points (copies of the corpus,
small chunks so that N is reached soon), the embedded engine optimizing every 20,000 points
written: a signed webhook and a /healthz every 100 ms, their latency and failures."""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from connectors.standard_webhooks import verify  # noqa: E402
from ragsync.errors import Rejected  # noqa: E402
from ragsync.front import http_server  # noqa: E402
from tests.support import ADMIN_TOKEN, SECRET, SECRET_ENV, free_port, signed, wait_for  # noqa: E402

LUA = r"""
local rows, i, step = {}, 0, 1
function setup(thread) thread:set("tid", #threads_seen + 1); table.insert(threads_seen, thread) end
threads_seen = {}
function init(args)
  for line in io.lines(args[1]) do
    local id, ts, sig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    rows[#rows + 1] = {id, ts, sig, body}
  end
  i, step = tonumber(tid) - 1, tonumber(args[2])
end
function request()
  i = i + step
  local r = rows[(i % #rows) + 1]
  return wrk.format("POST", args_path, {["content-type"] = "application/json", ["webhook-id"] = r[1],
                    ["webhook-timestamp"] = r[2], ["webhook-signature"] = r[3]}, r[4])
end
args_path = "/webhooks/docs"
"""


def deliveries(path: Path, n: int, distinct_docs: int) -> None:
    """n unique signed deliveries for `distinct_docs` documents (ids that have no file: each
    pass is a cheap fetch → gone, so the workers stay busy with the sync, not with these)."""
    with path.open("w") as out:
        for k in range(n):
            raw, headers = signed({"id": f"bench-{k % distinct_docs}"}, msg_id=f"msg_{k:08d}_{time.time_ns()}")
            out.write(f"{headers['webhook-id']}\t{headers['webhook-timestamp']}\t{headers['webhook-signature']}\t"
                      f"{raw.decode()}\n")


def floor_app(db: Path):
    """The floor receiver (a WSGI app): verify, commit, 202."""
    conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)    # autocommit: a commit each
    conn.execute("pragma journal_mode=wal")
    conn.execute("pragma synchronous=full")
    conn.execute("create table deliveries (id text primary key, body blob)")
    lock = threading.Lock()

    def app(environ: dict, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {k[5:].lower().replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
        try:
            delivery_id = verify([SECRET], headers, body, time.time(), 300)
        except Rejected:
            start_response("401 Unauthorized", [("Content-Length", "0")])
            return [b""]
        with lock:
            conn.execute("insert or ignore into deliveries values (?, ?)", (delivery_id, body))
        start_response("202 Accepted", [("Content-Type", "application/json"), ("Content-Length", "2")])
        return [b"{}"]
    return app


def run_floor(lua: Path, rows: Path, args: argparse.Namespace, tmp: Path) -> dict:
    server = http_server(floor_app(tmp / "floor.db"), "127.0.0.1", 0, args.http_threads)
    threading.Thread(target=server.serve, daemon=True).start()
    try:
        return run_wrk(f"http://127.0.0.1:{server.bind_addr[1]}", lua, rows, args.seconds, args.threads,
                       args.connections)
    finally:
        server.stop()


def run_wrk(url: str, lua: Path, rows: Path, seconds: int, threads: int, connections: int) -> dict:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua),
                          url + "/webhooks/docs", "--", str(rows), str(threads)],
                         capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50_ms": ms("50"), "p99_ms": ms("99"),
            "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket.groups())) if socket else 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--http-threads", type=int, default=16, help="[server] http_threads")
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus" / "rust-docs.jsonl"))
    ap.add_argument("--door-points", type=int, default=0,
                    help="only the door during an initial sync of at least this many points (100000: ~5 min)")
    args = ap.parse_args()
    if args.door_points:
        bench_door(args.door_points, [json.loads(line) for line in open(args.corpus, encoding="utf-8")])
        return
    tmp, url, proc = serve("ragsync-bench-intake-", f"http_threads = {args.http_threads}\n")
    pages = tmp / "pages"
    client = httpx.Client(base_url=url, timeout=30)
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        wait_for(lambda: _ready(client), 180, "ragsync serve")
        lua = tmp / "intake.lua"
        lua.write_text(LUA)
        per_run = int(args.seconds * 4000)

        rows = tmp / "idle.tsv"
        deliveries(rows, per_run, 500)
        floor = run_floor(lua, rows, args, tmp)
        idle = run_wrk(url, lua, rows, args.seconds, args.threads, args.connections)
        wait_for(lambda: client.get("/admin/status", headers=admin).json()["pending"] == 0, 300, "the queue to drain")

        corpus = [json.loads(line) for line in open(args.corpus, encoding="utf-8")]
        for row in corpus:
            (pages / f"{row['slug']}.html").write_text(row["html"], encoding="utf-8")
        for row in corpus:                                # a large sync: every page of the corpus
            raw, headers = signed({"id": row["slug"]})
            assert client.post("/webhooks/docs", content=raw, headers=headers).status_code == 202
        embedded = lambda: client.get("/admin/status", headers=admin).json()["chunks_embedded"]  # noqa: E731
        wait_for(lambda: embedded() > 0, 120, "embedding to start")
        embedded_before = embedded()
        rows = tmp / "load.tsv"
        deliveries(rows, per_run, 500)
        loaded = run_wrk(url, lua, rows, args.seconds, args.threads, args.connections)
        during = embedded() - embedded_before
        still = client.get("/admin/status", headers=admin).json()["pending"]
    finally:
        proc.terminate()
        proc.wait(120)
        client.close()

    print(f"ragsync webhook intake: wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, "
          f"unique signed Standard Webhooks deliveries → POST /webhooks/docs (cheroot, SQLite huey)")
    for name, r in (("floor", floor), ("idle", idle), ("while embedding", loaded)):
        print(f"  {name:<16} {r['rps']:>8.0f} req/s  {r['requests']:>7} requests  p50 {r['p50_ms']:6.2f} ms  "
              f"p99 {r['p99_ms']:6.2f} ms  errors {r['errors']}")
    print(f"  during the loaded run the workers embedded {during} chunks "
          f"({during / args.seconds:.1f}/s); {still} keys still pending after it")
    print(f"  idle / floor: {idle['rps'] / floor['rps']:.2f}x the answers a second, p50 "
          f"{idle['p50_ms'] / floor['p50_ms']:.2f}x, p99 {idle['p99_ms'] / floor['p99_ms']:.2f}x (floor: verify + one "
          f"SQLite commit on cheroot, {args.http_threads} threads, no Flask, queue or daemon)")
    print(f"  p99 under embedding load / idle: {loaded['p99_ms'] / idle['p99_ms']:.2f}x "
          f"(p50 {loaded['p50_ms'] / idle['p50_ms']:.2f}x)")


def bench_door(points: int, corpus: list[dict]) -> None:
    tmp, url, proc = serve("ragsync-bench-door-", "[chunking]\nmax_tokens = 24\n")
    pages, log_path, copies = tmp / "pages", tmp / "serve.log", 0
    client = httpx.Client(base_url=url, timeout=30)
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    status = lambda: client.get("/admin/status", headers=admin).json()  # noqa: E731
    hooks: list[float] = []
    health: list[float] = []
    failures = {"webhook": 0, "healthz": 0}
    done = threading.Event()

    def probe(kind: str, out: list[float]) -> None:
        with httpx.Client(base_url=url, timeout=5) as http:
            n = 0
            while not done.is_set():
                n += 1
                began = time.perf_counter()
                try:
                    if kind == "webhook":
                        raw, headers = signed({"id": f"probe-{n}"})
                        ok = http.post("/webhooks/docs", content=raw, headers=headers).status_code == 202
                    else:
                        ok = http.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                out.append(time.perf_counter() - began)
                failures[kind] += not ok
                time.sleep(max(0.0, 0.1 - out[-1]))
    try:
        wait_for(lambda: _ready(client), 180, "ragsync serve")
        for kind, out in (("webhook", hooks), ("healthz", health)):
            threading.Thread(target=probe, args=(kind, out), daemon=True).start()
        began = time.perf_counter()
        while copies == 0 or status()["points"] < points:       # copies of the corpus until the sync reaches `points`
            for row in corpus:
                (pages / f"c{copies}-{row['slug']}.html").write_text(f"<p>Copy {copies}.</p>{row['html']}", encoding="utf-8")
            copies += 1
            assert client.post("/admin/reconcile", headers=admin, json={}, timeout=3600).status_code == 200
            wait_for(lambda: status()["pending"] == 0, 3600, "the sync")
        took = time.perf_counter() - began
        done.set()
        final = status()
    finally:
        done.set()
        proc.terminate()
        proc.wait(120)
        client.close()
    optimized = [ln for ln in log_path.read_text().splitlines() if "index optimized" in ln]
    optimized = [json.loads(ln)["msg"] if ln.startswith("{") else ln for ln in optimized]
    print(f"the door during an initial sync: {final['points']:,} points from {copies} copies of the corpus in "
          f"{took:.0f} s (max_tokens 24), {len(optimized)} optimize passes")
    for line in optimized:
        print(f"    {line}")
    for name, kind, got in (("signed webhook → 202", "webhook", hooks), ("GET /healthz", "healthz", health)):
        ms = sorted(x * 1000 for x in got)
        print(f"  {name:<22} {len(ms):>5} requests  p50 {ms[len(ms) // 2]:7.1f} ms  p99 {ms[int(len(ms) * 0.99)]:7.1f} ms  "
              f"max {ms[-1]:7.1f} ms  failed {failures[kind]}")


def serve(prefix: str, settings: str) -> tuple[Path, str, subprocess.Popen]:
    """A new folder of pages (empty) and `ragsync serve` over it; `settings`: more [server] keys
    and tables. Its log goes to serve.log there."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    (tmp / "pages").mkdir()
    port = free_port()
    (tmp / "ragsync.toml").write_text(
        f'data_dir = "var"\n[server]\nport = {port}\nreconcile_on_start = false\n{settings}'
        f'[reconcile]\npoll_interval_s = 0\naudit_interval_s = 0\n[[sources]]\nname = "docs"\ntype = "files"\n'
        f'path = "pages"\nwebhook_secret_env = "{SECRET_ENV}"\n')
    env = {**os.environ, SECRET_ENV: SECRET, "RAGSYNC_ADMIN_TOKEN": ADMIN_TOKEN}
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "ragsync"), "--config", str(tmp / "ragsync.toml"), "serve"],
                            stdout=open(tmp / "serve.log", "w"), stderr=subprocess.STDOUT, env=env)
    return tmp, f"http://127.0.0.1:{port}", proc


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
