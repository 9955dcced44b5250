"""A folder of HTML files as a source: the bundled demo, and a simple way to index static
docs. Webhooks are Standard Webhooks deliveries with {"id": "<relative path without .html>"}."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from bs4 import BeautifulSoup

from connectors.base import Connector, Gone, Listed, Page, iso_utc


class FilesConnector(Connector):
    options = frozenset({"path"})

    @property
    def root(self) -> Path:
        return (self.source.base_dir / self.source.options.get("path", "pages")).resolve()

    def fetch(self, doc_id: str) -> Page | Gone:
        path = (self.root / f"{doc_id}.html").resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return Gone(doc_id, "no such file")
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

    def list(self) -> Iterator[Listed]:
        for path in sorted(self.root.rglob("*.html")):
            doc_id = path.relative_to(self.root).with_suffix("").as_posix()
            yield Listed(doc_id, iso_utc(path.stat().st_mtime))
