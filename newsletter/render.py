"""Render a Digest into a subject, an HTML part (CSS inlined) and a plain-text part.

Everything from feeds is plain text by the time it gets here (ingest strips
tags with nh3 and turns LaTeX into Unicode) and Jinja autoescapes the HTML
template, so nothing a feed says can become markup. Links are only ever
http(s) or mailto.

premailer is slow (it parses the CSS and matches every selector against the
document), so it runs once per HTML template, on the template's source, not
once per email: see ``inline_template``. What every reader of a paper sees is
computed once per paper (``_paper``) and rendered once per run (the templates'
``{% cache %}`` fragments, keyed on what they show, see ``render_fragments``);
what is each reader's own (numbering, signed links, name) is rendered per email.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import jinja2
import premailer

from .errors import RenderError
from .links import DigestLinks
from .models import Digest, Entry, Reason, RenderedEmail, ScoredEntry, Subscriber
from .render_fragments import FragmentCache
from .render_text import (
    highlight_parts,
    one_line,
    printable,
    safe_url,
    shorten_authors,
    tidy_text,
    trim_text,
    wrap,
)

ABSTRACT_CHARS = 480
HTML_TEMPLATE = "digest.html.j2"
TEXT_TEMPLATE = "digest.txt.j2"
_BUNDLED_TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Branding:
    """Deployment-wide facts the templates show."""

    title: str
    sender: str


class Renderer:
    """Loads the templates once (HTML pre-inlined); renders any number of digests."""

    def __init__(self, templates: Path, *, inline: bool = True) -> None:
        loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(templates))]
        if _BUNDLED_TEMPLATES.is_dir():  # an installed package carries the default templates
            loaders.append(jinja2.FileSystemLoader(str(_BUNDLED_TEMPLATES)))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"), default_for_string=True),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=printable,  # every value a template prints: no control character from a feed reaches an email
            extensions=[FragmentCache],  # {% cache %}: what is the same in every email is rendered once per run
        )
        self.env.filters["wrap"] = wrap
        self.templates = templates
        self.inline = inline
        self._html = self._load(HTML_TEMPLATE)
        self._text = self._load(TEXT_TEMPLATE)
        if inline:
            self._html = self._guard(lambda: self.env.from_string(inline_template(self._source(HTML_TEMPLATE))), HTML_TEMPLATE)
        for template in (self._html, self._text):
            # Jinja keeps a template's globals as a ChainMap over the Environment's, and every render copies it
            # into the new context at Python speed (~3 us per template per email): a plain dict copies in C.
            template.globals = dict(template.globals)

    def render(self, digest: Digest, *, branding: Branding, links: DigestLinks) -> RenderedEmail:
        context = digest_context(digest, branding=branding, links=links)
        html = self._guard(lambda: self._html.render(context), HTML_TEMPLATE, context)
        text = self._guard(lambda: self._text.render(context), TEXT_TEMPLATE)
        html = html if self.inline else inline_css(html)
        return RenderedEmail(subject=context["subject"], html=html, text=tidy_text(text))

    def _load(self, name: str) -> jinja2.Template:
        return self._guard(lambda: self.env.get_template(name), name)

    def _source(self, name: str) -> str:
        source, _, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
        return source

    def _guard(self, work: Any, name: str, context: dict[str, Any] | None = None) -> Any:
        """Run ``work``; a template problem becomes a RenderError naming the file and line."""
        try:
            return work()
        except jinja2.TemplateNotFound as exc:
            raise RenderError(f"{self.templates}: template {exc.name} not found (newsletter.templates in config.toml)") from None
        except jinja2.TemplateSyntaxError as exc:
            where = exc.filename or str(self.templates / name)
            raise RenderError(f"{where}:{exc.lineno}: template syntax error: {exc.message}") from None
        except (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError) as exc:
            where = _location(exc.__traceback__, name, self.templates)
            if context is not None and self.inline:
                where = self._location_in_file(name, context) or where
            raise RenderError(f"{where}: template error: {exc}") from None

    def _location_in_file(self, name: str, context: dict[str, Any]) -> str | None:
        """The pre-inlined copy has other line numbers: render the file itself to find the failing line."""
        try:
            self.env.get_template(name).render(context)
        except Exception as exc:  # noqa: BLE001 - only its traceback is wanted
            return _location(exc.__traceback__, name, self.templates)
        return None


def _location(trace: TracebackType | None, name: str, templates: Path) -> str:
    """file:line of the innermost template frame (Jinja maps template code back to template lines)."""
    where = str(templates / name)
    while trace is not None:
        filename = trace.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            where = f"{filename}:{trace.tb_lineno}"
        trace = trace.tb_next
    return where


# --- CSS inlining -------------------------------------------------------------------------------

_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.S)


def inline_template(source: str) -> str:
    """premailer applied to a template's source, with every Jinja tag kept intact.

    Styles depend only on the elements and classes the template writes (class
    attributes are static), so inlining the source once gives what inlining
    every rendered email would. Jinja tags are swapped for inert placeholders
    while premailer parses and re-serialises the HTML, then swapped back.
    """
    tags: list[str] = []

    def hide(match: re.Match[str]) -> str:
        tags.append(match.group())
        return f"jinjaplaceholder{len(tags) - 1}x"

    hidden = _JINJA_TAG.sub(hide, _JINJA_COMMENT.sub("", source))
    inlined = inline_css(hidden)
    restored = re.sub(r"jinjaplaceholder(\d+)x", lambda m: tags[int(m.group(1))], inlined)
    if restored.count("{{") + restored.count("{%") != len(tags):
        raise RenderError("the HTML template puts a Jinja tag where HTML cannot hold it (inside a tag, outside an attribute value)")
    return restored


def inline_css(html: str) -> str:
    """premailer inlines the <style> rules; media queries stay in a <style> block for clients that honour them."""
    return premailer.Premailer(
        html,
        keep_style_tags=False,
        strip_important=False,
        allow_network=False,
        disable_validation=True,
        disable_basic_attributes=["width", "height"],  # keep width="600" for clients that ignore CSS
        cssutils_logging_level=logging.CRITICAL,
    ).transform()


# --- the context the templates see ------------------------------------------------------------------


class _View:
    """A template value with attributes, readable as ``view["name"]`` too.

    Jinja looks ``item.title`` up as an attribute first; on a dict that is an AttributeError raised and caught,
    hundreds of times per email. Subscripts (``group["items"]``) keep working for templates written that way.
    """

    __slots__ = ()

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None


@dataclass(frozen=True, slots=True)
class Paper(_View):
    """What every reader sees of a paper: computed once per entry (see ``_paper``)."""

    id: str
    title: str
    link: str | None
    authors: str
    abstract: str
    links: tuple[tuple[str, str], ...]  # (label, url); tuples, so they can key {% cache %}
    upvotes: int | None


class ReasonView(NamedTuple):
    """A reason as a lead-in and the terms to mark: "Knowledge distillation: " + (distillation, teacher)."""

    lead: str
    terms: tuple[str, ...]
    text: str


@dataclass(slots=True)
class Item(_View):
    """One picked paper as one reader sees it: the paper's part plus this reader's (number, reasons, links)."""

    id: str
    title: str
    link: str | None
    authors: str
    abstract: str
    links: tuple[tuple[str, str], ...]
    upvotes: int | None
    abstract_parts: tuple[tuple[str, bool], ...]  # this reader's matched terms marked
    topic: str
    reasons: tuple[ReasonView, ...]
    why: str  # the reasons as one line, for the text part
    score: float
    more_url: str | None
    less_url: str | None
    number: int = 0  # set once the items are grouped


@dataclass(frozen=True, slots=True)
class Group(_View):
    topic: str
    items: list[Item]


@dataclass(frozen=True, slots=True)
class Reader(_View):
    id: str
    name: str
    email: str


def digest_context(digest: Digest, *, branding: Branding, links: DigestLinks) -> dict[str, Any]:
    items = [_item(item, feedback=links.feedback.get(item.entry.id)) for item in digest.items]
    groups = _group_by_topic(items)
    subscriber = digest.subscriber
    period_word = "this week" if subscriber.frequency.startswith("weekly") else "today"
    picked = f"{len(items)} of {digest.considered} new papers matched your topics"
    return {
        "title": branding.title,
        "subject": one_line(subject_line(branding.title, digest.items, period_word=period_word)),
        "preheader": _preheader(digest.items, picked=picked, period_word=period_word),
        "date": _long_date(digest.created_at.date()),
        "summary_line": f"Hello {subscriber.name}: {picked}." if items else f"Hello {subscriber.name}.",
        "period_word": period_word,
        "subscriber": Reader(subscriber.id, subscriber.name, subscriber.email),
        "topics": ", ".join(topic.name for topic in subscriber.topics),
        "preferences_file": _preferences_file(subscriber),
        "considered": digest.considered,
        "picked": len(items),
        "groups": groups,
        "items": items,
        "unsubscribe_url": links.unsubscribe,
    }


@functools.lru_cache(maxsize=64)  # strftime twice per email adds up; a run spans a day or two
def _long_date(day: dt.date) -> str:
    """"Thursday 26 November 2026"."""
    return f"{day:%A} {day.day} {day:%B %Y}"


def _preferences_file(subscriber: Subscriber) -> str:
    """The reader's own file, in its folder (newsletter.subscribers need not be "subscribers")."""
    path = subscriber.path
    return f"{path.parent.name}/{path.name}" if path else f"subscribers/{subscriber.id}.toml"


