"""Fetch a feed (file or HTTP with timeout, size cap, conditional GET) and parse it into Entries.

RSS 0.9x/1.0/2.0 and Atom go through feedparser; the daily-papers API JSON
has its own adapter. Parsing never raises for one bad entry: it is skipped
and counted, and an ill-formed but readable feed keeps its good entries.
"""

from __future__ import annotations

import ast
import datetime as dt
import gc
import hashlib
import html
import html.entities
import json
import re
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import feedparser
import httpx
import nh3

from . import __version__
from .errors import FeedError
from .ids import arxiv_id, canonical_id
from .latex import latex_to_unicode
from .models import Entry

# One entry never holds more than this (a 5 MB "abstract" is trimmed, with "…"); config: ingest.max_summary_chars.
MAX_SUMMARY_CHARS = 20_000
MAX_TITLE_CHARS = 1_000
# Entries kept per feed and fetch (the first ones, feeds list the newest first); config: ingest.max_entries.
MAX_ENTRIES = 5_000

USER_AGENT = f"newsletter/{__version__} (daily paper digest; +https://github.com/)"


@dataclass(frozen=True)
class FeedState:
    """What the store remembers of a feed for conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class FetchResult:
    content: bytes | None  # None when the server said 304 Not Modified
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None
    url: str = ""  # final URL after redirects, the base for relative links

    @property
    def not_modified(self) -> bool:
        return self.content is None


@dataclass(frozen=True)
class ParsedFeed:
    entries: tuple[Entry, ...]
    skipped: tuple[str, ...] = ()  # why each unusable entry was skipped
    warning: str | None = None  # ill-formed but readable


def fetch(
    url: str,
    *,
    feed_name: str,
    client: Callable[[], httpx.Client],
    state: FeedState = FeedState(),
    max_bytes: int = 20_000_000,
    timeout: float = 20.0,
) -> FetchResult:
    """Read a file path or GET an http(s) URL with ``client()``; raise FeedError naming the feed on any failure."""
    if not url.startswith(("http://", "https://")):
        return _read_file(Path(url), feed_name=feed_name, max_bytes=max_bytes)
    headers = {"User-Agent": USER_AGENT, "Accept": "application/atom+xml, application/rss+xml, application/json;q=0.9, */*;q=0.8"}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    try:
        with client().stream("GET", url, headers=headers) as response:
            if response.status_code == 304:
                return FetchResult(None, etag=state.etag, last_modified=state.last_modified, url=str(response.url))
            if response.status_code >= 400:
                raise FeedError(f'feed "{feed_name}": {url} answered HTTP {response.status_code} {response.reason_phrase}')
            content = _read_capped(response, feed_name=feed_name, max_bytes=max_bytes, timeout=timeout)
            return FetchResult(
                content,
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                content_type=response.headers.get("Content-Type"),
                url=str(response.url),
            )
    except httpx.TimeoutException:
        raise FeedError(f'feed "{feed_name}": {url} timed out (ingest.timeout)') from None
    except httpx.HTTPError as exc:
        raise FeedError(f'feed "{feed_name}": cannot fetch {url}: {exc or type(exc).__name__}') from None


def _read_capped(response: httpx.Response, *, feed_name: str, max_bytes: int, timeout: float) -> bytes:
    """The decoded body, refused past the size cap or the overall deadline.

    gzip and deflate are inflated here, at most ``max_bytes + 1`` bytes at a time out of
    each network chunk: a compression bomb (a 64 KB chunk of gzip can hold 64 MB) is
    stopped at the cap without ever being inflated in memory.
    """
    declared = response.headers.get("Content-Length")
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FeedError(f'feed "{feed_name}": {declared} bytes is over the {max_bytes}-byte cap (ingest.max_bytes)')
    chunks: list[bytes] = []
    size = 0
    # The client's timeout bounds each read; this bounds the whole download (a trickling server).
    deadline = time.monotonic() + timeout
    for chunk in _decoded_chunks(response, encoding, feed_name=feed_name, limit=max_bytes + 1):
        if time.monotonic() > deadline:
            raise FeedError(f'feed "{feed_name}": {response.url} timed out after {timeout:g} s (ingest.timeout)')
        size += len(chunk)
        if size > max_bytes:
            raise FeedError(f'feed "{feed_name}": more than {max_bytes} bytes, over the cap (ingest.max_bytes)')
        chunks.append(chunk)
    return b"".join(chunks)


def _decoded_chunks(response: httpx.Response, encoding: str, *, feed_name: str, limit: int) -> Iterator[bytes]:
    """The body's bytes, gzip/deflate inflated in pieces of at most ``limit`` bytes; other codings through httpx."""
    if encoding not in ("gzip", "x-gzip", "deflate"):
        yield from response.iter_bytes()  # identity, or br/zstd decoded by httpx
        return
    # wbits 47 = 32 + 15: zlib or gzip header, detected; a raw deflate stream needs -15.
    inflater = zlib.decompressobj(47)
    first = True
    try:
        for raw in response.iter_raw():
            if first and encoding == "deflate" and raw and (raw[0] & 0x0F) != 8:
                inflater = zlib.decompressobj(-15)  # "deflate" sent without its zlib header (some servers do)
            first = False
            data = raw
            while data:
                piece = inflater.decompress(data, limit)
                data = inflater.unconsumed_tail
                if piece:
                    yield piece
        tail = inflater.flush()
        if tail:
            yield tail
    except zlib.error as exc:
        raise FeedError(f'feed "{feed_name}": the {encoding} body is corrupt: {exc}') from None


