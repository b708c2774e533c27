"""The render side's text helpers: the fast line filler must wrap exactly as textwrap does."""

from __future__ import annotations

import textwrap

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.render_text import fill_spaced, printable, wrap

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
