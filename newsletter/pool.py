"""The candidate pool: each entry's words analysed once per run, and BM25 over them.

Words are snowball-stemmed and accent-folded; a keyword matches the text words
with its stem that *extend* it ("distill" -> "distillation", not "networking" ->
"network"). The pool keeps postings, lengths, an author index and caches that
subscribers share: per-phrase counts, per-keyword scores (also as arrays, so a
subscriber's keywords add up without a Python loop over papers), per-category
and per-exclusion doc lists, priors, liked-paper similarities, highlights.
Pure computation, no I/O.
"""

from __future__ import annotations

import datetime as dt
import gc
import heapq
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import accumulate, chain

import numpy as np
import numpy.typing as npt
import snowballstemmer

from .models import CorpusStats, Entry

# A reader's keywords all name their topic, so a paper that keeps coming back to one of them is
# about it: saturation is gentler than web search's (k1 at the top of BM25's usual 1.2-2.0) and
# IDF is damped (square root), so one mention of a rare keyword does not outrank a paper built
# around a common one. bench/ranking_eval.py shows the effect of each choice on labelled papers.
K1 = 2.0
B = 0.75
TITLE_WEIGHT = 3.0  # a term in the title says more about the paper than one in the abstract
IDF_EXPONENT = 0.5
# A keyword in most papers still means the paper is on the reader's topic (a narrow feed):
# it weighs less than a rare one, but a title match alone still clears the default threshold.
IDF_FLOOR = 0.6
LIKED_MIN_SIMILARITY = 0.25
LIKED_QUERY_WORDS = 25
# Priors multiply a relevant paper's score by at most 1.1: tie-breakers, not a way in.
UPVOTE_PRIOR = 0.012  # times log1p(upvotes), capped
UPVOTE_PRIOR_CAP = 0.06
RECENCY_PRIOR = 0.04  # for a paper published now, falling to 0 at RECENCY_DAYS
RECENCY_DAYS = 7.0

_STEMMER = snowballstemmer.stemmer("english")
_WORD = re.compile(r"[^\W_]+")
_WORDS_AND_GAPS = re.compile(r"([^\W_]+)")  # split() keeps the words: gap, word, gap, ..., word, gap
# bytes.translate table: 1 for what _WORD matches in ASCII text (letters and digits), else 0
_ASCII_WORD_CHARACTERS = bytes(c.isascii() and c.isalnum() for c in map(chr, range(256)))


_ACRONYM_PLURAL = re.compile(r"[A-Z][A-Z0-9]+s")

Phrase = tuple[tuple[str, str], ...]  # per word: (stem, the singular form a text word must start with)
Docs = npt.NDArray[np.intp]
Floats = npt.NDArray[np.float64]


@lru_cache(maxsize=200_000)
def _word(word: str) -> tuple[str, str]:
    """(stem, singular folded form) of one word: "Distillations" -> ("distil", "distillation")."""
    if _ACRONYM_PLURAL.fullmatch(word):  # "LLMs", "GNNs": snowball keeps the s of an unknown word
        word = word[:-1]
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    folded = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _stem(folded), _singular(folded)


@lru_cache(maxsize=200_000)
def _stem(folded: str) -> str:
    """Snowball is pure Python (most of a pool's cost): "The", "THE" and "the" are stemmed once."""
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


