"""Shared fixtures: the real data folder, a deployment in a temp dir, a fixed clock."""

from __future__ import annotations

import datetime as dt
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
FEEDS = SHARED_DATA / "feeds"
EXAMPLES = REPO / "examples" / "feeds"

# 2026-11-26 12:00 UTC: after every demo subscriber's send_at except none, a Thursday.
NOON = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)


def fixed_clock(moment: dt.datetime) -> Callable[[], dt.datetime]:
    return lambda: moment


SUBSCRIBER_ADA = """
email = "ada@example.org"
name = "Ada"
timezone = "Europe/London"
send_at = "07:30"
max_items = 5

[[topics]]
name = "Knowledge distillation"
keywords = ["knowledge distillation", "distillation", "teacher-student"]
weight = 2.0
"""

SUBSCRIBER_GRACE = """
email = "grace@example.org"
name = "Grace"
timezone = "America/New_York"
send_at = "06:45"

[[topics]]
name = "LLM agents"
keywords = ["agent", "multi-agent", "tool use"]
"""


class Deployment:
    """A config.toml, subscribers/ and feeds in a temp dir, like a user's own deployment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "subscribers").mkdir()
        shutil.copytree(REPO / "templates", root / "templates")
        self.feeds: list[tuple[str, str]] = []
        self.extra = ""  # appended to config.toml
        self.header = '[newsletter]\ndatabase = "newsletter.db"\n'  # the [newsletter] table

    def add_feed(self, name: str, url: str | Path) -> None:
        self.feeds.append((name, str(url)))

    def add_subscriber(self, subscriber_id: str, toml: str) -> Path:
        path = self.root / "subscribers" / f"{subscriber_id}.toml"
        path.write_text(textwrap.dedent(toml), encoding="utf-8")
        return path

    @property
    def config_path(self) -> Path:
        feeds = "".join(f'\n[[feeds]]\nname = "{name}"\nurl = "{url}"\n' for name, url in self.feeds)
        text = self.header + feeds + self.extra
        path = self.root / "config.toml"
        path.write_text(text, encoding="utf-8")
        return path

    def config(self) -> Config:
        return load_config(self.config_path)


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return Deployment(tmp_path)
