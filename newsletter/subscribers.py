"""Load subscribers/<id>.toml files; every problem names the file and the key.

One bad file never hides the others: ``load_subscribers`` returns the valid
subscribers and one line per problem.
"""

from __future__ import annotations

import datetime as dt
import difflib
import itertools
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from email_validator import EmailNotValidError, validate_email

from . import __version__
from .clock import WEEKDAYS, parse_hhmm, valid_timezone
from .config import MAX_TEXT, bad_text, one_line
from .errors import SubscriberError
from .ids import canonical_id
from .models import Subscriber, Topic

MAX_ITEMS_LIMIT = 100
_KEYS = {
    "email", "name", "timezone", "send_at", "frequency", "max_items",
    "exclude", "authors", "categories", "liked", "topics", "quiet_days",
}
_TOPIC_KEYS = {"name", "keywords", "weight"}
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Defaults:
    """Deployment-wide defaults from config.toml."""

    timezone: str = "UTC"
    send_at: dt.time = dt.time(7, 0)
    max_items: int = 10
    quiet_days: str = "skip"


@dataclass(frozen=True)
class LoadedSubscribers:
    subscribers: tuple[Subscriber, ...]
    problems: tuple[str, ...]  # one line per problem, "subscribers/x.toml: key ..."


def load_subscribers(directory: Path, *, defaults: Defaults = Defaults()) -> LoadedSubscribers:
    problems: list[str] = []
    subscribers = tuple(iter_subscribers(directory, defaults=defaults, on_problem=problems.append))
    return LoadedSubscribers(subscribers, tuple(problems))


def subscriber_files(directory: Path) -> list[Path]:
    """The subscriber files, in the order they are read (the first file with an address keeps it)."""
    return sorted(directory.glob("*.toml")) if directory.is_dir() else []


class ParsedCache(Protocol):
    """Where files already read and checked are remembered (the store): a daily run over 100,000 unchanged
    files reads each one's stamp and its checked form, instead of parsing and validating the TOML again.
    """

    def cached_subscribers(self, stamps: dict[str, str]) -> dict[str, str]:
        """subscriber id -> its checked form, for the files (id -> stamp) remembered with that same stamp."""
        ...

    def remember_subscriber(self, subscriber_id: str, stamp: str, checked: str) -> None: ...


# Bump when a check or the Subscriber fields change (_to_checked): every remembered file is then read afresh.
_CACHE_FORMAT = f"{__version__}/1"
_CHUNK = 100  # files whose remembered forms are asked for in one query


@dataclass(frozen=True)
class Remembered:
    """A file unchanged since it was last read and checked: its address, and its checked form not yet turned into a
    Subscriber (``load``), so that work happens where the digest is built (a digest worker), not in the process that
    hands the readers out."""

    id: str
    email: str
    path: str  # a str, not a Path: it crosses the pipe to a worker, and a Path costs 13 times as much to pickle and unpickle
    checked: str

    def load(self) -> Subscriber:
        try:
            return _from_checked(self.checked, subscriber_id=self.id, path=Path(self.path))
        except (ValueError, TypeError) as exc:  # a damaged row: the file's stamp still matches, so say how to renew it
            raise SubscriberError(f"{_shown(Path(self.path))}: what the database remembers of this file is damaged ({exc}); touch the file to have it read again") from None


def iter_subscribers(
    directory: Path, *, defaults: Defaults = Defaults(), on_problem: Callable[[str], None], files: Iterable[Path] | None = None,
    cache: ParsedCache | None = None,
) -> Iterator[Subscriber]:
    """Each valid subscriber in turn, read as it is needed (a run over 100,000 files never holds them all).

    Every bad file, or one whose address an earlier file already uses, goes to ``on_problem`` as one
    line. With a ``cache``, a file whose size, modification time and defaults are as when it was last
    read is not parsed again; bad files are never remembered, so their problem is always reported.
    """
    for reader in iter_readers(directory, defaults=defaults, on_problem=on_problem, files=files, cache=cache):
        yield loaded(reader)


