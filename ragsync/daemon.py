"""`ragsync serve`: in embedded mode the web app and the workers share one process,
because only one process may open the embedded store."""

from __future__ import annotations

import logging
import signal
import threading

from werkzeug.serving import make_server

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
    server = make_server(config.host, config.port, create_app(engine), threaded=True)
    try:
        engine.embedder.model                    # load before taking traffic: /readyz is honest
        engine.queue.recover()
        engine.queue.start(config.workers)
        for sig in (signal.SIGTERM, signal.SIGINT):   # shutdown() blocks: call it off the main thread
            signal.signal(sig, lambda *_: threading.Thread(target=server.shutdown).start())
        if config.reconcile_on_start:
            threading.Thread(target=_startup_reconcile, args=(engine,), daemon=True, name="reconcile").start()
        log.info("ragsync listening on http://%s:%s (data in %s)", config.host, config.port, config.data_dir)
        server.serve_forever()
    finally:
        log.info("stopping: finishing passes in flight")
        server.server_close()
        engine.close()


def _startup_reconcile(engine: Engine) -> None:
    """Level-triggered from the start: whatever changed while ragsync was down is queued."""
    try:
        for report in reconcile.run(engine, list(engine.config.sources)):
            log.info("startup reconcile: %s", report.summary())
    except Exception:
        log.exception("startup reconcile failed")