def _read_file(path: Path, *, feed_name: str, max_bytes: int) -> FetchResult:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise FeedError(f'feed "{feed_name}": {path} is {size} bytes, over the {max_bytes}-byte cap (ingest.max_bytes)')
        return FetchResult(path.read_bytes(), url=path.resolve().as_uri())
    except FileNotFoundError:
        raise FeedError(f'feed "{feed_name}": file {path} not found') from None
    except OSError as exc:
        raise FeedError(f'feed "{feed_name}": cannot read {path}: {exc.strerror}') from None


def parse(
    content: bytes, *, feed_name: str, content_type: str | None = None, base_url: str = "",
    max_entries: int = MAX_ENTRIES, max_summary_chars: int = MAX_SUMMARY_CHARS,
) -> ParsedFeed:
    """Entries from RSS/Atom or daily-papers JSON; raise FeedError only if nothing is readable.

    At most ``max_entries`` entries are kept (the rest are reported as one skipped line)
    and each abstract is trimmed to ``max_summary_chars``.
    """
    head = content.lstrip()[:1]
    with _collector_paused():
        if head in (b"[", b"{") or (content_type or "").split(";")[0].strip().endswith("json"):
            return parse_daily_papers_json(content, feed_name=feed_name, max_entries=max_entries, max_summary_chars=max_summary_chars)
        return _parse_with_feedparser(
            content, feed_name=feed_name, content_type=content_type, base_url=base_url,
            max_entries=max_entries, max_summary_chars=max_summary_chars,
        )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a feed is parsed into entries, back on (if it was) however it ends.

    A parse builds a tree of tens of thousands of objects per thousand entries, all alive until the
    entries are made: every collection during it walks them and frees nothing (feedparser and this
    module leave no reference cycles: tests/test_ingest_speed.py), and the full ones also walk the
    whole process (0.05 s each beside a 1,000-reader digest run's heap; a 2,000-entry ingest met one
    in most runs). Memory is unaffected: what a parse drops is freed by reference counting meanwhile.
    The switch is process-wide, so another thread's cycles wait at most one parse; a caller that
    turned the collector off finds it off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _over_cap(count: int, max_entries: int, *, feed_name: str) -> list[str]:
    """The one report line for entries dropped by ingest.max_entries (before any work is spent on them)."""
    if count <= max_entries:
        return []
    return [f'feed "{feed_name}": {count} entries, kept the first {max_entries} (ingest.max_entries); {count - max_entries} skipped']


def _trimmed_note(trimmed: int, max_summary_chars: int, *, feed_name: str) -> str | None:
    if not trimmed:
        return None
    return f'feed "{feed_name}": {trimmed} abstract(s) longer than {max_summary_chars} characters trimmed (ingest.max_summary_chars)'


def _join(*notes: str | None) -> str | None:
    return "; ".join(note for note in notes if note) or None


