"""Readable Unicode from the LaTeX in arXiv titles, abstracts and author names.

arXiv metadata is written by authors in LaTeX: "$\\mathcal{O}(1/\\epsilon)$",
"Pi\\v{z}urica", "\\textsf{TS-Agent}", "80.77\\%". Readers of an email digest
must see "𝒪(1/ε)", "Pižurica", "TS-Agent", "80.77%".

The converter is hand-written rather than pylatexenc's LatexNodes2Text,
because abstracts are mostly prose that merely contains LaTeX: a "%" is a
per cent sign, not a comment; a "$" may be a price; an unknown macro must
keep its words. Every rule here therefore errs towards keeping the source
text: what is not understood comes through as written.

This module finds the math in a text ($...$, \\(...\\), equation
environments) and converts each math or text piece; parser.py reads one
piece, with the tables of symbols.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .parser import Parser, tokenize

__all__ = ["latex_to_unicode"]


def latex_to_unicode(text: str) -> str:
    """Readable Unicode for text that may contain LaTeX; never raises.

    Math ($...$, $$...$$, \\(...\\), \\[...\\], equation environments) gets
    Greek letters, operators, styled letters (\\mathcal, \\mathbb), Unicode
    super/subscripts, a/b fractions and √. Text gets accents (composed to
    NFC), escapes, and font commands reduced to their argument. A "$" that
    does not open math (a price, a lone sign) and a "%" stay as they are;
    unknown commands keep their argument, and a piece that cannot be
    converted is kept raw.
    """
    # Fast path: this runs on every title, abstract and author name at ingest.
    if "\\" not in text and "$" not in text:
        return text
    try:
        spans = _math_spans(text)
        if not spans and "\\" not in text:
            return text  # only currency dollars
        pieces: list[str] = []
        start = 0
        for span in spans:
            pieces.append(_convert_piece(text[start : span.start], math=False))
            pieces.append(_convert_piece(text[span.inner_start : span.inner_end], math=True, raw=text[span.start : span.end]))
            start = span.end
        pieces.append(_convert_piece(text[start:], math=False))
        return _squeezed("".join(pieces))
    except Exception:  # noqa: BLE001 - a converter bug must not cost an entry; keep the source text
        return text


_SPACES = re.compile(r" {2,}")


def _squeezed(text: str) -> str:
    """Each run of spaces one space; the substring test is a tenth of the regex's scan, and most abstracts need nothing."""
    return _SPACES.sub(" ", text) if "  " in text else text


def _latex_in_text(source: str) -> bool:
    """What makes prose between formulas LaTeX: a command, a group (maybe cut by a formula: "\\textbf{$x$-Bench}"), `` quotes.

    Four substring tests, not one regex: re scans a long abstract a character at a time, "in" in bulk (6x faster).
    """
    return "\\" in source or "{" in source or "}" in source or "``" in source


def _convert_piece(source: str, *, math: bool, raw: str | None = None) -> str:
    """One text or math piece; on any failure the raw piece (with its delimiters) is kept."""
    if not source:
        return "" if raw is None else raw
    if not math and not _latex_in_text(source):
        return source  # plain prose between two formulas
    if math and not _balanced(source):
        return raw or source  # "$\\frac{1}{$": a formula cut short reads better as written
    try:
        converted = Parser(tokenize(source), math=math, quotes="``" in source).parse()
    except Exception:  # noqa: BLE001 - see latex_to_unicode
        return source if raw is None else raw
    return converted.strip() if math else converted


_BRACE_OR_ESCAPE = re.compile(r"\\.|[{}]", re.DOTALL)


def _balanced(source: str) -> bool:
    level = 0
    for match in _BRACE_OR_ESCAPE.finditer(source):
        if match.group() == "{":
            level += 1
        elif match.group() == "}":
            level -= 1
            if level < 0:
                return False
    return level == 0


# --- where math starts and ends ----------------------------------------------------------


@dataclass(frozen=True)
class _Span:
    start: int  # the opening delimiter
    inner_start: int
    inner_end: int
    end: int  # just past the closing delimiter


_MATH_ENVIRONMENTS = "equation|align|gather|multline|displaymath|math|eqnarray|flalign|alignat"
_DELIMITER = re.compile(r"\\begin\{(" + _MATH_ENVIRONMENTS + r")(\*?)\}|\\[(\[]|\\.|\$\$|\$", re.DOTALL)
_DOLLAR_OR_ESCAPE = re.compile(r"\\.|\$", re.DOTALL)


def _math_spans(text: str) -> list[_Span]:
    """Math spans in reading order; a "$" that cannot open math is left to the text."""
    spans: list[_Span] = []
    absent: set[str] = set()  # closers not found after some point are not found after any later one
    pos = 0
    while (match := _DELIMITER.search(text, pos)) is not None:
        token = match.group()
        if match.group(1):  # \begin{equation} ... \end{equation}
            closer = f"\\end{{{match.group(1)}{match.group(2)}}}"
            span = _closed_by(text, match, closer, absent)
        elif token in ("\\(", "\\["):
            span = _closed_by(text, match, "\\)" if token == "\\(" else "\\]", absent)
        elif token.startswith("\\"):  # an escape such as \$ or \\: never a delimiter
            pos = match.end()
            continue
        elif token == "$$":
            span = _closed_by(text, match, "$$", absent) or _inline_dollar(text, match.start())
        else:
            span = _inline_dollar(text, match.start())
        if span is None:
            pos = match.start() + 1
            continue
        spans.append(span)
        pos = span.end
    return spans


def _closed_by(text: str, opener: re.Match[str], closer: str, absent: set[str]) -> _Span | None:
    end = -1 if closer in absent else text.find(closer, opener.end())
    if end < 0:
        absent.add(closer)  # a feed of "\\(" without "\\)" must not cost a search per opener
        return None
    return _Span(opener.start(), opener.end(), end, end + len(closer))


def _inline_dollar(text: str, start: int) -> _Span | None:
    """$...$ by Pandoc's rule, which tells math from prices ("$5 to $10", "$17.7K to $569").

    The opening $ must be followed by a non-space and the closing $ preceded
    by one; the first $ after the opener is the only candidate closer. Pandoc
    also refuses a closer followed by a digit ("$5-$10"); here that applies
    only when the content starts with a digit, because abstracts are full of
    "$\\sim$6" and "256$\\times$256".
    """
    inner = start + 1
    if inner >= len(text) or text[inner].isspace() or text[inner] == "$":
        return None
    for match in _DOLLAR_OR_ESCAPE.finditer(text, inner):
        if match.group() != "$":
            continue
        close = match.start()
        if text[close - 1].isspace():
            return None
        if text[inner].isdigit() and close + 1 < len(text) and text[close + 1].isdigit():
            return None
        return _Span(start, inner, close, close + 1)
    return None

