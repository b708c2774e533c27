"""Run ``pipeline.ingest_feeds`` on a config in this fresh process; print one JSON line: reports, peak RSS, time.

tests/test_hostile_feeds.py runs it as a subprocess so each bomb's peak memory is measured on its own.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from newsletter import pipeline
from newsletter.config import load_config


def own_peak_rss_kib() -> int:
    """This process's own high-water mark (VmHWM).

    Not ``ru_maxrss``: Linux carries that across exec from the parent, so a child of a 365 MB
    pytest would report 365 MB however little it used itself.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory cannot be measured here")


def main(config_path: str) -> None:
    started = time.monotonic()
    report = pipeline.ingest_feeds(load_config(Path(config_path)))
    seconds = time.monotonic() - started
    feeds = [
        {"name": f.name, "new": f.new, "duplicate": f.duplicate, "skipped": f.skipped, "error": f.error, "warning": f.warning}
        for f in report.feeds
    ]
    peak_mb = own_peak_rss_kib() / 1024
    print(json.dumps({"feeds": feeds, "peak_rss_mb": round(peak_mb, 1), "seconds": round(seconds, 2)}))


if __name__ == "__main__":
    main(sys.argv[1])
