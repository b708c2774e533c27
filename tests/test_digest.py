"""Rank -> render -> Maildir, end to end on real feeds: once per period, never the same paper twice."""

from __future__ import annotations

import datetime as dt
import email
import gc
import json
import mailbox
import re
import shutil
import subprocess
import sys
from email import policy
from email.message import EmailMessage
from pathlib import Path

from conftest import (
    EXAMPLES,
    NOON,
    REPO,
    SUBSCRIBER_ADA,
    SUBSCRIBER_GRACE,
    Deployment,
    fixed_clock,
)

from newsletter import batch, compose, pipeline, subscribers
from newsletter.deliver import MaildirTransport
from newsletter.models import DigestOutcome, Subscriber
from newsletter.outbox import DeliveryPolicy
from newsletter.store import Store
from newsletter.subscribers import Remembered


def _messages(maildir: Path) -> list[EmailMessage]:
    box = mailbox.Maildir(maildir, create=False)
    return [email.message_from_bytes(box.get_bytes(key), policy=policy.default) for key in box.keys()]  # type: ignore[misc]


def _demo_copy(tmp_path: Path) -> Path:
    root = tmp_path / "demo"
    root.mkdir()
    for name in ("config.toml",):
        shutil.copy(REPO / name, root / name)
    for name in ("subscribers", "templates", "examples"):
        shutil.copytree(REPO / name, root / name)
    return root


def _newsletter(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "newsletter", *args], capture_output=True, text=True, cwd=root)


def test_readme_demo_leaves_one_valid_message_per_subscriber(tmp_path: Path) -> None:
    root = _demo_copy(tmp_path)
    ingest = _newsletter(root, "ingest")
    assert ingest.returncode == 0, ingest.stderr
    digest = _newsletter(root, "digest", "--all")
    assert digest.returncode == 0, digest.stderr

    messages = _messages(root / "outbox")
    subscriber_emails = sorted(re.search(r'email = "([^"]+)"', p.read_text()).group(1) for p in (root / "subscribers").glob("*.toml"))  # type: ignore[union-attr]
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in messages) == subscriber_emails
    with Store(root / "newsletter.db", clock=lambda: NOON) as store:
        for message in messages:
            assert message.get_content_type() == "multipart/alternative"
            assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
            assert message["Message-ID"] and message["Date"] and message["Subject"].startswith("Daily Papers — ")
            html = message.get_body(("html",)).get_content()
            text = message.get_body(("plain",)).get_content()
            assert 'style="' in html  # premailer inlined the CSS
            assert not re.search(r"&(?:[a-zA-Z]+|#\d+);|</?[a-z]+[ >]", text)  # no entities or tags in the text part
            sent_ids = [row[0] for row in store.db.execute(
                "SELECT entry_id FROM sent_items s JOIN digests d ON d.id = s.digest_id WHERE d.message_id = ?",
                [message["Message-ID"]],
            )]
            assert sent_ids
            ranked = _newsletter(root, "rank", _subscriber_id(root, message), "--limit", "100", "--json")
            assert not {row["id"] for row in json.loads(ranked.stdout)} & set(sent_ids)  # the next digest repeats none
            for entry in store.entries_by_id(sent_ids):
                assert _escaped(entry.title) in html and entry.title[:40] in text.replace("\n", " ")

    again = _newsletter(root, "digest", "--all")
    assert again.returncode == 0
    assert len(_messages(root / "outbox")) == len(messages)  # nothing delivered twice the same day


def _subscriber_id(root: Path, message: EmailMessage) -> str:
    address = str(message["To"].addresses[0].addr_spec)
    return next(p.stem for p in (root / "subscribers").glob("*.toml") if f'"{address}"' in p.read_text())


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _setup(deployment: Deployment) -> None:
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    deployment.add_feed("daily", EXAMPLES / "daily-papers.xml")
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    deployment.add_subscriber("grace", SUBSCRIBER_GRACE)


def _paper_links(message: EmailMessage) -> set[str]:
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return set(re.findall(r'<h3[^>]*>(?:(?!</h3>).)*?<a href="([^"]+)"', html, re.S))


