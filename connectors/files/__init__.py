"""A folder of HTML files as a source: the bundled demo, and a simple way to index static
docs. Webhooks are Standard Webhooks deliveries with {"id": "<relative path without .html>"}."""

from __future__ import annotations

import string
from collections.abc import Iterator
from pathlib import Path

from bs4 import BeautifulSoup

from connectors.base import MAX_ANSWER_BYTES, Connector, Gone, Listed, Page
from ragsync.errors import FetchError
from ragsync.times import iso_utc


ID_CHARS = frozenset(string.ascii_letters + string.digits + "-_.")


class FilesConnector(Connector):
    options = frozenset({"path"})
    needs_base_url = False                   # base_url, when set, only prefixes the pages' URLs

    @property
    def root(self) -> Path:
        return (self.source.base_dir / self.source.options.get("path", "pages")).resolve()

    def valid_id(self, doc_id: str) -> bool:
        """A relative path without `.html`, in the one form list() gives it: segments of
        letters, digits, '-', '_' and '.', none empty or starting with '.' (so no "..", no "./",
        no NUL), so that one file is one id and reconcile can remove every id it indexed."""
        segments = doc_id.split("/")
        return (0 < len(doc_id) <= 256 and all(s and not s.startswith(".") and set(s) <= ID_CHARS for s in segments))

    def fetch(self, doc_id: str) -> Page | Gone:
        if not self.valid_id(doc_id):
            return Gone(doc_id, "not a file id")
        path = (self.root / f"{doc_id}.html").resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return Gone(doc_id, "no such file")
        if path.stat().st_size > MAX_ANSWER_BYTES:
            raise FetchError(f"{doc_id}.html is larger than {MAX_ANSWER_BYTES >> 20} MiB; not read", transient=False)
        markup = path.read_text(encoding="utf-8", errors="replace")
        soup = BeautifulSoup(markup, "lxml")
        title = soup.title or soup.find("h1")
        base = self.source.base_url
        return Page(
            doc_id=doc_id,
            title=title.get_text(" ", strip=True) if title else doc_id,
            url=f"{base.rstrip('/')}/{doc_id}.html" if base else path.as_uri(),
            html=markup,
            modified=iso_utc(path.stat().st_mtime),
        )

    def list(self, since: str | None = None) -> Iterator[Listed]:
        """A folder has no query: `since` filters the stat() of each file (no file is read)."""
        for path in sorted(self.root.rglob("*.html")):
            doc_id = path.relative_to(self.root).with_suffix("").as_posix()
            modified = iso_utc(path.stat().st_mtime)
            if self.valid_id(doc_id) and (since is None or modified > since):   # others could never be fetched by id
                yield Listed(doc_id, modified)
