"""Readable Unicode from the LaTeX in arXiv titles, abstracts and author names.

arXiv metadata is written by authors in LaTeX: "$\\mathcal{O}(1/\\epsilon)$",
"Pi\\v{z}urica", "\\textsf{TS-Agent}", "80.77\\%". Readers of an email digest
must see "𝒪(1/ε)", "Pižurica", "TS-Agent", "80.77%".

The converter is hand-written rather than pylatexenc's LatexNodes2Text,
because abstracts are mostly prose that merely contains LaTeX: a "%" is a
per cent sign, not a comment; a "$" may be a price; an unknown macro must
keep its words. Every rule here therefore errs towards keeping the source
text: what is not understood comes through as written.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

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
        return _SPACES.sub(" ", "".join(pieces))
    except Exception:  # noqa: BLE001 - a converter bug must not cost an entry; keep the source text
        return text


_SPACES = re.compile(r" {2,}")
# What makes prose between formulas LaTeX: a command, a group (maybe cut by a formula: "\\textbf{$x$-Bench}"), `` quotes.
_LATEX_IN_TEXT = re.compile(r"[\\{}]|``")


def _convert_piece(source: str, *, math: bool, raw: str | None = None) -> str:
    """One text or math piece; on any failure the raw piece (with its delimiters) is kept."""
    if not source:
        return "" if raw is None else raw
    if not math and not _LATEX_IN_TEXT.search(source):
        return source  # plain prose between two formulas
    if math and not _balanced(source):
        return raw or source  # "$\\frac{1}{$": a formula cut short reads better as written
    try:
        converted = _Parser(_tokenize(source), math=math, quotes="``" in source).parse()
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


# --- tokens -------------------------------------------------------------------------------

_TOKEN = re.compile(r"\\([A-Za-z]+)|\\(.)|(\\)$|([{}^_~$&])|([^\\{}^_~$&]+)", re.DOTALL)

# kinds of token
_WORD, _SYMBOL, _CHAR, _TEXT = "word", "symbol", "char", "text"


@dataclass(frozen=True)
class _Token:
    kind: str  # _WORD (\name), _SYMBOL (\%), _CHAR (one of {}^_~$& or a trailing backslash), _TEXT
    value: str  # the command name, the symbol, the char or the text
    raw: str  # the source, for keeping what cannot be converted


# "T{\"}ulu" puts the accent in a group of its own; LaTeX would drop it, the author meant "Tülu".
_LONELY_ACCENT = re.compile(r"\{\\([\"'`^~=.])\}(\w)")


def _tokenize(source: str) -> list[_Token]:
    source = _LONELY_ACCENT.sub(r"\\\1{\2}", source)
    tokens = []
    for match in _TOKEN.finditer(source):
        word, symbol, trailing, char, text = match.groups()
        if word is not None:
            tokens.append(_Token(_WORD, word, match.group()))
        elif symbol is not None:
            tokens.append(_Token(_SYMBOL, symbol, match.group()))
        elif trailing is not None:
            tokens.append(_Token(_TEXT, "\\", "\\"))
        elif char is not None:
            tokens.append(_Token(_CHAR, char, char))
        else:
            tokens.append(_Token(_TEXT, text, text))
    return tokens


# --- symbol tables --------------------------------------------------------------------------

_GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ", "varkappa": "ϰ", "lambda": "λ",
    "mu": "μ", "nu": "ν", "xi": "ξ", "omicron": "ο", "pi": "π", "varpi": "ϖ", "rho": "ρ", "varrho": "ϱ",
    "sigma": "σ", "varsigma": "ς", "tau": "τ", "upsilon": "υ", "phi": "φ", "varphi": "φ", "chi": "χ",
    "psi": "ψ", "omega": "ω", "digamma": "ϝ",
    "Alpha": "Α", "Beta": "Β", "Gamma": "Γ", "Delta": "Δ", "Epsilon": "Ε", "Zeta": "Ζ", "Eta": "Η",
    "Theta": "Θ", "Iota": "Ι", "Kappa": "Κ", "Lambda": "Λ", "Mu": "Μ", "Nu": "Ν", "Xi": "Ξ", "Omicron": "Ο",
    "Pi": "Π", "Rho": "Ρ", "Sigma": "Σ", "Tau": "Τ", "Upsilon": "Υ", "Phi": "Φ", "Chi": "Χ", "Psi": "Ψ",
    "Omega": "Ω", "varGamma": "Γ", "varDelta": "Δ", "varTheta": "Θ", "varLambda": "Λ", "varPi": "Π",
    "varSigma": "Σ", "varPhi": "Φ", "varPsi": "Ψ", "varOmega": "Ω",
}  # fmt: skip

_MATH_SYMBOLS = {
    # relations
    "leq": "≤", "le": "≤", "leqslant": "⩽", "geq": "≥", "ge": "≥", "geqslant": "⩾", "neq": "≠", "ne": "≠",
    "approx": "≈", "sim": "~", "simeq": "≃", "cong": "≅", "equiv": "≡", "propto": "∝", "ll": "≪", "gg": "≫",
    "lesssim": "≲", "gtrsim": "≳", "lessapprox": "⪅", "gtrapprox": "⪆", "lapprox": "⪅", "gapprox": "⪆",
    "lt": "<", "gt": ">", "prec": "≺", "succ": "≻", "preceq": "⪯", "succeq": "⪰", "nleq": "≰", "ngeq": "≱",
    "in": "∈", "notin": "∉", "ni": "∋", "subset": "⊂", "subseteq": "⊆", "supset": "⊃", "supseteq": "⊇",
    "subsetneq": "⊊", "perp": "⊥", "parallel": "∥", "mid": "|", "nmid": "∤", "models": "⊨", "vdash": "⊢",
    "coloneqq": "≔", "doteq": "≐", "asymp": "≍", "triangleq": "≜",
    # operators
    "times": "×", "cdot": "·", "cdotp": "·", "div": "÷", "pm": "±", "mp": "∓", "ast": "∗", "star": "⋆",
    "circ": "∘", "bullet": "•", "oplus": "⊕", "ominus": "⊖", "otimes": "⊗", "odot": "⊙", "cup": "∪",
    "cap": "∩", "setminus": "∖", "wedge": "∧", "land": "∧", "vee": "∨", "lor": "∨", "neg": "¬", "lnot": "¬",
    "sum": "∑", "prod": "∏", "coprod": "∐", "int": "∫", "iint": "∬", "oint": "∮", "bigcup": "⋃",
    "bigcap": "⋂", "bigoplus": "⨁", "bigotimes": "⨂", "bigvee": "⋁", "bigwedge": "⋀", "partial": "∂",
    "nabla": "∇", "surd": "√",
    # arrows
    "to": "→", "rightarrow": "→", "leftarrow": "←", "gets": "←", "leftrightarrow": "↔", "Rightarrow": "⇒",
    "Leftarrow": "⇐", "Leftrightarrow": "⇔", "implies": "⟹", "impliedby": "⟸", "iff": "⟺", "mapsto": "↦",
    "longrightarrow": "⟶", "longleftarrow": "⟵", "Longrightarrow": "⟹", "longmapsto": "⟼", "uparrow": "↑",
    "downarrow": "↓", "Uparrow": "⇑", "Downarrow": "⇓", "hookrightarrow": "↪", "rightleftharpoons": "⇌",
    "nearrow": "↗", "searrow": "↘",
    # letters and constants
    "infty": "∞", "ell": "ℓ", "hbar": "ℏ", "Re": "ℜ", "Im": "ℑ", "aleph": "ℵ", "wp": "℘", "emptyset": "∅",
    "varnothing": "∅", "forall": "∀", "exists": "∃", "nexists": "∄", "top": "⊤", "bot": "⊥", "angle": "∠",
    "triangle": "△", "square": "□", "Box": "□", "diamond": "⋄", "lozenge": "◊", "blacksquare": "■",
    "bigstar": "★", "checkmark": "✓", "dagger": "†", "ddagger": "‡", "prime": "′", "degree": "°",
    "sharp": "♯", "flat": "♭", "natural": "♮", "clubsuit": "♣", "spadesuit": "♠", "heartsuit": "♡",
    # delimiters and dots
    "langle": "⟨", "rangle": "⟩", "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉", "vert": "|",
    "lvert": "|", "rvert": "|", "Vert": "‖", "lVert": "‖", "rVert": "‖", "lbrace": "{", "rbrace": "}",
    "lbrack": "[", "rbrack": "]", "backslash": "\\", "ldots": "…", "dots": "…", "dotsc": "…", "dotsb": "⋯",
    "dotsm": "⋯", "dotso": "…", "cdots": "⋯", "vdots": "⋮", "ddots": "⋱", "colon": ":",
    # named functions are set upright in print: the name itself is the readable form
    "log": "log", "ln": "ln", "lg": "lg", "exp": "exp", "sin": "sin", "cos": "cos", "tan": "tan", "sec": "sec",
    "csc": "csc", "cot": "cot", "arcsin": "arcsin", "arccos": "arccos", "arctan": "arctan", "sinh": "sinh",
    "cosh": "cosh", "tanh": "tanh", "max": "max", "min": "min", "sup": "sup", "inf": "inf", "lim": "lim",
    "liminf": "lim inf", "limsup": "lim sup", "arg": "arg", "argmax": "argmax", "argmin": "argmin",
    "det": "det", "dim": "dim", "ker": "ker", "deg": "deg", "gcd": "gcd", "lcm": "lcm", "Pr": "Pr",
    "hom": "hom", "tr": "tr", "mod": "mod", "bmod": "mod",
}  # fmt: skip

# Named operators print as their name; LaTeX spaces them from a preceding letter or digit.
_OPERATOR_NAMES = frozenset(name for name, text in _MATH_SYMBOLS.items() if text.replace(" ", "").isalpha())

_TEXT_SYMBOLS = {
    "textbackslash": "\\", "textless": "<", "textgreater": ">", "textbar": "|", "textasciitilde": "~",
    "textasciicircum": "^", "textunderscore": "_", "textdollar": "$", "textbullet": "•", "textellipsis": "…",
    "textperiodcentered": "·", "textendash": "–", "textemdash": "—", "textquotedblleft": "“",
    "textquotedblright": "”", "textquoteleft": "‘", "textquoteright": "’", "textdegree": "°",
    "textregistered": "®", "texttrademark": "™", "textcopyright": "©", "copyright": "©", "textmu": "µ",
    "textpm": "±", "texttimes": "×", "textdagger": "†", "dag": "†", "ddag": "‡", "S": "§", "P": "¶",
    "pounds": "£", "euro": "€", "textsection": "§", "LaTeX": "LaTeX", "LaTeXe": "LaTeX2ε", "TeX": "TeX",
    "BibTeX": "BibTeX", "micron": "μm", "Msun": "M☉", "Lsun": "L☉", "Rsun": "R☉", "Zsun": "Z☉",
    "percent": "%", "pct": "%", "eg": "e.g.", "ie": "i.e.", "etc": "etc.", "etal": "et al.", "wrt": "w.r.t.", "vs": "vs.",
}  # fmt: skip

# Letters typed as commands in names ("Kra{\ss}", "S{\o}gaard"). LaTeX eats the space after them.
_TEXT_LETTERS = {
    "ss": "ß", "o": "ø", "O": "Ø", "aa": "å", "AA": "Å", "ae": "æ", "AE": "Æ", "oe": "œ", "OE": "Œ",
    "l": "ł", "L": "Ł", "i": "ı", "j": "ȷ", "dh": "ð", "DH": "Ð", "th": "þ", "TH": "Þ", "ng": "ŋ", "NG": "Ŋ",
}  # fmt: skip

_CONTROL_SYMBOLS = {
    "%": "%", "&": "&", "_": "_", "#": "#", "$": "$", "{": "{", "}": "}", "|": "‖", "\\": " ",
    " ": " ", ",": " ", ";": " ", ":": " ", "!": "", "-": "", "/": "", "@": "", "<": "<", ">": ">",
}  # fmt: skip
_MATH_SPACE = {">": " "}  # in math \> is a medium space; in text authors write it to escape ">"

_SPACES_WORDS = {"quad": " ", "qquad": " ", "enspace": " ", "thinspace": " ", "medspace": " ", "thickspace": " ",
                 "negthinspace": "", "newline": " ", "par": " ", "linebreak": " "}  # fmt: skip

# Combining marks: text accents (\'e, \v{z}) and math accents (\hat{x}); NFC then composes "ž".
_TEXT_ACCENTS = {
    "'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303", "=": "\u0304", ".": "\u0307",
    "u": "\u0306", "v": "\u030c", "H": "\u030b", "c": "\u0327", "k": "\u0328", "r": "\u030a", "b": "\u0331",
    "d": "\u0323", "t": "\u0361",
}  # fmt: skip
_MATH_ACCENTS = {
    "hat": "\u0302", "widehat": "\u0302", "tilde": "\u0303", "widetilde": "\u0303", "bar": "\u0304",
    "overline": "\u0305", "dot": "\u0307", "ddot": "\u0308", "dddot": "\u20db", "vec": "\u20d7",
    "overrightarrow": "\u20d7", "acute": "\u0301", "grave": "\u0300", "check": "\u030c", "breve": "\u0306",
    "mathring": "\u030a",
}  # fmt: skip
# An accent with nothing to sit on ("Pass\^{}k") is the character itself.
_SPACING_ACCENT = {"^": "^", "~": "~", "'": "'", "`": "`", '"': '"'}

# Font, box and colour commands whose one argument is the text itself.
_KEEP_ARGUMENT = frozenset({
    "textbf", "textit", "emph", "textsf", "texttt", "textrm", "textsc", "textup", "textsl", "textmd", "textnormal",
    "text", "underline", "uline", "uuline", "sout", "st", "ul", "hl", "mbox", "hbox", "fbox", "framebox", "makebox",
    "centerline", "mathrm", "mathbf", "mathit", "mathsf", "mathtt", "mathnormal", "mathup", "mathbfit",
    "boldsymbol", "bm", "pmb", "operatorname", "ensuremath", "underbrace", "overbrace", "emphasize", "num", "si"
})  # fmt: skip
# Declarations that change the look of what follows: nothing to print.
_IGNORE = frozenset({
    "em", "it", "bf", "sc", "rm", "tt", "sf", "sl", "up", "md", "normalfont", "itshape", "bfseries", "scshape",
    "rmfamily", "ttfamily", "sffamily", "upshape", "mdseries", "slshape", "small", "footnotesize", "scriptsize",
    "tiny", "large", "Large", "LARGE", "huge", "Huge", "normalsize", "displaystyle", "textstyle", "scriptstyle",
    "scriptscriptstyle", "limits", "nolimits", "middle", "noindent", "centering", "raggedright", "raggedleft",
    "protect", "relax", "nobreak", "allowbreak", "nobreakdash", "nonumber", "notag", "hfill", "vfill", "smallskip",
    "medskip", "bigskip", "newpage", "clearpage", "maketitle", "boldmath", "unboldmath", "mathstrut", "strut",
    "displaylimits"
})  # fmt: skip
# \left( and \bigl( size a delimiter; the delimiter follows, "\left." means none.
_SIZED_DELIMITERS = frozenset({
    "left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr", "Biggl",
    "Biggr", "bigm", "Bigm"
})  # fmt: skip
# Commands whose argument is layout or colour, not words.
_DROP_ARGUMENT = frozenset({"color", "hypersetup", "label", "vspace", "hspace", "phantom", "vphantom", "hphantom", "pagecolor"})
_DIMENSION_WORDS = frozenset({"mkern", "kern", "hskip", "vskip", "mskip", "mspace"})
# TeX reads "-2mu" and one space after it as the dimension ("\\mathcal{E\\mkern-2mu L}" is "ℰℒ").
_DIMENSION = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)\s*(?:mu|pt|em|ex|cm|mm|in|bp|pc|sp) ?")
_CITATIONS = frozenset({"cite", "citep", "citet", "citealp", "citealt", "citeauthor", "citeyear", "ref", "eqref", "autoref", "cref", "Cref"})

_SUPERSCRIPT = dict(zip(
    "0123456789+-−=()abcdefghijklmnoprstuvwxyzABDEGHIJKLMNOPRTUVWαβγδεθιφχ",
    "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻⁼⁽⁾ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻᴬᴮᴰᴱᴳᴴᴵᴶᴷᴸᴹᴺᴼᴾᴿᵀᵁⱽᵂᵅᵝᵞᵟᵋᶿᶥᵠᵡ",
), strict=True)  # fmt: skip
# Marks already written raised: x^* is "x*", 90^\circ is "90°".
_SUPERSCRIPT.update({c: c for c in "*′″‴°†‡'"})
_SUPERSCRIPT.update({"∘": "°", "⊤": "ᵀ", "⋆": "*", "∗": "*"})
_SUBSCRIPT = dict(zip(
    "0123456789+-−=()aehijklmnoprstuvxβγρφχ",
    "₀₁₂₃₄₅₆₇₈₉₊₋₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓᵦᵧᵨᵩᵪ",
), strict=True)  # fmt: skip


def _letter_style(prefix: str, fallbacks: dict[str, str], digits: int | None = None) -> dict[str, str]:
    """ASCII letters to a Unicode math alphabet; the letters Unicode encoded earlier (ℬ, ℝ) fill its holes."""
    style: dict[str, str] = {}
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
        case = "CAPITAL" if letter.isupper() else "SMALL"
        try:
            style[letter] = unicodedata.lookup(f"MATHEMATICAL {prefix} {case} {letter}")
        except KeyError:
            if letter in fallbacks:
                style[letter] = fallbacks[letter]
    if digits is not None:
        style.update({str(n): chr(digits + n) for n in range(10)})
    return style


_SCRIPT = _letter_style("SCRIPT", {"B": "ℬ", "E": "ℰ", "F": "ℱ", "H": "ℋ", "I": "ℐ", "L": "ℒ", "M": "ℳ", "R": "ℛ", "e": "ℯ", "g": "ℊ", "o": "ℴ"})
_DOUBLE_STRUCK = _letter_style("DOUBLE-STRUCK", {"C": "ℂ", "H": "ℍ", "N": "ℕ", "P": "ℙ", "Q": "ℚ", "R": "ℝ", "Z": "ℤ"}, digits=0x1D7D8)
_FRAKTUR = _letter_style("FRAKTUR", {"C": "ℭ", "H": "ℌ", "I": "ℑ", "R": "ℜ", "Z": "ℨ"})
_STYLES = {"mathcal": _SCRIPT, "mathscr": _SCRIPT, "mathbb": _DOUBLE_STRUCK, "mathds": _DOUBLE_STRUCK, "mathbbm": _DOUBLE_STRUCK, "mathfrak": _FRAKTUR}  # fmt: skip

# arxiv-to-rss strips braces: "\hat{R}" arrives as "\hatR", "\mbox{K}" as "\mboxK".
_GLUED_STYLE = ("mbox", "boldsymbol", "mathrm", "mathbf", "mathit", "mathsf", "mathtt", *_STYLES)
_GLUED_ACCENT = tuple(_MATH_ACCENTS)

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


class _Parser:
    """Recursive descent over the tokens of one text or math piece, producing Unicode."""

    def __init__(self, tokens: list[_Token], *, math: bool, quotes: bool = False) -> None:
        self.tokens = tokens
        self.index = 0
        self.offset = 0  # characters of tokens[index] already consumed (a text token read one char at a time)
        self.math = math
        self.quotes = quotes  # the piece uses ``...'' quotes, so '' is a closing quote
        self.depth = 0  # items being read, one inside another
        self.groups = 0  # {groups} being read: inside one, "--" is surely a LaTeX dash

    # - reading -

    def peek(self) -> _Token | None:
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
            if token.value in _OPERATOR_NAMES and _ends_alnum(out):
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
        if symbol in _TEXT_ACCENTS:
            return self.accent(_TEXT_ACCENTS[symbol], spacing=_SPACING_ACCENT.get(symbol, ""))
        if self.math and symbol in _MATH_SPACE:
            return _MATH_SPACE[symbol]
        return _CONTROL_SYMBOLS.get(symbol, raw)  # unknown (\2, a price whose $ was lost): as written

    def word(self, name: str, raw: str) -> str:
        handler = _HANDLERS.get(name)
        if handler is not None:
            return handler(self, name)
        if name in _GREEK:
            return _GREEK[name]
        if name in _MATH_SYMBOLS:
            return _MATH_SYMBOLS[name]
        if name in _TEXT_SYMBOLS:
            return _TEXT_SYMBOLS[name]
        if name in _TEXT_LETTERS:
            self.swallow_space_before_letter()
            return _TEXT_LETTERS[name]
        if name in _SPACES_WORDS:
            return _SPACES_WORDS[name]
        if name in _TEXT_ACCENTS:  # \v{z}, \c c
            return self.accent(_TEXT_ACCENTS[name])
        if name in _MATH_ACCENTS:
            return self.math_accent(_MATH_ACCENTS[name])
        if name in _STYLES:
            return _restyle(self.argument() or "", _STYLES[name])
        if name in _KEEP_ARGUMENT:
            self.skip_star()
            return self.argument() or ""
        if name in _IGNORE:
            return ""
        if name in _SIZED_DELIMITERS:
            self.skip_spaces()
            if self.next_char() == ".":
                self.take_char()
            return ""
        if name in _DROP_ARGUMENT:
            self.skip_star()
            self.optional_argument()
            self.argument()
            return ""
        if name in _DIMENSION_WORDS:
            self.skip_dimension()
            return ""
        return self.unknown(name, raw)

    def unknown(self, name: str, raw: str) -> str:
        """A macro we do not know: its braced argument is kept, a bare name is kept as written."""
        for prefix in _GLUED_STYLE:
            if name.startswith(prefix) and len(name) > len(prefix):
                return _restyle(name[len(prefix) :], _STYLES.get(prefix, {}))
        for prefix in _GLUED_ACCENT:
            if name.startswith(prefix) and len(name) == len(prefix) + 1:
                return _combine(name[-1], _MATH_ACCENTS[prefix])
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
    table = _SUPERSCRIPT if superscript else _SUBSCRIPT
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


def _fraction(parser: _Parser, _name: str) -> str:
    numerator, denominator = parser.argument() or "", parser.argument() or ""
    return f"{_parenthesised(numerator)}/{_parenthesised(denominator)}"


def _binomial(parser: _Parser, _name: str) -> str:
    top, bottom = parser.argument() or "", parser.argument() or ""
    return f"({top.strip()} choose {bottom.strip()})"


def _root(parser: _Parser, _name: str) -> str:
    degree = parser.optional_argument()
    radicand = _parenthesised(parser.argument() or "")
    if degree is None or degree.strip() == "2":
        return f"√{radicand}"
    if degree.strip() in ("3", "4"):
        return {"3": "∛", "4": "∜"}[degree.strip()] + radicand
    return _script(degree, superscript=True).lstrip("^") + "√" + radicand


def _raised(parser: _Parser, name: str) -> str:
    text = parser.argument() or ""
    return _script(text, superscript=name == "textsuperscript")


def _link(parser: _Parser, name: str) -> str:
    url = parser.raw_argument()
    if name != "href":
        return url
    label = parser.argument() or ""
    return label if url in label or not url else f"{label} ({url})"


def _citation(parser: _Parser, _name: str) -> str:
    parser.skip_star()
    while parser.optional_argument() is not None:  # \citep[see][p. 3]{key}
        pass
    return f"[{parser.raw_argument()}]"


def _footnote(parser: _Parser, _name: str) -> str:
    return f" ({parser.argument() or ''})"


def _coloured(parser: _Parser, _name: str) -> str:
    parser.optional_argument()  # \textcolor[rgb]{...}
    parser.argument()  # the colour
    return parser.argument() or ""


def _environment(parser: _Parser, name: str) -> str:
    """\\begin{itemize} and \\end{itemize} mark layout; math environments were split off before."""
    parser.raw_argument()
    if name == "begin":
        parser.optional_argument()
    return " "


def _rule(parser: _Parser, _name: str) -> str:
    parser.optional_argument()
    parser.argument()
    parser.argument()
    return "—"  # a horizontal rule written mid-sentence stands for a dash


def _list_item(parser: _Parser, _name: str) -> str:
    label = parser.optional_argument()
    return "• " if label is None else f"{label} "


_ROMAN = (
    (1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"),
    (50, "l"), (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i"),
)  # fmt: skip


def _roman(parser: _Parser, _name: str) -> str:
    """\\romannumeral3 -> "iii" (authors number their contributions with it)."""
    parser.skip_spaces()
    token = parser.peek()
    digits = re.match(r"\d{1,4}", parser.rest_of_text()) if token is not None and token.kind == _TEXT else None
    if digits is None or not 0 < int(digits.group()) < 4000:
        return "\\romannumeral"
    for _ in digits.group():
        parser.take_char()
    number, out = int(digits.group()), []
    for value, letters in _ROMAN:
        count, number = divmod(number, value)
        out.append(letters * count)
    return "".join(out)


def _modulo(parser: _Parser, _name: str) -> str:
    return f" (mod {(parser.argument() or '').strip()})"


def _quantity(parser: _Parser, _name: str) -> str:
    """siunitx \\SI{5}{\\metre}, \\qty{...}{...}: number then unit."""
    number = parser.argument() or ""
    unit = parser.argument() or ""
    return f"{number} {unit}".strip()


_Handler = Callable[[_Parser, str], str]
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
    **dict.fromkeys(_CITATIONS, _citation),
}  # fmt: skip
