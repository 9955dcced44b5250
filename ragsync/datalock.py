"""Who owns an embedded data_dir. The embedded store admits one process; without a lock of our
own, a CLI command that opened it while `ragsync serve` was starting made the daemon exit, and
a CLI looking for the daemon sent the admin token to whatever answered on the configured port.

`daemon.lock` (flock) is held by whichever process has the store open: the daemon for its life,
a CLI command while it works standalone. The daemon also writes `daemon.json` (its URL and a
random instance id that its /healthz repeats), so the CLI talks only to the daemon that holds
this data_dir, never to another server on the same port.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import time
from pathlib import Path

from ragsync.errors import RagsyncError

log = logging.getLogger("ragsync.datalock")


class DataLock:
    def __init__(self, data_dir: Path, create: bool = True) -> None:
        if create:
            try:
                data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:                   # a file in the way, no permission, a read-only disk
                raise RagsyncError(f"data_dir {data_dir} cannot be created: {exc.strerror}") from None
        self.path = data_dir / "daemon.lock"
        self.info = data_dir / "daemon.json"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def held(self) -> bool:
        """Whether another process holds the lock, found without creating or writing anything
        (`ragsync check` promises to write nothing): no lock file means no daemon ever ran."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def acquire(self, wait_s: float) -> None:
        """Wait (bounded, saying so once) for another ragsync process to let go of the store."""
        deadline, said = time.monotonic() + wait_s, False
        while not self.try_acquire():
            if time.monotonic() > deadline:
                raise RagsyncError(f"another ragsync process still holds {self.path.parent} after {wait_s:.0f}s "
                                   "(a daemon, or a CLI command working on the store)")
            if not said:
                log.warning("waiting up to %.0fs for another ragsync process to release %s", wait_s, self.path.parent)
                said = True
            time.sleep(0.1)

    def announce(self, url: str) -> str:
        """As the daemon: publish where it listens; returns the instance id /healthz will show."""
        instance = secrets.token_hex(16)
        tmp = self.info.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # readable by the owner only
        with os.fdopen(fd, "w") as f:
            json.dump({"url": url, "instance": instance, "pid": os.getpid()}, f)
        os.replace(tmp, self.info)
        return instance

    def announced(self) -> dict[str, str] | None:
        try:
            return json.loads(self.info.read_text())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
