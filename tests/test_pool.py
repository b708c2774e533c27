"""The pool's build (one split, each distinct word analysed once, postings counted with numpy) gives what
analysing word by word and counting paper by paper gives: the same stems and forms, the same postings in
the same order (papers ascending, forms in the order they first occur), the same norms to the last bit."""

from __future__ import annotations

import math
import unicodedata
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from newsletter.models import Entry
from newsletter.pool import Pool, name_key
from newsletter.text_index import _WORD, _word

# Words that take each path: acronym plurals, accents, casefolds that grow or decompose, compatibility forms,
# plurals the singular rule cuts or keeps, an underscore (not a word character), NUL (the builder's field end).
WORDS = [
    "LLMs", "GNNs", "LLMS", "llms", "ABCs", "3Ds", "PhDs", "Café", "cafe", "naïve", "İstanbul", "Straße", "ﬁne", "Ⅻ", "x²",
    "studies", "study", "networks", "network", "networking", "distillation", "Distilling", "distill", "class", "virus",
    "analysis", "bus", "αβγ", "Ökonomie", "snake_case", "a\x00b", "the", "The", "THE", "model", "models",
    "news", "newness", "new",  # the form "new" first occurs with the stem "news", the stem "new" first as "newness"
]
GAPS = [" ", "-", ", ", ". ", "\n", "\t", "’", " (", ") ", "\u2028", "\u00a0"]
TEXTS = st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=6), st.text(st.characters(codec="ascii"), max_size=6)), max_size=12).flatmap(
    lambda words: st.lists(st.sampled_from(GAPS), min_size=len(words), max_size=len(words)).map(
        lambda gaps: "".join(word + gap for word, gap in zip(words, gaps))
    )
)
ENTRIES = st.lists(st.tuples(TEXTS, TEXTS), max_size=5).map(
    lambda texts: [Entry(id=f"arxiv:2601.{n:05d}", title=title, link="https://arxiv.org/", summary=summary) for n, (title, summary) in enumerate(texts)]
)


def straightforward(entries: list[Entry]) -> tuple[dict[str, dict[int, int]], dict[str, dict[str, dict[int, tuple[int, int]]]]]:
    """Postings as the pool built them paper by paper: stem -> doc -> count, stem -> form -> doc -> (title, abstract)."""
    where: dict[str, dict[int, int]] = defaultdict(dict)
    forms: dict[str, dict[str, dict[int, tuple[int, int]]]] = defaultdict(lambda: defaultdict(dict))
    for doc, entry in enumerate(entries):
        fields = [[_word(word) for word in _WORD.findall(text)] for text in (entry.title, entry.summary)]
        for field, words in enumerate(fields):
            for (stem, form), count in Counter(words).items():
                before = forms[stem][form].get(doc, (0, 0))
                forms[stem][form][doc] = (count, 0) if field == 0 else (before[0], count)
        for stem, count in Counter(stem for stem, _ in fields[0] + fields[1]).items():
            where[stem][doc] = count
    return where, forms


def norms(entries: list[Entry], idf: dict[str, float]) -> list[float]:
    """Each paper's tf-idf norm over ``idf``'s words, the squares summed in the order the words first occur."""
    found = []
    for entry in entries:
        stems = [_word(word)[0] for text in (entry.title, entry.summary) for word in _WORD.findall(text)]
        total = 0.0
        for stem, count in Counter(stems).items():  # Counter keeps first-occurrence order
            if stem in idf:
                total += (count * idf[stem]) * (count * idf[stem])
        found.append(math.sqrt(total) or 1.0)
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=ENTRIES)
@example(entries=[])
@example(entries=[Entry(id="arxiv:2601.00000", title="", link="https://arxiv.org/", summary="...")])
@example(entries=[Entry(id="arxiv:2601.00000", title="news, newness: new", link="https://arxiv.org/", summary="snake_case a\x00b LLMs")])
def test_pool_build_is_the_word_by_word_analysis(entries: list[Entry]) -> None:
    pool = Pool(entries)
    where, forms = straightforward(entries)
    assert list(pool._where) == list(where) == list(pool._form_counts)
    for stem in where:
        assert list(pool._where[stem].items()) == list(where[stem].items())
        assert [(form, list(docs.items())) for form, docs in pool._form_counts[stem].items()] == [
            (form, list(docs.items())) for form, docs in forms[stem].items()
        ]
    assert pool._where.get("not a stem", {}) == {} and "not a stem" not in pool._form_counts
    for doc, entry in enumerate(entries):
        for text, stems, text_forms in ((entry.title, pool._titles, pool._title_forms), (entry.summary, pool._bodies, pool._body_forms)):
            analysed = [_word(word) for word in _WORD.findall(text)]
            assert stems[doc] == tuple(stem for stem, _ in analysed) and text_forms[doc] == tuple(form for _, form in analysed)
    text = pool._text()
    assert np.array_equal(text.order, np.argsort(text.stems, kind="stable"))
    idf = pool._telling_words()
    assert pool._vector_norms.tolist() == norms(entries, idf)


def test_a_pool_of_real_papers_counts_every_form_of_a_stem() -> None:
    entries = [
        Entry(id="a", title="Distilling LLMs", link="https://arxiv.org/", summary="Knowledge distillation of LLMs: we distill."),
        Entry(id="b", title="Networks", link="https://arxiv.org/", summary="A network of networks; distillations."),
    ]
    pool = Pool(entries)
    assert pool._form_counts["distil"] == {"distilling": {0: (1, 0)}, "distillation": {0: (0, 1), 1: (0, 1)}, "distill": {0: (0, 1)}}
    assert pool._where["llm"] == {0: 2} and pool._where["network"] == {1: 3}
    assert pool._titles[1] == ("network",) and pool._body_forms[0] == ("knowledge", "distillation", "of", "llm", "we", "distill")


@pytest.mark.parametrize("name", ["G. E. Hinton", "Hinton, Geoffrey", "Zoë Müller-Lüdenscheidt", "İlker Ğ. Şahin", "  ", "Wen  Zhang."])
def test_name_key_folds_as_before(name: str) -> None:
    folded = unicodedata.normalize("NFKD", name.casefold())
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    if "," in plain:
        family, _, given = plain.partition(",")
        plain = f"{given} {family}"
    parts = [p for p in plain.replace(".", " ").split() if p]
    assert name_key(name) == ((tuple(parts[:-1]), parts[-1]) if parts else ((), ""))
