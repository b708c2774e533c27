"""Render a Digest into a subject, an HTML part (CSS inlined by premailer) and a text part.

Everything from feeds is plain text by the time it gets here (ingest strips
tags with nh3) and Jinja autoescapes the HTML template, so nothing a feed
says can become markup. Links are only ever http(s).
"""

from __future__ import annotations

import logging
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import premailer
from markupsafe import Markup, escape

from .errors import RenderError
from .models import Digest, RenderedEmail, ScoredEntry

ABSTRACT_CHARS = 480
MAX_AUTHORS = 6
TEXT_WIDTH = 76
_BUNDLED_TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Branding:
    """Deployment-wide facts the templates show."""

    title: str
    sender: str


class Renderer:
    def __init__(self, templates: Path) -> None:
        loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(templates))]
        if _BUNDLED_TEMPLATES.is_dir():  # an installed package carries the default templates
            loaders.append(jinja2.FileSystemLoader(str(_BUNDLED_TEMPLATES)))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"), default_for_string=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["wrap"] = _wrap
        self.env.filters["highlight"] = highlight
        self.templates = templates

    def render(self, digest: Digest, *, branding: Branding) -> RenderedEmail:
        context = digest_context(digest, branding=branding)
        try:
            html = self.env.get_template("digest.html.j2").render(context)
            text = self.env.get_template("digest.txt.j2").render(context)
        except jinja2.TemplateNotFound as exc:
            raise RenderError(f"{self.templates}: template {exc.name} not found (newsletter.templates in config.toml)") from None
        except jinja2.TemplateError as exc:
            raise RenderError(f"{self.templates}: template error: {exc}") from None
        return RenderedEmail(subject=context["subject"], html=inline_css(html), text=_tidy_text(text))


def inline_css(html: str) -> str:
    """premailer inlines the <style> rules; media queries stay in a <style> block for clients that honour them."""
    return premailer.Premailer(
        html,
        keep_style_tags=True,
        strip_important=False,
        allow_network=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform()


def digest_context(digest: Digest, *, branding: Branding) -> dict[str, Any]:
    items = [_item_context(item) for item in digest.items]
    groups = _group_by_topic(items)
    subscriber = digest.subscriber
    return {
        "title": branding.title,
        "subject": subject_line(branding.title, digest.items),
        "preheader": _preheader(digest.items),
        "date": digest.created_at.strftime("%A %-d %B %Y"),
        "subscriber": {"id": subscriber.id, "name": subscriber.name, "email": subscriber.email},
        "preferences_file": f"subscribers/{subscriber.id}.toml",
        "considered": digest.considered,
        "picked": len(items),
        "groups": groups,
        "items": items,
        "unsubscribe_url": f"mailto:{_address(branding.sender)}?subject=unsubscribe%20{subscriber.id}",
    }


def subject_line(title: str, items: Sequence[ScoredEntry]) -> str:
    """"Daily Papers — 8 picks: knowledge distillation, federated learning"."""
    topics = list(dict.fromkeys(topic for item in items for topic in item.topics[:1]))
    count = f"{len(items)} pick" + ("" if len(items) == 1 else "s")
    about = ", ".join(topics[:3]) + (" …" if len(topics) > 3 else "")
    return f"{title} — {count}" + (f": {about}" if about else "")


def _item_context(item: ScoredEntry) -> dict[str, Any]:
    entry = item.entry
    arxiv = entry.id[6:] if entry.id.startswith("arxiv:") else None
    return {
        "id": entry.id,
        "title": entry.title,
        "link": _safe_url(entry.link) or (f"https://arxiv.org/abs/{arxiv}" if arxiv else None),
        "authors": shorten_authors(entry.authors),
        "abstract": trim_text(entry.summary, ABSTRACT_CHARS),
        "pdf_url": _safe_url(entry.pdf_url),
        "abs_url": f"https://arxiv.org/abs/{arxiv}" if arxiv else None,
        "hf_url": f"https://huggingface.co/papers/{arxiv}" if arxiv else None,
        "upvotes": entry.upvotes,
        "topic": item.topics[0] if item.topics else _non_topic_group(item),
        "reasons": [reason.describe() for reason in item.reasons],
        "highlights": list(item.highlights),
        "score": item.score,
    }


def _non_topic_group(item: ScoredEntry) -> str:
    kinds = {reason.kind for reason in item.reasons}
    return "Authors you follow" if "author" in kinds else "Like papers you liked"


def _group_by_topic(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Groups in the order of their best paper; papers numbered as the reader sees them."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(item["topic"], []).append(item)
    shown = [member for members in groups.values() for member in members]
    for number, member in enumerate(shown, start=1):
        member["number"] = number
    return [{"topic": topic, "items": members} for topic, members in groups.items()]


def _preheader(items: Sequence[ScoredEntry]) -> str:
    return trim_text(" · ".join(item.entry.title for item in items[:3]), 140)


def shorten_authors(authors: Sequence[str], limit: int = MAX_AUTHORS) -> str:
    """"A, B, C … +12" for long lists."""
    if len(authors) <= limit:
        return ", ".join(authors)
    shown = limit - 1
    return ", ".join(authors[:shown]) + f" … +{len(authors) - shown}"


def trim_text(text: str, limit: int) -> str:
    """Cut at a sentence end when one is near the limit, else at a word boundary; never mid-word."""
    if len(text) <= limit:
        return text
    window = text[: limit + 1]
    sentence_end = max(window.rfind(". "), window.rfind("? "), window.rfind("! "))
    if sentence_end >= limit * 0.6:
        return window[: sentence_end + 1]
    cut = window.rfind(" ")
    return (window[:cut] if cut > 0 else text[:limit]).rstrip(" ,;:-") + " …"


def highlight(text: str, terms: Sequence[str]) -> Markup:
    """Escape ``text`` and wrap each whole-word occurrence of a matched term in <mark>."""
    if not terms:
        return escape(text)
    alternatives = "|".join(re.escape(term) for term in sorted(set(terms), key=len, reverse=True))
    pattern = re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])", re.IGNORECASE)
    parts: list[Markup] = []
    last = 0
    for match in pattern.finditer(text):
        parts += [escape(text[last : match.start()]), Markup('<mark class="hit">') + escape(match.group()) + Markup("</mark>")]
        last = match.end()
    parts.append(escape(text[last:]))
    return Markup("").join(parts)


def _safe_url(url: str | None) -> str | None:
    return url if url and re.match(r"https?://", url, re.I) else None


def _address(sender: str) -> str:
    match = re.search(r"<([^>]+)>", sender)
    return match.group(1) if match else sender.strip()


def _wrap(text: str, width: int = TEXT_WIDTH, indent: str = "", hanging: str | None = None) -> str:
    """textwrap.fill for the text part; ``hanging`` indents continuation lines (numbered titles)."""
    return textwrap.fill(
        text, width=width, initial_indent=indent, subsequent_indent=indent if hanging is None else hanging,
        break_long_words=False, break_on_hyphens=False,
    )


def _tidy_text(text: str) -> str:
    """At most one blank line in a row, and a final newline."""
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
