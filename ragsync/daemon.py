"""The daemon, as one object the way huey's Consumer is one: `start()` brings up its parts
in threads, `stop()` takes them down (passes in flight finish first), `run()` does both
around a wait for SIGTERM/SIGINT. `ragsync serve`, the tests and the benchmark all start
ragsync through it, so they all check secrets and the fingerprint and recover pending work.

In embedded mode the web app and the workers share one process (Role.SERVE), because only
one process may open the embedded store; webhooks and /healthz are answered by its front
process (front.py), which never waits on the store. HTTP is served by cheroot (CherryPy's
production WSGI server): a thread pool of its own, so an ack never waits on a pass."""

from __future__ import annotations

import enum
import gc
import logging
import signal
import threading
import time
import uuid

from cheroot import wsgi
from flask import Flask

from ragsync import index, reconcile
from ragsync.config import Config
from ragsync.datalock import DataLock
from ragsync.embed import Embedder
from ragsync.engine import Engine
from ragsync.errors import ConfigError, RagsyncError
from ragsync.fingerprint import refusal
from ragsync.front import Front, behind_front, http_server
from ragsync.mcp import Bridge
from ragsync.operations import healthz
from ragsync.poller import Poller
from ragsync.web import create_app

log = logging.getLogger("ragsync.daemon")

STORE_WAIT_S = 120                    # how long a starting daemon waits for a CLI command to finish
STARTUP_LEASE_S = 600                 # server mode: workers started within this share one startup reconcile


class Role(enum.Enum):
    SERVE = "serve"       # web and workers in one process (embedded mode, or one box)
    WEB = "web"           # server mode: webhooks, search, admin; shares Redis and a Qdrant server
    WORKER = "worker"     # server mode: passes from the shared Redis queue

    @property
    def http(self) -> bool:
        """Serves webhooks, search and the admin API (a worker serves health and metrics only)."""
        return self is not Role.WORKER

    @property
    def works(self) -> bool:
        return self is not Role.WEB


