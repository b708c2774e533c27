#!/usr/bin/env python3
"""Regenerate the demo feeds in ``examples/feeds/`` from the shared real data.

Usage::

    python3 examples/build_demo_feeds.py [SHARED_DATA_DIR]

``SHARED_DATA_DIR`` defaults to ``<repo>/../shared/data``.  The output is
deterministic: running the script twice produces byte-identical files.
See ``examples/feeds/README.md`` for the provenance and licence of each file.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import sys
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote_plus

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "examples" / "feeds"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"

# --- seed page -> RSS 2.0 ---------------------------------------------------
SEED_PAGE = Path("seed/daily-papers-page.txt")
SEED_HEADER = (
    "new",
    "Get trending papers in your email inbox!",
    "Subscribe",
    "Daily Papers",
    "byAK and the research community",
    "Jul 31",
)
SEED_PAPER_COUNT = 90
SEED_DATE = datetime(2025, 7, 31, 8, 0, tzinfo=timezone.utc)
HF_JSON_GLOBS = (
    "papers/hf-daily-paper-newsletter-chinese/Paper_metadata_download/*.json",
    "feeds/hf-daily-papers-json/Paper_metadata_download/*.json",
)
ARXIV_JSONL_GLOB = "papers/daily-arXiv-ai-enhanced/data/*.jsonl"
GUID_SLUG_MAX = 80

# --- trimmed copies -----------------------------------------------------------
ATOM_SRC = Path("feeds/arxiv-atom-truncated/arxiv-cs.AI-2025-08-20.atom.xml")
ATOM_KEEP = 40
RSS_SRC = Path("feeds/arxiv-to-rss/2026-08-22_637eb8ca7a/feeds/feed.xml")
RSS_KEEP = 60
JSON_SRC = Path("feeds/hf-daily-papers-json/Paper_metadata_download/2026-08-21.json")
LICENSES = {
    Path("feeds/arxiv-to-rss/LICENSE.txt"): "LICENSE-arxiv-to-rss.txt",
    Path("papers/hf-daily-paper-newsletter-chinese/LICENSE.txt"): (
        "LICENSE-hf-daily-paper-newsletter-chinese.txt"
    ),
}


def title_key(title: str) -> str:
    """Case-, whitespace- and punctuation-insensitive key for title matching."""
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", title).casefold())


def slugify(text: str, max_len: int = GUID_SLUG_MAX) -> str:
    """ASCII slug: lower case, runs of non-alphanumerics become one hyphen."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_len].rstrip("-")


def read_seed_papers(data_dir: Path) -> list[tuple[str, str]]:
    """Return ``(title, abstract)`` pairs from the Daily Papers text capture."""
    text = (data_dir / SEED_PAGE).read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    header, body = tuple(lines[: len(SEED_HEADER)]), lines[len(SEED_HEADER) :]
    if header != SEED_HEADER:
        raise ValueError(f"unexpected seed header: {header!r}")
    if len(body) != 2 * SEED_PAPER_COUNT:
        raise ValueError(f"expected {2 * SEED_PAPER_COUNT} title/abstract lines, got {len(body)}")
    return list(zip(body[0::2], body[1::2]))


def _hf_papers(path: Path) -> Iterator[tuple[str, str]]:
    """Yield ``(arxiv_id, title)`` from one daily_papers API JSON file.

    Some files are a JSON list of python-repr *strings*; those are recovered
    with ``ast.literal_eval``.
    """
    for item in json.loads(path.read_text(encoding="utf-8")):
        if isinstance(item, str):
            item = ast.literal_eval(item)
        if not isinstance(item, dict):
            continue
        paper = item.get("paper", item)
        if isinstance(paper, dict) and paper.get("id") and paper.get("title"):
            yield str(paper["id"]), str(paper["title"])


