"""Load and validate config.toml (the contract is in DESIGN.md).

Every problem is collected, not only the first, so ``newsletter check`` can
list them all; paths are resolved relative to the config file.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import os
import re
import ssl
import tomllib
from dataclasses import dataclass
from email.utils import formataddr, parseaddr
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email

from .clock import parse_hhmm, valid_timezone
from .errors import ConfigError

CONFIG_ENV = "NEWSLETTER_CONFIG"
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION = 366 * 86400  # a year: longer ones overflow date arithmetic (retry backoff doubles it)
MAX_DAYS = 3650  # lookback_days, link_days
MAX_TEXT = 1000  # characters in one string setting
MAX_SHOWN = 480  # characters of one problem line before its middle is cut
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
# Characters that move the cursor, end a line or reorder text on a terminal, in a header or a log line.
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


# Unicode categories Cc (C0, DEL, C1), Zl, Zp and Cs (surrogates), and the bidi controls: one regex pass
# instead of a category lookup per character (every string of 100,000 subscriber files goes through it).
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff" + "".join(sorted(_BIDI_CONTROLS)) + "]")


def has_control_chars(text: str) -> bool:
    """Control characters (NUL, ESC, newlines, tab, DEL), line/paragraph separators or bidi overrides.

    Zero-width joiners and other format characters that scripts need are allowed.
    """
    return _CONTROL_CHARS.search(text) is not None


def one_line(text: str, *, limit: int = MAX_SHOWN) -> str:
    """A problem as one printable line: unprintable characters escaped, an over-long middle cut out."""
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    if len(shown) > limit:
        keep = limit - 40
        shown = f"{shown[:keep - 80]} …[{len(shown) - keep} characters cut]… {shown[-80:]}"
    return shown


def bad_text(value: Any, *, max_len: int = MAX_TEXT) -> str | None:
    """Why a string setting is unusable, or None: not a string, empty, too long, control characters."""
    if not isinstance(value, str):
        return f"must be a string, not {_type_name(value)}"
    if not value.strip():
        return "must be a non-empty string"
    if len(value) > max_len:
        return f"is {len(value)} characters long (at most {max_len})"
    if has_control_chars(value):
        return "must be a single line without control characters"
    return None


def _type_name(value: Any) -> str:
    return {dict: "a table", list: "an array", bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), type(value).__name__
    )


@dataclass(frozen=True)
class FeedConfig:
    name: str
    url: str  # an http(s) URL, or an absolute file path after loading

    @property
    def is_remote(self) -> bool:
        return self.url.startswith(("http://", "https://"))


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"  # "starttls" | "tls" | "none"
    username: str | None = None
    password_env: str = "NEWSLETTER_SMTP_PASSWORD"
    timeout: float = 30.0
    ca_file: Path | None = None  # a CA bundle to trust instead of the system's (a private CA)
    allow_insecure: bool = False  # security = "none" to a host that is not loopback


@dataclass(frozen=True)
class Config:
    path: Path
    title: str
    sender: str
    database: Path
    templates: Path
    subscribers: Path
    timezone: str
    base_url: str | None
    feeds: tuple[FeedConfig, ...]
    ingest_every: int  # seconds
    send_at: dt.time
    max_items: int
    lookback_days: int
    min_score: float
    diversity: float
    delivery_method: str
    maildir: Path
    quiet_days: str  # "skip": send nothing when nothing matched (recorded), "note": send a short note
    max_attempts: int  # delivery attempts before a digest is given up as failed
    retry_after: int  # seconds before the first retry; doubled after each further failure
    rate_limit: int  # messages per minute, 0 = no limit
    smtp: SmtpConfig
    secret_env: str
    link_days: int  # how long a feedback link in an email keeps working
    fetch_timeout: float
    max_feed_bytes: int
    max_entries: int = 5_000  # entries kept per feed and fetch (ingest.max_entries)
    max_summary_chars: int = 20_000  # an abstract longer than this is trimmed (ingest.max_summary_chars)


QUIET_DAYS = ("skip", "note")

# key -> (type check, default). A default of ... means required.
_SECTIONS: dict[str, dict[str, Any]] = {
    "newsletter": {
        "title": "Daily Papers",
        "sender": "Daily Papers <papers@example.org>",
        "database": "newsletter.db",
        "templates": "templates",
        "subscribers": "subscribers",
        "timezone": "UTC",
        "base_url": None,
    },
    "schedule": {"ingest_every": "30m", "send_at": "07:00"},
    "ranking": {"max_items": 10, "lookback_days": 7, "min_score": 1.0, "diversity": 0.3},
    "delivery": {"method": "maildir", "maildir": "outbox", "quiet_days": "skip", "max_attempts": 8, "retry_after": "1m", "rate_limit": 0},
    "web": {"secret_env": "NEWSLETTER_SECRET", "link_days": 90},
    "smtp": {
        "host": "localhost",
        "port": 587,
        "security": "starttls",
        "username": None,
        "password_env": "NEWSLETTER_SMTP_PASSWORD",
        "timeout": 30.0,
        "ca_file": None,
        "allow_insecure": False,
    },
    "ingest": {"timeout": 20.0, "max_bytes": 20_000_000, "max_entries": 5_000, "max_summary_chars": 20_000},
}
_FEED_KEYS = {"name", "url"}


def find_config_path(path: str | os.PathLike[str] | None) -> Path:
    """--config, else $NEWSLETTER_CONFIG, else ./config.toml."""
    if path is not None:
        return Path(path)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return Path("config.toml")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    config_path = find_config_path(path)
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{config_path}: config file not found (pass --config PATH or set {CONFIG_ENV})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(one_line(f"{config_path}: not valid TOML: {exc}")) from None
    except RecursionError:
        raise ConfigError(f"{config_path}: not valid TOML: arrays or tables nested too deeply") from None
    return parse_config(raw, path=config_path)


class _Problems:
    """Collects one line per problem, each prefixed by the file name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []

    def add(self, message: str) -> None:
        self.lines.append(one_line(f"{self.path}: {message}"))


