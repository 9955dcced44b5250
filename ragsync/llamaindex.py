"""A LlamaIndex retriever over ragsync's HTTP API (`pip install ragsync[llamaindex]`): in the
default embedded mode the collection belongs to the daemon's process, so readers ask the
daemon, with its search token, filters and grouping by page.

    from ragsync.llamaindex import RagsyncRetriever
    retriever = RagsyncRetriever("http://127.0.0.1:8787", token=os.environ["RAGSYNC_SEARCH_KEY"], k=4)
    nodes = retriever.retrieve("how do I share data between threads?")
"""

from __future__ import annotations

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from ragsync.operations import Reader


class RagsyncRetriever(BaseRetriever):
    """Nodes with ragsync's metadata (source, doc_id, url, title, modified, heading path) and
    score: one per chunk, or with group="page" one per page."""

    def __init__(self, url: str, token: str | None = None, k: int = 4, timeout_s: float = 30.0,
                 **filters: str | None) -> None:
        """`filters`: source, url_prefix, modified_after, modified_before, group ("page"), mode."""
        super().__init__()
        self.url, self._token, self.k, self.timeout_s, self.filters = url, token, k, timeout_s, filters

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        with Reader(self.url, self._token, self.timeout_s) as reader:
            found = reader.passages(query_bundle.query_str, self.k, **self.filters)
        return [NodeWithScore(node=TextNode(text=text, metadata=meta, **({"id_": meta["id"]} if "id" in meta else {})),
                              score=score) for text, meta, score in found]
