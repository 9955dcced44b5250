"""Keyword vectors: a sparse BM25 vector per chunk beside its dense one, made by Qdrant's own
BM25 (qdrant-edge's offline `Bm25`, which mirrors the server's `Qdrant/bm25` config) and
scored with Qdrant's IDF modifier. One model makes the vectors for both engines, so the
embedded store and a Qdrant server hold the same token ids and rank alike.

`[search] language` picks the tokenizer, stemmer and stopwords: a Snowball language
("english", "german", …), or "japanese", "chinese" and "multilingual" (Qdrant's multilingual
tokenizer, which segments CJK text; no stemming). It is part of the fingerprint: changing it
goes through `ragsync reindex`."""

from __future__ import annotations

from typing import Any

import qdrant_edge as qe

from ragsync.errors import ConfigError

SPARSE = "bm25"                                   # the sparse vector's name in the collection
VERSION = 1                                       # what goes into the sparse text, for the fingerprint
CJK = {"japanese": qe.Language.Japanese, "chinese": qe.Language.Chinese}
def _stemmed() -> set[str]:
    """The Snowball languages Qdrant's Bm25 takes by name (stemmer and stopwords)."""
    names = set()
    for name in (n.lower() for n in dir(qe.SnowballLanguage) if not n.startswith("_")):
        try:
            qe.Bm25(qe.Bm25Config(language=name))
            names.add(name)
        except ValueError:                            # a stemmer without a stopword list
            pass
    return names


SNOWBALL = _stemmed()
LANGUAGES = sorted({*SNOWBALL, *CJK, "multilingual"})


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise ConfigError(f"[search] language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    return language


class Keywords:
    """Sparse BM25 vectors for documents and queries in one language."""

    def __init__(self, language: str = "english") -> None:
        self.language = check_language(language)
        if language in SNOWBALL:
            config = qe.Bm25Config(tokenizer=qe.TokenizerType.Word, language=language)
        else:                                     # CJK or mixed: segment, never stem
            stop = qe.StopwordsSet(languages={CJK[language]}) if language in CJK else qe.StopwordsSet(custom=set())
            config = qe.Bm25Config(tokenizer=qe.TokenizerType.Multilingual, stopwords=stop,
                                   stemmer=qe.DisabledStemmer())
        self.model = qe.Bm25(config)

    def document(self, payload: dict[str, Any]) -> qe.SparseVector:
        """A chunk point's sparse vector, from its title, heading path and text."""
        return self.model.embed_document(text(payload))

    def query(self, query: str) -> qe.SparseVector:
        return self.model.embed_query(query)


def identity(language: str) -> dict[str, Any]:
    """What determines the keyword vectors, for the fingerprint."""
    return {"keywords": f"bm25/{language}/v{VERSION}"}


def text(payload: dict[str, Any]) -> str:
    """What the keyword side reads of a chunk: the page title and the heading path locate it."""
    meta = payload.get("metadata") or {}
    return "\n".join([str(meta.get("title") or ""), " ".join(meta.get("heading_path") or []),
                      str(payload.get("page_content") or "")])
