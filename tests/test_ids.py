"""The identity contract of DESIGN.md: canonical ids."""

from __future__ import annotations

import pytest

from newsletter.ids import canonical_id, normalise_link


@pytest.mark.parametrize(
    ("link", "guid", "doi_text", "expected"),
    [
        ("https://arxiv.org/abs/2407.12345v2", None, None, ("arxiv:2407.12345", 2)),
        ("http://arxiv.org/pdf/2407.12345v3.pdf", None, None, ("arxiv:2407.12345", 3)),
        ("https://arxiv.org/pdf/2407.12345", None, None, ("arxiv:2407.12345", None)),
        ("https://huggingface.co/papers/2407.12345", None, None, ("arxiv:2407.12345", None)),
        (None, None, "doi:10.48550/arXiv.2407.12345", ("arxiv:2407.12345", None)),
        ("https://doi.org/10.48550/arXiv.2407.12345", None, None, ("arxiv:2407.12345", None)),
        ("https://example.org/x", "oai:arXiv.org:2508.13167v1", None, ("arxiv:2508.13167", 1)),
        ("https://arxiv.org/abs/hep-th/9901001v1", None, None, ("arxiv:hep-th/9901001", 1)),
        ("https://journals.example.org/a/1", None, "10.1038/NATURE12373", ("doi:10.1038/nature12373", None)),
        ("https://doi.org/10.1145/3292500.3330701", None, None, ("doi:10.1145/3292500.3330701", None)),
        ("http://Blog.Example.org/post/1/?utm_source=rss&id=7#comments", None, None, ("https://blog.example.org/post/1?id=7", None)),
        (None, "tag:example.org,2026:42", None, ("tag:example.org,2026:42", None)),
        (None, None, None, None),
    ],
)
def test_canonical_id(link: str | None, guid: str | None, doi_text: str | None, expected: tuple[str, int | None] | None) -> None:
    assert canonical_id(link=link, guid=guid, doi_text=doi_text) == expected


def test_link_normalisation_keeps_meaningful_query_and_drops_tracking() -> None:
    assert normalise_link("https://x.org/a?fbclid=1&q=rag&utm_medium=email") == "https://x.org/a?q=rag"
    assert normalise_link("https://x.org:443/a/") == "https://x.org/a"
    assert normalise_link("https://x.org:8080/a") == "https://x.org:8080/a"


def test_version_does_not_change_identity() -> None:
    first = canonical_id(link="https://arxiv.org/abs/2401.00001v1", guid=None)
    second = canonical_id(link="https://arxiv.org/abs/2401.00001v2", guid=None)
    assert first and second and first[0] == second[0] and (first[1], second[1]) == (1, 2)
