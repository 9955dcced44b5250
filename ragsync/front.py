"""How ragsync meets HTTP: its cheroot servers and, with an embedded store, the front process.

The embedded engine holds the GIL for whole seconds while it optimizes (every 20,000 points a
bulk sync or reindex writes), and nothing else in that process runs meanwhile: a webhook
answered there waits as long, and a CMS gives up (the plugin after 2 s). So `ragsync serve`
with an embedded store answers `POST /webhooks/*` and `GET /healthz` in a child process of its
own, the front, which needs only what a webhook needs: the sources' secrets and the durable
pending record (SQLite in data_dir, shared between processes). Every other request the front
passes through to the daemon on a loopback port, with the client's address (searches, MCP,
admin and the status page wait while the store is busy, as they must).

The daemon binds the public socket and hands it to the front, so a front that dies is
replaced on the same socket (connections wait in its backlog). A stopping daemon stops its
front first, by closing the front's stdin (the front ignores the SIGTERM that systemd sends
the whole group, so it is never replaced mid-stop), and a daemon killed with -9 takes its front along
(PR_SET_PDEATHSIG). The front sends the keys it recorded and what it accepted and refused
back over a pipe: the daemon queues their tasks (its idle workers take them at once), and
/metrics and the status page count every delivery.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import http.client
import json
import logging
import os
import pickle
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from cheroot import wsgi
from flask import Flask, Response, request
from werkzeug.http import is_hop_by_hop_header

from connectors import open_connectors
from connectors.base import Connector
from ragsync import logs
from ragsync.config import Config
from ragsync.door import RateLimiter, same
from ragsync.errors import RagsyncError
from ragsync.intake import Deliveries, Receiver, WSGIApp, alive, prepare
from ragsync.queue import WorkQueue

log = logging.getLogger("ragsync.front")

MAX_HEADER_BYTES = 64 * 1024          # request line + headers; more is a 413 and a closed connection
READ_TIMEOUT_S = 5                    # a client that stalls this long mid-request is dropped
BACKLOG = 128                         # connections the kernel holds while no thread (or no front) takes them
START_TIMEOUT_S = 60                  # a front not ready by then fails the daemon's start
RESTART_DELAY_S = 0.5                 # between a front's death and its replacement
DAEMON_NICENESS = 10                  # the daemon's threads, below its front (CFS: 9× less CPU share when both run)
UPSTREAM_TIMEOUT_S = 3600             # a request passed through (an admin reconcile may take minutes)
CHUNK = 64 * 1024
FRONT_HEADER = "X-Ragsync-Front"      # the front's secret: the daemon believes the address it vouches for
CLIENT_HEADER = "X-Ragsync-Client"
PASSED_AS_OURS = {"host", "content-length", FRONT_HEADER.lower(), CLIENT_HEADER.lower()}
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_FRONT_KEY, _CLIENT_KEY = (f"HTTP_{h.upper().replace('-', '_')}" for h in (FRONT_HEADER, CLIENT_HEADER))   # WSGI names


def http_server(app: WSGIApp, host: str, port: int, threads: int, sock: socket.socket | None = None) -> wsgi.Server:
    """A bound, ready-to-serve cheroot server (port 0 picks a free one: see .bind_addr);
    `sock`: serve this listening socket instead of binding one."""
    server = _Server((host, port), app, numthreads=threads, server_name="ragsync", request_queue_size=BACKLOG,
                     shutdown_timeout=5, timeout=READ_TIMEOUT_S)
    server.adopted = sock
    server.max_request_header_size = MAX_HEADER_BYTES     # cheroot's default is unlimited; bodies: Flask's limit
    server.prepare()
    return server


class _Server(wsgi.Server):
    adopted: socket.socket | None = None

    def bind(self, family, type, proto=0):
        """cheroot binds in prepare(); a front serves the socket its daemon bound."""
        if self.adopted is None:
            return super().bind(family, type, proto)
        self.socket = self.adopted
        self.bind_addr = self.resolve_real_bind_addr(self.socket)
        return self.socket


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        raise RagsyncError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)    # as cheroot's own: accepted sockets inherit it
    return sock


def behind_front(app: WSGIApp, secret: str) -> WSGIApp:
    """The daemon's app, reached through its front: the client is the address the front saw
    (only when the front's secret comes with it; anyone else's header is dropped)."""
    def vouched(environ: dict, start_response: Callable) -> Iterable[bytes]:
        client = environ.pop(_CLIENT_KEY, None)
        if same(environ.pop(_FRONT_KEY, ""), secret) and client:
            environ["REMOTE_ADDR"] = client
        return app(environ, start_response)
    return vouched


class Front:
    """The daemon's handle on its front process: binds the public socket at once (a busy port
    fails the start), starts the front, replaces it if it dies, and stops it first."""

    def __init__(self, config: Config, host: str, port: int, threads: int) -> None:
        self.config, self.threads = config, threads
        self.socket = listen(host, port)
        self.port: int = self.socket.getsockname()[1]
        self.secret = secrets.token_hex(16)
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._failed: str | None = None
        self._keeper: int | None = None            # the native id of the thread that starts fronts

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def start(self, metrics: Deliveries, instance: str | None, upstream: int, work: WorkQueue) -> None:
        """Start the front (from a thread that lives as long as it: the death signal follows the
        thread that forked) and wait until it serves; `upstream`: the daemon's loopback port;
        `work`: the daemon's queue, which gets a task for each key the front recorded."""
        settings = {"config": self.config, "instance": instance, "upstream": upstream, "secret": self.secret,
                    "threads": self.threads, "log": logs.current()}
        threading.Thread(target=self._keep, args=(settings, metrics, work), daemon=True, name="front").start()
        if not self._ready.wait(START_TIMEOUT_S) or self._failed:
            self.stop()
            raise RagsyncError(f"the front process (webhooks, /healthz) did not start: {self._failed or 'timed out'}")

    def put_first(self) -> None:
        """The front answers ahead of the daemon's own work: every thread of this process but
        the one that starts fronts gets DAEMON_NICENESS more (threads they start inherit it), so
        a CMS's delivery is not time-sliced with the model's threads during a sync
        (scripts/bench-intake while embedding: p99 65 → 35 ms at 5 levels; 10 rather than 5:
        p99 40 → 35 ms and idle 1,870 → 1,970 req/s, the sync's embedding 10 % slower only while
        a flood lasts). For a process of its own (`ragsync serve`), not for a daemon started
        inside another program."""
        for tid in map(int, os.listdir("/proc/self/task")):
            if tid != self._keeper:
                with contextlib.suppress(OSError):     # a thread that has just ended
                    os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + DAEMON_NICENESS))

    def stop(self) -> None:
        """Stop taking requests: the front finishes the ones in flight (theirs to the daemon too)."""
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.stdin.close()                         # type: ignore[union-attr]  # its signal to stop
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.socket.close()

    def _keep(self, settings: dict[str, Any], metrics: Deliveries, work: WorkQueue) -> None:
        self._keeper = threading.get_native_id()
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                proc, events = self._spawn(settings)
                self._proc = proc
            for line in events:
                _apply(json.loads(line), metrics, self._ready, work)
            events.close()
            code = proc.wait()
            if self._stopping.is_set():
                return
            if not self._ready.is_set():
                self._failed = f"it exited with {code} (its error is above)"
                self._ready.set()
                return
            log.warning("the front process (webhooks, /healthz) exited with %s; starting another", code)
            work.recover()                             # what it recorded but had not yet sent us
            self._stopping.wait(RESTART_DELAY_S)

    def _spawn(self, settings: dict[str, Any]) -> tuple[subprocess.Popen, Any]:
        read, write = os.pipe()
        listening = self.socket.fileno()
        proc = subprocess.Popen([sys.executable, "-m", "ragsync.front", str(listening), str(write)],
                                stdin=subprocess.PIPE, pass_fds=(listening, write))
        os.close(write)
        try:                                               # stdin stays open: its end tells the front to stop
            proc.stdin.write(pickle.dumps(settings))       # type: ignore[union-attr]
            proc.stdin.flush()                             # type: ignore[union-attr]
        except BrokenPipeError:
            pass                                           # it died at once: its exit code tells
        return proc, os.fdopen(read, "rb")


