"""Run ``pipeline.ingest_feeds`` on a config in this fresh process; print one JSON line: reports, peak RSS, time.

tests/test_hostile_feeds.py runs it as a subprocess so each bomb's peak memory is measured on its own.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from newsletter import pipeline
from newsletter.config import load_config


def main(config_path: str) -> None:
    started = time.monotonic()
    report = pipeline.ingest_feeds(load_config(Path(config_path)))
    seconds = time.monotonic() - started
    feeds = [
        {"name": f.name, "new": f.new, "duplicate": f.duplicate, "skipped": f.skipped, "error": f.error, "warning": f.warning}
        for f in report.feeds
    ]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"feeds": feeds, "peak_rss_mb": round(peak_mb, 1), "seconds": round(seconds, 2)}))


if __name__ == "__main__":
    main(sys.argv[1])
