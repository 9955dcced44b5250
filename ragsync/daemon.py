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
from ragsync.engine import Engine
from ragsync.web import create_app

log = logging.getLogger("ragsync.daemon")


def serve(config: Config) -> None:
    for source in config.sources.values():       # fail at start, not at the first webhook
        if source.webhook_secret_env:
            source.secret()
    engine = Engine(config)
    server = http_server(create_app(engine), config.host, config.port, config.http_threads)
    try:
        engine.embedder.model                    # load before taking traffic: /readyz is honest
        engine.queue.recover()
        engine.queue.start(config.workers)
        for sig in (signal.SIGTERM, signal.SIGINT):   # stop() blocks: call it off the main thread
            signal.signal(sig, lambda *_: threading.Thread(target=server.stop).start())
        if config.reconcile_on_start:
            threading.Thread(target=_startup_reconcile, args=(engine,), daemon=True, name="reconcile").start()
        log.info("ragsync listening on http://%s:%s (data in %s)", config.host, config.port, config.data_dir)
        server.serve()
    finally:
        log.info("stopping: finishing passes in flight")
        server.stop()
        engine.close()


def http_server(app: Flask, host: str, port: int, threads: int) -> wsgi.Server:
    """A bound, ready-to-serve cheroot server (port 0 picks a free one: see .bind_addr)."""
    server = wsgi.Server((host, port), app, numthreads=threads, server_name="ragsync",
                         request_queue_size=128, shutdown_timeout=5)
    server.prepare()
    return server


def _startup_reconcile(engine: Engine) -> None:
    """Level-triggered from the start: whatever changed while ragsync was down is queued."""
    try:
        for report in reconcile.run(engine, list(engine.config.sources)):
            log.info("startup reconcile: %s", report.summary())
    except Exception:
        log.exception("startup reconcile failed")
