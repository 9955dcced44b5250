"""Standard Webhooks (standardwebhooks.com) signature verification, shared by the
connectors whose senders use it (ragsync's WordPress plugin, the files demo source).

Signed content is "{webhook-id}.{webhook-timestamp}.{raw body}"; the header holds one or
more space-separated "v1,<base64 HMAC-SHA256>" entries; secrets look like "whsec_<base64>".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

from ragsync.errors import ConfigError, Rejected


def secret_key(secret: str) -> bytes:
    """The HMAC key: base64-decoded after "whsec_", as the reference libraries do."""
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("webhook secret is not valid base64 after 'whsec_'") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The header value a sender puts in `webhook-signature` (used by tests and benchmarks)."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify(secrets: list[str], headers: Mapping[str, str], body: bytes, now: float, tolerance_s: int) -> str:
    """Check id, timestamp and signature; return the delivery id. Raises Rejected(401).
    Any of `secrets` may have signed (during a rotation the new one and the old one)."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not msg_id or not stamp or not signatures:
        raise Rejected(401, "missing webhook-id, webhook-timestamp or webhook-signature header")
    timestamp = seconds(stamp, now, tolerance_s, "webhook-timestamp")
    for one in secrets:
        expected = sign(one, msg_id, timestamp, body).encode()
        for candidate in signatures.split():
            if hmac.compare_digest(candidate.encode(), expected):
                return msg_id
    raise Rejected(401, "no valid signature")


def seconds(stamp: str, now: float, tolerance_s: int, what: str, per_second: int = 1) -> int:
    """A signed timestamp (in 1/per_second units) within the tolerance window, or Rejected(401).
    At most 16 digits: a 400-digit one overflowed the float comparison (a 500)."""
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 16):
        raise Rejected(401, f"{what} is not an integer")
    if abs(now - int(stamp) / per_second) > tolerance_s:
        raise Rejected(401, f"{what} is outside the tolerance window")
    return int(stamp)
