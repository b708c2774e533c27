"""Subscriber files a run has read and checked are remembered in the store; only new or changed files are parsed again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import NOON, SUBSCRIBER_ADA, SUBSCRIBER_GRACE, Deployment, fixed_clock

from newsletter import pipeline
from newsletter.store import Store
from newsletter.errors import SubscriberError
from newsletter.subscribers import (
    Defaults,
    Remembered,
    _email_of_checked,
    _to_checked,
    iter_readers,
    iter_subscribers,
    load_subscriber_file,
    loaded,
)


class DictCache:
    """subscribers.ParsedCache in memory, counting what it is asked."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str]] = {}
        self.hits = 0
        self.asked: list[int] = []  # files per ask

    def cached_subscribers(self, stamps: dict[str, str]) -> dict[str, str]:
        self.asked.append(len(stamps))
        found = {sid: self.rows[sid][1] for sid, stamp in stamps.items() if sid in self.rows and self.rows[sid][0] == stamp}
        self.hits += len(found)
        return found

    def remember_subscriber(self, subscriber_id: str, stamp: str, checked: str) -> None:
        self.rows[subscriber_id] = (stamp, checked)


def _read(directory: Path, cache: DictCache, defaults: Defaults = Defaults()) -> tuple[list, list[str]]:
    problems: list[str] = []
    return list(iter_subscribers(directory, defaults=defaults, on_problem=problems.append, cache=cache)), problems


def test_a_remembered_subscriber_is_the_same_as_one_read_from_its_file(deployment: Deployment) -> None:
    every_key = (
        'exclude = ["survey"]\nauthors = ["Geoffrey Hinton"]\ncategories = ["cs.LG"]\nliked = ["2407.12345v2"]\n'
        'frequency = "weekly:tue"\nquiet_days = "note"\n'
    )
    rich = SUBSCRIBER_ADA.replace('name = "Ada"\n', 'name = "Ada Lovelace — Ωμέγα"\n' + every_key)
    deployment.add_subscriber("ada", rich)
    deployment.add_subscriber("grace", SUBSCRIBER_GRACE)
    directory = deployment.root / "subscribers"
    cache = DictCache()
    first, problems = _read(directory, cache)
    assert problems == [] and cache.hits == 0 and set(cache.rows) == {"ada", "grace"}
    again, _ = _read(directory, cache)
    assert cache.hits == 2
    assert again == first == [load_subscriber_file(directory / f"{sid}.toml") for sid in ("ada", "grace")]


def test_a_changed_file_is_read_again_and_a_bad_one_is_never_remembered(deployment: Deployment) -> None:
    path = deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    directory = deployment.root / "subscribers"
    cache = DictCache()
    _read(directory, cache)
    path.write_text(SUBSCRIBER_ADA.replace("max_items = 5", "max_items = 7"), encoding="utf-8")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))  # a later edit, however coarse the clock
    (ada,), _ = _read(directory, cache)
    assert ada.max_items == 7 and cache.hits == 0
    path.write_text(SUBSCRIBER_ADA.replace('send_at = "07:30"', 'send_at = "7am"'), encoding="utf-8")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 2_000_000))
    subscribers, problems = _read(directory, cache)
    assert subscribers == [] and len(problems) == 1 and 'send_at "7am" is not HH:MM' in problems[0]
    _, problems = _read(directory, cache)
    assert len(problems) == 1  # still reported on every run: bad files are not remembered


def test_other_defaults_mean_the_file_is_read_again(deployment: Deployment) -> None:
    deployment.add_subscriber("grace", SUBSCRIBER_GRACE.replace('timezone = "America/New_York"\n', ""))
    cache = DictCache()
    _read(deployment.root / "subscribers", cache, Defaults(timezone="UTC"))
    (grace,), _ = _read(deployment.root / "subscribers", cache, Defaults(timezone="Asia/Tokyo"))
    assert grace.timezone == "Asia/Tokyo" and cache.hits == 0


