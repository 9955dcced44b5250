"""`ragsync reindex`: rebuild the index beside the live one and switch atomically.

The target settings are read from the config file now (so a running daemon, started with the
old ones, can rebuild to the new ones). While the new collection fills, every webhook pass is
applied to both collections (Engine.shadowed), so search keeps serving the old one, fresh, and
no edit is lost. After the build, a catch-up compares the CMS's listing with the new
collection and re-fetches whatever changed meanwhile; then the name switches in one atomic
step (a Qdrant alias, or its embedded equivalent); a second catch-up covers the moment of the
switch. Nothing is reused from the old collection: its vectors and chunks were made another way.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from tqdm import tqdm

from ragsync import config as config_mod
from ragsync import reconcile
from ragsync.chunk import Chunker
from ragsync.embed import open_embedder
from ragsync.errors import FetchError, RagsyncError, StoreError
from ragsync.fingerprint import differences, fingerprint, short
from ragsync.keywords import Keywords
from ragsync.pipeline import Pipeline

if TYPE_CHECKING:
    from ragsync.engine import Engine
    from ragsync.index import Store

ATTEMPTS = 5


@dataclass
class Report:
    old: str
    new: str
    changed: str                        # what differs between the fingerprints ("" for a plain rebuild)
    pages: int = 0                      # documents the CMSs list as published
    points: int = 0
    embedded: int = 0
    caught_up: int = 0                  # documents re-fetched because they changed during the build
    dropped_old: bool = False
    duration_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"reindexed {self.pages} page(s) into {self.new} ({self.points} points, {self.embedded} embedded, "
                f"{self.caught_up} caught up) in {self.duration_s:.1f}s; "
                + (f"{self.old} dropped" if self.dropped_old else f"{self.old} kept (drop it with --drop-old)")
                + (f"; changed: {self.changed}" if self.changed else ""))

    def as_dict(self) -> dict:
        return asdict(self)


def run(engine: Engine, source: str | None = None, drop_old: bool = False) -> Report:
    """Rebuild every source (or only `source`, copying the others' points as they are, which
    is allowed only when the settings did not change) and switch to the new collection."""
    started = time.monotonic()
    target = config_mod.load(engine.config.path)
    if set(target.sources) != set(engine.config.sources):
        raise RagsyncError("the config file's sources differ from the running ones: restart first, then reindex")
    embedder = (engine.embedder if target.embedding == engine.config.embedding
                else open_embedder(target.embedding, target.data_dir))   # a new model: its vectors
    embedder.load()
    wanted = fingerprint(target, embedder)
    current = engine.store.fingerprint() or engine.fingerprint   # what built the live collection
    rebuilt = [engine.config.source(source).name] if source else list(target.sources)
    if source and wanted != current:
        raise RagsyncError(f"the settings changed ({differences(current, wanted)}): "
                           "every source must be rebuilt, so run reindex without --source")
    old_name, new_name = engine.catalog.live(), engine.catalog.next_name()
    shadow = engine.catalog.open(new_name, embedder.dim, Keywords(target.search_language))
    shadow.set_fingerprint(wanted)
    pipeline = Pipeline(shadow, embedder, Chunker(embedder.tokenizer_file, target.max_tokens), short(wanted))
    report = Report(old_name, new_name, differences(current, wanted))
    embedded_before = embedder.embedded
    built = False
    try:
        with engine.shadowed(pipeline):                          # from now on passes write here too
            for kept in set(target.sources) - set(rebuilt):
                _copy(engine.store, shadow, kept)
            listed = {name: {e.doc_id: e.modified for e in engine.connectors[name].list()} for name in rebuilt}
            report.pages = sum(map(len, listed.values()))
            bar = tqdm(total=report.pages, desc="reindex", unit="page", disable=not sys.stderr.isatty())
            for name, docs in listed.items():
                for doc_id in docs:
                    _settle(engine, pipeline, name, doc_id)
                    bar.update(1)
            bar.close()
            report.caught_up += _catch_up(engine, pipeline)
            built = True
            engine.catalog.switch(new_name)                      # the atomic step
            old_store = engine.switch(new_name, shadow, pipeline, target)
    except BaseException:
        if not built:                                            # the live index was never touched
            shadow.close()
            if embedder is not engine.embedder:
                embedder.close()
            engine.catalog.drop(new_name)
        raise
    report.caught_up += _catch_up(engine, pipeline)
    if drop_old:
        old_store.close()
        engine.catalog.drop(old_name)
        report.dropped_old = True
    report.points = shadow.count_chunks()
    report.embedded = embedder.embedded - embedded_before
    report.duration_s = time.monotonic() - started
    return report


def _copy(live: Store, shadow: Store, source: str) -> None:
    """A source that is not rebuilt: its points and page records as they are (same settings)."""
    batch = []
    for point in live.iter_vectors({"metadata.source": source}):
        batch.append(point)
        if len(batch) == 256:
            shadow.upsert_chunks(batch)
            batch = []
    shadow.upsert_chunks(batch)
    for record in live.iter_pages(source):
        shadow.put_page(record)


def _catch_up(engine: Engine, pipeline: Pipeline) -> int:
    """Compare the CMSs with the new collection as the reconciler does, and re-fetch every
    document that changed, vanished or lost points since the new collection last saw it."""
    count = 0
    for source in engine.connectors:
        found = reconcile.plan(engine, source, force=True, store=pipeline.store)
        if found.errors:
            raise RagsyncError(f"reindex catch-up of {source}: {found.errors[0]} (the live index is untouched)")
        for doc_id in found.keys:
            _settle(engine, pipeline, source, doc_id)
        count += len(found.keys)
    return count


def _settle(engine: Engine, pipeline: Pipeline, source: str, doc_id: str) -> None:
    """One document into the new collection, retrying what is transient (a CMS hiccup must
    not throw away an hour of rebuilding)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with engine.key_lock(source, doc_id):
                pipeline.settle(source, doc_id, engine.connectors[source].fetch(doc_id))
            return
        except (FetchError, StoreError) as exc:
            if attempt == ATTEMPTS or (isinstance(exc, FetchError) and not exc.transient):
                raise RagsyncError(f"reindex stopped at {source}/{doc_id}: {exc} (the live index is untouched)") from None
            time.sleep(engine.queue.backoff(attempt, getattr(exc, "retry_after", None)))
