"""A LangChain retriever over ragsync's HTTP API (`pip install ragsync[langchain]`): in the
default embedded mode the collection belongs to the daemon's process, so readers ask the
daemon, with its search token, filters and grouping by page.

    from ragsync.langchain import RagsyncRetriever
    retriever = RagsyncRetriever(url="http://127.0.0.1:8787", token=os.environ["RAGSYNC_SEARCH_KEY"], k=4)
    docs = retriever.invoke("how do I share data between threads?")
"""

from __future__ import annotations

from typing import Literal

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import SecretStr

from ragsync.operations import Reader


class RagsyncRetriever(BaseRetriever):
    """Documents with ragsync's metadata (source, doc_id, url, title, modified, heading path,
    score): one per chunk, or with group="page" one per page."""

    url: str
    token: SecretStr | None = None
    k: int = 4
    source: str | None = None
    url_prefix: str | None = None
    modified_after: str | None = None
    modified_before: str | None = None
    group: Literal["page"] | None = None
    mode: Literal["hybrid", "dense", "keyword"] | None = None
    timeout_s: float = 30.0

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        token = self.token.get_secret_value() if self.token else None
        with Reader(self.url, token, self.timeout_s) as reader:
            found = reader.passages(query, self.k, source=self.source, url_prefix=self.url_prefix,
                                    modified_after=self.modified_after, modified_before=self.modified_before,
                                    group=self.group, mode=self.mode)
        return [Document(page_content=text, metadata={**meta, "score": score}, id=meta.get("id"))
                for text, meta, score in found]