def test_never_the_same_paper_twice_across_days(deployment: Deployment) -> None:
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    deployment.add_subscriber("grace", SUBSCRIBER_GRACE)
    config = deployment.config()
    pipeline.ingest_feeds(config, clock=fixed_clock(NOON))
    assert [o.status for o in pipeline.run_digests(config, clock=fixed_clock(NOON)).digests] == ["sent"]
    (day1,) = _messages(config.maildir)

    tomorrow = NOON + dt.timedelta(days=1)
    deployment.add_feed("hf", EXAMPLES / "hf-daily-papers-2026-08-21.json")  # new papers arrive on day 2
    config = deployment.config()
    pipeline.ingest_feeds(config, clock=fixed_clock(tomorrow))
    assert [o.status for o in pipeline.run_digests(config, clock=fixed_clock(tomorrow)).digests] == ["sent"]
    day2 = next(m for m in _messages(config.maildir) if m["Message-ID"] != day1["Message-ID"])

    first, second = _paper_links(day1), _paper_links(day2)
    assert len(first) == 10 and second
    assert not first & second
    assert any("huggingface.co/papers/" in link for link in second)  # the new feed's papers are in day 2


def test_revised_version_is_not_sent_again(deployment: Deployment, tmp_path: Path) -> None:
    feed = tmp_path / "one.xml"
    _write_atom(feed, version=1, abstract="We study knowledge distillation from a teacher to a student.")
    deployment.add_feed("one", feed)
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    config = deployment.config()
    pipeline.ingest_feeds(config, clock=fixed_clock(NOON))
    assert [o.status for o in pipeline.run_digests(config, clock=fixed_clock(NOON)).digests] == ["sent"]

    _write_atom(feed, version=2, abstract="Revised: knowledge distillation with many teachers.")
    tomorrow = NOON + dt.timedelta(days=1)
    ingest = pipeline.ingest_feeds(config, clock=fixed_clock(tomorrow))
    assert ingest.feeds[0].updated == 1
    assert pipeline.rank_for(config, "ada", clock=fixed_clock(tomorrow)) == []
    outcome = pipeline.run_digests(config, clock=fixed_clock(tomorrow)).digests[0]
    assert outcome.status == "empty"
    assert len(_messages(config.maildir)) == 1