def _analysed(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(tokens, singular forms) of a text, splitting it into words once."""
    words = [_word(word) for word in _WORD.findall(text)]
    return tuple(stem for stem, _ in words), tuple(form for _, form in words)


@lru_cache(maxsize=65_536)
def phrase(keyword: str) -> Phrase:
    """A keyword as the pool matches it: each word by stem, and only by text words that extend it.

    "distill" matches "distillation" and "Distilling"; "networking" does not match "network"
    and "prompting" not "prompts", though each pair shares a stem; plurals always match.
    """
    return tuple(_word(word) for word in _WORD.findall(keyword))


def _bounds(text: str) -> npt.NDArray[np.int32]:
    """Word i of the text is text[bounds[2 i + 1] : bounds[2 i + 2]] (bounds[0] is 0)."""
    if text.isascii():  # most: where runs of letters and digits start and end, found by numpy over the bytes
        letters = np.frombuffer(b"\0" + text.encode("ascii").translate(_ASCII_WORD_CHARACTERS) + b"\0", np.bool_)
        edges = np.flatnonzero(letters[1:] != letters[:-1])
        bounds = np.zeros(len(edges) + 1, np.int32)
        bounds[1:] = edges
        return bounds
    return np.fromiter(chain((0,), accumulate(map(len, _WORDS_AND_GAPS.split(text)))), np.int32)


# --- the pool: per-entry work, once per run -----------------------------------------

_NO_DOCS: Docs = np.zeros(0, np.intp)
_NO_WEIGHTS: Floats = np.zeros(0)


@dataclass(frozen=True)
class Scores:
    """One keyword's scores: doc -> score to explain a few papers, and the same as arrays to add up many."""

    by_doc: dict[int, float]
    docs: Docs
    values: Floats


@dataclass(frozen=True)
class _Text:
    """Every word of every title and abstract as ids in one array, each field ended by -1 so no phrase
    runs across two, with its paper and field, and each stem's positions (``order`` cut at ``starts``)."""

    stem_ids: dict[str, int]
    form_ids: dict[str, int]
    stems: npt.NDArray[np.int32]
    forms: npt.NDArray[np.int32]
    docs: npt.NDArray[np.int32]
    fields: npt.NDArray[np.int8]
    order: Docs
    starts: Docs

    @classmethod
    def of(cls, pool: Pool) -> _Text:
        stem_ids = {stem: number for number, stem in enumerate(pool._where)}
        form_ids = {form: number for number, form in enumerate(dict.fromkeys(f for forms in pool._form_counts.values() for f in forms))}
        stem_fields = [field for doc in zip(pool._titles, pool._bodies) for field in doc]  # title 0, abstract 0, title 1, ...
        form_fields = [field for doc in zip(pool._title_forms, pool._body_forms) for field in doc]
        lengths = np.fromiter(map(len, stem_fields), np.intp, len(stem_fields)) + 1
        stems = np.fromiter(chain.from_iterable(chain(map(stem_ids.__getitem__, field), (-1,)) for field in stem_fields), np.int32)
        forms = np.fromiter(chain.from_iterable(chain(map(form_ids.__getitem__, field), (-1,)) for field in form_fields), np.int32)
        field_numbers = np.arange(len(stem_fields))
        docs = np.repeat(field_numbers // 2, lengths).astype(np.int32)
        fields = np.repeat(field_numbers % 2, lengths).astype(np.int8)
        order = np.argsort(stems, kind="stable")  # each stem's positions, ascending
        starts = np.searchsorted(stems[order], np.arange(len(stem_ids) + 1))
        return cls(stem_ids, form_ids, stems, forms, docs, fields, order, starts)

    def occurrences(self, stem_id: int) -> int:
        return int(self.starts[stem_id + 1] - self.starts[stem_id])

    def positions(self, stem_id: int) -> Docs:
        return self.order[self.starts[stem_id] : self.starts[stem_id + 1]]


class Pool:
    """Candidates analysed once: stemmed title and abstract, postings, lengths, authors."""

    def __init__(self, entries: Sequence[Entry], *, corpus: CorpusStats | None = None) -> None:
        with _collector_paused():  # the per-entry work; the caches below fill later, a little at a time
            self.entries = list(entries)
            self.corpus = corpus
            self.doc_of = {entry.id: doc for doc, entry in enumerate(self.entries)}
            titles = [_analysed(entry.title) for entry in self.entries]
            bodies = [_analysed(entry.summary) for entry in self.entries]
            self._titles = [stems for stems, _ in titles]
            self._bodies = [stems for stems, _ in bodies]
            self._title_forms = [forms for _, forms in titles]
            self._body_forms = [forms for _, forms in bodies]
            lengths = [len(body) for body in self._bodies]
            average = (sum(lengths) / len(lengths)) if lengths else 1.0
            self._norms = np.array([K1 * (1 - B + B * length / (average or 1.0)) for length in lengths], np.float64)
            # stem -> doc -> occurrences in title and abstract (ints only, so the garbage collector never walks it);
            # (stem, form) -> doc -> (count in title, count in abstract): one-word keywords need no positions at all.
            self._where: dict[str, dict[int, int]] = defaultdict(dict)
            self._form_counts: dict[str, dict[str, dict[int, tuple[int, int]]]] = defaultdict(lambda: defaultdict(dict))
            for doc, fields in enumerate(zip(titles, bodies)):
                self._index(doc, fields)
            self._authors: dict[str, list[tuple[int, tuple[str, ...], str]]] = defaultdict(list)  # family -> (doc, given, name)
            for doc, entry in enumerate(self.entries):
                for name in entry.authors:
                    given, family = name_key(name)
                    self._authors[family].append((doc, given, name))
        self._phrase_cache: dict[tuple[Phrase, bool], dict[int, tuple[int, int]]] = {}
        self._docs_cache: dict[tuple[Phrase, bool], Docs] = {}
        self._idf_cache: dict[str, float] = {}
        self._score_cache: dict[tuple[str, Phrase, tuple[Phrase, ...]], Scores] = {}
        self._surface_cache: dict[tuple[int, str], tuple[str, ...]] = {}
        self._text_arrays: _Text | None = None
        self._prior_cache: dict[dt.datetime | None, Floats] = {}
        self._categories: dict[str, Docs] | None = None
        self._similar_cache: dict[str, tuple[Docs, Floats]] = {}
        self._vector_idf: dict[str, float] | None = None
        self._vector_norms: Floats = np.ones(len(self.entries))
        self._vector_postings: dict[str, tuple[Docs, Floats]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def _index(self, doc: int, fields: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]) -> None:
        """One paper's postings; Counter counts in C, so a Python step is paid per distinct word, not per word."""
        for field_index, (stems, forms) in enumerate(fields):
            for (stem, form), count in Counter(zip(stems, forms)).items():
                per_doc = self._form_counts[stem][form]
                per_doc[doc] = (count, 0) if field_index == 0 else (per_doc.get(doc, (0, 0))[0], count)
        for stem, count in Counter(fields[0][0] + fields[1][0]).items():
            self._where[stem][doc] = count

    def counts(self, words: Phrase, *, exact: bool = False) -> dict[int, tuple[int, int]]:
        """doc -> (occurrences in the title, in the abstract) of the phrase; cached across subscribers.

        ``exact``: each text word must be the keyword word or its plural, not any word extending it.
        """
        key = (words, exact)
        cached = self._phrase_cache.get(key)
        if cached is not None:
            return cached
        found: dict[int, tuple[int, int]] = {}
        if len(words) == 1:
            stem, form = words[0]
            for text_form, per_doc in self._form_counts.get(stem, {}).items():
                if text_form == form or (not exact and text_form.startswith(form)):
                    if not found:  # usually the only form: copied in C
                        found.update(per_doc)
                        continue
                    for doc, (in_title, in_body) in per_doc.items():
                        before = found.get(doc, (0, 0))
                        found[doc] = (before[0] + in_title, before[1] + in_body)
        elif words:
            postings = [self._where.get(stem, {}) for stem, _ in words]
            if all(postings):
                # The papers that have every word, in the set order ties have always been broken in: like
                # set(postings[0]).intersection(*postings), built by adding them in ascending order into an empty set,
                # but walking only the smaller dict of the first two.
                docs = postings[0].keys() & postings[1].keys()
                if len(postings) > 2:
                    docs = docs.intersection(*postings[2:])
                hits = self._phrase_hits(words, exact)
                found = {doc: hits[doc] for doc in docs if doc in hits}
        self._phrase_cache[key] = found
        return found

    def _phrase_hits(self, words: Phrase, exact: bool) -> dict[int, tuple[int, int]]:
        """doc -> (occurrences in the title, in the abstract) of a phrase of several words, for every paper at once:
        from each occurrence of its rarest word, the neighbours must have the phrase's stems and forms."""
        text = self._text()
        ids = [text.stem_ids[stem] for stem, _ in words]
        anchor = min(range(len(words)), key=lambda index: text.occurrences(ids[index]))
        starts = text.positions(ids[anchor]) - anchor
        starts = starts[(starts >= 0) & (starts + len(words) <= len(text.stems))]
        for offset, ((stem, form), stem_id) in enumerate(zip(words, ids)):
            at = starts + offset
            keep = text.stems[at] == stem_id
            forms = text.forms[at]
            allowed = [text.form_ids[f] for f in self._form_counts[stem] if (f == form if exact else f.startswith(form))]
            keep &= np.logical_or.reduce([forms == f for f in allowed]) if allowed else False  # a stem has few forms
            starts = starts[keep]
        docs, fields = text.docs[starts], text.fields[starts]
        in_title = np.bincount(docs[fields == 0], minlength=len(self.entries))
        in_body = np.bincount(docs[fields == 1], minlength=len(self.entries))
        matched = np.flatnonzero(in_title + in_body)
        return dict(zip(matched.tolist(), zip(in_title[matched].tolist(), in_body[matched].tolist())))

    def _text(self) -> _Text:
        if self._text_arrays is None:
            self._text_arrays = _Text.of(self)
        return self._text_arrays

    def docs_with(self, words: Phrase, *, exact: bool = False) -> Docs:
        """The papers containing the phrase, as an array (a reader's exclusions ban them at once); cached."""
        key = (words, exact)
        cached = self._docs_cache.get(key)
        if cached is None:
            found = self.counts(words, exact=exact)
            cached = self._docs_cache[key] = np.fromiter(found, np.intp, len(found))
        return cached

    def keyword_scores(self, keyword: str, words: Phrase, longer: tuple[Phrase, ...] = ()) -> Scores:
        """Per doc, idf x BM25 tf part for one keyword, minus mentions inside the ``longer`` keywords; cached."""
        key = (keyword, words, longer)
        cached = self._score_cache.get(key)
        if cached is not None:
            return cached
        docs, (in_title, in_body) = _arrays(self.counts(words))
        for other in longer:
            covered = np.zeros((2, len(self.entries)), np.int64)
            other_docs, other_counts = _arrays(self.counts(other))
            covered[:, other_docs] = other_counts
            in_title, in_body = np.maximum(in_title - covered[0, docs], 0), np.maximum(in_body - covered[1, docs], 0)
        if longer:  # papers whose every mention is inside a longer keyword drop out (counts() has only papers with some)
            left = (in_title > 0) | (in_body > 0)
            docs, in_title, in_body = docs[left], in_title[left], in_body[left]
        values = self.idf(keyword, words) * self._saturated(docs, in_title, in_body)
        cached = self._score_cache[key] = Scores(dict(zip(docs.tolist(), values.tolist())), docs, values)
        return cached

    def priors(self, now: dt.datetime | None) -> Floats:
        """Per paper, upvotes and freshness: the same for every subscriber, so computed once per run."""
        minute = now.replace(second=0, microsecond=0) if now is not None else None
        priors = self._prior_cache.get(minute)
        if priors is None:
            priors = self._prior_cache[minute] = np.array([_prior(entry, minute) for entry in self.entries], np.float64)
        return priors

    def category_docs(self, category: str) -> Docs:
        """The papers in an arXiv category; the index is built on the first reader with categories."""
        if self._categories is None:
            members: dict[str, list[int]] = defaultdict(list)
            for doc, entry in enumerate(self.entries):
                for name in entry.categories:
                    members[name].append(doc)
            self._categories = {name: np.array(docs, np.intp) for name, docs in members.items()}
        return self._categories.get(category, _NO_DOCS)

    def _saturated(self, docs: Docs, in_title: npt.NDArray[np.int64], in_body: npt.NDArray[np.int64]) -> Floats:
        """BM25's term-frequency part, a title occurrence weighing TITLE_WEIGHT abstract ones (each count above 0)."""
        tf = TITLE_WEIGHT * in_title + in_body
        return tf * (K1 + 1) / (tf + self._norms[docs])

    def idf(self, keyword: str, words: Phrase) -> float:
        cached = self._idf_cache.get(keyword)
        if cached is None:
            n, df = len(self.entries), len(self.counts(words))
            if self.corpus is not None and keyword in self.corpus.document_frequency:
                # The store's stemmer (porter) differs slightly from ours (snowball): never count below the pool.
                n, df = max(self.corpus.size, n), max(self.corpus.document_frequency[keyword], df)
            raw = math.log(1 + (n - df + 0.5) / (df + 0.5))
            cached = self._idf_cache[keyword] = max(IDF_FLOOR, raw**IDF_EXPONENT)
        return cached

    def by_author(self, wanted: tuple[tuple[str, ...], str]) -> list[tuple[int, str]]:
        return [(doc, name) for doc, given, name in self._authors.get(wanted[1], []) if _given_names_agree(given, wanted[0])]

    def similar(self, liked: Sequence[Entry]) -> tuple[Floats, Docs]:
        """Per doc, the tf-idf cosine to the closest liked paper when at least LIKED_MIN_SIMILARITY (else 0),
        and that paper's index in ``liked`` (-1: none; on a tie the earlier liked paper)."""
        similarity = np.zeros(len(self.entries))
        closest = np.full(len(self.entries), -1, np.intp)
        for index, entry in enumerate(liked):
            docs, values = self._similar_to(entry)
            closer = values > similarity[docs]
            similarity[docs[closer]] = values[closer]
            closest[docs[closer]] = index
        return similarity, closest

    def _similar_to(self, liked: Entry) -> tuple[Docs, Floats]:
        """The papers at least LIKED_MIN_SIMILARITY alike to ``liked`` and their cosines, through the postings; cached per liked paper."""
        cached = self._similar_cache.get(liked.id)
        if cached is not None:
            return cached
        idf = self._telling_words()
        query = _tfidf(tuple(w for w in self._tokens_of(liked) if w in idf), idf)
        query_norm = math.sqrt(sum(v * v for v in query.values())) or 1.0
        # Like Lucene's MoreLikeThis, only the paper's most telling words are looked up; bincount adds each paper's
        # products in the words' order, as adding word by word did.
        words = heapq.nlargest(LIKED_QUERY_WORDS, query.items(), key=lambda item: item[1])
        vectors = [self._word_vector(word) for word, _ in words]
        papers = np.concatenate([papers for papers, _ in vectors] or [_NO_DOCS])
        weights = np.concatenate([weights for _, weights in vectors] or [_NO_WEIGHTS])
        products = np.repeat([weight for _, weight in words], [len(papers) for papers, _ in vectors]) * weights
        similarity = np.bincount(papers, weights=products, minlength=len(self.entries)) / (query_norm * self._vector_norms)
        close = np.flatnonzero(similarity >= LIKED_MIN_SIMILARITY)
        cached = self._similar_cache[liked.id] = (close, similarity[close])
        return cached

    def _tokens_of(self, entry: Entry) -> tuple[str, ...]:
        """tokens() of the paper's title and abstract: the pool's own when the paper is in it, as it is."""
        doc = self.doc_of.get(entry.id)
        if doc is not None and (self.entries[doc].title, self.entries[doc].summary) == (entry.title, entry.summary):
            return self._titles[doc] + self._bodies[doc]
        return tokens(f"{entry.title} {entry.summary}")

    def _telling_words(self) -> dict[str, float]:
        """IDF of the telling words: those in at most a quarter of the papers (not "the", "model").

        Also each paper's tf-idf norm over them, summed in the order the words first occur so
        every cosine is the same to the last bit whichever way the vectors are stored.
        """
        if self._vector_idf is None:
            n = len(self.entries)
            common = max(10, n // 4)
            idf = {word: math.log((1 + n) / (1 + len(docs))) + 1 for word, docs in self._where.items() if len(docs) <= common}
            self._vector_norms = self._norms_over(idf)
            self._vector_idf = idf
        return self._vector_idf

    def _norms_over(self, idf: dict[str, float]) -> Floats:
        """Each paper's tf-idf norm over the words in ``idf`` (1 for none): its distinct words in first-occurrence
        order, the squares summed by bincount in that order."""
        text = self._text()
        by_stem = np.zeros(len(text.stem_ids))  # 0: not a telling word
        by_stem[[text.stem_ids[word] for word in idf]] = list(idf.values())
        words = np.flatnonzero((text.stems >= 0) & (by_stem[text.stems] > 0))  # the telling words' positions only: half as many to sort
        pairs, first, counts = np.unique(text.docs[words].astype(np.int64) * len(text.stem_ids) + text.stems[words], return_index=True, return_counts=True)
        weights = counts * by_stem[pairs % len(text.stem_ids)]
        telling = np.flatnonzero(weights > 0)
        telling = telling[np.argsort(first[telling], kind="stable")]
        norms = np.sqrt(np.bincount(pairs[telling] // len(text.stem_ids), weights=weights[telling] * weights[telling], minlength=len(self.entries)))
        return np.where(norms > 0, norms, 1.0)

    def _word_vector(self, word: str) -> tuple[Docs, Floats]:
        """The papers with a telling word and its tf-idf weight in each; cached (liked papers share words)."""
        cached = self._vector_postings.get(word)
        if cached is None:
            where = self._where[word]
            counts = np.fromiter(where.values(), np.int64, len(where))
            cached = self._vector_postings[word] = (np.fromiter(where, np.intp, len(where)), counts * self._telling_words()[word])
        return cached

    def highlights(self, doc: int, keywords: Iterable[str]) -> tuple[str, ...]:
        """The exact words of title and abstract that matched, as the reader will see them."""
        found: dict[str, str] = {}
        for keyword in keywords:
            for surface in self._surfaces(doc, keyword):
                found.setdefault(surface.casefold(), surface)
        return tuple(found.values())

    def _surfaces(self, doc: int, keyword: str) -> tuple[str, ...]:
        """Where one keyword occurs in one paper, as written there; cached (popular papers recur)."""
        key = (doc, keyword)
        cached = self._surface_cache.get(key)
        if cached is None:
            entry, words = self.entries[doc], phrase(keyword)
            in_title, in_body = self.counts(words).get(doc, (0, 0))  # what _positions finds: a field without any is skipped
            surfaces: list[str] = []
            fields = ((in_title, entry.title, self._titles, self._title_forms), (in_body, entry.summary, self._bodies, self._body_forms))
            for field, (found, text, stems, forms) in enumerate(fields):
                if found:
                    bounds = self._word_bounds(doc, field, text)
                    starts = _positions(stems[doc], forms[doc], words)
                    surfaces += [text[bounds[2 * start + 1] : bounds[2 * (start + len(words))]] for start in starts]
            cached = self._surface_cache[key] = tuple(surfaces)
        return cached

    def _word_bounds(self, doc: int, field: int, text: str) -> npt.NDArray[np.int32]:
        """_bounds of a paper's title (0) or abstract (1); cached, as the paper's other keywords ask again."""
        bounds = self._bounds_cache.get((doc, field))
        if bounds is None:
            bounds = self._bounds_cache[doc, field] = _bounds(text)
        return bounds

    @cached_property
    def _bounds_cache(self) -> dict[tuple[int, int], npt.NDArray[np.int32]]:
        """(doc, field) -> _bounds: filled by the readers' highlights."""
        return {}


def _arrays(counts: dict[int, tuple[int, int]]) -> tuple[Docs, npt.NDArray[np.int64]]:
    """Phrase counts as (docs, [counts in titles, counts in abstracts]), in the dict's order."""
    return np.fromiter(counts, np.intp, len(counts)), np.fromiter(chain.from_iterable(counts.values()), np.int64, 2 * len(counts)).reshape(-1, 2).T


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A pool keeps ~10^6 small lists, tuples and dicts, none in a reference cycle; while they pile
    up, the cyclic garbage collector would walk the growing pool again and again (half the build
    time). Reference counting still frees everything temporary."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _prior(entry: Entry, now: dt.datetime | None) -> float:
    prior = min(UPVOTE_PRIOR_CAP, UPVOTE_PRIOR * math.log1p(entry.upvotes)) if entry.upvotes else 0.0
    published = entry.published or entry.first_seen
    if now is not None and published is not None:
        age_days = max(0.0, (now - published).total_seconds() / 86400)
        prior += RECENCY_PRIOR * max(0.0, 1 - age_days / RECENCY_DAYS)
    return prior


def _matches_at(stems: tuple[str, ...], forms: tuple[str, ...], start: int, words: Phrase, exact: bool) -> bool:
    """The phrase at ``start``: every stem equal, and each text word extending (or, exact, equal to) the keyword word."""
    if start + len(words) > len(stems):
        return False
    for offset, (stem, form) in enumerate(words):
        if stems[start + offset] != stem:
            return False
        text_form = forms[start + offset]
        if not (text_form == form if exact else text_form.startswith(form)):
            return False
    return True


def _positions(stems: tuple[str, ...], forms: tuple[str, ...], words: Phrase) -> list[int]:
    """Where the phrase starts in one field."""
    if not words:
        return []
    return [i for i in _occurrences(stems, words[0][0]) if _matches_at(stems, forms, i, words, False)]


def _occurrences(stems: tuple[str, ...], stem: str) -> list[int]:
    """Where a stem is in a field, found by tuple.index (a scan in C)."""
    found: list[int] = []
    at = -1
    try:
        while True:
            at = stems.index(stem, at + 1)
            found.append(at)
    except ValueError:  # no more
        return found


@lru_cache(maxsize=65_536)
def contains(longer: Phrase, shorter: Phrase) -> bool:
    return bool(_positions(tuple(stem for stem, _ in longer), tuple(form for _, form in longer), shorter))


# --- authors --------------------------------------------------------------------------------


def name_key(name: str) -> tuple[tuple[str, ...], str]:
    """(given names, family name), accent- and case-folded: "G. E. Hinton" -> (("g", "e"), "hinton")."""
    folded = unicodedata.normalize("NFKD", name.casefold())
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    if "," in plain:  # "Hinton, Geoffrey"
        family, _, given = plain.partition(",")
        plain = f"{given} {family}"
    parts = [p for p in re.split(r"[\s.]+", plain) if p]
    if not parts:
        return ((), "")
    return (tuple(parts[:-1]), parts[-1])


def _given_names_agree(found: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    """"G. Hinton" ~ "Geoffrey Hinton"; not "Gareth Hinton", nor "Wen Zhang" for "Wei Zhang"."""
    if not found or not wanted:
        return True
    first_found, first_wanted = found[0], wanted[0]
    if len(first_found) > 1 and len(first_wanted) > 1:  # two full first names must be the same name
        return first_found == first_wanted
    return first_found[0] == first_wanted[0]


# --- "more like this" -----------------------------------------------------------------------


def _tfidf(words: tuple[str, ...], idf: dict[str, float]) -> dict[str, float]:
    return {word: count * idf.get(word, 1.0) for word, count in Counter(words).items()}



