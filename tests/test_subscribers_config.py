"""Subscriber and config files: every problem is one line naming the file and the key."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    EXAMPLES,
    NOON,
    SUBSCRIBER_ADA,
    SUBSCRIBER_GRACE,
    Deployment,
    fixed_clock,
)

from newsletter import pipeline
from newsletter.config import load_config
from newsletter.errors import ConfigError, SubscriberError
from newsletter.subscribers import load_subscriber_file

BROKEN = {
    "badtoml": ('email = "x@example.org"\nname = "unterminated\n', "not valid TOML"),
    "unknownkey": (SUBSCRIBER_ADA.replace('name = "Ada"', 'name = "Ada"\nsend_time = "07:00"').replace("ada@", "u@"), "unknown key send_time"),
    "badzone": (SUBSCRIBER_ADA.replace("Europe/London", "Mars/Olympus").replace("ada@", "z@"), 'timezone "Mars/Olympus"'),
    "bademail": (SUBSCRIBER_ADA.replace("ada@example.org", "ada-at-example"), 'email "ada-at-example"'),
    "badtime": (SUBSCRIBER_ADA.replace('"07:30"', '"7am"').replace("ada@", "t@"), 'send_at "7am" is not HH:MM'),
    "badweight": (SUBSCRIBER_ADA.replace("weight = 2.0", 'weight = "high"').replace("ada@", "w@"), "topics[1]: weight"),
    "badfrequency": (SUBSCRIBER_ADA.replace('max_items = 5', 'frequency = "hourly"').replace("ada@", "f@"), 'frequency "hourly"'),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_file_gives_one_line_naming_file_and_key(deployment: Deployment, name: str) -> None:
    text, expected = BROKEN[name]
    path = deployment.add_subscriber(name, text)
    with pytest.raises(SubscriberError) as caught:
        load_subscriber_file(path)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{name}.toml" in message and expected in message


def test_broken_files_never_stop_the_other_subscribers(deployment: Deployment) -> None:
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    deployment.add_subscriber("grace", SUBSCRIBER_GRACE)
    for name, (text, _) in BROKEN.items():
        deployment.add_subscriber(name, text)
    config = deployment.config()
    pipeline.ingest_feeds(config, clock=fixed_clock(NOON))

    report = pipeline.run_digests(config, pipeline.DigestRequest(ignore_time=True), clock=fixed_clock(NOON))

    assert sorted(o.subscriber for o in report.digests if o.status == "sent") == ["ada", "grace"]
    assert len(report.problems) == len(BROKEN)
    assert all(any(f"{name}.toml" in p for p in report.problems) for name in BROKEN)
    assert not report.ok  # the exit code says something failed


def test_cli_check_lists_every_problem_and_exits_1(deployment: Deployment) -> None:
    deployment.add_feed("missing", "no/such/feed.xml")
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    deployment.add_subscriber("badzone", BROKEN["badzone"][0])
    deployment.add_subscriber("bademail", BROKEN["bademail"][0])
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "--config", str(deployment.config_path), "check"],
        capture_output=True, text=True, cwd=deployment.root,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, lines
    assert any("badzone.toml" in line and "timezone" in line for line in lines)
    assert any("bademail.toml" in line and "email" in line for line in lines)
    assert any('feed "missing"' in line for line in lines)
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_check_ok_on_the_shipped_demo() -> None:
    repo = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-m", "newsletter", "check"], capture_output=True, text=True, cwd=repo)
    assert result.returncode == 0, result.stderr
    assert "4 feeds, 4 subscribers" in result.stdout


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('[schedule]\nsend_at = "7am"\n', 'schedule.send_at "7am" is not HH:MM'),
        ('[schedule]\ningest_every = "often"\n', 'schedule.ingest_every "often"'),
        ('[ranking]\nmax_items = 0\n', "ranking.max_items"),
        ('[delivery]\nmethod = "pigeon"\n', 'delivery.method "pigeon"'),
        ('[smtp]\npassword = "hunter2"\n', "smtp.password: secrets never live in the file"),
        ('[newsletter2]\nx = 1\n', "unknown section [newsletter2]"),
        ('[[feeds]]\nname = "x"\nurl = "ftp://example.org/feed"\n', 'feed "x": url "ftp://example.org/feed"'),
        ('[newsletter]\nsender = "not an address"\n', 'newsletter.sender "not an address" has no valid address'),
        ('[newsletter]\ntitle = "Daily\\nPapers"\n', "newsletter.title must be a single line"),
    ],
)
def test_config_problems_name_the_key(deployment: Deployment, snippet: str, expected: str) -> None:
    deployment.extra = "\n" + snippet
    if snippet.startswith("[newsletter]"):  # replace the fixture's own [newsletter] table
        deployment.extra = ""
        deployment.header = snippet
    with pytest.raises(ConfigError) as caught:
        deployment.config()
    assert any(expected in line and "config.toml" in line for line in caught.value.problems), caught.value.problems


def test_config_secret_never_in_error(deployment: Deployment) -> None:
    deployment.extra = '\n[smtp]\npassword = "hunter2"\n'
    with pytest.raises(ConfigError) as caught:
        deployment.config()
    assert "hunter2" not in str(caught.value)


def test_missing_config_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_defaults_and_relative_paths(deployment: Deployment) -> None:
    config = deployment.config()
    assert config.database == deployment.root / "newsletter.db"
    assert config.maildir == deployment.root / "outbox"
    assert config.send_at == dt.time(7, 0) and config.ingest_every == 1800 and config.max_items == 10


def test_internationalised_domains_are_sent_in_idna(deployment: Deployment) -> None:
    deployment.header = '[newsletter]\nsender = "Papiere <papers@exämple.org>"\n'
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    deployment.add_subscriber("grace", SUBSCRIBER_GRACE.replace("grace@example.org", "grace@bücher.example"))
    config = deployment.config()
    assert config.sender == "Papiere <papers@xn--exmple-cua.org>"
    pipeline.ingest_feeds(config, clock=fixed_clock(NOON))
    report = pipeline.run_digests(config, pipeline.DigestRequest(ignore_time=True), clock=fixed_clock(NOON))
    assert [o.status for o in report.digests] == ["sent"], report
    (message,) = [p.read_bytes() for p in (config.maildir / "new").iterdir()]
    assert b"To: Grace <grace@xn--bcher-kva.example>" in message


def test_liked_papers_are_canonical_ids(deployment: Deployment) -> None:
    path = deployment.add_subscriber("ada", SUBSCRIBER_ADA.replace("max_items = 5", 'liked = ["2407.12345v2", "https://arxiv.org/abs/2401.00001v3", "https://huggingface.co/papers/2402.00002", "doi:10.1000/XYZ"]'))
    assert load_subscriber_file(path).liked == ("arxiv:2407.12345", "arxiv:2401.00001", "arxiv:2402.00002", "doi:10.1000/xyz")
    bad = deployment.add_subscriber("bob", SUBSCRIBER_ADA.replace("ada@", "bob@").replace("max_items = 5", 'liked = ["that cool paper"]'))
    with pytest.raises(SubscriberError, match='bob.toml: liked "that cool paper" is not a paper id'):
        load_subscriber_file(bad)