def parse_config(raw: dict[str, Any], *, path: Path) -> Config:
    problems = _Problems(path)
    base = path.resolve().parent
    sections = _sections(raw, problems)
    news = sections["newsletter"]
    sender, timezone, base_url = _check_newsletter(news, problems)
    feeds = _parse_feeds(raw.get("feeds", []), base=base, problems=problems)
    schedule, ranking, delivery, ingest = (sections[name] for name in ("schedule", "ranking", "delivery", "ingest"))
    ingest_every = _duration(schedule["ingest_every"], key="schedule.ingest_every", problems=problems)
    retry_after = _duration(delivery["retry_after"], key="delivery.retry_after", problems=problems)
    send_at = parse_hhmm(schedule["send_at"])
    if send_at is None:
        problems.add(f'schedule.send_at "{schedule["send_at"]}" is not HH:MM')
    _check_numbers(sections, problems)
    smtp = _parse_smtp(sections["smtp"], base=base, problems=problems)
    if problems.lines:
        raise ConfigError(problems.lines)

    return Config(
        path=path,
        title=news["title"],
        sender=sender,
        database=base / news["database"],
        templates=base / news["templates"],
        subscribers=base / news["subscribers"],
        timezone=timezone,
        base_url=base_url,
        feeds=feeds,
        ingest_every=ingest_every,
        send_at=send_at,  # type: ignore[arg-type]  # checked above
        max_items=ranking["max_items"],
        lookback_days=ranking["lookback_days"],
        min_score=float(ranking["min_score"]),
        diversity=float(ranking["diversity"]),
        delivery_method=delivery["method"],
        maildir=base / str(delivery["maildir"]),
        quiet_days=delivery["quiet_days"],
        max_attempts=delivery["max_attempts"],
        retry_after=retry_after,
        rate_limit=delivery["rate_limit"],
        smtp=smtp,
        secret_env=str(sections["web"]["secret_env"]),
        link_days=sections["web"]["link_days"],
        fetch_timeout=float(ingest["timeout"]),
        max_feed_bytes=int(ingest["max_bytes"]),
        max_entries=int(ingest["max_entries"]),
        max_summary_chars=int(ingest["max_summary_chars"]),
    )


def _sections(raw: dict[str, Any], problems: _Problems) -> dict[str, dict[str, Any]]:
    """Every known table with its defaults filled in; unknown tables and keys are problems."""
    sections: dict[str, dict[str, Any]] = {}
    for section, defaults in _SECTIONS.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            problems.add(f"[{section}] must be a table")
            given = {}
        for key in sorted(given.keys() - defaults.keys()):
            problems.add(f"unknown key {section}.{key} (known: {', '.join(sorted(defaults))})")
        sections[section] = {**defaults, **given}
    for section in sorted(raw.keys() - _SECTIONS.keys() - {"feeds"}):
        problems.add(f"unknown section [{section}]")
    return sections