def _apply(event: list, metrics: Deliveries, ready: threading.Event, work: WorkQueue) -> None:
    kind, *args = event
    if kind == "ready":
        ready.set()
    elif kind == "queued":
        try:
            work.enqueue(*args)
        except Exception:                  # the keys stay in the durable record; this thread must go on
            log.exception("could not queue the keys the front recorded for %s (queued again at the next start)", args[0])
    elif kind == "webhook":
        metrics.webhook(*args)
    elif kind == "rejected":
        metrics.rejected_delivery(*args)


# -- the front process ---------------------------------------------------------------------------

class _Relay:
    """The keys the front recorded and the deliveries it counted, sent to the daemon by a
    thread of their own (a request never waits on the pipe, even while the daemon is busy).
    The daemon queues the tasks: huey's file then has one writing process, and a key the front
    recorded but never sent (it died) is in the durable record, queued again when it is replaced."""

    def __init__(self, fd: int) -> None:
        self.out = os.fdopen(fd, "wb")
        self.events: queue.SimpleQueue[list] = queue.SimpleQueue()
        threading.Thread(target=self._send, daemon=True, name="relay").start()

    def queued(self, source: str, doc_ids: list[str]) -> None:
        self.events.put(["queued", source, doc_ids])

    def webhook(self, source: str) -> None:
        self.events.put(["webhook", source])

    def rejected_delivery(self, source: str, status: int) -> None:
        self.events.put(["rejected", source, status])

    def ready(self) -> None:
        self.events.put(["ready"])

    def _send(self) -> None:
        while True:
            batch = [self.events.get()]
            while not self.events.empty():
                batch.append(self.events.get())
            try:
                self.out.write(b"".join(json.dumps(e).encode() + b"\n" for e in batch))
                self.out.flush()
            except OSError:
                return                                 # the daemon is gone; so are we, shortly