def loaded(reader: Subscriber | Remembered) -> Subscriber:
    return reader.load() if isinstance(reader, Remembered) else reader


def iter_readers(
    directory: Path, *, defaults: Defaults = Defaults(), on_problem: Callable[[str], None], files: Iterable[Path] | None = None,
    cache: ParsedCache | None = None,
) -> Iterator[Subscriber | Remembered]:
    """iter_subscribers, but a file the cache remembers unchanged comes as Remembered (``loaded`` makes it a Subscriber)."""
    if not directory.is_dir():
        on_problem(f"{_shown(directory)}: subscribers directory not found")
        return
    emails: dict[str, str] = {}
    setting = repr(defaults)
    paths = iter(subscriber_files(directory) if files is None else files)
    while chunk := list(itertools.islice(paths, _CHUNK)):
        for path, reader in _read_chunk(chunk, defaults=defaults, setting=setting, cache=cache):
            if isinstance(reader, SubscriberError):
                on_problem(str(reader))
                continue
            first = emails.setdefault(reader.email.lower(), reader.id)
            if first != reader.id:
                on_problem(f"{_shown(path)}: email {reader.email} is already used by subscribers/{first}.toml")
                continue
            yield reader


def _read_chunk(
    paths: list[Path], *, defaults: Defaults, setting: str, cache: ParsedCache | None,
) -> Iterator[tuple[Path, Subscriber | Remembered | SubscriberError]]:
    """Each file's reader (or its problem), in order; the remembered forms of the chunk's unchanged files in one ask."""
    stamps: dict[str, str] = {}
    if cache is not None:
        for path in paths:
            try:
                status = path.stat()
            except OSError:
                continue  # load_subscriber_file says why it cannot be read
            stamps[path.stem] = f"{_CACHE_FORMAT} {status.st_mtime_ns} {status.st_size} {setting}"
    remembered = cache.cached_subscribers(stamps) if cache is not None and stamps else {}
    for path in paths:
        checked = remembered.get(path.stem)
        email = _email_of_checked(checked) if checked is not None else None  # None for a damaged row: the file is read again
        if checked is not None and email is not None:
            yield path, Remembered(path.stem, email, str(path), checked)
            continue
        try:
            subscriber = load_subscriber_file(path, defaults=defaults)
        except SubscriberError as exc:
            yield path, exc
            continue
        if cache is not None and path.stem in stamps:
            cache.remember_subscriber(path.stem, stamps[path.stem], _to_checked(subscriber))
        yield path, subscriber


def _to_checked(subscriber: Subscriber) -> str:
    """The form a file is remembered in: a JSON list, the address first (_email_of_checked reads only that)."""
    s = subscriber
    return json.dumps([
        s.email, s.name, s.timezone, s.send_at.strftime("%H:%M"), s.frequency, s.max_items, s.quiet_days,
        [[topic.name, topic.keywords, topic.weight] for topic in s.topics], s.exclude, s.authors, s.categories, s.liked,
    ], ensure_ascii=False)


def _email_of_checked(checked: str) -> str | None:
    """The address of a remembered form without decoding the rest (the string after its "["); None if it is damaged."""
    if not checked.startswith('["'):
        return None
    try:
        email, _ = _JSON.raw_decode(checked, 1)
    except ValueError:
        return None
    return str(email)


_JSON = json.JSONDecoder()


def _from_checked(checked: str, *, subscriber_id: str, path: Path) -> Subscriber:
    email, name, timezone, send_at, frequency, max_items, quiet_days, topics, exclude, authors, categories, liked = json.loads(checked)
    return Subscriber(
        id=subscriber_id, email=email, name=name, timezone=timezone, send_at=dt.time.fromisoformat(send_at), frequency=frequency,
        max_items=max_items, quiet_days=quiet_days,
        topics=tuple(Topic(name=topic, keywords=tuple(keywords), weight=weight) for topic, keywords, weight in topics),
        exclude=tuple(exclude), authors=tuple(authors), categories=tuple(categories), liked=tuple(liked), path=path,
    )


