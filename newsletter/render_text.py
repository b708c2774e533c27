"""Plain-text helpers for rendering: trimming, highlighting, wrapping, printable values, safe URLs.

Pure functions of strings: nothing here knows about templates, so they can be cached per value.
"""

from __future__ import annotations

import functools
import re
import textwrap
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import markupsafe

MAX_AUTHORS = 6
TEXT_WIDTH = 76


def shorten_authors(authors: Sequence[str], limit: int = MAX_AUTHORS) -> str:
    """"A, B, C … +12" for long lists."""
    if len(authors) <= limit:
        return ", ".join(authors)
    shown = limit - 1
    return ", ".join(authors[:shown]) + f" … +{len(authors) - shown}"


def trim_text(text: str, limit: int) -> str:
    """Cut at a sentence end when one is near the limit, else at a word boundary; never mid-word.

    Trimming happens on plain text, before escaping, so it can never split an HTML entity.
    """
    if len(text) <= limit:
        return text
    window = text[: limit + 1]
    sentence_end = _last_sentence_end(window)
    if sentence_end >= limit * 0.6:
        return window[: sentence_end + 1]
    cut = window.rfind(" ")
    return (window[:cut] if cut > 0 else text[:limit]).rstrip(" ,;:-") + " …"


_SENTENCE_END = re.compile(r"[.?!](?= )")
_ABBREVIATIONS = frozenset({
    "al.", "cf.", "etc.", "vs.", "fig.", "figs.", "eq.", "eqs.", "sec.", "ref.", "refs.", "resp.", "approx.", "no.", "vol.",
})
_INITIALS = re.compile(r"(?:[^\W\d_]\.)+")  # e.g. i.e. w.r.t. i.i.d. U.S. J.


def _last_sentence_end(window: str) -> int:
    """Index of the last ". " / "? " / "! " that ends a sentence, not an abbreviation ("et al.", "e.g."); else -1."""
    for match in reversed(list(_SENTENCE_END.finditer(window))):
        word = window[: match.end()].rsplit(None, 1)[-1].lstrip("([{\"'“‘")
        if word.lower() not in _ABBREVIATIONS and not _INITIALS.fullmatch(word):
            return match.start()
    return -1


def highlight_parts(text: str, terms: Sequence[str]) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is_match) so the template can <mark> every whole-word match of a term.

    Case-insensitive; longer terms win where matches overlap. Plain string search rather than
    one regex per email: the terms differ for every reader, so compiled patterns never repeat.
    """
    if not text:
        return []
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters change length when lowered ("İ"): keep offsets exact
        lowered = "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in text)
    spans: list[tuple[int, int]] = []  # a handful: checking each is cheaper than a per-character "taken" list
    for term in sorted({t.lower() for t in terms if t}, key=len, reverse=True):
        start = lowered.find(term)
        while start >= 0:
            end = start + len(term)
            if _is_boundary(text, start, end) and not any(start < taken_end and taken_start < end for taken_start, taken_end in spans):
                spans.append((start, end))
            start = lowered.find(term, start + 1)
    parts: list[tuple[str, bool]] = []
    last = 0
    for start, end in sorted(spans):
        if start > last:
            parts.append((text[last:start], False))
        parts.append((text[start:end], True))
        last = end
    if last < len(text):
        parts.append((text[last:], False))
    return parts


def _is_boundary(text: str, start: int, end: int) -> bool:
    """No letter, digit or underscore right before or after: a whole-word match."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_")


_URL_KEEP = "!#$%&'()*+,/:;=?@[]~-._"  # RFC 3986 reserved and unreserved characters, and existing %-escapes
_HOST = re.compile(r"(?:[\w.~%!$&'()*+,;=-]+@)?(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")
# An http(s) URL safe_url returns unchanged: lower-case scheme, a plain host (no user, no [IPv6]), only characters quote()
# keeps; an empty query or fragment ("x?", "x?#y", "x#") is dropped by urlunsplit, so those take the long way.
_CLEAN_URL = re.compile(r"https?://[A-Za-z0-9._~-]+(?::[0-9]{1,5})?(?:[/?#][A-Za-z0-9!#$%&'()*+,/:;=?@\[\]~._-]*)?")


_SEPARATORS = re.compile(r"[\r\x0b\x0c\x1c-\x1f\x85\u2028\u2029]")  # line breaks and separators text may not hold
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")  # C0 (but tab, newline), DEL, C1 (but NEL)
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # either of the two: one scan to find out


def printable(value: Any) -> Any:
    """A printed value without control characters: separators become a space, the rest (NUL, ESC, ...) go.

    Jinja calls this on every ``{{ }}`` before escaping; ``\n`` and tab stay, since the text template's ``wrap``
    makes its own lines. Ingest already collapses whitespace; this is the render side's own guarantee.
    """
    # str.isprintable is the cheap common answer; only text with a newline, tab or worse is scanned
    if isinstance(value, str) and not value.isprintable() and _UNPRINTABLE.search(value):
        cleaned = _CONTROLS.sub("", _SEPARATORS.sub(" ", value))
        return type(value)(cleaned) if isinstance(value, markupsafe.Markup) else cleaned
    return value