@dataclass
class _Intake:
    """What the webhook and /healthz views need (intake.Intake), without a store or a model."""
    config: Config
    connectors: dict[str, Connector]
    queue: WorkQueue
    metrics: Deliveries
    instance: str | None


def front_app(intake: _Intake, upstream: int, secret: str) -> Flask:
    """Webhooks and /healthz here; every other request passed through to the daemon's loopback
    port as it came (its raw target, its headers), under the same body limit and JSON errors."""
    app = Flask("ragsync")
    prepare(app, intake.config)
    app.extensions["ragsync"] = intake
    app.register_blueprint(alive)
    app.wsgi_app = Receiver(app.wsgi_app, intake, RateLimiter())        # type: ignore[method-assign]

    def through(path: str = "") -> Response:
        body = request.get_data(cache=False)                  # Flask's limit: 413 here, as the daemon would
        conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=UPSTREAM_TIMEOUT_S)
        try:
            conn.putrequest(request.method, request.environ.get("REQUEST_URI") or request.full_path,
                            skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers.items():
                if not is_hop_by_hop_header(name) and name.lower() not in PASSED_AS_OURS:
                    conn.putheader(name, value)
            conn.putheader("Host", request.host)
            conn.putheader(FRONT_HEADER, secret)
            conn.putheader(CLIENT_HEADER, request.remote_addr or "")
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            answer = conn.getresponse()
        except OSError as exc:
            conn.close()
            raise RagsyncError(f"the daemon did not answer its front: {exc}") from None
        headers = [(k, v) for k, v in answer.getheaders() if not is_hop_by_hop_header(k)]
        return Response(_body(answer, conn), status=answer.status, headers=headers, direct_passthrough=True)

    app.add_url_rule("/", "through", through, methods=METHODS, provide_automatic_options=False)
    app.add_url_rule("/<path:path>", "through", through, methods=METHODS, provide_automatic_options=False)
    return app


def _body(answer: http.client.HTTPResponse, conn: http.client.HTTPConnection) -> Iterator[bytes]:
    """The daemon's answer, streamed as it comes (an export is long)."""
    try:
        while chunk := answer.read1(CHUNK):
            yield chunk
    finally:
        conn.close()


def main() -> None:
    """`python -m ragsync.front LISTEN_FD EVENTS_FD`, its settings pickled on stdin (by Front),
    serving until stdin ends."""
    _die_with_parent()
    listening, events = int(sys.argv[1]), int(sys.argv[2])
    for sig in (signal.SIGINT, signal.SIGTERM):      # Ctrl-C and systemd signal the whole group: the daemon
        signal.signal(sig, signal.SIG_IGN)           # stops us when it is ready to, by closing our stdin
    settings = pickle.load(sys.stdin.buffer)
    logs.setup(*settings["log"])
    config: Config = settings["config"]
    http = httpx.Client()
    relay = _Relay(events)
    intake = _Intake(config, open_connectors(config.sources, http), WorkQueue.for_config(config, _no_passes), relay, settings["instance"])
    intake.queue.hand_off = relay.queued
    server = http_server(front_app(intake, settings["upstream"], settings["secret"]), config.host, 0,
                         settings["threads"], socket.socket(fileno=listening))
    gc.collect()
    gc.freeze()                                      # what start-up loaded: out of every full collection
    relay.ready()
    threading.Thread(target=server.serve, daemon=True, name="http").start()
    sys.stdin.buffer.read()                          # until the daemon closes it (or dies)
    server.stop()
    intake.queue.close()


def _no_passes(source: str, doc_id: str) -> None:
    raise AssertionError("the front process runs no passes")


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: a kill -9 of the daemon takes its front along (and frees the port)."""
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)       # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:                                       # it died before we asked
        os._exit(1)


if __name__ == "__main__":
    main()
