"""The tables the LaTeX converter reads: symbols, accents, raised and lowered characters, letter styles.

Each maps a command name (or a character) to the Unicode a reader sees, or
names the commands that share one rule in the parser.
"""

from __future__ import annotations

import unicodedata

GREEK = {
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

MATH_SYMBOLS = {
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
OPERATOR_NAMES = frozenset(name for name, text in MATH_SYMBOLS.items() if text.replace(" ", "").isalpha())

TEXT_SYMBOLS = {
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
TEXT_LETTERS = {
    "ss": "ß", "o": "ø", "O": "Ø", "aa": "å", "AA": "Å", "ae": "æ", "AE": "Æ", "oe": "œ", "OE": "Œ",
    "l": "ł", "L": "Ł", "i": "ı", "j": "ȷ", "dh": "ð", "DH": "Ð", "th": "þ", "TH": "Þ", "ng": "ŋ", "NG": "Ŋ",
}  # fmt: skip

CONTROL_SYMBOLS = {
    "%": "%", "&": "&", "_": "_", "#": "#", "$": "$", "{": "{", "}": "}", "|": "‖", "\\": " ",
    " ": " ", ",": " ", ";": " ", ":": " ", "!": "", "-": "", "/": "", "@": "", "<": "<", ">": ">",
}  # fmt: skip
MATH_SPACE = {">": " "}  # in math \> is a medium space; in text authors write it to escape ">"

SPACES_WORDS = {"quad": " ", "qquad": " ", "enspace": " ", "thinspace": " ", "medspace": " ", "thickspace": " ",
                 "negthinspace": "", "newline": " ", "par": " ", "linebreak": " "}  # fmt: skip

# Combining marks: text accents (\'e, \v{z}) and math accents (\hat{x}); NFC then composes "ž".
TEXT_ACCENTS = {
    "'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303", "=": "\u0304", ".": "\u0307",
    "u": "\u0306", "v": "\u030c", "H": "\u030b", "c": "\u0327", "k": "\u0328", "r": "\u030a", "b": "\u0331",
    "d": "\u0323", "t": "\u0361",
}  # fmt: skip
MATH_ACCENTS = {
    "hat": "\u0302", "widehat": "\u0302", "tilde": "\u0303", "widetilde": "\u0303", "bar": "\u0304",
    "overline": "\u0305", "dot": "\u0307", "ddot": "\u0308", "dddot": "\u20db", "vec": "\u20d7",
    "overrightarrow": "\u20d7", "acute": "\u0301", "grave": "\u0300", "check": "\u030c", "breve": "\u0306",
    "mathring": "\u030a",
}  # fmt: skip
# An accent with nothing to sit on ("Pass\^{}k") is the character itself.
SPACING_ACCENT = {"^": "^", "~": "~", "'": "'", "`": "`", '"': '"'}

# Font, box and colour commands whose one argument is the text itself.
KEEP_ARGUMENT = frozenset({
    "textbf", "textit", "emph", "textsf", "texttt", "textrm", "textsc", "textup", "textsl", "textmd", "textnormal",
    "text", "underline", "uline", "uuline", "sout", "st", "ul", "hl", "mbox", "hbox", "fbox", "framebox", "makebox",
    "centerline", "mathrm", "mathbf", "mathit", "mathsf", "mathtt", "mathnormal", "mathup", "mathbfit",
    "boldsymbol", "bm", "pmb", "operatorname", "ensuremath", "underbrace", "overbrace", "emphasize", "num", "si"
})  # fmt: skip
# Declarations that change the look of what follows: nothing to print.
IGNORE = frozenset({
    "em", "it", "bf", "sc", "rm", "tt", "sf", "sl", "up", "md", "normalfont", "itshape", "bfseries", "scshape",
    "rmfamily", "ttfamily", "sffamily", "upshape", "mdseries", "slshape", "small", "footnotesize", "scriptsize",
    "tiny", "large", "Large", "LARGE", "huge", "Huge", "normalsize", "displaystyle", "textstyle", "scriptstyle",
    "scriptscriptstyle", "limits", "nolimits", "middle", "noindent", "centering", "raggedright", "raggedleft",
    "protect", "relax", "nobreak", "allowbreak", "nobreakdash", "nonumber", "notag", "hfill", "vfill", "smallskip",
    "medskip", "bigskip", "newpage", "clearpage", "maketitle", "boldmath", "unboldmath", "mathstrut", "strut",
    "displaylimits"
})  # fmt: skip
# \left( and \bigl( size a delimiter; the delimiter follows, "\left." means none.
SIZED_DELIMITERS = frozenset({
    "left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr", "Biggl",
    "Biggr", "bigm", "Bigm"
})  # fmt: skip
# Commands whose argument is layout or colour, not words.
DROP_ARGUMENT = frozenset({"color", "hypersetup", "label", "vspace", "hspace", "phantom", "vphantom", "hphantom", "pagecolor"})
DIMENSION_WORDS = frozenset({"mkern", "kern", "hskip", "vskip", "mskip", "mspace"})
CITATIONS = frozenset({"cite", "citep", "citet", "citealp", "citealt", "citeauthor", "citeyear", "ref", "eqref", "autoref", "cref", "Cref"})

SUPERSCRIPT = dict(zip(
    "0123456789+-−=()abcdefghijklmnoprstuvwxyzABDEGHIJKLMNOPRTUVWαβγδεθιφχ",
    "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻⁼⁽⁾ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻᴬᴮᴰᴱᴳᴴᴵᴶᴷᴸᴹᴺᴼᴾᴿᵀᵁⱽᵂᵅᵝᵞᵟᵋᶿᶥᵠᵡ",
), strict=True)  # fmt: skip
# Marks already written raised: x^* is "x*", 90^\circ is "90°".
SUPERSCRIPT.update({c: c for c in "*′″‴°†‡'"})
SUPERSCRIPT.update({"∘": "°", "⊤": "ᵀ", "⋆": "*", "∗": "*"})
SUBSCRIPT = dict(zip(
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
STYLES = {"mathcal": _SCRIPT, "mathscr": _SCRIPT, "mathbb": _DOUBLE_STRUCK, "mathds": _DOUBLE_STRUCK, "mathbbm": _DOUBLE_STRUCK, "mathfrak": _FRAKTUR}  # fmt: skip

# arxiv-to-rss strips braces: "\hat{R}" arrives as "\hatR", "\mbox{K}" as "\mboxK".
GLUED_STYLE = ("mbox", "boldsymbol", "mathrm", "mathbf", "mathit", "mathsf", "mathtt", *STYLES)
GLUED_ACCENT = tuple(MATH_ACCENTS)

# \romannumeral: values and their letters, largest first.
ROMAN = (
    (1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"),
    (50, "l"), (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i"),
)  # fmt: skip