def _capped(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a word boundary when there is one, marked with "…"."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ", max(0, limit - 200))
    return (cut[:space] if space > 0 else cut).rstrip() + "…"


def _parse_with_feedparser(
    content: bytes, *, feed_name: str, content_type: str | None, base_url: str,
    max_entries: int = MAX_ENTRIES, max_summary_chars: int = MAX_SUMMARY_CHARS,
) -> ParsedFeed:
    headers = {"content-type": content_type} if content_type else {}
    if base_url.startswith("http"):
        headers["content-location"] = base_url
    # feedparser's own sanitiser mangles HTML5 entities ("&percnt;"); clean_text strips every tag with nh3 instead.
    parsed = feedparser.parse(content, response_headers=headers, sanitize_html=False, resolve_relative_uris=True)
    if not parsed.get("version") and not parsed.entries and not (_CDF_ROOT.match(content[:4096]) and not parsed.get("bozo")):
        # (feedparser gives a CDF <CHANNEL> no version: a well-formed one without items is an empty feed, not an error)
        what = "empty" if not content.strip() else "not an RSS/Atom/JSON feed (an HTML page or an error message?)"
        raise FeedError(f'feed "{feed_name}": {what}')
    warning = None
    # A well-formed feed served as text/plain (raw.githubusercontent.com does) is not ill-formed.
    if parsed.get("bozo") and not isinstance(parsed.get("bozo_exception"), feedparser.NonXMLContentType):
        reason = parsed.get("bozo_exception")
        if not parsed.entries and not parsed.get("feed"):
            raise FeedError(f'feed "{feed_name}": not a readable RSS/Atom/JSON feed ({reason})')
        warning = f"ill-formed feed, kept what was readable: {reason}"
    raw_entries = list(parsed.entries)
    entries: list[Entry] = []
    skipped: list[str] = []
    if warning and len(raw_entries) > _closed_entries(content):
        # A truncated download: the last entry was cut off before its closing tag.
        skipped.append(f'feed "{feed_name}": entry {len(raw_entries)} was cut off (truncated feed); skipped')
        raw_entries.pop()
    skipped.extend(_over_cap(len(raw_entries), max_entries, feed_name=feed_name))
    if len(raw_entries) > max_entries:
        # The cap must apply here: the feed's size is the only other bound, and a long feed only wastes time and memory.
        del raw_entries[max_entries:]
    trimmed = 0
    for index, raw in enumerate(raw_entries, start=1):
        try:
            entry = _entry_from_feedparser(raw, feed_name=feed_name, max_summary_chars=max_summary_chars)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            skipped.append(f'feed "{feed_name}": entry {index} skipped: {exc}')
            continue
        if entry is None:
            skipped.append(f'feed "{feed_name}": entry {index} has no title, link or id; skipped')
        else:
            entries.append(entry)
            trimmed += len(entry.summary) >= max_summary_chars - 200 and entry.summary.endswith("…")
    return ParsedFeed(tuple(entries), tuple(skipped), _join(warning, _trimmed_note(trimmed, max_summary_chars, feed_name=feed_name)))


# FeedParserDict.get resolves feedparser's legacy aliases ("description", "guid", ...) on every call, a
# tenth of an entry's cost; no key read here is an alias, so the plain dict lookup finds the same value.
_field = dict.get


