"""Tokens and the recursive-descent parser that turns one text or math piece into Unicode.

The parser never gives up on a whole piece: an item it cannot read is kept
as its source token and reading goes on with the next (see Parser.parse).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import NamedTuple

from .symbols import (
    CITATIONS,
    CONTROL_SYMBOLS,
    DIMENSION_WORDS,
    DROP_ARGUMENT,
    GLUED_ACCENT,
    GLUED_STYLE,
    GREEK,
    IGNORE,
    KEEP_ARGUMENT,
    MATH_ACCENTS,
    MATH_SPACE,
    MATH_SYMBOLS,
    OPERATOR_NAMES,
    ROMAN,
    SIZED_DELIMITERS,
    SPACES_WORDS,
    SPACING_ACCENT,
    STYLES,
    SUBSCRIPT,
    SUPERSCRIPT,
    TEXT_ACCENTS,
    TEXT_LETTERS,
    TEXT_SYMBOLS,
)

# --- tokens -------------------------------------------------------------------------------

_TOKEN = re.compile(r"\\([A-Za-z]+)|\\(.)|(\\)$|([{}^_~$&])|([^\\{}^_~$&]+)", re.DOTALL)

# kinds of token
_WORD, _SYMBOL, _CHAR, _TEXT = "word", "symbol", "char", "text"


class Token(NamedTuple):  # not a frozen dataclass: an abstract's LaTeX makes dozens, and a tuple is made 3x faster
    kind: str  # _WORD (\name), _SYMBOL (\%), _CHAR (one of {}^_~$& or a trailing backslash), _TEXT
    value: str  # the command name, the symbol, the char or the text
    raw: str  # the source, for keeping what cannot be converted


# "T{\"}ulu" puts the accent in a group of its own; LaTeX would drop it, the author meant "Tülu".
_LONELY_ACCENT = re.compile(r"\{\\([\"'`^~=.])\}(\w)")


def tokenize(source: str) -> list[Token]:
    source = _LONELY_ACCENT.sub(r"\\\1{\2}", source)
    tokens = []
    for match in _TOKEN.finditer(source):
        word, symbol, trailing, char, text = match.groups()
        if word is not None:
            tokens.append(Token(_WORD, word, match.group()))
        elif symbol is not None:
            tokens.append(Token(_SYMBOL, symbol, match.group()))
        elif trailing is not None:
            tokens.append(Token(_TEXT, "\\", "\\"))
        elif char is not None:
            tokens.append(Token(_CHAR, char, char))
        else:
            tokens.append(Token(_TEXT, text, text))
    return tokens


# TeX reads "-2mu" and one space after it as the dimension ("\\mathcal{E\\mkern-2mu L}" is "ℰℒ").
_DIMENSION = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)\s*(?:mu|pt|em|ex|cm|mm|in|bp|pc|sp) ?")
# A fraction part or root that needs no parentheses: "12", "x", "𝒪", "f(x)", "sin²(π/2n)".
_ATOM = re.compile(r"[\w.′']+(?:\([^()]*\))?|.")
_DASHES = re.compile(r"---|--")
_DIGIT_DASH = re.compile(r"(?<=\d)--(?=\d)")
_MAX_DEPTH = 60  # deeper nesting is not LaTeX anyone wrote; keep it raw rather than recurse


class _Unconvertible(Exception):
    """A piece the converter will not handle; its source is kept."""


class _TooDeep(_Unconvertible):
    """Commands or groups nested past _MAX_DEPTH."""


# --- the parser ------------------------------------------------------------------------------


class Parser:
    """Recursive descent over the tokens of one text or math piece, producing Unicode."""

    def __init__(self, tokens: list[Token], *, math: bool, quotes: bool = False) -> None:
        self.tokens = tokens
        self.index = 0
        self.offset = 0  # characters of tokens[index] already consumed (a text token read one char at a time)
        self.math = math
        self.quotes = quotes  # the piece uses ``...'' quotes, so '' is a closing quote
        self.depth = 0  # items being read, one inside another
        self.groups = 0  # {groups} being read: inside one, "--" is surely a LaTeX dash

    # - reading -

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def advance(self) -> None:
        self.index += 1
        self.offset = 0

    def rest_of_text(self) -> str:
        token = self.tokens[self.index]
        return token.value[self.offset :]

    def skip_spaces(self) -> None:
        while (token := self.peek()) is not None and token.kind == _TEXT:
            rest = self.rest_of_text()
            stripped = rest.lstrip()
            if stripped:
                self.offset += len(rest) - len(stripped)
                return
            self.advance()

    def next_char(self) -> str:
        """The next source character without consuming it ("" at the end)."""
        token = self.peek()
        if token is None:
            return ""
        return token.value[self.offset : self.offset + 1] if token.kind == _TEXT else token.raw[:1]

    def take_char(self) -> str:
        char = self.tokens[self.index].value[self.offset]
        self.offset += 1
        if self.offset >= len(self.tokens[self.index].value):
            self.advance()
        return char

    def at_char(self, char: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == _CHAR and token.value == char

    # - structure -

    def parse(self) -> str:
        """The whole piece; an item that fails is kept as its source token."""
        out: list[str] = []
        while self.index < len(self.tokens):
            index, offset = self.index, self.offset
            try:
                if piece := self.item(out):  # no empty pieces: looking back for the last character stays cheap
                    out.append(piece)
            except _TooDeep:
                # Nesting no one writes ("{" * 5000): keep the rest as written rather than retry at every token.
                out.append(self.tokens[index].raw[offset:])
                out.extend(token.raw for token in self.tokens[index + 1 :])
                break
            except Exception:  # noqa: BLE001 - keep this token as written and go on with the next
                self.index, self.offset, self.depth, self.groups = index, offset, 0, 0
                out.append(self.tokens[index].raw[offset:])
                self.advance()
        return "".join(out)

    def sequence(self, stop: str) -> str:
        """Items up to the closing "}" or "]" (consumed); runs to the end if it never comes."""
        self.groups += 1
        out: list[str] = []
        while (token := self.peek()) is not None:
            if token.kind == _CHAR and token.value == "}":
                if stop == "}":
                    self.advance()
                break  # a "]" argument never swallows a group's closing brace
            if stop == "]" and token.kind == _TEXT and "]" in self.rest_of_text():
                before = self.rest_of_text().split("]", 1)[0]
                out.append(self.text_run(before))
                self.offset += len(before) + 1
                if self.offset >= len(token.value):
                    self.advance()
                break
            if piece := self.item(out):
                out.append(piece)
        self.groups -= 1
        return "".join(out)

    def argument(self) -> str | None:
        """One argument: a {group}, one command with its arguments, or one character; None if there is none."""
        self.skip_spaces()
        token = self.peek()
        if token is None or (token.kind == _CHAR and token.value == "}"):
            return None
        if token.kind == _CHAR and token.value == "{":
            self.advance()
            return self.sequence("}")
        if token.kind == _TEXT:
            return self.take_char()
        if token.kind == _CHAR:
            self.advance()
            return token.value
        return self.item([])

    def optional_argument(self) -> str | None:
        """[...] right after a command (\\sqrt[3]{x}, \\item[a)])."""
        token = self.peek()
        if token is None or token.kind != _TEXT or not self.rest_of_text().startswith("["):
            return None
        self.take_char()
        return self.sequence("]")

    def raw_argument(self) -> str:
        """A {group} as written, for URLs and citation keys, where "_" and "~" are literal."""
        self.skip_spaces()
        if not self.at_char("{"):
            argument = self.argument()
            return argument or ""
        self.advance()
        parts: list[str] = []
        level = 1
        while (token := self.peek()) is not None:
            if token.kind == _CHAR and token.value in "{}":
                level += 1 if token.value == "{" else -1
                if level == 0:
                    self.advance()
                    break
            elif token.kind == _SYMBOL and token.value in "%&_#$~{}":
                parts.append(token.value)
                self.advance()
                continue
            parts.append(self.rest_of_text() if token.kind == _TEXT else token.raw)
            self.advance()
        return "".join(parts)

    # - one item -

    def item(self, out: list[str]) -> str:
        """One text run, command (with its arguments) or special character."""
        self.depth += 1
        try:
            if self.depth > _MAX_DEPTH:
                raise _TooDeep(f"nested more than {_MAX_DEPTH} deep")
            return self._item(out)
        finally:
            self.depth -= 1

    def _item(self, out: list[str]) -> str:
        token = self.peek()
        if token is None:
            raise _Unconvertible("nothing left to read")
        if token.kind == _TEXT:
            run = self.rest_of_text()
            self.advance()
            return self.text_run(run)
        if token.kind == _WORD:
            self.advance()
            word = self.word(token.value, token.raw)
            if token.value in OPERATOR_NAMES and _ends_alnum(out):
                return " " + word  # "t\\log n" is set "t log n", not "tlog n"
            return word
        if token.kind == _SYMBOL:
            self.advance()
            return self.symbol(token.value, token.raw)
        return self.char(token.value, out)

    def text_run(self, run: str) -> str:
        if self.math:
            return run
        if self.groups > 0:  # inside a LaTeX group "--" is certainly a dash; in prose only between digits
            run = _DASHES.sub(lambda m: "—" if m.group() == "---" else "–", run)
        elif "--" in run:
            run = _DIGIT_DASH.sub("–", run)
        if self.quotes:
            run = run.replace("``", "“").replace("''", "”")
        return run

    def char(self, char: str, out: list[str]) -> str:
        self.advance()
        if char == "{":
            return self.sequence("}")
        if char == "}":
            return ""  # an unmatched brace, e.g. from a group cut by a $...$ piece
        if char in "^_" and self.math:
            script = self.argument()
            return char if script is None else _script(script, superscript=char == "^")
        if char == "~":
            return self.tie(out)
        if char == "&" and self.math:
            return " "  # an alignment point in an equation environment
        return char

    def tie(self, out: list[str]) -> str:
        """"~" before a command ("Cai~\\cite{x}", "10^4~\\Lsun") is a LaTeX non-breaking space.

        Elsewhere in prose it stays: feeds that strip "$" turn "z\\sim6" into
        "z~6", where "~" means "about" and a space would lose that.
        """
        if self.math:
            return " "
        before = _last_char(out)
        if before and not before.isspace() and self.next_char() == "\\":
            return " "
        return "~"

    def symbol(self, symbol: str, raw: str) -> str:
        if symbol in TEXT_ACCENTS:
            return self.accent(TEXT_ACCENTS[symbol], spacing=SPACING_ACCENT.get(symbol, ""))
        if self.math and symbol in MATH_SPACE:
            return MATH_SPACE[symbol]
        return CONTROL_SYMBOLS.get(symbol, raw)  # unknown (\2, a price whose $ was lost): as written

    def word(self, name: str, raw: str) -> str:
        handler = _HANDLERS.get(name)
        if handler is not None:
            return handler(self, name)
        if name in GREEK:
            return GREEK[name]
        if name in MATH_SYMBOLS:
            return MATH_SYMBOLS[name]
        if name in TEXT_SYMBOLS:
            return TEXT_SYMBOLS[name]
        if name in TEXT_LETTERS:
            self.swallow_space_before_letter()
            return TEXT_LETTERS[name]
        if name in SPACES_WORDS:
            return SPACES_WORDS[name]
        if name in TEXT_ACCENTS:  # \v{z}, \c c
            return self.accent(TEXT_ACCENTS[name])
        if name in MATH_ACCENTS:
            return self.math_accent(MATH_ACCENTS[name])
        if name in STYLES:
            return _restyle(self.argument() or "", STYLES[name])
        if name in KEEP_ARGUMENT:
            self.skip_star()
            return self.argument() or ""
        if name in IGNORE:
            return ""
        if name in SIZED_DELIMITERS:
            self.skip_spaces()
            if self.next_char() == ".":
                self.take_char()
            return ""
        if name in DROP_ARGUMENT:
            self.skip_star()
            self.optional_argument()
            self.argument()
            return ""
        if name in DIMENSION_WORDS:
            self.skip_dimension()
            return ""
        return self.unknown(name, raw)

    def unknown(self, name: str, raw: str) -> str:
        """A macro we do not know: its braced argument is kept, a bare name is kept as written."""
        for prefix in GLUED_STYLE:
            if name.startswith(prefix) and len(name) > len(prefix):
                return _restyle(name[len(prefix) :], STYLES.get(prefix, {}))
        for prefix in GLUED_ACCENT:
            if name.startswith(prefix) and len(name) == len(prefix) + 1:
                return _combine(name[-1], MATH_ACCENTS[prefix])
        if self.at_char("{"):
            self.advance()
            argument = self.sequence("}")  # "\role{user}" -> "user"; a further {group} reads as text too
            if argument.strip():
                return argument
        return raw  # "\ours", "\TRI{}": the macro name is the only trace of the word it stood for

    # - helpers for commands -

    def swallow_space_before_letter(self) -> None:
        token = self.peek()
        if token is not None and token.kind == _TEXT:
            rest = self.rest_of_text()
            if rest[:1] == " " and rest[1:2].isalpha():
                self.offset += 1

    def skip_star(self) -> None:
        if self.next_char() == "*":
            self.take_char()

    def skip_dimension(self) -> None:
        token = self.peek()
        if token is not None and token.kind == _TEXT:
            match = _DIMENSION.match(self.rest_of_text())
            if match:
                self.offset += match.end()
                if self.offset >= len(token.value):
                    self.advance()

    def accent(self, mark: str, spacing: str = "") -> str:
        base = self.argument()
        if not base:
            return spacing
        if base[0] in "ıȷ":  # \'{\i}: the dotless i exists only so the accent can replace its dot
            base = {"ı": "i", "ȷ": "j"}[base[0]] + base[1:]
        return _combine(base[0], mark) + base[1:]

    def math_accent(self, mark: str) -> str:
        base = self.argument() or ""
        return "".join(_combine(char, mark) if char.isalnum() else char for char in base)


def _last_char(out: list[str]) -> str:
    return next((piece[-1] for piece in reversed(out) if piece), "")


def _ends_alnum(out: list[str]) -> bool:
    return _last_char(out).isalnum()


def _combine(base: str, mark: str) -> str:
    return unicodedata.normalize("NFC", base + mark)


def _restyle(text: str, style: dict[str, str]) -> str:
    return "".join(style.get(char, char) for char in text)


def _script(text: str, *, superscript: bool) -> str:
    """x^2 -> x², x_i -> xᵢ when Unicode has every character raised/lowered; else x^(k+1), x_max."""
    table = SUPERSCRIPT if superscript else SUBSCRIPT
    text = text.strip()
    if not text:
        return ""
    if all(char in table for char in text):
        return "".join(table[char] for char in text)
    mark = "^" if superscript else "_"
    return mark + _parenthesised(text)


def _parenthesised(part: str) -> str:
    """A fraction part or root as is when it is one token ("12", "x", "𝒪"), else in parentheses."""
    part = part.strip()
    if not part or _ATOM.fullmatch(part) or (part.startswith("(") and part.endswith(")") and part.count("(") == 1):
        return part
    return f"({part})"


# - commands with their own rule (they read their arguments) -


def _fraction(parser: Parser, _name: str) -> str:
    numerator, denominator = parser.argument() or "", parser.argument() or ""
    return f"{_parenthesised(numerator)}/{_parenthesised(denominator)}"


def _binomial(parser: Parser, _name: str) -> str:
    top, bottom = parser.argument() or "", parser.argument() or ""
    return f"({top.strip()} choose {bottom.strip()})"


def _root(parser: Parser, _name: str) -> str:
    degree = parser.optional_argument()
    radicand = _parenthesised(parser.argument() or "")
    if degree is None or degree.strip() == "2":
        return f"√{radicand}"
    if degree.strip() in ("3", "4"):
        return {"3": "∛", "4": "∜"}[degree.strip()] + radicand
    return _script(degree, superscript=True).lstrip("^") + "√" + radicand


def _raised(parser: Parser, name: str) -> str:
    text = parser.argument() or ""
    return _script(text, superscript=name == "textsuperscript")


def _link(parser: Parser, name: str) -> str:
    url = parser.raw_argument()
    if name != "href":
        return url
    label = parser.argument() or ""
    return label if url in label or not url else f"{label} ({url})"


def _citation(parser: Parser, _name: str) -> str:
    parser.skip_star()
    while parser.optional_argument() is not None:  # \citep[see][p. 3]{key}
        pass
    return f"[{parser.raw_argument()}]"


def _footnote(parser: Parser, _name: str) -> str:
    return f" ({parser.argument() or ''})"


def _coloured(parser: Parser, _name: str) -> str:
    parser.optional_argument()  # \textcolor[rgb]{...}
    parser.argument()  # the colour
    return parser.argument() or ""


def _environment(parser: Parser, name: str) -> str:
    """\\begin{itemize} and \\end{itemize} mark layout; math environments were split off before."""
    parser.raw_argument()
    if name == "begin":
        parser.optional_argument()
    return " "


def _rule(parser: Parser, _name: str) -> str:
    parser.optional_argument()
    parser.argument()
    parser.argument()
    return "—"  # a horizontal rule written mid-sentence stands for a dash


def _list_item(parser: Parser, _name: str) -> str:
    label = parser.optional_argument()
    return "• " if label is None else f"{label} "


def _roman(parser: Parser, _name: str) -> str:
    """\\romannumeral3 -> "iii" (authors number their contributions with it)."""
    parser.skip_spaces()
    token = parser.peek()
    digits = re.match(r"\d{1,4}", parser.rest_of_text()) if token is not None and token.kind == _TEXT else None
    if digits is None or not 0 < int(digits.group()) < 4000:
        return "\\romannumeral"
    for _ in digits.group():
        parser.take_char()
    number, out = int(digits.group()), []
    for value, letters in ROMAN:
        count, number = divmod(number, value)
        out.append(letters * count)
    return "".join(out)


def _modulo(parser: Parser, _name: str) -> str:
    return f" (mod {(parser.argument() or '').strip()})"


def _quantity(parser: Parser, _name: str) -> str:
    """siunitx \\SI{5}{\\metre}, \\qty{...}{...}: number then unit."""
    number = parser.argument() or ""
    unit = parser.argument() or ""
    return f"{number} {unit}".strip()


_Handler = Callable[[Parser, str], str]
_HANDLERS: dict[str, _Handler] = {
    "frac": _fraction, "dfrac": _fraction, "tfrac": _fraction, "cfrac": _fraction,
    "binom": _binomial, "dbinom": _binomial, "tbinom": _binomial,
    "sqrt": _root,
    "textsuperscript": _raised, "textsubscript": _raised,
    "url": _link, "href": _link, "nolinkurl": _link, "path": _link,
    "footnote": _footnote, "thanks": _footnote,
    "textcolor": _coloured, "colorbox": _coloured,
    "begin": _environment, "end": _environment,
    "rule": _rule,
    "item": _list_item,
    "romannumeral": _roman,
    "pmod": _modulo,
    "SI": _quantity, "qty": _quantity, "qtyproduct": _quantity,
    **dict.fromkeys(CITATIONS, _citation),
}  # fmt: skip
