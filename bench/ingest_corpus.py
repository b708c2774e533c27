"""Ingest every file of feedparser's test corpus as one feed each, through config.toml and pipeline.ingest_feeds.

    python bench/ingest_corpus.py ../shared/data/feedparser-corpus /tmp/corpus-run

Prints a readable summary, then one JSON line (stored / skipped / feeds with errors), which
tests/test_hostile_feeds.py reads.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from newsletter import pipeline
from newsletter.config import load_config


def main(corpus: Path, out: Path) -> None:
    files = sorted(path for path in corpus.rglob("*") if path.is_file() and path.suffix != ".txt")
    out.mkdir(parents=True, exist_ok=True)
    feeds = "".join(f'[[feeds]]\nname = "corpus-{index:04d}"\nurl = "{path}"\n' for index, path in enumerate(files))
    config_path = out / "config.toml"
    config_path.write_text('[newsletter]\ndatabase = "newsletter.db"\n' + feeds, encoding="utf-8")
    started = time.monotonic()
    report = pipeline.ingest_feeds(load_config(config_path))
    seconds = time.monotonic() - started
    errors = {feed.name: feed.error for feed in report.feeds if feed.error}
    summary = {
        "feeds": len(report.feeds),
        "stored": sum(feed.new for feed in report.feeds),
        "duplicate": sum(feed.duplicate + feed.updated for feed in report.feeds),
        "skipped": sum(feed.skipped for feed in report.feeds),
        "feeds_with_warnings": sum(1 for feed in report.feeds if feed.warning and not feed.error),
        "feeds_with_errors": len(errors),
        "errors": errors,
    }
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{summary['feeds']} feeds: {summary['stored']} entries stored, {summary['duplicate']} duplicates, "
        f"{summary['skipped']} entries skipped, {summary['feeds_with_warnings']} feeds with warnings, "
        f"{summary['feeds_with_errors']} feeds with errors; {seconds:.1f} s, peak RSS {peak:.0f} MB"
    )
    for name, error in errors.items():
        print(f"  {name} ({files[int(name.split('-')[1])].relative_to(corpus)}): {error}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