def _entry_from_feedparser(raw: Any, *, feed_name: str, max_summary_chars: int = MAX_SUMMARY_CHARS) -> Entry | None:
    link = _first_http_link(raw)
    guid = (_field(raw, "id") or "").strip() or None
    identity = canonical_id(link=link, guid=guid, doi_text=_field(raw, "prism_doi") or _field(raw, "dc_identifier"))
    title = _capped(readable_text((_field(raw, "title") or "")[: MAX_TITLE_CHARS * 4], is_html=_is_html(raw, "title")), MAX_TITLE_CHARS)
    if not (title or link):
        return None
    if identity is None:  # a title alone (no link, guid or DOI): identified by feed and title
        identity = f"{feed_name}:" + hashlib.sha256(title.encode("utf-8")).hexdigest()[:16], None
    # Bound the work (and memory) spent on a giant abstract before cleaning it: 4x leaves room for markup.
    summary_html = (_field(raw, "summary", "") or _content_value(raw))[: max_summary_chars * 4]
    if not _is_html(raw, "summary"):  # Atom type="text" (arXiv's API): "x<y" is text, not a tag
        summary_html = html.escape(summary_html)
    summary, authors_from_summary = _split_summary(summary_html)
    authors = max(_authors(raw), authors_from_summary, key=len)  # rfeed's <author> holds only the first
    pdf_url = next((_field(item, "href") for item in _field(raw, "links", []) if _field(item, "type") == "application/pdf"), None)
    entry_id, version = identity
    if version is None:  # the version may sit only in the guid or the summary ("arXiv:2508.13167v1 ...")
        version = _arxiv_version(entry_id, guid, summary_html)
    return Entry(
        id=entry_id,
        title=title or (link or entry_id),
        link=link or _default_link(entry_id),
        summary=_capped(_unlatex(summary), max_summary_chars),
        authors=authors,
        categories=tuple(dict.fromkeys(_field(tag, "term", "").strip() for tag in _field(raw, "tags", []) if _field(tag, "term"))),
        published=_struct_time_to_datetime(_field(raw, "published_parsed") or _field(raw, "updated_parsed")),
        version=version,
        pdf_url=pdf_url or _default_pdf(entry_id),
        comment=clean_text(_field(raw, "arxiv_comment", ""), is_html=False) or None,
        guid=guid,
        source=feed_name,
    )


def parse_daily_papers_json(
    content: bytes, *, feed_name: str, max_entries: int = MAX_ENTRIES, max_summary_chars: int = MAX_SUMMARY_CHARS,
) -> ParsedFeed:
    """The daily-papers API format: a list of {"paper": {...}, "title", "publishedAt", ...}.

    Some real archives hold a list of Python repr() strings instead of
    objects; those are recovered with ast.literal_eval (which evaluates
    literals only, never code).
    """
    try:
        data = json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FeedError(f'feed "{feed_name}": not valid JSON: {exc}') from None
    except RecursionError:
        raise FeedError(f'feed "{feed_name}": JSON nested too deeply to read') from None
    if isinstance(data, dict):
        if not isinstance(data.get("papers") or data.get("items"), list) and "paper" not in data:
            keys = ", ".join(sorted(data)[:5])
            raise FeedError(f'feed "{feed_name}": JSON object with keys {keys} is not a daily-papers list')
        data = data.get("papers") or data.get("items") or [data]
    if not isinstance(data, list):
        raise FeedError(f'feed "{feed_name}": JSON must be a list of daily-papers items')
    entries: list[Entry] = []
    skipped: list[str] = []
    repaired = trimmed = 0
    skipped.extend(_over_cap(len(data), max_entries, feed_name=feed_name))
    for index, item in enumerate(data[:max_entries], start=1):
        if isinstance(item, str):
            try:
                item = ast.literal_eval(item)
                repaired += 1
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                skipped.append(f'feed "{feed_name}": item {index} is a string that is not a literal; skipped')
                continue
        try:
            entry = _entry_from_daily_paper(item, feed_name=feed_name, max_summary_chars=max_summary_chars)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            skipped.append(f'feed "{feed_name}": item {index} skipped: {exc}')
            continue
        entries.append(entry)
        trimmed += len(entry.summary) >= max_summary_chars - 200 and entry.summary.endswith("…")
    warning = f"{repaired} items were Python repr strings, not JSON objects; recovered" if repaired else None
    return ParsedFeed(tuple(entries), tuple(skipped), _join(warning, _trimmed_note(trimmed, max_summary_chars, feed_name=feed_name)))


