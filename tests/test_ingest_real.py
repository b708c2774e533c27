"""Ingest the real feed files from ../shared/data and check every count against an independent count.

The expected numbers are computed here from the raw bytes (regex, xml.etree,
json), never from the library, so a parser that drops or duplicates an entry
makes these tests fail.
"""

from __future__ import annotations

import ast
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import FEEDS, NOON, SHARED_DATA, Deployment, fixed_clock

from newsletter import pipeline
from newsletter.models import FeedReport, RunReport
from newsletter.store import Store

ATOM = "http://www.w3.org/2005/Atom"
ARXIV_NS = "http://arxiv.org/schemas/atom"
ABS_ID = re.compile(rb"arxiv\.org/abs/(\d{4}\.\d{4,5})")

RSS_SNAPSHOTS = sorted(FEEDS.glob("arxiv-to-rss/*/feeds/feed.xml"))
RSS_FIRST = FEEDS / "arxiv-to-rss" / "2026-08-20_bdc6c39f79" / "feeds" / "feed.xml"
TRUNCATED_ATOM = FEEDS / "arxiv-atom-truncated" / "arxiv-cs.AI-2025-08-20.atom.xml"
ARXIV_API = FEEDS / "xiv" / "tests" / "fixtures" / "arxiv_response.xml"
HF_JSON_FILES = sorted((FEEDS / "hf-daily-papers-json" / "Paper_metadata_download").glob("*.json"))
HF_REPR_FILE = "2024-12-11.json"
HF_JUNE = SHARED_DATA / "papers" / "hf-daily-paper-newsletter-chinese" / "Paper_metadata_download"
JSONL_JUNE = SHARED_DATA / "papers" / "daily-arXiv-ai-enhanced" / "data"


# --- helpers --------------------------------------------------------------------------


def ingest(deployment: Deployment) -> RunReport:
    return pipeline.ingest_feeds(deployment.config(), clock=fixed_clock(NOON))


def only_feed(report: RunReport) -> FeedReport:
    assert len(report.feeds) == 1
    return report.feeds[0]


def open_store(deployment: Deployment) -> Store:
    return Store(deployment.config().database, clock=fixed_clock(NOON))


def stored_ids(deployment: Deployment) -> set[str]:
    with open_store(deployment) as store:
        return {row["id"] for row in store.db["entries"].rows}


def arxiv_ids_in(raw: bytes) -> set[str]:
    return {match.decode() for match in ABS_ID.findall(raw)}


def prefixed(ids: set[str]) -> set[str]:
    return {f"arxiv:{arxiv}" for arxiv in ids}


def hf_paper_ids(raw: str) -> set[str]:
    """Paper ids of a daily-papers file, whether its items are JSON objects or Python repr strings."""
    return set(re.findall(r"""['"]paper['"]:\s*\{\s*['"]id['"]:\s*['"](\d{4}\.\d{4,5})['"]""", raw))


def hf_items(path: Path) -> list[dict[str, Any]]:
    return [ast.literal_eval(item) if isinstance(item, str) else item for item in json.loads(path.read_text("utf-8"))]


@dataclass(frozen=True)
class AtomEntry:
    arxiv_id: str  # without version
    title: str
    summary: str
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    version: int | None = None