class Daemon:
    def __init__(self, config: Config, role: Role = Role.SERVE, *, embedder: Embedder | None = None,
                 port: int | None = None, workers: int | None = None, http_threads: int | None = None) -> None:
        """`embedder`: one already loaded (tests share one); `port` 0 picks a free one (see
        `url`; a worker's port serves health and metrics only, `[server] worker_port` by
        default, none when that is 0); `workers` 0 runs no passes (they wait in the queue)."""
        if role is not Role.SERVE and not config.redis_url:
            raise ConfigError(f"ragsync {role.value} needs [queue] redis_url (processes share the queue through "
                              "Redis); on one machine run `ragsync serve`")
        self.config, self.role, self.embedder = config, role, embedder
        if port is None:
            port = config.worker_port if role is Role.WORKER else config.port
        self.port = None if role is Role.WORKER and port == 0 else port      # None: no HTTP at all
        self.host = config.worker_host if role is Role.WORKER else config.host
        self.holder = uuid.uuid4().hex              # this process, for the leases it takes
        self.workers = config.workers if workers is None else workers
        self.http_threads = http_threads or config.http_threads
        self.engine: Engine | None = None
        self.poller: Poller | None = None
        self.app: Flask | None = None                # the web app (behind the front, when there is one)
        self.server: wsgi.Server | None = None
        self.front: Front | None = None
        self.mcp: Bridge | None = None
        self.url: str | None = None
        self._lock: DataLock | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        """Checks first (secrets, tokens, the index's fingerprint), then the model, recovery of
        pending keys, the workers, HTTP, the startup reconcile and polling. Fails with one line."""
        config = self.config
        config.search_token()                        # named but unset, or an example value: fail now
        config.admin_token()
        if self.port and healthz(f"http://{self.host}:{self.port}") is not None:
            raise RagsyncError(f"something already answers on http://{self.host}:{self.port}; is ragsync running?")
        if self.role.works and config.exclusive:     # an embedded store or queue admits one process: wait for it
            self._lock = DataLock(config.data_dir)
            self._lock.acquire(STORE_WAIT_S)
        try:
            self.engine = engine = Engine(config, embedder=self.embedder, lazy_store=True)
            self._check(engine)
            if self.port is not None:
                self.app = app = create_app(engine, worker=not self.role.http)
                self.mcp = app.extensions.get("ragsync.mcp")
                if self.role is Role.SERVE and not config.qdrant_url:   # the store holds the GIL for seconds
                    self.front = Front(config, self.host, self.port, self.http_threads)
                    self.server = http_server(behind_front(app, self.front.secret), "127.0.0.1", 0, self.http_threads)
                    self.url = f"http://{self.host}:{self.front.port}"
                else:
                    self.server = http_server(app, self.host, self.port, self.http_threads)
                    self.url = f"http://{self.host}:{self.server.bind_addr[1]}"
            engine.embedder.load()                   # load (or reach) it before taking traffic: /readyz is honest
            gc.collect()
            gc.freeze()         # the model's and libraries' ~0.4M objects: out of every full collection (~0.3 s each)
            if self.role.works:
                engine.queue.recover()
                if self.workers:
                    engine.queue.start(self.workers)
                # one process of a deployment reconciles at start (a Redis lease in server mode)
                if config.reconcile_on_start and engine.notes.lease("startup-reconcile", self.holder, STARTUP_LEASE_S):
                    threading.Thread(target=_startup_reconcile, args=(engine, self._stopped), daemon=True,
                                     name="reconcile").start()
                if config.poll_interval_s or config.audit_interval_s:
                    self.poller = Poller(engine, holder=self.holder)
                    self.poller.start()
            if self.server is not None:
                if self._lock and self.role is Role.SERVE:     # the CLI's admin calls go to this URL
                    engine.instance = self._lock.announce(self.url)
                threading.Thread(target=self.server.serve, daemon=True, name="http").start()
                if self.front is not None:
                    self.front.start(engine.metrics, engine.instance, self.server.bind_addr[1], engine.queue)
                log.info("ragsync %s listening on %s (data in %s)", self.role.value, self.url, config.data_dir)
            if self.role is Role.WORKER:
                log.info("ragsync worker running %d worker thread(s) on %s", self.workers, config.redis_url)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop taking requests, finish the passes in flight, close the store, release the data_dir."""
        self._stopped.set()
        parts = (self.front and self.front.stop, self.server and self.server.stop, self.mcp and self.mcp.close,
                 self.poller and self.poller.stop, self.engine and self.engine.close, self._lock and self._lock.release)
        self.front, self.server, self.mcp, self.poller, self.engine, self._lock = None, None, None, None, None, None
        for close in parts:                          # in this order
            if close:
                close()

    def run(self) -> None:
        """start(), then serve until SIGTERM or SIGINT, then stop(). The process is ours: its
        signals, and its threads' priority below the front's."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stopped.set())
        self.start()
        if self.front is not None:
            self.front.put_first()
        try:
            self._stopped.wait()
        finally:
            log.info("stopping: finishing passes in flight")
            began = time.monotonic()
            self.stop()
            log.info("stopped in %.1fs", time.monotonic() - began)

    def _check(self, engine: Engine) -> None:
        for name, source in self.config.sources.items():   # fail at start, not at the first webhook
            connector = engine.connectors[name]
            try:
                connector.check_settings()
                if source.webhook_secret_env:
                    connector.check_secrets()
            except RagsyncError as exc:
                message = str(exc)
                raise ConfigError(message if message.startswith("source ") else f"source {name!r}: {message}") from None
        if self.role.works:                          # never write into an index built another way
            why = refusal(index.found(self.config), engine.fingerprint, self.config.collection)
            if why:
                raise RagsyncError(why)
            engine.check_fingerprint()               # opens it; also the stamp inside (older copies have none beside)


def _startup_reconcile(engine: Engine, stopped: threading.Event) -> None:
    """Level-triggered from the start: whatever changed while ragsync was down is queued. A
    stop does not wait for it (listing a large CMS takes minutes): the engine closes under it,
    which is no failure, and the next start reconciles again."""
    try:
        for report in reconcile.run(engine, list(engine.config.sources)):
            log.info("startup reconcile: %s", report.summary())
    except Exception:
        if stopped.is_set():
            log.info("startup reconcile: stopped with the daemon; the next start reconciles again")
        else:
            log.exception("startup reconcile failed")
