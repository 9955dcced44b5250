"""Reading an HTTP answer from a party we do not control (a CMS, an embedding server) within a
size cap and a deadline. httpx's timeout bounds each read, not the request: a server that keeps
streaming a 200 body, or drips it a byte at a time, would otherwise cost unbounded memory or
time. Leaf module: connectors use it too."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx


class AnswerTooLarge(Exception):
    """The body went past the cap (declared or as it streamed in, after decompression)."""


class AnswerTooSlow(httpx.TimeoutException):
    """The whole answer did not arrive within the deadline."""


def bounded(http: httpx.Client, method: str, url: str, *, max_bytes: int, deadline_s: float,
            params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
            json: Any = None) -> httpx.Response:
    """One request whose decompressed body is read whole, or AnswerTooLarge / AnswerTooSlow."""
    started = time.monotonic()
    with http.stream(method, url, params=params, headers=headers, json=json) as resp:
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise AnswerTooLarge(str(resp.request.url.copy_with(query=None)))
        chunks, size = [], 0
        for chunk in resp.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise AnswerTooLarge(str(resp.request.url.copy_with(query=None)))
            if time.monotonic() - started > deadline_s:
                raise AnswerTooSlow(f"no whole answer within {deadline_s:g}s", request=resp.request)
            chunks.append(chunk)
    kept = {k: v for k, v in resp.headers.items() if k.lower() not in ("content-encoding", "content-length")}
    return httpx.Response(resp.status_code, headers=kept, content=b"".join(chunks), request=resp.request)