def find_subscriber(directory: Path, subscriber_id: str, *, defaults: Defaults = Defaults()) -> Subscriber:
    if not _ID_PATTERN.fullmatch(subscriber_id):
        raise SubscriberError(one_line(f'"{subscriber_id}" is not a subscriber id: ids are the file names in {_shown(directory)} (letters, digits, ".", "_", "-")'))
    path = directory / f"{subscriber_id}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.toml")) if directory.is_dir() else []
        hint = difflib.get_close_matches(subscriber_id, known, n=1)
        suggestion = f'; did you mean "{hint[0]}"?' if hint else f" (known: {', '.join(known) or 'none'})"
        raise SubscriberError(f'no subscriber "{subscriber_id}": {_shown(path)} does not exist{suggestion}')
    return load_subscriber_file(path, defaults=defaults)


def load_subscriber_file(path: Path, *, defaults: Defaults = Defaults()) -> Subscriber:
    shown = _Shown(path)
    if not _ID_PATTERN.fullmatch(path.stem):
        raise SubscriberError(f"{shown}: file name must be letters, digits, '.', '_' or '-' (it is the subscriber id)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SubscriberError(one_line(f"{shown}: cannot read: {exc}")) from None
    except tomllib.TOMLDecodeError as exc:
        raise SubscriberError(one_line(f"{shown}: not valid TOML: {exc}")) from None
    except RecursionError:
        raise SubscriberError(f"{shown}: not valid TOML: arrays or tables nested too deeply") from None
    return parse_subscriber(raw, subscriber_id=path.stem, path=path, defaults=defaults)


def parse_subscriber(raw: dict[str, Any], *, subscriber_id: str, path: Path, defaults: Defaults) -> Subscriber:
    fail = _Failer(_Shown(path))
    for key in sorted(raw.keys() - _KEYS):
        hint = difflib.get_close_matches(key, _KEYS, n=1)
        fail(f"unknown key {key}" + (f' (did you mean "{hint[0]}"?)' if hint else ""))
    if "email" not in raw:
        fail('email is required, e.g. email = "ada@example.org"')
    email = _string(raw, "email", fail)
    try:
        valid = validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        fail(f'email "{email}" is not a valid address: {exc}')
    if valid.ascii_email is None:
        fail(f'email "{email}": a non-ASCII mailbox name needs SMTPUTF8, which is not supported')
    email = valid.ascii_email  # an internationalised domain in its IDNA form
    timezone = _string(raw, "timezone", fail, default=defaults.timezone)
    if not valid_timezone(timezone):
        fail(f'timezone "{timezone}" is not an IANA time zone (e.g. "Europe/London")')
    send_at_text = _string(raw, "send_at", fail, default=defaults.send_at.strftime("%H:%M"))
    send_at = parse_hhmm(send_at_text)
    if send_at is None:
        fail(f'send_at "{send_at_text}" is not HH:MM')
    frequency = _string(raw, "frequency", fail, default="daily")
    if frequency != "daily" and not (frequency.startswith("weekly:") and frequency[7:] in WEEKDAYS):
        fail(f'frequency "{frequency}" must be "daily" or "weekly:mon" ... "weekly:sun"')
    max_items = raw.get("max_items", defaults.max_items)
    if not isinstance(max_items, int) or isinstance(max_items, bool) or not 1 <= max_items <= MAX_ITEMS_LIMIT:
        fail(f"max_items {max_items!r} must be an integer from 1 to {MAX_ITEMS_LIMIT}")
    quiet_days = _string(raw, "quiet_days", fail, default=defaults.quiet_days)
    if quiet_days not in ("skip", "note"):
        fail(f'quiet_days "{quiet_days}" must be "skip" (send nothing when nothing matched) or "note" (a short note)')
    subscriber = Subscriber(
        id=subscriber_id,
        email=email,
        name=_string(raw, "name", fail, default=subscriber_id),
        timezone=timezone,
        send_at=send_at,  # type: ignore[arg-type]  # None already failed
        frequency=frequency,
        max_items=max_items,
        quiet_days=quiet_days,
        topics=_topics(raw.get("topics", []), fail),
        exclude=_strings(raw, "exclude", fail),
        authors=_strings(raw, "authors", fail),
        categories=_strings(raw, "categories", fail),
        liked=tuple(_liked_id(value, fail) for value in _strings(raw, "liked", fail)),
        path=path,
    )
    if not subscriber.topics and not subscriber.authors:
        fail("no [[topics]] and no authors: add at least one topic so there is something to rank by")
    return subscriber


class _Shown:
    """A file's name as _shown gives it, worked out only when a message needs it (resolving costs a dozen stat calls)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __str__(self) -> str:
        return _shown(self.path)


class _Failer:
    def __init__(self, shown: str | _Shown, where: str = "") -> None:
        self.shown = shown
        self.where = where  # "topics[2]": the part of the file a message is about

    def inside(self, where: str) -> _Failer:
        return _Failer(self.shown, where)

    def __call__(self, message: str) -> None:
        where = f"{self.where}: " if self.where else ""
        raise SubscriberError(one_line(f"{self.shown}: {where}{message}"))


def _string(raw: dict[str, Any], key: str, fail: _Failer, *, default: str = "") -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        fail(f"{key} must be a string, not {type(value).__name__}")
    if "\r" in value or "\n" in value:
        fail(f"{key} must be a single line")
    if value.strip() and bad_text(value):
        fail(f"{key} {bad_text(value)}")
    return value.strip()


def _strings(raw: dict[str, Any], key: str, fail: _Failer) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        fail(f'{key} must be a list of non-empty strings, e.g. {key} = ["..."]')
    if len(value) > MAX_TEXT:
        fail(f"{key} has {len(value)} items (at most {MAX_TEXT})")
    for number, item in enumerate(value, start=1):
        if bad_text(item):
            fail(f"{key}[{number}] {bad_text(item)}")
    return tuple(item.strip() for item in value)


def _liked_id(value: str, fail: _Failer) -> str:
    """A liked paper as its canonical entry id: "2407.12345v2" and arXiv or daily-papers URLs become "arxiv:2407.12345"."""
    bare = re.fullmatch(r"(?:arxiv:)?(\d{4}\.\d{4,5})(v\d+)?", value, re.I)
    found = canonical_id(link=value, guid=None) if bare is None else (f"arxiv:{bare.group(1)}", None)
    if found is None or not (found[0].startswith(("arxiv:", "doi:", "https://"))):
        fail(f'liked "{value}" is not a paper id; use "arxiv:2407.12345", "doi:10.1000/x" or the paper\'s URL')
    return found[0]  # type: ignore[index]  # None already failed


def _topics(raw_topics: Any, fail: _Failer) -> tuple[Topic, ...]:
    if not isinstance(raw_topics, list):
        fail("topics must be written as [[topics]] tables")
    if len(raw_topics) > 100:
        fail(f"topics: {len(raw_topics)} topics (at most 100)")
    topics: list[Topic] = []
    for index, item in enumerate(raw_topics, start=1):
        where = f"topics[{index}]"
        if not isinstance(item, dict):
            fail(f"{where} must be a table with name, keywords and weight")
        for key in sorted(item.keys() - _TOPIC_KEYS):
            fail(f"{where}: unknown key {key} (known: name, keywords, weight)")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            fail(f"{where}: name is required and must be a non-empty string")
        if bad_text(name):
            fail(f"{where}: name {bad_text(name)}")
        keywords = _strings({"keywords": item.get("keywords", [name])}, "keywords", fail.inside(where))
        weight = item.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 < weight <= 100:
            fail(f"{where}: weight {weight!r} must be a number above 0 (at most 100)")
        topics.append(Topic(name=name.strip(), keywords=keywords or (name.strip(),), weight=float(weight)))
    return tuple(topics)


def _shown(path: Path) -> str:
    """The path as a user would type it: relative to the working directory when possible."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
