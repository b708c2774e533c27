"""Words and the text index a candidate pool is built on; pure computation, no I/O.

Words are snowball-stemmed and accent-folded (``phrase``, ``tokens``); every title and
abstract of a pool is split once, each distinct word analysed once, and counted with numpy
into ``TextIndex`` (the words as ids, each stem's positions) and ``Postings`` (per stem, and per
stem and form, the papers and counts), which ``pool.Pool`` reads.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate, chain, islice
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import snowballstemmer

from .models import Entry

Phrase = tuple[tuple[str, str], ...]  # per word: (stem, the singular form a text word must start with)
Docs = npt.NDArray[np.intp]
Floats = npt.NDArray[np.float64]
_V = TypeVar("_V")

_STEMMER = snowballstemmer.stemmer("english")
if hasattr(_STEMMER, "maxCacheSize"):  # PyStemmer's own cache: _stem caches, and a pool's 20,000 new words thrash it (3x slower)
    _STEMMER.maxCacheSize = 0
_WORD = re.compile(r"[^\W_]+")
_WORDS_AND_GAPS = re.compile(r"([^\W_]+)")  # split() keeps the words: gap, word, gap, ..., word, gap
# bytes.translate table: 1 for what _WORD matches in ASCII text (letters and digits), else 0
_ASCII_WORD_CHARACTERS = bytes(c.isascii() and c.isalnum() for c in map(chr, range(256)))


_ACRONYM_PLURAL = re.compile(r"[A-Z][A-Z0-9]+s")
_ACRONYM_PLURALS = re.compile(r"^[A-Z][A-Z0-9]+s$", re.MULTILINE)  # the same, in a text of one word per line
# An ASCII text's words ([^\W_]+) are its runs of letters and digits: bytes.translate blanks the rest, split() cuts.
_ASCII_GAPS = bytes(c if is_word else ord(" ") for c, is_word in enumerate(_ASCII_WORD_CHARACTERS))  # (ASCII texts only)
_END = b"\x00"  # after each field's words: no word contains it



@lru_cache(maxsize=200_000)
def _word(word: str) -> tuple[str, str]:
    """(stem, singular folded form) of one word: "Distillations" -> ("distil", "distillation")."""
    if _ACRONYM_PLURAL.fullmatch(word):  # "LLMs", "GNNs": snowball keeps the s of an unknown word
        word = word[:-1]
    folded = fold(word)
    return _stem(folded), _singular(folded)


def fold(word: str) -> str:
    """Case- and accent-folded: "Café" -> "cafe"."""
    if word.isascii():  # casefold and NFKD leave nothing else to do
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@lru_cache(maxsize=200_000)
def _stem(folded: str) -> str:
    """Stemming is most of analysing a word: "The", "THE" and "the" are stemmed once."""
    return _STEMMER.stemWord(folded)


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokens(text: str) -> tuple[str, ...]:
    """Lower-cased, accent-folded, stemmed words; hyphens and punctuation split words."""
    return tuple(_word(word)[0] for word in _WORD.findall(text))


def _analyse(words: list[str]) -> tuple[list[str], list[str]]:
    """What _word gives each of many distinct words, (stems, singular forms), with a call per word only to fold it:
    the acronym plurals are found by one regex scan and the stems by one call of the (C) stemmer."""
    acronyms = set(_ACRONYM_PLURALS.findall("\n".join(words)))
    folded = [fold(word[:-1] if word in acronyms else word) for word in words]
    return _STEMMER.stemWords(folded), [_singular(word) if word.endswith("s") else word for word in folded]


@lru_cache(maxsize=65_536)
def phrase(keyword: str) -> Phrase:
    """A keyword as the pool matches it: each word by stem, and only by text words that extend it.

    "distill" matches "distillation" and "Distilling"; "networking" does not match "network"
    and "prompting" not "prompts", though each pair shares a stem; plurals always match.
    """
    return tuple(_word(word) for word in _WORD.findall(keyword))


def word_bounds(text: str) -> npt.NDArray[np.int32]:
    """Word i of the text is text[bounds[2 i + 1] : bounds[2 i + 2]] (bounds[0] is 0)."""
    if text.isascii():  # most: where runs of letters and digits start and end, found by numpy over the bytes
        letters = np.frombuffer(b"\0" + text.encode("ascii").translate(_ASCII_WORD_CHARACTERS) + b"\0", np.bool_)
        edges = np.flatnonzero(letters[1:] != letters[:-1])
        bounds = np.zeros(len(edges) + 1, np.int32)
        bounds[1:] = edges
        return bounds
    return np.fromiter(chain((0,), accumulate(map(len, _WORDS_AND_GAPS.split(text)))), np.int32)


@dataclass(frozen=True)
class TextIndex:
    """Every word of every title and abstract as ids in one array, each field ended by -1 so no phrase
    runs across two, with its paper and field, and each stem's positions (``order`` cut at ``starts``).
    Stems and forms are numbered in the order they first occur; ``pairs`` numbers each word's (stem, form),
    a stem's pairs together (``stem_pairs`` cuts them), each stem's in the order they first occur."""

    stem_ids: dict[str, int]
    form_ids: dict[str, int]
    stems: npt.NDArray[np.int32]
    forms: npt.NDArray[np.int32]
    docs: npt.NDArray[np.int32]
    fields: npt.NDArray[np.int8]
    order: Docs
    starts: Docs
    pairs: npt.NDArray[np.int32]
    pair_forms: list[str]
    stem_pairs: Docs

    @classmethod
    def of(cls, entries: Sequence[Entry]) -> TextIndex:
        """Each distinct word is analysed once; the steps per word (split, dict look-ups, numpy) all run in C."""
        words = _words(entries)
        vocabulary = _Numbering({_END: 0})  # the words in the order they first occur
        ids = np.fromiter(map(vocabulary.__getitem__, words), np.intp, len(words))
        distinct = b"\n".join(islice(vocabulary, 1, None)).decode().split("\n") if len(vocabulary) > 1 else []
        stems, forms = _analyse(distinct)
        stem_ids, form_ids = _numbered(stems), _numbered(forms)
        word_stems = np.fromiter(chain((-1,), map(stem_ids.__getitem__, stems)), np.int32, len(vocabulary))
        word_forms = np.fromiter(chain((-1,), map(form_ids.__getitem__, forms)), np.int32, len(vocabulary))
        word_pairs, pair_forms, stem_pairs = _pairs(word_stems, word_forms, list(form_ids), len(stem_ids))
        ends = np.flatnonzero(ids == 0)
        lengths = np.diff(ends, prepend=-1)  # a field's words and its -1
        field_numbers = np.arange(len(ends))
        stem_array = word_stems[ids]
        order = _sorted_positions(stem_array + 1)  # each stem's positions, ascending
        starts = np.searchsorted(stem_array[order], np.arange(len(stem_ids) + 1))
        return cls(
            stem_ids, form_ids, stem_array, word_forms[ids], np.repeat(field_numbers // 2, lengths).astype(np.int32),
            np.repeat(field_numbers % 2, lengths).astype(np.int8), order, starts, word_pairs[ids], pair_forms, stem_pairs,
        )

    def occurrences(self, stem_id: int) -> int:
        return int(self.starts[stem_id + 1] - self.starts[stem_id])

    def positions(self, stem_id: int) -> Docs:
        return self.order[self.starts[stem_id] : self.starts[stem_id + 1]]

    def bounds(self, field: int) -> tuple[Docs, Docs]:
        """Where field ``field`` (0 title, 1 abstract) of each paper starts and ends (at its -1)."""
        ends = np.flatnonzero(self.stems < 0)
        return np.concatenate(([0], ends[:-1] + 1))[field::2], ends[field::2]


class _Numbering(dict[bytes, int]):
    """word -> number, a new word numbered when first seen: looking up a known word stays in C."""

    def __missing__(self, word: bytes) -> int:
        self[word] = number = len(self)
        return number


def _words(entries: Sequence[Entry]) -> list[bytes]:
    """Every word of every title and abstract in order, as UTF-8, each field followed by _END."""
    fields = [_field_words(text) for entry in entries for text in (entry.title, entry.summary)]
    return [*(b" " + _END + b" ").join(fields).split(), _END] if fields else []


def _field_words(text: str) -> bytes:
    """The text's words, space-separated."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_GAPS)
    return " ".join(_WORD.findall(text)).encode()