def _jsonl_papers(path: Path) -> Iterator[tuple[str, str]]:
    """Yield ``(arxiv_id, title)`` from one daily-arXiv JSONL file."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                if record.get("id") and record.get("title"):
                    yield str(record["id"]), str(record["title"])


def arxiv_ids_for(titles: Iterable[str], data_dir: Path) -> dict[str, str]:
    """Map each seed title that is known to the shared data to its arXiv id.

    If several ids share a title, the smallest id wins (deterministic).
    """
    wanted = {title_key(t): t for t in titles}
    found: dict[str, set[str]] = {}
    sources: list[Iterator[tuple[str, str]]] = []
    for pattern in HF_JSON_GLOBS:
        sources += [_hf_papers(p) for p in sorted(data_dir.glob(pattern))]
    sources += [_jsonl_papers(p) for p in sorted(data_dir.glob(ARXIV_JSONL_GLOB))]
    for source in sources:
        for arxiv_id, title in source:
            key = title_key(title)
            if key in wanted:
                found.setdefault(wanted[key], set()).add(arxiv_id)
    return {title: min(ids) for title, ids in found.items()}


def build_daily_papers_rss(data_dir: Path) -> tuple[bytes, dict[str, str]]:
    """Build the RSS 2.0 demo feed; also return the title -> arXiv id matches."""
    papers = read_seed_papers(data_dir)
    ids = arxiv_ids_for((t for t, _ in papers), data_dir)

    rss = ET.Element("rss", version="2.0")
    channel = ET.SubElement(rss, "channel")
    for tag, value in (
        ("title", "Daily Papers"),
        ("link", "https://huggingface.co/papers"),
        (
            "description",
            "Demo feed: the 90 papers of the Hugging Face Daily Papers page "
            "(by AK and the research community) for 2025-07-31.",
        ),
        ("language", "en"),
        ("lastBuildDate", format_datetime(SEED_DATE, usegmt=True)),
    ):
        ET.SubElement(channel, tag).text = value

    guids: set[str] = set()
    for index, (title, abstract) in enumerate(papers):
        if title in ids:
            link = f"https://huggingface.co/papers/{ids[title]}"
        else:
            link = f"https://arxiv.org/search/?query={quote_plus(title)}&searchtype=title"
        guid = f"daily-papers:2025-07-31:{slugify(title)}"
        if guid in guids:
            raise ValueError(f"duplicate guid {guid}")
        guids.add(guid)
        item = ET.SubElement(channel, "item")
        ET.SubElement(item, "title").text = title
        ET.SubElement(item, "description").text = abstract
        ET.SubElement(item, "link").text = link
        ET.SubElement(item, "guid", isPermaLink="false").text = guid
        pub = SEED_DATE - timedelta(minutes=index)
        ET.SubElement(item, "pubDate").text = format_datetime(pub, usegmt=True)

    ET.indent(rss, space="  ")
    body = ET.tostring(rss, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode("utf-8"), ids


def keep_first(text: str, open_tag: str, close_tag: str, keep: int, closing: str) -> str:
    """Keep everything up to the end of the ``keep``-th ``close_tag``, then ``closing``.

    The kept prefix (feed header and the first ``keep`` elements) is byte-for-byte
    the original text.
    """
    end = 0
    for n in range(keep):
        start = text.find(open_tag, end)
        stop = text.find(close_tag, start) if start != -1 else -1
        if stop == -1:
            raise ValueError(f"source has only {n} complete {open_tag} elements")
        end = stop + len(close_tag)
    return text[:end] + closing


def check_xml(data: bytes, path: str, expected: int) -> None:
    """Fail unless ``data`` is well-formed XML with ``expected`` entries at ``path``."""
    root = ET.fromstring(data)
    count = len(root.findall(path))
    if count != expected:
        raise ValueError(f"expected {expected} elements at {path}, found {count}")


def write(name: str, data: bytes) -> None:
    target = OUT_DIR / name
    target.write_bytes(data)
    print(f"wrote {target.relative_to(REPO_ROOT)} ({len(data):,} bytes)")


def main(argv: list[str]) -> int:
    if len(argv) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    data_dir = Path(argv[1]) if len(argv) == 2 else DEFAULT_DATA_DIR
    if not (data_dir / SEED_PAGE).is_file():
        print(f"shared data not found in {data_dir}", file=sys.stderr)
        return 1
    OUT_DIR.mkdir(parents=True, exist_ok=True)

    rss, ids = build_daily_papers_rss(data_dir)
    check_xml(rss, "channel/item", SEED_PAPER_COUNT)
    write("daily-papers.xml", rss)
    for title, arxiv_id in sorted(ids.items(), key=lambda kv: kv[1]):
        print(f"  huggingface link: {arxiv_id}  {title}")

    # Reading as latin-1 maps bytes 1:1 to characters, so slicing keeps bytes intact.
    atom_text = (data_dir / ATOM_SRC).read_bytes().decode("latin-1")
    atom = keep_first(atom_text, "<entry>", "</entry>", ATOM_KEEP, "\n</feed>\n").encode("latin-1")
    check_xml(atom, "{http://www.w3.org/2005/Atom}entry", ATOM_KEEP)
    write("arxiv-cs.AI.atom.xml", atom)

    rss_text = (data_dir / RSS_SRC).read_bytes().decode("latin-1")
    jwst = keep_first(rss_text, "<item>", "</item>", RSS_KEEP, "</channel></rss>").encode("latin-1")
    check_xml(jwst, "channel/item", RSS_KEEP)
    write("arxiv-jwst.rss.xml", jwst)

    write("hf-daily-papers-2026-08-21.json", (data_dir / JSON_SRC).read_bytes())
    for src, name in LICENSES.items():
        shutil.copyfile(data_dir / src, OUT_DIR / name)
        print(f"copied {src} -> examples/feeds/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
