"""`ragsync serve`: in embedded mode the web app and the workers share one process,
because only one process may open the embedded store. HTTP is served by cheroot (CherryPy's
production WSGI server): a thread pool of its own, so an ack never waits on a pass."""

from __future__ import annotations

import logging
import signal
import threading

from cheroot import wsgi
from flask import Flask

from ragsync import reconcile
from ragsync.config import Config
from ragsync.datalock import DataLock
from ragsync.errors import ConfigError, RagsyncError
from ragsync.engine import Engine
from ragsync.web import create_app

log = logging.getLogger("ragsync.daemon")

MAX_HEADER_BYTES = 64 * 1024          # request line + headers; more is a 413 and a closed connection
STORE_WAIT_S = 120                    # how long a starting daemon waits for a CLI command to finish
READ_TIMEOUT_S = 5                    # a client that stalls this long mid-request is dropped


def serve(config: Config, role: str = "all") -> None:
    """role "all": web and workers in one process (embedded mode). "web" / "worker": one side
    each, for server mode, where they share Redis (and a Qdrant server) across processes."""
    if role != "all" and not config.redis_url:
        raise ConfigError(f"ragsync {role} needs [queue] redis_url (processes share the queue through Redis); "
                          "on one machine run `ragsync serve`")
    config.search_token()                        # named but unset, or an example value: fail now
    config.admin_token()
    lock = DataLock(config.data_dir) if role != "web" and not config.qdrant_url else None
    if lock:                                     # the embedded store admits one process: wait for it
        lock.acquire(STORE_WAIT_S)
    try:
        _serve(config, role, lock)
    finally:
        if lock:
            lock.release()


def _serve(config: Config, role: str, lock: DataLock | None) -> None:
    engine = Engine(config, lazy_store=role == "web")
    for name, source in config.sources.items():   # fail at start, not at the first webhook
        if source.webhook_secret_env:
            try:
                engine.connectors[name].check_secrets()
            except RagsyncError as exc:
                engine.close()
                raise ConfigError(f"source {name!r}: {exc}") from None
    if role != "web":
        try:
            engine.check_fingerprint()               # never write into an index built another way
        except Exception:
            engine.close()
            raise
    stopped = threading.Event()
    server = http_server(create_app(engine), config.host, config.port, config.http_threads) if role != "worker" else None
    stop = server.stop if server else stopped.set
    try:
        engine.embedder.load()                   # load (or reach) it before taking traffic: /readyz is honest
        if role != "web":
            engine.queue.recover()
            engine.queue.start(config.workers)
        for sig in (signal.SIGTERM, signal.SIGINT):   # stop() blocks: call it off the main thread
            signal.signal(sig, lambda *_: threading.Thread(target=stop).start())
        if config.reconcile_on_start and role != "web":
            threading.Thread(target=_startup_reconcile, args=(engine,), daemon=True, name="reconcile").start()
        if server:
            if lock:
                engine.instance = lock.announce(config.base_url)
            log.info("ragsync %s listening on http://%s:%s (data in %s)", role, config.host, config.port,
                     config.data_dir)
            server.serve()
        else:
            log.info("ragsync worker running %d worker thread(s) on %s", config.workers, config.redis_url)
            stopped.wait()
    finally:
        log.info("stopping: finishing passes in flight")
        if server:
            server.stop()
        engine.close()


def http_server(app: Flask, host: str, port: int, threads: int) -> wsgi.Server:
    """A bound, ready-to-serve cheroot server (port 0 picks a free one: see .bind_addr)."""
    server = wsgi.Server((host, port), app, numthreads=threads, server_name="ragsync",
                         request_queue_size=128, shutdown_timeout=5, timeout=READ_TIMEOUT_S)
    server.max_request_header_size = MAX_HEADER_BYTES     # cheroot's default is unlimited; bodies: Flask's limit
    server.prepare()
    return server


def _startup_reconcile(engine: Engine) -> None:
    """Level-triggered from the start: whatever changed while ragsync was down is queued."""
    try:
        for report in reconcile.run(engine, list(engine.config.sources)):
            log.info("startup reconcile: %s", report.summary())
    except Exception:
        log.exception("startup reconcile failed")