def _numbered(names: list[str]) -> dict[str, int]:
    """Each distinct name and its number, in the order they first occur."""
    numbers = dict.fromkeys(names, 0)
    numbers.update(zip(numbers, range(len(numbers))))
    return numbers


def _pairs(stems: npt.NDArray[np.int32], forms: npt.NDArray[np.int32], form_names: list[str], stem_count: int) -> tuple[npt.NDArray[np.int32], list[str], Docs]:
    """Numbers for the words' (stem, form) pairs (-1 where the stem is), by stem and then in the order a stem's
    pairs first occur (words are numbered in the order they first occur); each pair's form; where each stem's start."""
    width = max(len(form_names), 1)
    keys = stems[1:].astype(np.int64) * width + forms[1:]  # word 0 is _END
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    ordered = np.lexsort((first, unique // width))
    numbers = np.empty(len(ordered), np.int32)
    numbers[ordered] = np.arange(len(ordered))
    by_number = unique[ordered]
    stem_pairs = np.searchsorted(by_number // width, np.arange(stem_count + 1))
    return np.concatenate(([-1], numbers[inverse])).astype(np.int32), [form_names[f] for f in (by_number % width).tolist()], stem_pairs


def _sorted_positions(keys: npt.NDArray[np.integer]) -> Docs:
    """np.argsort(keys, kind="stable") for keys >= 0, as one sort of distinct int64 (several times faster)."""
    count = len(keys)
    combined = keys.astype(np.int64) * count + np.arange(count)
    combined.sort()
    return combined % max(count, 1)


def _run_starts(keys: npt.NDArray[np.int64]) -> Docs:
    """Where each run of equal keys starts."""
    new = np.ones(len(keys), bool)
    np.not_equal(keys[1:], keys[:-1], out=new[1:])
    return np.flatnonzero(new)


class Postings:
    """How often each stem, and each of its forms, occurs in each paper: counted with numpy over runs of the words
    sorted by stem (or pair) and position; kept as lists too, so the dicts a pool's look-ups read, made per stem
    when first asked for, cost list slices rather than numpy calls."""

    def __init__(self, text: TextIndex, papers: int) -> None:
        self._count_stems(text, papers)
        self._count_forms(text, papers)

    def _count_stems(self, text: TextIndex, papers: int) -> None:
        words = text.order[text.starts[0] :]  # not the -1s
        runs = _run_starts(text.stems[words].astype(np.int64) * papers + text.docs[words])  # (stem, doc) runs
        self._first = words[runs]  # where each (stem, doc) first occurs
        self._docs, self._stems = text.docs[self._first], text.stems[self._first]
        self._counts = np.diff(runs, append=len(words))
        self._stem_cuts = np.searchsorted(runs, text.starts - text.starts[0]).tolist()
        self._doc_list, self._count_list = self._docs.tolist(), self._counts.tolist()

    def _count_forms(self, text: TextIndex, papers: int) -> None:
        # Sorted, a (pair, doc, field) key's run is a count; a (pair, doc)'s title run comes before its abstract run.
        keys = text.pairs.astype(np.int64) * (2 * papers) + text.docs * 2 + text.fields
        keys.sort()
        keys = keys[np.searchsorted(keys, 0) :]  # the -1s' keys are negative
        runs = _run_starts(keys)
        counts = np.diff(runs, append=len(keys))
        keys = keys[runs]
        in_body = (keys & 1).astype(bool)
        pair_docs = keys >> 1  # pair x papers + doc
        firsts = _run_starts(pair_docs)
        lasts = np.empty_like(firsts)
        lasts[:-1], lasts[-1:] = firsts[1:] - 1, len(pair_docs) - 1
        in_titles, in_bodies = np.where(in_body[firsts], 0, counts[firsts]), np.where(in_body[lasts], counts[lasts], 0)
        # Each (count in title, count in abstract) as a code and one shared tuple per code: a few hundred tuples, not
        # one per (pair, doc), which cost their making and the garbage collector's walks over them.
        width = int(in_bodies.max(initial=0)) + 1
        codes = in_titles * width + in_bodies
        distinct = np.sort(codes)  # not np.unique: its hashing path imports numpy.ma (6 ms)
        self._values = {code: divmod(code, width) for code in distinct[_run_starts(distinct)].tolist()}
        self._codes = codes.tolist()
        pairs, docs = np.divmod(pair_docs[firsts], max(papers, 1))
        self._pair_docs = docs.tolist()
        self._pair_cuts = np.searchsorted(pairs, np.arange(len(text.pair_forms) + 1)).tolist()
        self._pair_forms, self._stem_pairs = text.pair_forms, text.stem_pairs.tolist()

    def of_stem(self, stem_id: int) -> dict[int, int]:
        """doc -> occurrences in title and abstract, docs ascending."""
        start, end = self._stem_cuts[stem_id], self._stem_cuts[stem_id + 1]
        return dict(zip(self._doc_list[start:end], self._count_list[start:end]))

    def of_forms(self, stem_id: int) -> dict[str, dict[int, tuple[int, int]]]:
        """form -> doc -> (count in title, count in abstract): forms in the order they first occur, docs ascending."""
        first, last = self._stem_pairs[stem_id], self._stem_pairs[stem_id + 1]
        cuts, docs, codes, value = self._pair_cuts[first : last + 1], self._pair_docs, self._codes, self._values.__getitem__
        return {form: dict(zip(docs[a:b], map(value, codes[a:b]))) for form, a, b in zip(self._pair_forms[first:last], cuts, cuts[1:])}

    def frequencies(self) -> list[int]:
        """Per stem, the papers it occurs in."""
        cuts = self._stem_cuts
        return [end - start for start, end in zip(cuts, cuts[1:])]

    def norms(self, weights: Floats, papers: int) -> Floats:
        """Each paper's norm of count x ``weights[stem]`` (1 for none): the squares summed by bincount in the
        order its stems first occur."""
        values = self._counts * weights[self._stems]
        kept = np.flatnonzero(values > 0)
        kept = kept[np.argsort(self._first[kept])]
        norms = np.sqrt(np.bincount(self._docs[kept], weights=values[kept] * values[kept], minlength=papers))
        return np.where(norms > 0, norms, 1.0)


class ByStem(Mapping[str, _V]):
    """stem -> what ``make`` makes of its number, made on first use: readers ask for a few of the pool's stems."""

    def __init__(self, numbers: dict[str, int], make: Callable[[int], _V]) -> None:
        self._numbers, self._make = numbers, make
        self._made: dict[str, _V] = {}

    def __getitem__(self, stem: str) -> _V:
        made = self._made.get(stem)
        if made is None:
            made = self._made[stem] = self._make(self._numbers[stem])
        return made

    def get(self, stem: str, default: Any = None) -> Any:
        return self[stem] if stem in self._numbers else default

    def __contains__(self, stem: object) -> bool:
        return stem in self._numbers

    def __iter__(self) -> Iterator[str]:
        return iter(self._numbers)

    def __len__(self) -> int:
        return len(self._numbers)


class FieldWords:
    """One field of every paper as words (stems or forms), a paper's made on first use (highlights)."""

    def __init__(self, names: list[str], ids: npt.NDArray[np.int32], bounds: tuple[Docs, Docs]) -> None:
        self._names, self._ids = names, ids
        self._starts, self._ends = bounds[0].tolist(), bounds[1].tolist()
        self._made: dict[int, tuple[str, ...]] = {}

    def __getitem__(self, doc: int) -> tuple[str, ...]:
        made = self._made.get(doc)
        if made is None:
            ids = self._ids[self._starts[doc] : self._ends[doc]].tolist()
            made = self._made[doc] = tuple(map(self._names.__getitem__, ids))
        return made

    def __len__(self) -> int:
        return len(self._starts)