def test_a_run_remembers_files_in_the_store_and_forgets_deleted_ones(deployment: Deployment) -> None:
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    gone = deployment.add_subscriber("grace", SUBSCRIBER_GRACE)
    config = deployment.config()
    dry = pipeline.DigestRequest(ignore_time=True, dry_run=True)
    first = pipeline.run_digests(config, dry, clock=fixed_clock(NOON))
    with Store(config.database, clock=lambda: NOON) as store:
        assert [row[0] for row in store.db.execute("SELECT subscriber FROM subscriber_cache ORDER BY 1")] == ["ada", "grace"]
    second = pipeline.run_digests(config, dry, clock=fixed_clock(NOON))
    assert second.digests == first.digests
    gone.unlink()
    pipeline.run_digests(config, dry, clock=fixed_clock(NOON))
    with Store(config.database, clock=lambda: NOON) as store:
        assert [row[0] for row in store.db.execute("SELECT subscriber FROM subscriber_cache")] == ["ada"]


def test_unchanged_files_come_unparsed_and_are_asked_for_a_hundred_at_a_time(deployment: Deployment) -> None:
    for number in range(250):
        deployment.add_subscriber(f"r{number:03d}", SUBSCRIBER_ADA.replace("ada@example.org", f"r{number}@example.org"))
    directory = deployment.root / "subscribers"
    cache = DictCache()
    first, _ = _read(directory, cache)
    assert cache.asked == [100, 100, 50]  # one ask per hundred files, not one per file
    problems: list[str] = []
    readers = list(iter_readers(directory, on_problem=problems.append, cache=cache))
    assert problems == [] and all(isinstance(reader, Remembered) for reader in readers)
    assert [(reader.id, reader.email) for reader in readers] == [(s.id, s.email) for s in first]
    assert [loaded(reader) for reader in readers] == first


def test_an_address_used_by_a_remembered_file_is_refused_to_a_later_file(deployment: Deployment) -> None:
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    directory = deployment.root / "subscribers"
    cache = DictCache()
    _read(directory, cache)
    deployment.add_subscriber("ada2", SUBSCRIBER_ADA)  # the same address, in a file read for the first time
    readers, problems = _read(directory, cache)
    assert [s.id for s in readers] == ["ada"] and cache.hits == 1
    assert len(problems) == 1 and "ada2.toml: email ada@example.org is already used by subscribers/ada.toml" in problems[0]


def test_an_address_used_by_a_newly_read_file_is_refused_to_a_later_remembered_file(deployment: Deployment) -> None:
    deployment.add_subscriber("grace", SUBSCRIBER_GRACE.replace("grace@example.org", "ada@example.org"))
    directory = deployment.root / "subscribers"
    cache = DictCache()
    _read(directory, cache)
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)  # read for the first time, and before grace.toml
    readers, problems = _read(directory, cache)
    assert [s.id for s in readers] == ["ada"] and cache.hits == 1  # grace.toml was remembered, and still refused
    assert len(problems) == 1 and "grace.toml: email ada@example.org is already used by subscribers/ada.toml" in problems[0]


def test_the_address_of_a_remembered_form_is_read_without_the_rest(deployment: Deployment) -> None:
    path = deployment.add_subscriber("ada", SUBSCRIBER_ADA.replace('name = "Ada"', 'name = "Ada \\"Ω\\""'))
    subscriber = load_subscriber_file(path)
    assert _email_of_checked(_to_checked(subscriber)) == subscriber.email == "ada@example.org"
    assert _email_of_checked("") is None and _email_of_checked('[5, "x"]') is None and _email_of_checked('["unterminated') is None


def test_a_damaged_remembered_form_is_read_again_from_the_file_or_named_when_it_reaches_a_batch(deployment: Deployment) -> None:
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    directory = deployment.root / "subscribers"
    cache = DictCache()
    (ada,), _ = _read(directory, cache)
    stamp, _ = cache.rows["ada"]
    cache.rows["ada"] = (stamp, "garbage")
    again, problems = _read(directory, cache)
    assert again == [ada] and problems == [] and cache.rows["ada"][1] != "garbage"  # parsed again and remembered afresh
    damaged = Remembered("ada", ada.email, str(directory / "ada.toml"), '["ada@example.org", "Ada"]')
    with pytest.raises(SubscriberError, match=r"ada\.toml: what the database remembers of this file is damaged .*touch the file"):
        damaged.load()