def _check_newsletter(news: dict[str, Any], problems: _Problems) -> tuple[str, str, str | None]:
    """(sender with an ASCII domain, default time zone, base_url without trailing slash)."""
    bad = {key: bad_text(news[key]) for key in ("title", "sender", "database", "templates", "subscribers", "timezone")}
    for key, why in bad.items():
        if why:
            problems.add(f"newsletter.{key} {why}")
    sender = _sender(news["sender"], problems=problems) if not bad["sender"] else ""
    timezone = news["timezone"] if not bad["timezone"] else "UTC"
    if not valid_timezone(timezone):
        problems.add(f'newsletter.timezone "{timezone}" is not an IANA time zone (e.g. "Europe/London")')
    base_url = news["base_url"]
    if base_url is not None and (bad_text(base_url) or not re.match(r"https?://[^\s/]", base_url) or re.search(r"\s", base_url)):
        problems.add(f'newsletter.base_url "{base_url}" must start with http:// or https://')
        base_url = None
    return sender, timezone, base_url.rstrip("/") if base_url else None


def _check_numbers(sections: dict[str, dict[str, Any]], problems: _Problems) -> None:
    ranking, ingest = sections["ranking"], sections["ingest"]
    for key in ("max_items", "lookback_days"):
        if not _is_int(ranking[key]) or ranking[key] < 1:
            problems.add(f"ranking.{key} must be a positive integer, not {ranking[key]!r}")
    if _is_int(ranking["lookback_days"]) and ranking["lookback_days"] > MAX_DAYS:
        problems.add(f"ranking.lookback_days must be at most {MAX_DAYS}, not {ranking['lookback_days']!r}")
    if not _is_number(ranking["min_score"]) or not math.isfinite(ranking["min_score"]) or ranking["min_score"] < 0:
        problems.add(f"ranking.min_score must be a number >= 0, not {ranking['min_score']!r}")
    if not _is_number(ranking["diversity"]) or not 0 <= ranking["diversity"] < 1:
        problems.add(f"ranking.diversity must be a number from 0 (off) to below 1, not {ranking['diversity']!r}")
    if sections["delivery"]["method"] not in ("maildir", "smtp"):
        problems.add(f'delivery.method "{sections["delivery"]["method"]}" must be "maildir" or "smtp"')
    if not _is_int(sections["web"]["link_days"]) or not 1 <= sections["web"]["link_days"] <= MAX_DAYS:
        problems.add(f"web.link_days must be an integer from 1 to {MAX_DAYS}, not {sections['web']['link_days']!r}")
    if not isinstance(sections["web"]["secret_env"], str) or not _ENV_NAME.fullmatch(sections["web"]["secret_env"]):
        problems.add(f"web.secret_env must be the name of an environment variable (letters, digits, _), not {sections['web']['secret_env']!r}")
    why = bad_text(sections["delivery"]["maildir"])
    if why:
        problems.add(f"delivery.maildir {why}")
    for key, low in (("max_attempts", 1), ("rate_limit", 0)):
        if not _is_int(sections["delivery"][key]) or sections["delivery"][key] < low:
            problems.add(f"delivery.{key} must be an integer >= {low}, not {sections['delivery'][key]!r}")
    if sections["delivery"]["quiet_days"] not in QUIET_DAYS:
        problems.add(f'delivery.quiet_days "{sections["delivery"]["quiet_days"]}" must be "skip" (send nothing) or "note" (a short note)')
    if not _is_number(ingest["timeout"]) or not 0 < ingest["timeout"] <= 3600:
        problems.add(f"ingest.timeout must be a number of seconds above 0 (at most 3600), not {ingest['timeout']!r}")
    if not _is_int(ingest["max_bytes"]) or ingest["max_bytes"] < 1024:
        problems.add(f"ingest.max_bytes must be an integer >= 1024, not {ingest['max_bytes']!r}")
    if not _is_int(ingest["max_entries"]) or ingest["max_entries"] < 1:
        problems.add(f"ingest.max_entries must be a positive integer, not {ingest['max_entries']!r}")
    if not _is_int(ingest["max_summary_chars"]) or ingest["max_summary_chars"] < 100:
        problems.add(f"ingest.max_summary_chars must be an integer >= 100, not {ingest['max_summary_chars']!r}")


def _sender(value: str, *, problems: _Problems) -> str:
    """ "Name <address>" with the domain in ASCII (IDNA), or a problem naming the key."""
    name, address = parseaddr(value)
    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        problems.add(f'newsletter.sender "{value}" has no valid address ({exc}); e.g. "Daily Papers <papers@example.org>"')
        return value
    if valid.ascii_email is None:
        problems.add(f'newsletter.sender "{value}": a non-ASCII mailbox name needs SMTPUTF8, which is not supported')
        return value
    return formataddr((name, valid.ascii_email))