def subject_line(title: str, items: Sequence[ScoredEntry], *, period_word: str = "today") -> str:
    """"Daily Papers — 8 picks: knowledge distillation, federated learning"."""
    if not items:
        return f"{title} — nothing new matched {period_word}"
    topics = list(dict.fromkeys(_in_sentence(topic) for topic in (_first_topic(item.reasons) for item in items) if topic is not None))
    count = f"{len(items)} pick" + ("" if len(items) == 1 else "s")
    about = ", ".join(topics[:3]) + (" …" if len(topics) > 3 else "")
    return f"{title} — {count}" + (f": {about}" if about else "")


@functools.lru_cache(maxsize=4096)  # a handful of topic names, in every subject line
def _in_sentence(name: str) -> str:
    """A topic name as it reads mid-sentence: "Knowledge Distillation" -> "knowledge distillation".

    Only capitalised words are lowered; acronyms and mixed case stay ("LLM agents", "efficient LLMs").
    """
    def lower(match: re.Match[str]) -> str:
        word = match.group()
        return word.lower() if word[0].isupper() and word[1:].islower() else word

    return re.sub(r"\w+", lower, name)


def _first_topic(reasons: tuple[Reason, ...]) -> str | None:
    """ScoredEntry.topics[0], without building the whole tuple: the subject and the grouping ask for every item."""
    for reason in reasons:
        if reason.kind == "topic":
            return reason.label
    return None


