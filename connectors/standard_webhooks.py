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


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance_s: int) -> str:
    """Check id, timestamp and signature; return the delivery id. Raises Rejected(401).
    `secret` may hold several secrets separated by spaces: during a rotation the new one and
    the old one are both accepted."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not msg_id or not stamp or not signatures:
        raise Rejected(401, "missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise Rejected(401, "webhook-timestamp is not an integer") from None
    if abs(now - timestamp) > tolerance_s:
        raise Rejected(401, "webhook-timestamp is outside the tolerance window")
    for one in secret.split():
        expected = sign(one, msg_id, timestamp, body).encode()
        for candidate in signatures.split():
            if hmac.compare_digest(candidate.encode(), expected):
                return msg_id
    raise Rejected(401, "no valid signature")