def write_atom(path: Path, entries: list[AtomEntry]) -> Path:
    """An arXiv-style Atom feed, serialised by xml.etree (so text is escaped correctly)."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}title").text = "test feed"
    ET.SubElement(feed, f"{{{ATOM}}}id").text = f"urn:test:{path.stem}"
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = "2026-06-01T00:00:00Z"
    for item in entries:
        versioned = item.arxiv_id + (f"v{item.version}" if item.version else "")
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}id").text = f"http://arxiv.org/abs/{versioned}"
        ET.SubElement(entry, f"{{{ATOM}}}title").text = item.title
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = "2026-06-01T00:00:00Z"
        ET.SubElement(entry, f"{{{ATOM}}}summary").text = item.summary
        for name in item.authors:
            ET.SubElement(ET.SubElement(entry, f"{{{ATOM}}}author"), f"{{{ATOM}}}name").text = name
        ET.SubElement(entry, f"{{{ATOM}}}link", href=f"https://arxiv.org/abs/{versioned}", rel="alternate", type="text/html")
        for term in item.categories:
            ET.SubElement(entry, f"{{{ATOM}}}category", term=term)
    ET.ElementTree(feed).write(path, encoding="utf-8", xml_declaration=True)
    return path


def jsonl_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def atom_from_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    entries = [
        AtomEntry(row["id"], row["title"], row["summary"], tuple(row["authors"]), tuple(row["categories"]))
        for row in rows
    ]
    return write_atom(path, entries)


# --- each real feed file ------------------------------------------------------------------


def test_arxiv_to_rss_snapshot_stores_every_item(deployment: Deployment) -> None:
    raw = RSS_FIRST.read_bytes()
    items = len(re.findall(rb"<item>", raw))
    expected = prefixed(arxiv_ids_in(raw))
    assert items == len(expected) == 300
    deployment.add_feed("jwst", RSS_FIRST)

    feed = only_feed(ingest(deployment))

    assert (feed.new, feed.duplicate, feed.updated, feed.skipped) == (items, 0, 0, 0)
    assert feed.error is None and feed.warning is None
    assert stored_ids(deployment) == expected


def test_truncated_atom_keeps_complete_entries_and_skips_the_cut_off_one(deployment: Deployment) -> None:
    raw = TRUNCATED_ATOM.read_bytes()
    complete_blocks = re.findall(rb"<entry>.*?</entry>", raw, re.S)
    per_block = [arxiv_ids_in(block) for block in complete_blocks]
    assert all(len(ids) == 1 for ids in per_block)
    complete = prefixed(set().union(*per_block))
    cut_off = prefixed(arxiv_ids_in(raw[raw.rindex(b"</entry>"):]))
    assert len(complete) == 86 and len(cut_off) == 1
    deployment.add_feed("cs-ai", TRUNCATED_ATOM)

    feed = only_feed(ingest(deployment))

    assert (feed.new, feed.skipped) == (len(complete), 1)
    assert feed.warning is not None and feed.error is None
    assert stored_ids(deployment) == complete
    assert not cut_off & stored_ids(deployment)


def _api_entries(path: Path) -> dict[str, dict[str, Any]]:
    """Canonical id -> authors, categories, comment, read with xml.etree."""
    found = {}
    for entry in ET.parse(path).getroot().iter(f"{{{ATOM}}}entry"):
        arxiv = re.fullmatch(r"http://arxiv\.org/abs/(\d{4}\.\d{4,5})v\d+", entry.findtext(f"{{{ATOM}}}id", ""))
        assert arxiv is not None
        comment = entry.findtext(f"{{{ARXIV_NS}}}comment")
        found[f"arxiv:{arxiv.group(1)}"] = {
            "authors": tuple(a.findtext(f"{{{ATOM}}}name", "").strip() for a in entry.iter(f"{{{ATOM}}}author")),
            "categories": {c.get("term") for c in entry.iter(f"{{{ATOM}}}category")},
            "comment": " ".join(comment.split()) if comment else None,
        }
    return found


def test_arxiv_api_atom_has_authors_categories_and_unversioned_ids(deployment: Deployment) -> None:
    expected = _api_entries(ARXIV_API)
    assert len(expected) == 2
    deployment.add_feed("xiv", ARXIV_API)

    feed = only_feed(ingest(deployment))

    assert (feed.new, feed.skipped, feed.error) == (2, 0, None)
    with open_store(deployment) as store:
        stored = {entry.id: entry for entry in store.entries_by_id(expected)}
    assert set(stored) == set(expected)
    for entry_id, want in expected.items():
        assert re.fullmatch(r"arxiv:\d{4}\.\d{4,5}", entry_id)
        assert stored[entry_id].authors == want["authors"]
        assert set(stored[entry_id].categories) == want["categories"]
        assert stored[entry_id].comment == want["comment"]
        assert stored[entry_id].version == 1


@pytest.mark.parametrize("path", HF_JSON_FILES, ids=lambda path: path.name)
def test_daily_papers_json_stores_each_unique_paper(deployment: Deployment, path: Path) -> None:
    expected = prefixed(hf_paper_ids(path.read_text("utf-8")))
    assert expected
    deployment.add_feed("hf", path)

    feed = only_feed(ingest(deployment))

    assert (feed.new, feed.skipped, feed.error) == (len(expected), 0, None)
    assert stored_ids(deployment) == expected
    if path.name == HF_REPR_FILE:
        assert feed.warning is not None
    else:
        assert feed.warning is None


@pytest.mark.parametrize("path", HF_JSON_FILES, ids=lambda path: path.name)
def test_daily_papers_upvotes_match_the_file(deployment: Deployment, path: Path) -> None:
    sample = {f"arxiv:{item['paper']['id']}": item["paper"]["upvotes"] for item in hf_items(path)[:3]}
    deployment.add_feed("hf", path)
    ingest(deployment)

    with open_store(deployment) as store:
        stored = {entry.id: entry.upvotes for entry in store.entries_by_id(sample)}
    assert stored == sample


def test_repr_string_day_recovers_every_item(deployment: Deployment) -> None:
    path = next(p for p in HF_JSON_FILES if p.name == HF_REPR_FILE)
    raw_items = json.loads(path.read_text("utf-8"))
    assert all(isinstance(item, str) for item in raw_items)
    deployment.add_feed("hf", path)

    feed = only_feed(ingest(deployment))

    assert feed.new == len(raw_items) and feed.skipped == 0
    assert str(len(raw_items)) in (feed.warning or "")


# --- re-fetching consecutive snapshots ---------------------------------------------------------


def _add_snapshots(deployment: Deployment) -> list[str]:
    names = [f"day{day}" for day in range(1, len(RSS_SNAPSHOTS) + 1)]
    for name, path in zip(names, RSS_SNAPSHOTS):
        deployment.add_feed(name, path)
    return names


def test_consecutive_snapshots_store_each_paper_once(deployment: Deployment) -> None:
    per_file = [arxiv_ids_in(path.read_bytes()) for path in RSS_SNAPSHOTS]
    union = set().union(*per_file)
    in_all = set.intersection(*per_file)
    assert len(RSS_SNAPSHOTS) == 3 and len(union) > 300
    names = _add_snapshots(deployment)

    report = ingest(deployment)

    assert report.ok
    assert sum(feed.new for feed in report.feeds) == len(union)
    assert stored_ids(deployment) == prefixed(union)
    with open_store(deployment) as store:
        assert store.count_entries() == len(union)
        assert store.sources_of(f"arxiv:{min(in_all)}") == sorted(names)


def test_ingesting_snapshots_again_adds_and_updates_nothing(deployment: Deployment) -> None:
    per_file = [arxiv_ids_in(path.read_bytes()) for path in RSS_SNAPSHOTS]
    _add_snapshots(deployment)
    ingest(deployment)

    again = ingest(deployment)

    assert [(feed.new, feed.updated) for feed in again.feeds] == [(0, 0)] * 3
    assert [feed.duplicate for feed in again.feeds] == [len(ids) for ids in per_file]
    assert stored_ids(deployment) == prefixed(set().union(*per_file))


# --- a revised arXiv version -------------------------------------------------------------------

REVISED_ID = "2401.00001"
V1_ABSTRACT = "We study quokka-based gradient estimators for sparse attention."
V2_ABSTRACT = "We revise the method: wombatic regularisation replaces the earlier estimator."


def _revision(version: int, abstract: str) -> AtomEntry:
    return AtomEntry(REVISED_ID, "A paper that gets revised", abstract, ("Ada Lovelace",), ("cs.LG",), version)


def _stored_revision(deployment: Deployment) -> tuple[int, str, int]:
    with open_store(deployment) as store:
        rows = list(store.db["entries"].rows)
    assert [row["id"] for row in rows] == [f"arxiv:{REVISED_ID}"]
    return len(rows), rows[0]["summary"], rows[0]["version"]


def test_revised_version_updates_the_one_entry(deployment: Deployment, tmp_path: Path) -> None:
    feed_path = write_atom(tmp_path / "revised.xml", [_revision(1, V1_ABSTRACT)])
    deployment.add_feed("revised", feed_path)
    first = only_feed(ingest(deployment))
    assert (first.new, first.updated) == (1, 0)
    assert _stored_revision(deployment) == (1, V1_ABSTRACT, 1)

    write_atom(feed_path, [_revision(2, V2_ABSTRACT)])
    second = only_feed(ingest(deployment))

    assert (second.new, second.updated, second.duplicate) == (0, 1, 0)
    assert _stored_revision(deployment) == (1, V2_ABSTRACT, 2)


def test_older_version_after_revision_changes_nothing(deployment: Deployment, tmp_path: Path) -> None:
    feed_path = write_atom(tmp_path / "revised.xml", [_revision(1, V1_ABSTRACT)])
    deployment.add_feed("revised", feed_path)
    ingest(deployment)
    write_atom(feed_path, [_revision(2, V2_ABSTRACT)])
    ingest(deployment)

    write_atom(feed_path, [_revision(1, V1_ABSTRACT)])
    stale = only_feed(ingest(deployment))

    assert (stale.new, stale.updated, stale.duplicate) == (0, 0, 1)
    assert _stored_revision(deployment) == (1, V2_ABSTRACT, 2)


def test_fts_follows_the_revised_abstract(deployment: Deployment, tmp_path: Path) -> None:
    feed_path = write_atom(tmp_path / "revised.xml", [_revision(1, V1_ABSTRACT)])
    deployment.add_feed("revised", feed_path)
    ingest(deployment)
    with open_store(deployment) as store:
        assert store.document_frequencies(["quokka", "wombatic"]) == {"quokka": 1, "wombatic": 0}

    write_atom(feed_path, [_revision(2, V2_ABSTRACT)])
    ingest(deployment)

    with open_store(deployment) as store:
        assert store.document_frequencies(["quokka", "wombatic"]) == {"quokka": 0, "wombatic": 1}


# --- the same paper from two sources -------------------------------------------------------------

JSONL_DAY = JSONL_JUNE / "2026-06-01.jsonl"


def _nearby_hf_day(jsonl_ids: set[str]) -> tuple[Path, set[str]]:
    """The 2026-06 daily-papers file that shares the most ids with the JSONL day."""
    candidates = [(path, hf_paper_ids(path.read_text("utf-8"))) for path in sorted(HF_JUNE.glob("2026-06-*.json"))]
    path, ids = max(candidates, key=lambda candidate: len(candidate[1] & jsonl_ids))
    assert ids & jsonl_ids, "no 2026-06 daily-papers file shares an id with the JSONL day"
    return path, ids


def test_same_paper_from_two_feeds_is_one_entry_with_both_sources(deployment: Deployment, tmp_path: Path) -> None:
    rows = jsonl_rows(JSONL_DAY)
    jsonl_ids = {row["id"] for row in rows}
    hf_path, hf_ids = _nearby_hf_day(jsonl_ids)
    shared = jsonl_ids & hf_ids
    deployment.add_feed("arxiv-listing", atom_from_jsonl(rows, tmp_path / "listing.xml"))
    deployment.add_feed("hf-daily", hf_path)

    report = ingest(deployment)

    assert report.ok
    listing, hf = report.feeds
    assert (listing.new, listing.duplicate, listing.skipped) == (len(jsonl_ids), len(rows) - len(jsonl_ids), 0)
    assert hf.new == len(hf_ids - jsonl_ids)
    assert hf.duplicate + hf.updated == len(shared)
    assert stored_ids(deployment) == prefixed(jsonl_ids | hf_ids)
    with open_store(deployment) as store:
        assert store.count_entries() == len(jsonl_ids | hf_ids)
        for arxiv in sorted(shared):
            assert store.sources_of(f"arxiv:{arxiv}") == ["arxiv-listing", "hf-daily"]
        assert store.sources_of(f"arxiv:{min(jsonl_ids - hf_ids)}") == ["arxiv-listing"]


# --- full-text search ------------------------------------------------------------------------------


def test_fts_counts_every_entry_mentioning_a_word_or_phrase(deployment: Deployment, tmp_path: Path) -> None:
    """The document frequencies ranking uses for IDF come from the FTS index (porter stemming)."""
    rows = jsonl_rows(JSONL_DAY)
    unique = {row["id"]: f"{row['title']} {row['summary']}" for row in rows}

    def mentioning(pattern: str) -> int:
        return sum(1 for text in unique.values() if re.search(pattern, text, re.I))

    deployment.add_feed("arxiv-listing", atom_from_jsonl(rows, tmp_path / "listing.xml"))
    ingest(deployment)
    with open_store(deployment) as store:
        counts = store.document_frequencies(["distillation", "knowledge distillation", "zzyzx"])

    assert mentioning(r"\bdistillation\b") <= counts["distillation"] <= mentioning(r"\bdistill")
    assert 0 < counts["knowledge distillation"] == mentioning(r"\bknowledge[\s-]+distillations?\b")
    assert counts["zzyzx"] == 0


def test_deeply_nested_json_is_reported_and_the_next_feed_still_ingests(deployment: Deployment, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_bytes(b"[" * 200_000)
    deployment.add_feed("deep", deep)
    deployment.add_feed("api", FEEDS / "xiv" / "tests" / "fixtures" / "arxiv_response.xml")
    report = pipeline.ingest_feeds(deployment.config(), clock=fixed_clock(NOON))
    deep_report, api_report = report.feeds
    assert deep_report.error is not None and '"deep"' in deep_report.error
    assert api_report.new == 2


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>", "not an RSS/Atom/JSON feed"),
        (b'{"error": "Invalid date", "status": 400}', "is not a daily-papers list"),
    ],
)
def test_content_that_is_not_a_feed_is_an_error(deployment: Deployment, tmp_path: Path, body: bytes, expected: str) -> None:
    path = tmp_path / "not-a-feed"
    path.write_bytes(body)
    deployment.add_feed("bogus", path)
    (report,) = pipeline.ingest_feeds(deployment.config(), clock=fixed_clock(NOON)).feeds
    assert report.error is not None and '"bogus"' in report.error and expected in report.error