def _item(item: ScoredEntry, *, feedback: tuple[str, str] | None) -> Item:
    """What the templates show of one picked paper: the entry's own part (cached) plus this reader's part."""
    paper = _paper(item.entry)
    more_url, less_url = feedback or (None, None)
    reasons, why, topic = _reasons_shown(item.reasons)
    return Item(
        paper.id, paper.title, paper.link, paper.authors, paper.abstract, paper.links, paper.upvotes,
        _highlighted(paper.abstract, item.highlights), topic, reasons, why, item.score, more_url, less_url,
    )


@functools.lru_cache(maxsize=8192)
def _paper(entry: Entry) -> Paper:
    """The same for every reader of a paper: computed once per entry, not once per email."""
    arxiv = entry.id[6:] if entry.id.startswith("arxiv:") else None
    link = safe_url(entry.link) or (f"https://arxiv.org/abs/{arxiv}" if arxiv else None)
    return Paper(
        id=entry.id,
        title=entry.title,
        link=link,
        authors=shorten_authors(entry.authors),
        abstract=trim_text(entry.summary, ABSTRACT_CHARS),
        links=_paper_links(entry.id, link=link, pdf=safe_url(entry.pdf_url), on_daily_papers=entry.upvotes is not None),
        upvotes=entry.upvotes,
    )


@functools.lru_cache(maxsize=16384)  # readers who share a topic get the same terms marked in a paper
def _highlighted(abstract: str, highlights: tuple[str, ...]) -> tuple[tuple[str, bool], ...]:
    return tuple(highlight_parts(abstract, highlights))


def _paper_links(entry_id: str, *, link: str | None, pdf: str | None, on_daily_papers: bool) -> tuple[tuple[str, str], ...]:
    """(label, url) in reading order: abstract page, PDF, the daily-papers page when the paper was there."""
    arxiv = entry_id[6:] if entry_id.startswith("arxiv:") else None
    found: list[tuple[str, str]] = []
    if arxiv:
        found.append(("Abstract", f"https://arxiv.org/abs/{arxiv}"))
        found.append(("PDF", pdf or f"https://arxiv.org/pdf/{arxiv}"))
        if on_daily_papers or (link or "").startswith("https://huggingface.co/papers/"):
            found.append(("Daily Papers", f"https://huggingface.co/papers/{arxiv}"))
    else:
        if link:
            found.append(("Read", link))
        if pdf:
            found.append(("PDF", pdf))
    return tuple(found)


@functools.lru_cache(maxsize=16384)  # readers who share a topic often get a paper for the same reasons
def _reasons_shown(reasons: tuple[Reason, ...]) -> tuple[tuple[ReasonView, ...], str, str]:
    """(the reasons as the templates show them, the same as one line, the group they put the paper in)."""
    views = tuple(_reason_view(reason) for reason in reasons)
    return views, "; ".join(view.text for view in views), _first_topic(reasons) or _non_topic_group(reasons)


@functools.lru_cache(maxsize=8192)  # a reason repeats across readers who share the topic; its view keys {% cache reason %}
def _reason_view(reason: Reason) -> ReasonView:
    if reason.kind == "topic":
        return ReasonView(f"{reason.label}: ", tuple(reason.terms), reason.describe())
    return ReasonView(reason.describe(), (), reason.describe())


def _non_topic_group(reasons: tuple[Reason, ...]) -> str:
    kinds = {reason.kind for reason in reasons}
    return "Authors you follow" if "author" in kinds else "Like papers you liked"


def _group_by_topic(items: list[Item]) -> list[Group]:
    """Groups in the order of their best paper; papers numbered as the reader sees them."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(item.topic, []).append(item)
    shown = [member for members in groups.values() for member in members]
    for number, member in enumerate(shown, start=1):
        member.number = number
    return [Group(topic, members) for topic, members in groups.items()]


def _preheader(items: Sequence[ScoredEntry], *, picked: str, period_word: str) -> str:
    """The line an inbox list shows after the subject."""
    if not items:
        return f"Nothing new matched your topics {period_word}."
    return trim_text(f"{picked}: " + " · ".join(item.entry.title for item in items[:3]), 140)