def _write_atom(path: Path, *, version: int, abstract: str) -> None:
    path.write_text(
        f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:t</id><updated>2026-11-26T00:00:00Z</updated>
<entry><id>http://arxiv.org/abs/2401.00001v{version}</id><title>Distilling teachers</title>
<updated>2026-11-26T00:00:00Z</updated><summary>{abstract}</summary>
<link href="http://arxiv.org/abs/2401.00001v{version}"/><author><name>A. Author</name></author></entry></feed>""",
        encoding="utf-8",
    )


def test_due_only_after_local_send_at_and_once_per_period(deployment: Deployment) -> None:
    _setup(deployment)
    config = deployment.config()
    early = dt.datetime(2026, 11, 26, 7, 0, tzinfo=dt.timezone.utc)  # 07:00 London (ada due 07:30), 02:00 New York
    pipeline.ingest_feeds(config, clock=fixed_clock(early))
    assert {o.subscriber: o.status for o in pipeline.run_digests(config, clock=fixed_clock(early)).digests} == {
        "ada": "not-due", "grace": "not-due",
    }
    after_ada = early + dt.timedelta(minutes=31)
    assert {o.subscriber: o.status for o in pipeline.run_digests(config, clock=fixed_clock(after_ada)).digests} == {
        "ada": "sent", "grace": "not-due",
    }
    after_grace = dt.datetime(2026, 11, 26, 11, 46, tzinfo=dt.timezone.utc)  # 06:46 in New York
    statuses = {o.subscriber: o.status for o in pipeline.run_digests(config, clock=fixed_clock(after_grace)).digests}
    assert statuses == {"ada": "already-sent", "grace": "sent"}
    assert len(_messages(config.maildir)) == 2


def test_weekly_reader_gets_one_digest_per_week(deployment: Deployment) -> None:
    _setup(deployment)
    deployment.add_subscriber("ada", SUBSCRIBER_ADA.replace('max_items = 5', 'frequency = "weekly:fri"'))
    config = deployment.config()
    thursday = NOON
    pipeline.ingest_feeds(config, clock=fixed_clock(thursday))
    request = pipeline.DigestRequest(subscriber_ids=("ada",), ignore_time=True)
    assert pipeline.run_digests(config, clock=fixed_clock(thursday)).digests[0].status == "not-due"
    friday = thursday + dt.timedelta(days=1)
    assert pipeline.run_digests(config, request, clock=fixed_clock(thursday)).digests[0].status == "sent"
    assert pipeline.run_digests(config, request, clock=fixed_clock(friday)).digests[0].status == "already-sent"
    next_friday = friday + dt.timedelta(days=7)
    deployment.add_feed("hf", EXAMPLES / "hf-daily-papers-2026-08-21.json")  # new papers during the week
    pipeline.ingest_feeds(deployment.config(), clock=fixed_clock(next_friday - dt.timedelta(days=2)))
    assert pipeline.run_digests(config, clock=fixed_clock(next_friday)).digests[0].status == "sent"
    to_ada = [m for m in _messages(config.maildir) if "ada@example.org" in str(m["To"])]
    assert len(to_ada) == 2


def test_preview_and_dry_run_record_nothing(deployment: Deployment) -> None:
    _setup(deployment)
    config = deployment.config()
    pipeline.ingest_feeds(config, clock=fixed_clock(NOON))
    rendered = pipeline.preview(config, "ada", clock=fixed_clock(NOON))
    assert "Hello Ada" in rendered.html and rendered.subject.startswith("Daily Papers — ")
    dry = pipeline.run_digests(config, pipeline.DigestRequest(ignore_time=True, dry_run=True), clock=fixed_clock(NOON))
    assert {o.status for o in dry.digests} == {"dry-run"}
    with Store(config.database, clock=lambda: NOON) as store:
        assert store.db["digests"].count == 0 and store.db["sent_items"].count == 0
    assert not config.maildir.exists()


def test_queued_digest_from_a_crashed_run_is_delivered_once(deployment: Deployment) -> None:
    _setup(deployment)
    config = deployment.config()
    pipeline.ingest_feeds(config, clock=fixed_clock(NOON))
    with Store(config.database, clock=lambda: NOON) as store:  # a run that queued, then died before sending
        store.queue_digest(
            subscriber="ada", period="2026-11-26", recipient="ada@example.org", subject="s", message_id="<m@x>",
            message=b"Subject: s\r\nMessage-ID: <m@x>\r\n\r\nhello\r\n", items=[("arxiv:2508.13167", 1.0)], considered=1,
        )
    report = pipeline.run_digests(config, clock=fixed_clock(NOON))
    statuses = sorted((o.subscriber, o.status) for o in report.digests)
    assert statuses == [("ada", "sent"), ("grace", "sent")]  # ada's found waiting in the outbox and sent first, then grace's built and sent
    assert pipeline.run_digests(config, clock=fixed_clock(NOON)).digests[0].status == "already-sent"
    assert sorted(str(m["Message-ID"]) for m in _messages(config.maildir)).count("<m@x>") == 1


def test_cli_rank_json_and_preview(deployment: Deployment, tmp_path: Path) -> None:
    _setup(deployment)
    pipeline.ingest_feeds(deployment.config())
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "newsletter", "--config", str(deployment.config_path), *args], capture_output=True, text=True
    )
    ranked = run("rank", "ada", "--limit", "3", "--json")
    assert ranked.returncode == 0, ranked.stderr
    rows = json.loads(ranked.stdout)
    assert 1 <= len(rows) <= 3 and all(set(row) == {"id", "title", "score", "reasons"} for row in rows)
    assert rows[0]["score"] == max(row["score"] for row in rows)
    everything = json.loads(run("rank", "ada", "--all", "--json").stdout)
    assert len(everything) > len(json.loads(run("rank", "ada", "--json").stdout))
    assert everything[-1]["score"] == 0 and everything[-1]["reasons"] == []
    out = tmp_path / "ada.html"
    preview = run("preview", "ada", "--out", str(out))
    assert preview.returncode == 0, preview.stderr
    assert out.read_text().startswith("<!DOCTYPE html>")
    text = run("preview", "ada", "--text")
    assert "Hello Ada" in text.stdout and "<" not in text.stdout.replace("<mailto", "")
    unknown = run("preview", "adda")
    assert unknown.returncode == 1 and 'did you mean "ada"' in unknown.stderr and "Traceback" not in unknown.stderr


def test_a_run_freezes_what_each_batch_built_and_gives_it_back_at_the_end(deployment: Deployment) -> None:
    """The pool and caches stay out of the collector's full passes during the run, not after it (a scheduler lives on)."""
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    deployment.add_subscriber("grace", SUBSCRIBER_GRACE)
    deployment.add_subscriber("kim", 'email = "kim@example.org"\n[[topics]]\nname = "Planning"\nkeywords = ["planning", "agent"]\n')
    config = deployment.config()
    pipeline.ingest_feeds(config, clock=fixed_clock(NOON))
    frozen_at: list[int] = []
    report = pipeline.run_digests(config, clock=fixed_clock(NOON), batch_size=1, on_digest=lambda _: frozen_at.append(gc.get_freeze_count()))
    assert [o.status for o in report.digests] == ["sent", "sent", "sent"]
    # The first batch ran unfrozen; the second after the first freeze; the third after what the second built joined it.
    assert frozen_at[0] == 0 < frozen_at[1] < frozen_at[2]
    assert gc.get_freeze_count() == 0


def test_a_batch_reads_its_readers_history_in_a_few_queries_and_ranks_as_one_by_one(deployment: Deployment) -> None:
    """reader_histories (what run_batch reads for a whole batch) gives each reader what build_digest read per reader:
    the same papers already sent and the same clicks, in one query each, and so the same digest."""
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    deployment.add_subscriber("grace", SUBSCRIBER_GRACE)
    config = deployment.config()
    pipeline.ingest_feeds(config, clock=fixed_clock(NOON))
    pipeline.run_digests(config, pipeline.DigestRequest(ignore_time=True), clock=fixed_clock(NOON))  # papers sent to both
    later = NOON + dt.timedelta(days=1)
    readers = {subscriber.id: subscriber for subscriber in pipeline.subscribers_of(config).subscribers}
    with Store(config.database, clock=fixed_clock(later)) as store:
        store.record_feedback("ada", next(iter(store.sent_ids_since("ada", since=NOON - dt.timedelta(days=30)))), kind="less")
        statements: list[str] = []
        store.db.conn.set_trace_callback(statements.append)
        histories = compose.reader_histories(config, store, ["ada", "grace", "nobody"], now=later)
        store.db.conn.set_trace_callback(None)
        assert len(statements) == 2  # not a query per reader
        since = later - dt.timedelta(days=config.lookback_days)
        for name in ("ada", "grace"):
            assert histories[name].sent == store.sent_ids_since(name, since=since) and histories[name].sent
            assert histories[name].feedback == store.feedback_of(name)
            one_by_one = compose.build_digest(config, store, readers[name], now=later)
            batched = compose.build_digest(config, store, readers[name], now=later, history=histories[name])
            assert [item.entry.id for item in batched.items] == [item.entry.id for item in one_by_one.items]
        assert histories["ada"].feedback and not histories["grace"].feedback
        assert histories["nobody"] == compose.ReaderHistory(set(), {})


def test_run_batch_reads_the_batch_first_then_prepares_each_reader(tmp_path: Path) -> None:
    calls: list[tuple[str, list[str]]] = []
    readers = [Subscriber(name, f"{name}@example.org", name, "UTC", dt.time(7)) for name in ("ada", "grace")]
    job = batch.BatchJob(
        prepare=lambda store, reader: calls.append(("prepare", [reader.id])) or batch.Prepared(DigestOutcome(reader.id, "empty")),
        open_store=lambda: Store(tmp_path / "db.sqlite", clock=fixed_clock(NOON)),
        sending=batch.Sending(make_transport=lambda: MaildirTransport(tmp_path / "box"), policy=DeliveryPolicy(sender="p@example.org"), clock=fixed_clock(NOON)),
        start_batch=lambda store, batch_readers: calls.append(("start", [reader.id for reader in batch_readers])),
    )
    with job.open_store() as store:
        outcomes = list(batch.run_batch(job, batch.Sender(job.sending, store), readers, stop=None))
    assert [outcome.status for outcome in outcomes] == ["empty", "empty"]
    assert calls == [("start", ["ada", "grace"]), ("prepare", ["ada"]), ("prepare", ["grace"])]


def test_run_batch_makes_remembered_readers_and_fails_only_the_one_whose_remembered_form_is_damaged(tmp_path: Path) -> None:
    ada = Subscriber("ada", "ada@example.org", "Ada", "UTC", dt.time(7), path=tmp_path / "ada.toml")
    remembered = Remembered("ada", ada.email, str(ada.path), subscribers._to_checked(ada))
    damaged = Remembered("grace", "grace@example.org", str(tmp_path / "grace.toml"), '["grace@example.org"]')
    prepared: list[Subscriber] = []
    job = batch.BatchJob(
        prepare=lambda store, reader: prepared.append(reader) or batch.Prepared(DigestOutcome(reader.id, "empty")),
        open_store=lambda: Store(tmp_path / "db.sqlite", clock=fixed_clock(NOON)),
        sending=batch.Sending(make_transport=lambda: MaildirTransport(tmp_path / "box"), policy=DeliveryPolicy(sender="p@example.org"), clock=fixed_clock(NOON)),
    )
    with job.open_store() as store:
        outcomes = list(batch.run_batch(job, batch.Sender(job.sending, store), [remembered, damaged], stop=None))
    assert prepared == [ada]  # the default BatchJob.load made the Subscriber the file gave
    assert [(o.subscriber, o.status) for o in outcomes] == [("grace", "failed"), ("ada", "empty")]
    assert "grace.toml: what the database remembers of this file is damaged" in outcomes[0].detail
