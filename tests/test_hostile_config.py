"""Hostile and broken subscriber and config files (property-based, hypothesis).

Whatever TOML a user (or an attacker with write access to one subscriber
file) writes, loading gives either a valid subscriber/config or one clear
line per problem naming the file and the key: never a traceback, never an
exception outside errors.py. And one bad subscriber file never stops the
others' digests.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import shutil
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, NOON, SUBSCRIBER_ADA, SUBSCRIBER_GRACE, Deployment, fixed_clock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter import pipeline
from newsletter.config import _SECTIONS, Config, has_control_chars, load_config
from newsletter.errors import ConfigError, SubscriberError
from newsletter.models import Subscriber
from newsletter.subscribers import _KEYS, _TOPIC_KEYS, load_subscriber_file

# Moderate and deterministic: the same examples on every machine, no timing-based failures.
SETTINGS = settings(
    max_examples=200, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_LINE = 600  # a problem line is short enough to read, whatever the value was

_counter = itertools.count()


# --- writing TOML (no TOML writer is a dependency; this one quotes everything) ---------


def _toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif unicodedata.category(char) == "Cc" or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_document(doc: dict[str, Any]) -> str:
    """Plain values first, then each table as [table] (arrays of tables stay inline arrays)."""
    lines = [f"{_toml_string(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for key, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"\n[{_toml_string(key)}]")
            lines.extend(f"{_toml_string(k)} = {toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


# --- hostile values -----------------------------------------------------------------------

hostile_text = st.one_of(
    st.text(max_size=40),  # any Unicode (no surrogates): control characters, non-ASCII, RTL, ...
    st.text(alphabet=st.characters(max_codepoint=0x1F) | st.sampled_from("\x7f\u2028\u202e\ufeff\u0000"), max_size=10),
    st.sampled_from(["", " ", "\n", "a\r\nBcc: evil@example.org", "\x00", "../../etc/passwd", "{{ 7*7 }}", "<script>",
                     "daily", "weekly:mon", "weekly:xyz", "07:00", "25:99", "Europe/London", "Mars/Olympus", "UTC",
                     "../../../../etc/localtime", "/etc/passwd", "arxiv:2407.12345", "https://arxiv.org/abs/2407.12345v2",
                     "ada@example.org", "ada@例え.jp", "用户@example.org", "maildir", "smtp", "none", "tls", "30m", "0m",
                     "1d", "skip", "note", "http://example.org/", "ftp://x", "NEWSLETTER_SECRET", "A=B", "1BAD"]),
    st.integers(min_value=1, max_value=5).map(lambda n: "x" * (10 ** n) * 2),  # huge strings, up to 200 000 characters
)
scalars = st.one_of(
    hostile_text,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 100, 101, 65535, 65536, 2**63 - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.dates(), st.times(), st.datetimes(), st.datetimes(timezones=st.just(dt.timezone.utc)),
)
hostile_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=30), inner, max_size=3),
    max_leaves=8,
)
unknown_keys = st.text(min_size=1, max_size=20)


# --- subscriber files ---------------------------------------------------------------------------

VALID_SUBSCRIBER: dict[str, Any] = {
    "email": "ada@example.org", "name": "Ada", "timezone": "Europe/London", "send_at": "07:30",
    "frequency": "weekly:mon", "max_items": 5, "quiet_days": "note", "exclude": ["survey"], "authors": ["Hinton"],
    "categories": ["cs.LG"], "liked": ["arxiv:2407.12345"],
    "topics": [{"name": "Knowledge distillation", "keywords": ["distillation", "teacher-student"], "weight": 2.0}],
}

subscriber_mutation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(sorted(_KEYS)), hostile_values),
    st.tuples(st.just("delete"), st.sampled_from(sorted(_KEYS)), st.none()),
    st.tuples(st.just("topic"), st.sampled_from(sorted(_TOPIC_KEYS)), hostile_values),
    st.tuples(st.just("unknown"), unknown_keys, hostile_values),
    st.tuples(st.just("topics-item"), st.just("topics"), hostile_values),
)


def _mutated_subscriber(mutation: tuple[str, str, Any]) -> dict[str, Any]:
    doc = {**VALID_SUBSCRIBER, "topics": [dict(VALID_SUBSCRIBER["topics"][0])]}
    kind, key, value = mutation
    if kind == "set":
        doc[key] = value
    elif kind == "delete":
        doc.pop(key)
    elif kind == "topic":
        doc["topics"][0][key] = value
    elif kind == "unknown":
        doc.setdefault(key, value)
    else:
        doc["topics"].append(value)
    return doc


def _write(directory: Path, name: str, text: str | bytes) -> Path:
    path = directory / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _is_clear_line(line: str, *, filename: str) -> bool:
    return (
        filename in line
        and len(line) <= MAX_LINE
        and line.isprintable()  # no newline, no escape sequence, no NUL: one line on any terminal
    )


def _check_subscriber_outcome(path: Path) -> Subscriber | SubscriberError:
    try:
        subscriber = load_subscriber_file(path)
    except SubscriberError as exc:  # anything else (TypeError, RecursionError, ValueError, ...) fails the test
        assert _is_clear_line(str(exc), filename=path.name), repr(str(exc))
        return exc
    _check_valid_subscriber(subscriber)
    return subscriber


def _check_valid_subscriber(subscriber: Subscriber) -> None:
    """What a loaded subscriber promises the rest of the pipeline."""
    assert subscriber.email.isascii() and "@" in subscriber.email
    for text in (subscriber.name, subscriber.email, subscriber.timezone, subscriber.frequency, subscriber.quiet_days,
                 *subscriber.exclude, *subscriber.authors, *subscriber.categories, *subscriber.liked,
                 *(t.name for t in subscriber.topics), *(k for t in subscriber.topics for k in t.keywords)):
        assert isinstance(text, str) and not has_control_chars(text) and text.strip() == text
    assert 1 <= subscriber.max_items <= 100
    assert all(0 < t.weight <= 100 for t in subscriber.topics)
    assert subscriber.topics or subscriber.authors


@SETTINGS
@given(mutation=subscriber_mutation)
def test_a_subscriber_file_with_any_one_hostile_key_loads_or_names_file_and_key(tmp_path: Path, mutation: tuple[str, str, Any]) -> None:
    path = _write(tmp_path, f"s{next(_counter)}.toml", toml_document(_mutated_subscriber(mutation)))
    outcome = _check_subscriber_outcome(path)
    if isinstance(outcome, SubscriberError):
        kind, key, _ = mutation
        message = str(outcome)
        if kind == "unknown":
            assert "unknown key" in message
        elif kind in ("topic", "topics-item"):
            assert "topics" in message
        else:
            assert key in message or (key in ("topics", "authors") and "topics" in message), message


@SETTINGS
@given(doc=st.dictionaries(st.sampled_from(sorted(_KEYS)) | unknown_keys, hostile_values, max_size=8))
def test_a_subscriber_file_of_random_keys_and_values_never_breaks_loading(tmp_path: Path, doc: dict[str, Any]) -> None:
    _check_subscriber_outcome(_write(tmp_path, f"r{next(_counter)}.toml", toml_document(doc)))


def _corrupt(text: str, edits: list[tuple[int, str]]) -> str:
    for position, inserted in edits:
        position %= len(text) + 1
        text = text[:position] + inserted + text[position + 1:]
    return text


broken_text = st.one_of(
    st.text(max_size=200),
    st.builds(_corrupt, st.just(toml_document(VALID_SUBSCRIBER)),
              st.lists(st.tuples(st.integers(min_value=0), st.sampled_from(['"', "'", "[", "]", "=", "\n", "{", "\\", "", "#", "\x00", "\x7f", "é", "\ufeff"])), min_size=1, max_size=4)),
    st.integers(min_value=10, max_value=20_000).map(lambda n: "a = " + "[" * n + "]" * n),
    st.integers(min_value=10, max_value=20_000).map(lambda n: "a = " + "{b = " * n + "1" + "}" * n),
    st.binary(max_size=100),  # not UTF-8, NUL bytes
)


@SETTINGS
@given(text=broken_text)
def test_a_syntactically_broken_subscriber_file_is_one_line(tmp_path: Path, text: str | bytes) -> None:
    _check_subscriber_outcome(_write(tmp_path, f"b{next(_counter)}.toml", text))


def test_deeply_nested_toml_is_one_line_not_a_recursion_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "deep.toml", 'email = "d@example.org"\nliked = ' + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(SubscriberError, match=r"deep\.toml: not valid TOML"):
        load_subscriber_file(path)
    config_path = _write(tmp_path, "config.toml", "[newsletter]\ntitle = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"config\.toml: not valid TOML"):
        load_config(config_path)


def test_a_control_character_or_newline_in_a_key_or_value_stays_on_one_line(tmp_path: Path) -> None:
    doc = {**VALID_SUBSCRIBER, "liked": ["x\ny"], "unknown\nkey": 1}
    path = _write(tmp_path, "ctl.toml", toml_document(doc))
    with pytest.raises(SubscriberError) as caught:
        load_subscriber_file(path)
    assert _is_clear_line(str(caught.value), filename="ctl.toml"), repr(str(caught.value))
    doc = {**VALID_SUBSCRIBER, "name": "Ada\x1b[31m\x00"}
    with pytest.raises(SubscriberError, match=r"ctl2\.toml: name must be a single line without control characters"):
        load_subscriber_file(_write(tmp_path, "ctl2.toml", toml_document(doc)))


# --- config.toml --------------------------------------------------------------------------------

VALID_CONFIG: dict[str, Any] = {
    "newsletter": {"title": "Daily Papers", "sender": "Papers <papers@example.org>", "database": "newsletter.db",
                   "templates": "templates", "subscribers": "subscribers", "timezone": "UTC", "base_url": "https://papers.example.org/"},
    "schedule": {"ingest_every": "30m", "send_at": "07:00"},
    "ranking": {"max_items": 10, "lookback_days": 7, "min_score": 1.0, "diversity": 0.3},
    "delivery": {"method": "smtp", "maildir": "outbox", "quiet_days": "skip", "max_attempts": 8, "retry_after": "1m", "rate_limit": 0},
    "web": {"secret_env": "NEWSLETTER_SECRET", "link_days": 90},
    "smtp": {"host": "localhost", "port": 587, "security": "starttls", "username": "papers",
             "password_env": "NEWSLETTER_SMTP_PASSWORD", "timeout": 30.0, "allow_insecure": False},
    "ingest": {"timeout": 20.0, "max_bytes": 20_000_000},
}
CONFIG_KEYS = sorted((section, key) for section, keys in _SECTIONS.items() for key in keys)

config_mutation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(CONFIG_KEYS), hostile_values),
    st.tuples(st.just("unknown"), st.tuples(st.sampled_from(sorted(_SECTIONS)), unknown_keys), hostile_values),
    st.tuples(st.just("section"), st.tuples(st.sampled_from([*sorted(_SECTIONS), "feeds"]), st.just("")), hostile_values),
    st.tuples(st.just("feed"), st.tuples(st.just("feeds"), st.sampled_from(["name", "url", "extra"])), hostile_values),
)


def _mutated_config(mutation: tuple[str, tuple[str, str], Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {section: dict(table) for section, table in VALID_CONFIG.items()}
    doc["feeds"] = [{"name": "cs-ai", "url": "feeds/cs.AI.xml"}, {"name": "remote", "url": "https://export.arxiv.org/rss/cs.LG"}]
    kind, (section, key), value = mutation
    if kind in ("set", "unknown"):
        doc[section][key] = value if kind == "set" else doc[section].get(key, value)
    elif kind == "section":
        doc[section] = value
    else:
        doc["feeds"][0][key] = value
    return doc


def _check_config_outcome(path: Path) -> Config | ConfigError:
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert exc.problems and str(exc) == "\n".join(exc.problems)
        for line in exc.problems:
            assert _is_clear_line(line, filename=path.name), repr(line)
        return exc
    _check_valid_config(config)
    return config


def _check_valid_config(config: Config) -> None:
    for text in (config.title, config.sender, str(config.database), str(config.maildir), config.smtp.host,
                 config.smtp.password_env, config.secret_env):
        assert isinstance(text, str) and not has_control_chars(text) and text
    assert config.smtp.password_env.isidentifier() and config.secret_env.isidentifier()
    assert 0 < config.smtp.port < 65536 and math.isfinite(config.smtp.timeout) and config.smtp.timeout > 0
    assert math.isfinite(config.fetch_timeout) and config.fetch_timeout > 0
    assert math.isfinite(config.min_score) and 0 <= config.diversity < 1
    assert config.delivery_method in ("maildir", "smtp") and config.smtp.security in ("starttls", "tls", "none")
    assert config.ingest_every > 0 and config.retry_after > 0


@SETTINGS
@given(mutation=config_mutation)
def test_a_config_with_any_one_hostile_key_loads_or_names_file_and_key(tmp_path: Path, mutation: tuple[str, tuple[str, str], Any]) -> None:
    path = _write(tmp_path, f"config{next(_counter)}.toml", toml_document(_mutated_config(mutation)))
    outcome = _check_config_outcome(path)
    if isinstance(outcome, ConfigError):
        kind, (section, key), _ = mutation
        if kind == "set":
            assert any(f"{section}.{key}" in line for line in outcome.problems), outcome.problems
        elif kind == "unknown":
            assert any(f"unknown key {section}." in line for line in outcome.problems), outcome.problems
        elif kind in ("section", "feed"):
            assert any(section in line or "feed" in line for line in outcome.problems), outcome.problems


@SETTINGS
@given(doc=st.dictionaries(st.sampled_from([*sorted(_SECTIONS), "feeds"]) | unknown_keys, hostile_values, max_size=6))
def test_a_config_of_random_tables_and_values_never_breaks_loading(tmp_path: Path, doc: dict[str, Any]) -> None:
    _check_config_outcome(_write(tmp_path, f"rconfig{next(_counter)}.toml", toml_document(doc)))


@SETTINGS
@given(text=broken_text)
def test_a_syntactically_broken_config_is_one_line(tmp_path: Path, text: str | bytes) -> None:
    _check_config_outcome(_write(tmp_path, f"bconfig{next(_counter)}.toml", text))


# --- end to end: one generated bad file among good ones ----------------------------------------------


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployment with one feed ingested once; each example copies its database."""
    root = tmp_path_factory.mktemp("e2e")
    deployment = Deployment(root)
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    pipeline.ingest_feeds(deployment.config(), clock=fixed_clock(NOON))
    return root


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=st.one_of(broken_text, subscriber_mutation.map(lambda m: toml_document(_mutated_subscriber(m)))))
def test_one_generated_bad_file_among_good_ones_the_good_ones_still_get_their_digests(
    ingested: Path, tmp_path: Path, text: str | bytes
) -> None:
    root = tmp_path / f"d{next(_counter)}"
    root.mkdir()
    deployment = Deployment(root)
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    shutil.copy(ingested / "newsletter.db", root / "newsletter.db")
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    deployment.add_subscriber("grace", SUBSCRIBER_GRACE)
    _write(root / "subscribers", "hostile.toml", text)
    config = deployment.config()

    report = pipeline.run_digests(config, pipeline.DigestRequest(ignore_time=True), clock=fixed_clock(NOON))

    by_reader = {o.subscriber: o for o in report.digests}
    assert by_reader["ada"].status == "sent" and by_reader["grace"].status == "sent"
    if "hostile" in by_reader:  # the generated file happened to be valid: it is just another reader
        assert by_reader["hostile"].status in ("sent", "empty", "skipped", "bounced"), by_reader["hostile"]
        assert not report.problems
    else:
        assert len(report.problems) == 1, report.problems
        assert _is_clear_line(report.problems[0], filename="hostile.toml"), report.problems
