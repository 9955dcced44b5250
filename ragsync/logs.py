"""Logging set-up: readable lines on a terminal, JSON lines otherwise (journald, Docker, a log
shipper), with the fields an operator filters by: source, doc_id, event_id, outcome, and a
pass's milliseconds per step (ms)."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone

FIELDS = ("source", "doc_id", "event_id", "outcome", "ms")
NOISY = ("huey", "werkzeug", "httpx", "cheroot", "sentence_transformers", "transformers", "mcp")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        line.update({k: getattr(record, k) for k in FIELDS if hasattr(record, k)})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(line, ensure_ascii=False)


def setup(level: int, json_lines: bool | None = None) -> None:
    """Configure the root logger once per process; quiet the per-request/per-task libraries."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines if json_lines is not None else not sys.stderr.isatty():
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


def current() -> tuple[int, bool]:
    """This process's level and line format, for a child process that logs alongside it."""
    root = logging.getLogger()
    return root.level, any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)


def daemon_level() -> None:
    """INFO for the daemon's processes unless RAGSYNC_LOG_LEVEL says otherwise (DEBUG adds a
    line per accepted delivery with its event id, which at intake rates is a lot of lines)."""
    name = os.environ.get("RAGSYNC_LOG_LEVEL", "INFO").upper()
    logging.getLogger().setLevel(getattr(logging, name, logging.INFO))
