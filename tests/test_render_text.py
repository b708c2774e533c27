"""The render side's text helpers: the fast line filler must wrap exactly as textwrap does."""

from __future__ import annotations

import textwrap

from hypothesis import example, given, settings
from hypothesis import strategies as st

from newsletter import render_text
from newsletter.render_text import fill_spaced, highlight_parts, printable, safe_url, wrap

WORDS = st.lists(
    st.one_of(st.text(alphabet="ab-—“”é論", min_size=1, max_size=12), st.sampled_from(["", " ", "  ", "x" * 80])), max_size=40,
)


def _textwrap(text: str, width: int, indent: str, subsequent: str) -> str:
    return textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=subsequent, break_long_words=False, break_on_hyphens=False)


@settings(max_examples=800, deadline=None)
@given(words=WORDS, width=st.integers(8, 90), indent=st.sampled_from(["", "   ", "  * "]), subsequent=st.sampled_from(["", "   ", " "]))
def test_fill_spaced_wraps_as_textwrap_does(words: list[str], width: int, indent: str, subsequent: str) -> None:
    text = " ".join(words)  # runs of spaces, leading and trailing spaces, words longer than the line
    assert fill_spaced(text, width, indent, subsequent) == _textwrap(text, width, indent, subsequent)


@settings(max_examples=800, deadline=None)
@given(
    words=st.lists(st.text(alphabet="ab-—“論", min_size=1, max_size=14) | st.just("x" * 80), min_size=1, max_size=60),
    width=st.integers(8, 90), indent=st.sampled_from(["", "   "]), subsequent=st.sampled_from(["", "   "]),
)
def test_fill_spaced_wraps_single_spaced_words_as_textwrap_does(words: list[str], width: int, indent: str, subsequent: str) -> None:
    text = " ".join(words)  # the shape of every abstract, title and author line: the rfind path
    assert fill_spaced(text, width, indent, subsequent) == _textwrap(text, width, indent, subsequent)


def test_wrap_leaves_text_with_other_whitespace_to_textwrap() -> None:
    text = "tab\there, a\nnewline, a no-break\u00a0space and \x1c a separator " * 3
    assert wrap(text, indent="   ") == _textwrap(text, 76, "   ", "   ")
    assert wrap("7. " + "word " * 30, hanging="   ") == _textwrap("7. " + "word " * 30, 76, "", "   ")


def test_printable_drops_controls_and_keeps_newlines_and_tabs() -> None:
    assert printable("a\x00b\x1bc\u2028d\re\x85f") == "abc d e f"
    assert printable("line\n\tnext") == "line\n\tnext"
    assert printable(7) == 7


URL_PIECES = st.sampled_from([
    "http://", "https://", "HTTP://", "example.org", "a.b-c_d~e", ":8080", ":", "/", "/path", "?", "#", "?#", "&", "=", "%20", "%",
    "@", "user@", "[", "]", "[::1]", "[1.2.3.4]", "'", "(", ")", "*", "+", ",", ";", "!", "$", " ", "\t", "\n", "é", "ü/", '"', "<", ">",
    "`", "{", "|", "}", "^", "\\", "١٢", "\x00", "\x7f",
])


@settings(max_examples=500, deadline=None)
@given(st.lists(URL_PIECES, max_size=12).map("".join), st.sampled_from(["", "http://", "https://"]))
@example("x.org/b?", "http://")
@example("x.org/b#", "https://")
@example("x.org/b?#c", "https://")
@example("x.org?", "https://")
@example("[1.2.3.4]/a", "https://")
@example("x.org:١٢/", "https://")
def test_safe_url_returns_what_the_long_way_returns(tail: str, scheme: str) -> None:
    """The shortcut for URLs with nothing to encode gives the bytes that splitting and encoding give."""
    url = scheme + tail
    assert safe_url(url) == render_text._normalised_url(url)


def test_safe_url_takes_the_shortcut_for_plain_links_only() -> None:
    plain = ["https://arxiv.org/abs/2601.00001", "http://x.org:8080/a?b=1&c=%20#frag", "https://huggingface.co/papers/2601.00001"]
    assert all(render_text._CLEAN_URL.fullmatch(url) for url in plain)
    assert not any(render_text._CLEAN_URL.fullmatch(url) for url in ["HTTPS://x.org/", "https://u@x.org/", "https://x.org/a b", "https://[::1]/"])


def marked_characters(text: str, terms: list[str]) -> list[bool]:
    """The specification highlight_parts follows, one character at a time: longer terms first, each whole-word match
    (no letter, digit or underscore either side) marked unless it overlaps a match already marked."""
    taken = [False] * len(text)
    lowered = text.lower()
    for term in sorted({t.lower() for t in terms if t}, key=len, reverse=True):
        for start in range(len(text) - len(term) + 1):
            end = start + len(term)
            before, after = text[start - 1 : start] or " ", text[end : end + 1] or " "
            whole = not (before.isalnum() or before == "_" or after.isalnum() or after == "_")
            if lowered[start:end] == term and whole and not any(taken[start:end]):
                taken[start:end] = [True] * len(term)
    return taken


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab _-.A", max_size=40), st.lists(st.text(alphabet="abA _", min_size=1, max_size=5), max_size=4))
def test_highlight_parts_marks_what_the_specification_marks(text: str, terms: list[str]) -> None:
    parts = highlight_parts(text, terms)
    assert "".join(piece for piece, _ in parts) == text
    assert [hit for piece, hit in parts for _ in piece] == marked_characters(text, terms)
