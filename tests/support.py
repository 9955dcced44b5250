"""Helpers shared by the tests and the benchmarks (no fixtures here: conftest.py has those)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable

from connectors.standard_webhooks import sign

SECRET = "whsec_" + base64.b64encode(b"ragsync-test-secret-0123456789").decode()
SECRET_ENV = "RAGSYNC_TEST_SECRET"
ADMIN_TOKEN = "test-admin-token"


def signed(body: dict | bytes, *, secret: str = SECRET, timestamp: int | None = None,
           msg_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
               "webhook-signature": sign(secret, msg_id, ts, raw)}
    return raw, headers


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll a condition (never a fixed sleep): fail with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
