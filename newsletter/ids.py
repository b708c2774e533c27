"""Canonical entry ids (the DESIGN.md identity contract).

``arxiv:<id>`` without version (from arxiv.org/abs|pdf, oai:arXiv.org:,
huggingface.co/papers, doi:10.48550/arXiv.<id>), else ``doi:<lowercased doi>``,
else the normalised link, else the feed's guid.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# New-style (2007+) ids "2407.12345" and old-style "hep-th/9901001", "math.AG/0601001".
_ARXIV_ID = r"(?P<id>\d{4}\.\d{4,5}|[a-z][a-z.-]*/\d{7})(?:v(?P<version>\d+))?"
_ARXIV_PATTERNS = [
    re.compile(r"arxiv\.org/(?:abs|pdf|html)/" + _ARXIV_ID + r"(?:\.pdf)?(?:[?#/]|$)", re.I),
    re.compile(r"^oai:arxiv\.org:" + _ARXIV_ID + r"$", re.I),
    re.compile(r"huggingface\.co/papers/" + _ARXIV_ID + r"(?:[?#/]|$)", re.I),
    re.compile(r"10\.48550/arxiv\." + _ARXIV_ID + r"$", re.I),
    re.compile(r"^arxiv:" + _ARXIV_ID + r"$", re.I),
]
_DOI = re.compile(r"(?:^doi:|doi\.org/|^)(10\.\d{4,9}/\S+)$", re.I)
_TRACKING_PARAMS = re.compile(
    r"^(utm_\w+|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|_hsenc|_hsmi|igshid|yclid|ref_src|ref_url|s_cid|cmpid|spm)$",
    re.I,
)


def arxiv_id(text: str | None) -> tuple[str, int | None] | None:
    """("2407.12345", 2) for any arXiv-shaped reference, else None."""
    if not text:
        return None
    text = text.strip()
    for pattern in _ARXIV_PATTERNS:
        match = pattern.search(text)
        if match:
            version = match.group("version")
            return match.group("id").lower(), int(version) if version else None
    return None


def doi(text: str | None) -> str | None:
    """The lowercased DOI in "10.1234/x", "doi:10.1234/x" or a doi.org URL, else None."""
    if not text:
        return None
    match = _DOI.search(text.strip())
    return match.group(1).lower().rstrip(".") if match else None


def normalise_link(link: str) -> str:
    """https, lower-case host, no fragment, no tracking parameters, no trailing slash."""
    parts = urlsplit(link.strip())
    scheme = "https" if parts.scheme.lower() in ("http", "https") else parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if parts.port and not (parts.scheme.lower() in ("http", "https") and parts.port in (80, 443)):
        host = f"{host}:{parts.port}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING_PARAMS.match(k)])
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, host, path, query, ""))


def canonical_id(*, link: str | None, guid: str | None, doi_text: str | None = None) -> tuple[str, int | None] | None:
    """(canonical id, arXiv version or None), or None when there is nothing to identify the entry by."""
    for candidate in (guid, link, doi_text):
        found = arxiv_id(candidate)
        if found:
            return f"arxiv:{found[0]}", found[1]
    for candidate in (doi_text, guid, link):
        found_doi = doi(candidate)
        if found_doi:
            return f"doi:{found_doi}", None
    if link and urlsplit(link.strip()).scheme.lower() in ("http", "https"):
        return normalise_link(link), None
    if guid and guid.strip():
        return guid.strip(), None
    return None