def _entry_from_daily_paper(item: Any, *, feed_name: str, max_summary_chars: int = MAX_SUMMARY_CHARS) -> Entry:
    if not isinstance(item, dict):
        raise ValueError(f"expected an object, got {type(item).__name__}")
    paper = item.get("paper", item)
    if not isinstance(paper, dict) or not paper.get("id"):
        raise ValueError("no paper.id")
    found = arxiv_id(f"arxiv:{paper['id']}")
    if not found:
        raise ValueError(f"paper.id {paper['id']!r} is not an arXiv id")
    entry_id = f"arxiv:{found[0]}"
    title = _capped(readable_text(str(item.get("title") or paper.get("title") or "")[: MAX_TITLE_CHARS * 4], is_html=False), MAX_TITLE_CHARS)
    if not title:
        raise ValueError(f"{entry_id} has no title")
    upvotes = paper.get("upvotes")
    return Entry(
        id=entry_id,
        title=title,
        link=f"https://huggingface.co/papers/{found[0]}",
        summary=_capped(readable_text(str(paper.get("summary") or item.get("summary") or "")[: max_summary_chars * 4], is_html=False), max_summary_chars),
        authors=tuple(
            readable_text(author.get("name", ""), is_html=False) for author in paper.get("authors", []) if isinstance(author, dict) and author.get("name")
        ),
        published=_iso_datetime(paper.get("publishedAt") or item.get("publishedAt")),
        version=found[1],
        upvotes=upvotes if isinstance(upvotes, int) and not isinstance(upvotes, bool) else None,
        pdf_url=f"https://arxiv.org/pdf/{found[0]}",
        guid=str(paper["id"]),
        source=feed_name,
    )


# --- text helpers -----------------------------------------------------------

# Runs of ASCII whitespace and line breaks collapse to one space; an authored no-break or fixed-width
# space (&nbsp; &ensp; &thinsp; ...) is a character of the text and is kept.
_LINE_SPACE = re.compile(r"[\t\n\r\f\v\x85\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")
_ARXIV_PREFIX = re.compile(r"^\s*arXiv:(\S+)\s+Announce Type:\s*\S+\s*Abstract:\s*", re.I)
_BARE_ENTITY = re.compile(r"&([A-Za-z][A-Za-z0-9]{1,30})(?![;A-Za-z0-9])")
_PARAGRAPH = re.compile(r"<p\b[^>]*>(.*?)</p\s*>", re.I | re.S)
_LABELLED = re.compile(r"^\s*<b>\s*[\w ]+:\s*</b>", re.I)


def clean_text(value: str, *, is_html: bool = True) -> str:
    """Plain text from untrusted feed HTML (tags removed by nh3, entities decoded) or text; whitespace collapsed."""
    if not isinstance(value, str) or not value:
        return ""
    if is_html and ("<" in value or "&" in value):
        value = html.unescape(nh3.clean(value, tags=set()))
        # feedparser drops the ";" of HTML5 entities it does not know ("&percnt;" -> "&percnt").
        value = _BARE_ENTITY.sub(_bare_entity, value)
    return _collapsed(value)


def _collapsed(value: str) -> str:
    """``value`` without control characters, each run of whitespace and line breaks one space, stripped.

    Most fields need none of it, and str.isprintable() (False for every control character
    and every space but " ") says so far faster than a regex scan of a whole abstract.
    """
    if _printable(value):
        return value.strip() if "  " not in value else " ".join(value.split())  # only " " can be there to collapse
    value = _CONTROL.sub("", value)  # NUL, ESC sequences' lead, DEL, C1: never text (tabs, newlines and NEL collapse below)
    value = _LINE_SPACE.sub(" ", value)
    return " ".join(filter(None, value.split(" "))).strip()


_ASCII_CONTROLS = bytes(range(0x20)) + b"\x7f"


def _printable(value: str) -> bool:
    """``value.isprintable()``; on a long ASCII text (an abstract) by deleting the control bytes, 3x faster than
    isprintable's look-up per character. In ASCII only those 33 are not printable; the space is."""
    if len(value) > 200 and value.isascii():
        return len(value.encode("ascii").translate(None, _ASCII_CONTROLS)) == len(value)
    return value.isprintable()


def readable_text(value: str, *, is_html: bool = True) -> str:
    """clean_text, then the LaTeX authors write in titles, abstracts and names as Unicode ("$\\epsilon$" -> "ε")."""
    return _unlatex(clean_text(value, is_html=is_html))


def _unlatex(text: str) -> str:
    converted = latex_to_unicode(text)
    # Dropped commands ("\\noindent ", "\\begin{itemize}") can leave doubled or edge spaces.
    return text if converted == text else _collapsed(converted)


def _bare_entity(match: re.Match[str]) -> str:
    return html.entities.html5.get(match.group(1) + ";", match.group(0))