def _parse_feeds(raw_feeds: Any, *, base: Path, problems: _Problems) -> tuple[FeedConfig, ...]:
    if not isinstance(raw_feeds, list):
        problems.add("[[feeds]] must be an array of tables")
        return ()
    feeds: list[FeedConfig] = []
    seen: set[str] = set()
    for index, item in enumerate(raw_feeds, start=1):
        where = f"feeds[{index}]"
        if not isinstance(item, dict):
            problems.add(f"{where} must be a table with name and url")
            continue
        for key in sorted(item.keys() - _FEED_KEYS):
            problems.add(f"{where}: unknown key {key} (known: name, url)")
        name, url = item.get("name"), item.get("url")
        if not isinstance(name, str) or len(name) > 100 or not re.fullmatch(r"[\w.-]+", name):
            problems.add(f"{where}: name {name!r} must be letters, digits, '.', '_' or '-'")
            continue
        if name in seen:
            problems.add(f'{where}: feed name "{name}" is used twice')
        seen.add(name)
        if bad_text(url, max_len=4000):
            problems.add(f'feed "{name}": url must be a path or an http(s) URL on one line ({bad_text(url, max_len=4000)})')
            continue
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", url) and not url.startswith(("http://", "https://")):
            problems.add(f'feed "{name}": url "{url}" must be http(s) or a file path')
            continue
        if not url.startswith(("http://", "https://")):
            url = str(base / url)
        feeds.append(FeedConfig(name=name, url=url))
    return tuple(feeds)


def _parse_smtp(smtp: dict[str, Any], *, base: Path, problems: _Problems) -> SmtpConfig:
    if smtp["security"] not in ("starttls", "tls", "none"):
        problems.add(f'smtp.security "{smtp["security"]}" must be "starttls", "tls" or "none"')
    if not _is_int(smtp["port"]) or not 0 < smtp["port"] < 65536:
        problems.add(f"smtp.port must be an integer 1-65535, not {smtp['port']!r}")
    if not _is_number(smtp["timeout"]) or not 0 < smtp["timeout"] <= 3600:
        problems.add(f"smtp.timeout must be a number of seconds above 0 (at most 3600), not {smtp['timeout']!r}")
    why = bad_text(smtp["host"], max_len=255)
    if why or re.search(r"\s", smtp["host"]):
        problems.add(f"smtp.host {why or 'must not contain spaces'}")
    if smtp["username"] is not None and bad_text(smtp["username"]):
        problems.add(f"smtp.username {bad_text(smtp['username'])}")
    if not isinstance(smtp["password_env"], str) or not _ENV_NAME.fullmatch(smtp["password_env"]):
        problems.add(f"smtp.password_env must be the name of an environment variable (letters, digits, _), not {smtp['password_env']!r}")
    if not isinstance(smtp["allow_insecure"], bool):
        problems.add(f"smtp.allow_insecure must be true or false, not {smtp['allow_insecure']!r}")
    if smtp["security"] == "none" and smtp["allow_insecure"] is not True and isinstance(smtp["host"], str) and not _is_loopback(smtp["host"]):
        problems.add(
            f'smtp.security = "none" sends mail and password unencrypted to {smtp["host"]}: allowed only for a loopback host; '
            'use "starttls" or "tls", or set smtp.allow_insecure = true'
        )
    ca_file = None
    if smtp["ca_file"] is not None and bad_text(smtp["ca_file"]):
        problems.add(f"smtp.ca_file {bad_text(smtp['ca_file'])}")
    elif smtp["ca_file"] is not None:
        ca_file = base / smtp["ca_file"]
        if not _is_file(ca_file):
            problems.add(f"smtp.ca_file {ca_file} is not a file")
        elif not _is_ca_bundle(ca_file):
            problems.add(f"smtp.ca_file {ca_file} is not a PEM CA bundle")
    if "password" in smtp:
        problems.add("smtp.password: secrets never live in the file; set smtp.password_env instead")
    return SmtpConfig(
        host=str(smtp["host"]),
        port=smtp["port"] if _is_int(smtp["port"]) else 587,
        security=str(smtp["security"]),
        username=smtp["username"] if isinstance(smtp["username"], str) else None,
        password_env=str(smtp["password_env"]),
        timeout=float(smtp["timeout"]) if _is_number(smtp["timeout"]) else 30.0,
        ca_file=ca_file,
        allow_insecure=smtp["allow_insecure"] is True,
    )


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system
        return False


def _is_ca_bundle(path: Path) -> bool:
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        return False
    return True


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _duration(value: Any, *, key: str, problems: _Problems) -> int:
    match = re.fullmatch(r" *([0-9]+) *([smhd]) *", value) if isinstance(value, str) else None
    if not match or not match.group(1).strip("0"):
        problems.add(f'{key} "{value}" is not a duration like "30m", "2h" or "1d"')
        return 1800
    if len(match.group(1).lstrip("0")) > 9 or int(match.group(1)) * DURATION_UNITS[match.group(2)] > MAX_DURATION:
        problems.add(f'{key} "{value.strip()}" is longer than a year')
        return 1800
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