def one_line(text: str) -> str:
    """``text`` fit for a header or a subject: printable, whitespace collapsed."""
    return " ".join(printable(text).split())


def safe_url(url: str | None) -> str | None:
    """An http(s) URL from a feed as a well-formed URI, or None.

    Any other scheme (javascript:, data:, vbscript:, a scheme hidden behind spaces or control characters) and any
    URL without a plain host is refused. Whatever RFC 3986 does not allow in a path, query or fragment (spaces,
    quotes, angle brackets, backticks, control characters, non-ASCII) is percent-encoded, so a link can neither
    break out of its attribute in a client that mangles quoting nor carry a space into the text part.
    """
    if not url:
        return None
    if _CLEAN_URL.fullmatch(url) and not url.endswith(("?", "#")) and "?#" not in url:
        return url  # nothing to encode, and urlsplit/urlunsplit would give it back as it is: most feeds' links
    return _normalised_url(url)


def _normalised_url(url: str) -> str | None:
    """safe_url's long way: split, check the host, percent-encode, put together again."""
    if not re.match(r"https?://", url := url.strip(), re.I):
        return None
    try:
        parts = urlsplit(url)  # also drops the tabs and newlines a URL parser ignores
        netloc = parts.netloc.encode("idna").decode("ascii") if not parts.netloc.isascii() else parts.netloc
    except (ValueError, UnicodeError):
        return None
    if not _HOST.fullmatch(netloc):
        return None
    return urlunsplit((
        parts.scheme.lower(), netloc, quote(parts.path, safe=_URL_KEEP), quote(parts.query, safe=_URL_KEEP),
        quote(parts.fragment, safe=_URL_KEEP),
    ))


@functools.lru_cache(maxsize=16384)  # abstracts and author lines are the same in every email that shows them
def wrap(text: str, width: int = TEXT_WIDTH, indent: str = "", hanging: str | None = None) -> str:
    """textwrap.fill for the text part; ``hanging`` indents continuation lines (numbered titles)."""
    subsequent = indent if hanging is None else hanging
    if not text.isprintable():  # tabs, newlines, other spaces: textwrap's own rules for them
        return textwrap.fill(
            text, width=width, initial_indent=indent, subsequent_indent=subsequent, break_long_words=False, break_on_hyphens=False,
        )
    return fill_spaced(text, width, indent, subsequent)


_SPACE_RUNS = re.compile(r"( +)")


def fill_spaced(text: str, width: int, indent: str, subsequent: str) -> str:
    """textwrap.fill (break_long_words and break_on_hyphens off) for text whose only whitespace is " ".

    The same greedy algorithm as textwrap's _wrap_chunks, without its general chunking and option handling,
    which cost 15-120 µs a call; tests/test_render_text.py checks it against textwrap on random text.
    """
    if len(indent) + len(text) <= width:  # most reasons, summaries and footers: one line
        kept = text.rstrip(" ")
        return indent + kept if kept else ""
    if text[0] != " " and text[-1] != " " and "  " not in text:  # every abstract, title and author line
        return _fill_single_spaced(text, width, indent, subsequent)
    chunks = [chunk for chunk in _SPACE_RUNS.split(text) if chunk]
    chunks.reverse()
    lines: list[str] = []
    while chunks:
        prefix = subsequent if lines else indent
        room = width - len(prefix)
        if lines and chunks[-1][0] == " ":  # a continuation line does not start with the space it broke at
            chunks.pop()
        line: list[str] = []
        used = 0
        while chunks and used + len(chunks[-1]) <= room:
            used += len(chunks[-1])
            line.append(chunks.pop())
        if chunks and not line and len(chunks[-1]) > room:  # a word longer than the line goes on a line alone
            line.append(chunks.pop())
        if line and line[-1][0] == " ":
            line.pop()
        if line:
            lines.append(prefix + "".join(line))
    return "\n".join(lines)


def _fill_single_spaced(text: str, width: int, indent: str, subsequent: str) -> str:
    """fill_spaced for words separated by single spaces: each line is the longest run of whole words that fits
    (or one word longer than the line), found with str.rfind instead of a Python step per word."""
    lines: list[str] = []
    start, end = 0, len(text)
    while start < end:
        prefix = subsequent if lines else indent
        room = width - len(prefix)
        if end - start <= room:
            cut = end
        else:
            cut = text.rfind(" ", start, start + room + 1)
            if cut < 0:  # the first word is longer than the line: it goes on a line alone
                cut = text.find(" ", start)
                cut = end if cut < 0 else cut
        lines.append(prefix + text[start:cut])
        start = cut + 1
    return "\n".join(lines)


_BLANK_RUNS = re.compile(r"\n\n\n+")  # not \n{3,}: that form gets no literal-prefix scan and is ~10x slower


def tidy_text(text: str) -> str:
    """At most one blank line in a row, and a final newline."""
    return _BLANK_RUNS.sub("\n\n", text).strip() + "\n"