def _split_summary(summary_html: str) -> tuple[str, tuple[str, ...]]:
    """The abstract as plain text, and authors when the summary carries them.

    arXiv's own feeds prefix "arXiv:2508.13167v1 Announce Type: new Abstract:";
    arxiv-to-rss writes <p>authors</p><p>abstract</p><p><b>Published:</b>...</p>.
    """
    summary_html = summary_html or ""
    paragraphs = _PARAGRAPH.findall(summary_html) if "<" in summary_html else []  # (most abstracts: no scan for "<p")
    labelled = [p for p in paragraphs if _LABELLED.match(p)]
    if len(paragraphs) >= 2 and labelled:
        plain = [p for p in paragraphs if not _LABELLED.match(p)]
        if len(plain) >= 2:
            authors = tuple(name for name in (readable_text(n) for n in clean_text(plain[0]).split(",")) if name)
            return clean_text(" ".join(plain[1:])), authors
        return clean_text(" ".join(plain)), ()
    text = clean_text(summary_html)
    return _ARXIV_PREFIX.sub("", text), ()


def _arxiv_version(entry_id: str, guid: str | None, summary_html: str) -> int | None:
    prefix = _ARXIV_PREFIX.match(html.unescape(summary_html or ""))
    for text in (guid, f"arxiv:{prefix.group(1)}" if prefix else None):
        found = arxiv_id(text)
        if found and found[1] and f"arxiv:{found[0]}" == entry_id:
            return found[1]
    return None


_CDF_ROOT = re.compile(rb"\s*(?:<\?.*?\?>\s*|<!--.*?-->\s*|<!DOCTYPE[^>]*>\s*)*<channel[\s>]", re.I | re.S)


def _closed_entries(content: bytes) -> int:
    return len(re.findall(rb"</(?:[\w-]+:)?(?:entry|item)\s*>", content))


def _authors(raw: Any) -> tuple[str, ...]:
    values = [_field(author, "name", "") for author in _field(raw, "authors", []) if isinstance(author, dict)]
    plain = _plain_names(values)
    names = [value.strip() for value in values] if plain else [clean_text(value, is_html=False) for value in values]
    names = [name for name in names if name]
    if len(names) == 1 and "," in names[0]:  # dc:creator "A, B, C" as one string (arXiv RSS)
        names = [part.strip() for part in names[0].split(",") if part.strip()]
    if plain:
        return tuple(names)
    # arXiv writes accents in LaTeX ("Pi\\v{z}urica"); readers and author matching want "Pižurica".
    return tuple(name for name in (_unlatex(name) for name in names) if name)


def _plain_names(values: list[Any]) -> bool:
    """Whether clean_text and _unlatex would only strip each of these names: all strings, printable, no double
    space, no LaTeX. Four scans of the names joined, instead of five calls per name (an arXiv paper has seven)."""
    try:
        joined = "".join(values)
    except TypeError:  # a name that is not a string: clean_text makes it ""
        return False
    return joined.isprintable() and "  " not in joined and "\\" not in joined and "$" not in joined


def _is_html(raw: Any, key: str) -> bool:
    """feedparser's verdict on a field's type; RSS descriptions and Atom type="html" are HTML."""
    detail = _field(raw, f"{key}_detail") or {}
    return "html" in str(_field(detail, "type", "text/html"))


def _content_value(raw: Any) -> str:
    content = _field(raw, "content") or []
    return _field(content[0], "value", "") if content else ""


def _first_http_link(raw: Any) -> str | None:
    candidates = [_field(raw, "link")] + [_field(item, "href") for item in _field(raw, "links", []) if _field(item, "rel", "alternate") == "alternate"]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip().lower().startswith(("http://", "https://")):
            return candidate.strip()
    return None


def _default_link(entry_id: str) -> str:
    return f"https://arxiv.org/abs/{entry_id[6:]}" if entry_id.startswith("arxiv:") else ""


def _default_pdf(entry_id: str) -> str | None:
    return f"https://arxiv.org/pdf/{entry_id[6:]}" if entry_id.startswith("arxiv:") else None


def _struct_time_to_datetime(value: time.struct_time | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime(*value[:6], tzinfo=dt.timezone.utc)
    except (ValueError, TypeError, OverflowError):
        return None


def _iso_datetime(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
