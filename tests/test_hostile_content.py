"""Hostile and broken feed text never breaks a digest: no active content, no header injection.

Published XSS payloads (tests/fixtures/xss_payloads.txt: PayloadsAllTheThings and the OWASP XSS Filter Evasion
Cheat Sheet, sources in its header) are put into every field of real feeds — RSS with HTML descriptions, Atom with
type="html" and type="xhtml" text, daily-papers JSON — ingested by ``pipeline.ingest_feeds``, sent by
``pipeline.run_digests`` into a Maildir and previewed with ``pipeline.preview``, ``newsletter preview`` and the
``preview --serve`` app; the web app's pages that name a paper are read too. Every page is parsed with lxml and
checked against what its own template may hold.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import json
import mailbox
import re
import unicodedata
from collections.abc import Iterator
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

import lxml.etree
import lxml.html
import pytest
from click.testing import CliRunner
from conftest import NOON, REPO, Deployment, fixed_clock

from newsletter import ingest, pipeline, preview_app, web
from newsletter.cli import main as cli_main
from newsletter.config import Config
from newsletter.render import _in_sentence

PAYLOAD_FILE = REPO / "tests" / "fixtures" / "xss_payloads.txt"
PAYLOADS = [line for line in PAYLOAD_FILE.read_text(encoding="utf-8").splitlines() if line and not line.startswith("# ")]
SECRET_ENV = "HOSTILE_TEST_LINK_SECRET"
SECRET = "hostile-content-secret-0123456789abcdef"
BASE_URL = "https://papers.example.org"
SENDER = "Daily Papers <papers@example.org>"

# Hand-made extras the lists do not cover: links that are http(s) but try to break out of the attribute, MathML,
# scheme tricks with leading junk, and raw control characters (JSON can carry every one of them).
EXTRA = [
    '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>',
    '<math href="javascript:alert(1)">CLICKME</math><math><maction actiontype="statusline" xlink:href="javascript:alert(2)">x</maction></math>',
    '<svg><a xlink:href="javascript:alert(1)"><text x="20" y="20">XSS</text></a></svg>',
    '<form action="javascript:alert(1)"><button formaction="javascript:alert(2)">go</button></form>',
    '<a href="&#x6A;avascript&#x3A;alert(1)" style="background:url(javascript:alert(2))">x</a>',
]
HOSTILE_LINKS = [
    'http://example.org/{kind}/"><script>alert(1)</script>',
    "https://example.org/{kind}/x' onmouseover='alert(1)",
    'https://example.org/{kind}/x" onmouseover="alert(1)" style="x:expression(alert(3))',
    " JaVaScRiPt:alert(1)",
    "\tjavascript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
]
CONTROL = "\x00\x01\x07\x08\x0b\x0c\x1b[31m\x7f\x85\x9b\u2028\u2029\r\nBcc: evil@example.org\r\n\r\n<script>alert(1)</script>"

# feed kind -> (keyword of the first half, keyword of the second half): one reader per keyword, at most 100 picks each.
KINDS = {"rss": ("zebrafish", "axolotl"), "atom": ("tardigrade", "platypus"), "xhtml": ("narwhal", "pangolin"), "json": ("quokka", "okapi")}
ALL_TEXTS = PAYLOADS + EXTRA

# --- what each page may hold ----------------------------------------------------------------------------------------

EMAIL_TAGS = {"html", "head", "meta", "title", "style", "body", "div", "table", "tr", "td", "h1", "h2", "h3", "p", "span", "a", "mark", "code"}
EMAIL_ATTRS = {
    "bgcolor", "lang", "xmlns", "charset", "name", "content", "http-equiv", "data-premailer", "class", "style", "role", "width",
    "cellpadding", "cellspacing", "border", "align", "href",
}
PREVIEW_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "strong", "span", "main", "p", "table", "thead", "tbody",
    "tr", "th", "td", "a", "br", "small", "code", "nav", "iframe", "h2", "pre", "script",
}
PREVIEW_ATTRS = {"lang", "charset", "class", "id", "href", "aria-current", "aria-label", "title", "src", "style", "colspan"}
WEB_TAGS = {"html", "head", "meta", "title", "body", "main", "h1", "p", "strong", "form", "button", "script"}
WEB_ATTRS = {"lang", "charset", "name", "content", "style", "id", "method", "type", "value", "data-changed", "data-kind", "data-status"}
ACTIVE = {"script", "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math", "form", "base", "link", "img",
          "input", "button", "textarea", "select", "video", "audio", "source", "details", "marquee", "isindex", "xss", "xml"}
URL_ATTRS = {"href", "src", "action", "formaction", "{http://www.w3.org/1999/xlink}href", "xlink:href", "background", "poster",
             "data", "lowsrc", "dynsrc", "srcdoc", "codebase", "cite", "longdesc", "usemap", "ping"}
CSS_BAD = ("expression(", "url(", "javascript:", "vbscript:", "behavior:", "-moz-binding", "@import")


def inert(
    html: str, where: str, *, tags: set[str], attrs: set[str], own_scripts: int = 0, own_styles: int, own_iframes: int = 0,
    relative_ok: bool = False,
) -> lxml.html.HtmlElement:
    """Assert the page holds only its template's elements and attributes, and no active content; return the tree."""
    assert "\x00" not in html, f"{where}: a NUL byte"
    doc = lxml.html.document_fromstring(html)
    elements = [el for el in doc.iter() if isinstance(el.tag, str)]
    found = {el.tag.lower() for el in elements}
    assert not found - tags, f"{where}: elements no template writes: {sorted(found - tags)}"
    assert not (found & ACTIVE) - {"script", "iframe", "form", "button"}, where
    assert len(doc.findall(".//script")) == own_scripts, f"{where}: {len(doc.findall('.//script'))} <script>"
    assert all(script.get("src") is None for script in doc.iter("script")), where
    assert len(doc.findall(".//style")) == own_styles, f"{where}: a <style> the template does not write"
    assert len(doc.findall(".//iframe")) == own_iframes, where
    for meta in doc.iter("meta"):
        assert (meta.get("http-equiv") or "").lower() not in ("refresh", "set-cookie", "content-type"), f"{where}: {lxml.html.tostring(meta)!r}"
    for el in elements:
        for name, value in el.attrib.items():
            lowered = name.lower()
            assert not lowered.startswith("on"), f"{where}: event handler {name}={value!r} on <{el.tag}>"
            assert lowered in attrs, f"{where}: attribute {name}={value!r} on <{el.tag}> that no template writes"
            if lowered in URL_ATTRS:
                assert_safe_url(value, f"{where}: <{el.tag} {name}>", relative_ok=relative_ok)
            if lowered == "style":
                assert_safe_css(value, f"{where}: <{el.tag} style>")
    for style in doc.iter("style"):
        assert_safe_css(style.text or "", f"{where}: <style>")
    return doc


def assert_safe_url(value: str, where: str, *, relative_ok: bool = False) -> None:
    assert value == value.strip() and not any(unicodedata.category(ch) == "Cc" for ch in value), f"{where}: {value!r}"
    parts = urlsplit(value)
    if relative_ok and not parts.scheme and not value.startswith("//"):
        assert value.startswith(("/", "?")), f"{where}: {value!r}"
        return
    assert parts.scheme in ("http", "https", "mailto"), f"{where}: link {value!r} is not http(s) or mailto"
    if parts.scheme != "mailto":
        assert parts.netloc and not re.search(r"[\s\"<>`\\{}|^]", value), f"{where}: {value!r}"


def assert_safe_css(css: str, where: str) -> None:
    squashed = re.sub(r"\s+|/\*.*?\*/|\\", "", css.lower())
    for bad in CSS_BAD:
        assert bad not in squashed, f"{where}: {bad} in {css[:200]!r}"


def assert_clean_text(text: str, where: str, *, newlines: bool) -> None:
    """No raw control character (C0, DEL, C1) and no Unicode line or paragraph separator; \n only where allowed."""
    allowed = {"\n"} if newlines else set()
    bad = sorted({f"U+{ord(ch):04X}" for ch in text if ch not in allowed and (unicodedata.category(ch) in ("Cc", "Zl", "Zp"))})
    assert not bad, f"{where}: control characters {bad}"


# --- the hostile feeds ---------------------------------------------------------------------------------------------


def keyword(kind: str, index: int) -> str:
    return KINDS[kind][index % 2]


def title_of(kind: str, index: int, text: str) -> str:
    return f"{keyword(kind, index).capitalize()} study {index}: {text}"


def rss_feed(published: dt.datetime) -> str:
    items = []
    for index, text in enumerate(ALL_TEXTS):
        link = HOSTILE_LINKS[index].replace("{kind}", "rss") if index < len(HOSTILE_LINKS) else text
        items.append(
            f"<item><title>{escape(title_of('rss', index, text))}</title><link>{escape(link)}</link>"
            f'<guid isPermaLink="false">urn:hostile:rss:{index}</guid>'
            f"<description>{escape(f'<p>{text}</p><p>Abstract: {text}</p>')}</description>"
            f"<dc:creator>{escape(text)}</dc:creator><pubDate>{published:%a, %d %b %Y %H:%M:%S} +0000</pubDate></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        "<title>hostile rss</title><link>https://feeds.example.org/</link><description>x</description>"
        + "".join(items) + "</channel></rss>"
    )


def xhtml(text: str) -> str:
    """The payload parsed as HTML and written back as XHTML: real <script>, <svg>, on* attributes inside the feed."""
    div = lxml.html.fragment_fromstring(text, create_parent="div")
    for el in div.iter():
        if isinstance(el.tag, str) and not re.fullmatch(r"[A-Za-z_][\w.-]*", el.tag):  # "something:script", "scr<script"
            el.tag = re.sub(r"[^\w.-]", "-", el.tag).lstrip("-.0123456789") or "x"
        for name in [name for name in el.attrib if ":" in name or not re.fullmatch(r"[A-Za-z_][\w.-]*", name)]:
            value = el.attrib.pop(name)
            if ":" in name and re.fullmatch(r"[A-Za-z_][\w.-]*:[A-Za-z_][\w.-]*", name):
                el.set(name.split(":")[1], value)
    inner = lxml.etree.tostring(div, encoding="unicode", method="xml")
    return re.sub(r"^<div>|</div>$|^<div/>$", "", inner)


def atom_feed(kind: str, published: dt.datetime) -> str:
    entries = []
    for index, text in enumerate(ALL_TEXTS):
        title = title_of(kind, index, text)
        link = HOSTILE_LINKS[index].replace("{kind}", kind) if index < len(HOSTILE_LINKS) else text
        if kind == "xhtml":
            xmlns = 'xmlns="http://www.w3.org/1999/xhtml"'
            title_xml = f'<title type="xhtml"><div {xmlns}>{xhtml(title)}</div></title>'
            content = f'<content type="xhtml"><div {xmlns}>{xhtml(text)}<p>Abstract: {xhtml(text)}</p></div></content>'
        else:
            title_xml = f'<title type="html">{escape(title)}</title>'
            content = f'<content type="html">{escape(f"<p>{text}</p>")}</content>'
        entries.append(
            f"<entry>{title_xml}<id>urn:hostile:{kind}:{index}</id><updated>{published:%Y-%m-%dT%H:%M:%SZ}</updated>"
            f'<link rel="alternate" href={quoteattr(link)}/><link rel="related" type="application/pdf" href={quoteattr(text)}/>'
            f"<author><name>{escape(text)}</name></author>{content}</entry>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom" xmlns:xlink="http://www.w3.org/1999/xlink">'
        f"<title>hostile {kind}</title><id>urn:hostile:{kind}</id><updated>{published:%Y-%m-%dT%H:%M:%SZ}</updated>"
        + "".join(entries) + "</feed>"
    )


def json_feed(published: dt.datetime) -> str:
    items = []
    for index, text in enumerate(ALL_TEXTS + [CONTROL]):
        title = title_of("json", index, text)
        paper = {
            "id": f"2611.{index + 90000:05d}", "title": title, "summary": f"{text} Abstract: {text}",
            "authors": [{"name": text}, {"name": CONTROL}], "publishedAt": published.isoformat(), "upvotes": 3,
        }
        items.append({"paper": paper, "title": title, "publishedAt": published.isoformat()})
    return json.dumps(items)


def hostile_deployment(root: Path, *, published: dt.datetime) -> Deployment:
    feeds = root / "feeds"
    feeds.mkdir()
    (feeds / "hostile.rss.xml").write_text(rss_feed(published), encoding="utf-8")
    (feeds / "hostile.atom.xml").write_text(atom_feed("atom", published), encoding="utf-8")
    (feeds / "hostile.xhtml.xml").write_text(atom_feed("xhtml", published), encoding="utf-8")
    (feeds / "hostile.json").write_text(json_feed(published), encoding="utf-8")
    deployment = Deployment(root)
    deployment.header += f'title = "Daily Papers"\nsender = "{SENDER}"\nbase_url = "{BASE_URL}"\n'
    # every payload must reach an email: a long payload dilutes its title's one keyword below the default threshold
    deployment.extra = f'\n[web]\nsecret_env = "{SECRET_ENV}"\n\n[ranking]\nmin_score = 0.001\n'
    for kind, file in [("rss", "hostile.rss.xml"), ("atom", "hostile.atom.xml"), ("xhtml", "hostile.xhtml.xml"), ("json", "hostile.json")]:
        deployment.add_feed(kind, feeds / file)
    for kind, words in KINDS.items():
        for word in words:
            deployment.add_subscriber(f"{kind}-{word}", f"""
                email = "{word}@example.org"
                name = "Reader {word}"
                timezone = "UTC"
                max_items = 100

                [[topics]]
                name = "{word.capitalize()}"
                keywords = ["{word}"]
            """)
    return deployment


def expected_picks(kind: str, word: str) -> int:
    count = len(ALL_TEXTS) + (1 if kind == "json" else 0)
    first = KINDS[kind].index(word)
    return len(range(first, count, 2))


# --- one real run ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    config: Config
    previews: dict[str, tuple[str, str, str]]  # subscriber id -> (subject, html, text) from pipeline.preview before sending
    messages: dict[str, tuple[EmailMessage, bytes]]  # subscriber id -> delivered message


def delivered(path: Path) -> dict[str, tuple[EmailMessage, bytes]]:
    box = mailbox.Maildir(path, create=False)
    found = {}
    for key in box.iterkeys():
        raw = box.get_bytes(key)
        message = email.message_from_bytes(raw, policy=policy.default)
        found[message["To"].addresses[0].addr_spec] = (message, raw)
    return found


def body_parts(message: EmailMessage) -> tuple[str, str]:
    html, text = (message.get_body((kind,)).get_content() for kind in ("html", "plain"))
    return html.replace("\r\n", "\n"), text.replace("\r\n", "\n")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    deployment = hostile_deployment(tmp_path_factory.mktemp("hostile"), published=NOON - dt.timedelta(hours=6))
    config = deployment.config()
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SECRET_ENV, SECRET)
        report = pipeline.ingest_feeds(config, clock=fixed_clock(NOON))
        assert all(feed.error is None for feed in report.feeds), report
        subscribers = pipeline.subscribers_of(config).subscribers
        previews = {}
        for subscriber in subscribers:
            shown = pipeline.preview(config, subscriber.id, clock=fixed_clock(NOON))
            previews[subscriber.id] = (shown.subject, shown.html, shown.text)
        digests = pipeline.run_digests(config, clock=fixed_clock(NOON))
        assert {o.status for o in digests.digests} == {"sent"}, digests
        by_address = delivered(config.maildir)
        messages = {s.id: by_address[s.email] for s in subscribers}
        yield Run(config, previews, messages)


def email_checks(html: str, where: str) -> lxml.html.HtmlElement:
    return inert(html, where, tags=EMAIL_TAGS, attrs=EMAIL_ATTRS, own_styles=2)


# === point 2: active content never survives ===========================================================================


def test_payload_list_is_a_published_one_of_50_to_200() -> None:
    header = PAYLOAD_FILE.read_text(encoding="utf-8").splitlines()[:3]
    assert "swisskyrepo/PayloadsAllTheThings" in header[1] and "MIT" in header[1]
    assert "OWASP/CheatSheetSeries" in header[2] and "CC BY-SA 4.0" in header[2]
    assert 50 <= len(PAYLOADS) <= 200 and len(set(PAYLOADS)) == len(PAYLOADS)


def test_every_hostile_entry_is_picked_and_sent(run: Run) -> None:
    """The checks below are only worth something if every payload reached an email: each reader got all of theirs."""
    for kind, words in KINDS.items():
        for word in words:
            html, _ = body_parts(run.messages[f"{kind}-{word}"][0])
            titles = lxml.html.document_fromstring(html).find_class("paper-title")
            assert len(titles) == expected_picks(kind, word), f"{kind}-{word}: {len(titles)} papers"


def test_emails_carry_no_active_content(run: Run) -> None:
    """No script/style/iframe/object/embed/svg/math/form/base/meta refresh, no on*, links only http(s)/mailto, no CSS tricks."""
    for subscriber, (message, _) in run.messages.items():
        html, text = body_parts(message)
        email_checks(html, f"email to {subscriber}")
        assert_clean_text(text, f"text part to {subscriber}", newlines=True)
        assert_clean_text(str(message["Subject"]), f"Subject to {subscriber}", newlines=False)


def test_pipeline_preview_carries_no_active_content(run: Run) -> None:
    for subscriber, (subject, html, text) in run.previews.items():
        email_checks(html, f"preview of {subscriber}")
        assert_clean_text(text, f"preview text of {subscriber}", newlines=True)
        assert_clean_text(subject, f"preview subject of {subscriber}", newlines=False)


def test_plain_text_feed_fields_are_shown_as_text_not_dropped(run: Run) -> None:
    """daily-papers JSON fields are plain text: a payload is shown character for character, escaped, in the HTML."""
    for word in KINDS["json"]:
        html, text = body_parts(run.messages[f"json-{word}"][0])
        shown = {" ".join(h3.text_content().split()) for h3 in lxml.html.document_fromstring(html).find_class("paper-title")}
        for index, payload in enumerate(ALL_TEXTS):
            if keyword("json", index) == word:
                title = ingest.readable_text(title_of("json", index, payload), is_html=False)  # LaTeX "\\>" is a space
                assert any(line.endswith(title) for line in shown), f"{title!r} not shown as text"
                assert " ".join(title.split()) in " ".join(text.split())


def test_links_fall_back_to_safe_ones_and_never_carry_a_payload(run: Run) -> None:
    """An http(s) link that tries to close its attribute stays one attribute value; a non-http link is dropped."""
    html, _ = body_parts(run.messages["rss-zebrafish"][0])
    hrefs = [a.get("href") for a in lxml.html.document_fromstring(html).iter("a")]
    hostile = {href for href in hrefs if href.startswith(("http://example.org/rss/", "https://example.org/rss/"))}
    assert len(hostile) == 2, hrefs  # entries 0 and 2: one attribute value each, whatever they hold
    for href in hrefs:
        assert_safe_url(href, "rss-zebrafish")


def test_preview_command_writes_an_inert_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`newsletter preview ID --out FILE` and `--text` (it reads the real clock, so the feed is dated from it)."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    deployment = hostile_deployment(tmp_path, published=now - dt.timedelta(hours=1))
    config = deployment.config()
    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert all(feed.error is None for feed in pipeline.ingest_feeds(config).feeds)
    runner = CliRunner()
    for subscriber in ("xhtml-narwhal", "json-quokka"):
        out = tmp_path / f"{subscriber}.html"
        result = runner.invoke(cli_main, ["--config", str(config.path), "preview", subscriber, "--out", str(out)])
        assert result.exit_code == 0, result.output
        doc = email_checks(out.read_text(encoding="utf-8"), f"newsletter preview {subscriber}")
        assert len(doc.find_class("paper-title")) == expected_picks(subscriber.split("-")[0], subscriber.split("-")[1])
        result = runner.invoke(cli_main, ["--config", str(config.path), "preview", subscriber, "--text"])
        assert result.exit_code == 0, result.output
        assert_clean_text(result.output, f"newsletter preview {subscriber} --text", newlines=True)


def test_preview_server_pages_escape_feed_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The `preview --serve` app: index, viewer (desktop/mobile/dark), the email itself and its text, through Flask."""
    config = hostile_deployment(tmp_path, published=NOON - dt.timedelta(hours=6)).config()
    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert all(feed.error is None for feed in pipeline.ingest_feeds(config, clock=fixed_clock(NOON)).feeds)
    if True:
        client = preview_app.create_app(config.path, clock=fixed_clock(NOON)).test_client()
        page = client.get("/")
        assert page.status_code == 200
        doc = inert(page.get_data(as_text=True), "preview index", tags=PREVIEW_TAGS, attrs=PREVIEW_ATTRS, own_scripts=1, own_styles=1, relative_ok=True)
        assert len(doc.findall(".//tbody/tr")) == sum(len(words) for words in KINDS.values())
        for kind, words in KINDS.items():
            subscriber = f"{kind}-{words[0]}"
            for view in ("desktop", "mobile", "dark"):
                page = client.get(f"/s/{subscriber}?view={view}")
                assert page.status_code == 200, page.get_data(as_text=True)[:500]
                doc = inert(
                    page.get_data(as_text=True), f"viewer {subscriber} {view}", tags=PREVIEW_TAGS, attrs=PREVIEW_ATTRS,
                    own_scripts=1, own_styles=1, own_iframes=1, relative_ok=True,
                )
                (iframe,) = doc.iter("iframe")
                assert iframe.get("src") == f"/s/{subscriber}/email.html?view={view}"
                assert f"{words[0].capitalize()} study" in doc.find(".//pre").text_content()  # the text part is shown, as text
                page = client.get(f"/s/{subscriber}/email.html?view={view}")
                assert page.status_code == 200 and page.mimetype == "text/html"
                email_checks(page.get_data(as_text=True), f"email.html {subscriber} {view}")
            page = client.get(f"/s/{subscriber}/email.txt")
            assert page.mimetype == "text/plain"
            assert_clean_text(page.get_data(as_text=True), f"email.txt {subscriber}", newlines=True)


def test_web_app_pages_escape_paper_titles(run: Run) -> None:
    """The feedback pages name the paper: every feedback link of a hostile digest, GET (confirm) and POST (done)."""
    html, _ = body_parts(run.messages["json-quokka"][0])
    feedback = [a.get("href") for a in lxml.html.document_fromstring(html).iter("a") if "/feedback/" in (a.get("href") or "")]
    assert len(feedback) == 2 * expected_picks("json", "quokka")
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SECRET_ENV, SECRET)
        client = web.create_app(run.config.path, clock=fixed_clock(NOON)).test_client()
        for url in feedback[::2] + feedback[-1:]:
            path = url.removeprefix(BASE_URL)
            page = client.get(path)
            assert page.status_code == 200, page.get_data(as_text=True)[:300]
            doc = inert(page.get_data(as_text=True), f"GET {path[:30]}", tags=WEB_TAGS, attrs=WEB_ATTRS, own_scripts=1, own_styles=0)
            assert doc.get_element_by_id("paper").text_content().startswith("Quokka study")
            page = client.post(path)
            assert page.status_code == 200
            inert(page.get_data(as_text=True), f"POST {path[:30]}", tags=WEB_TAGS, attrs=WEB_ATTRS, own_styles=0)


def test_the_checks_catch_what_they_look_for() -> None:
    """The checker itself: each kind of active content it must refuse, in an otherwise clean email."""
    clean = '<html><head><style>.a{color:red}</style><style>.b{}</style></head><body><p class="a">x</p><a href="https://e.org/">y</a></body></html>'
    email_checks(clean, "clean")
    for bad in [
        "<script>alert(1)</script>", "<svg><g/></svg>", "<math><mi>x</mi></math>", '<p onclick="x">z</p>', '<a href="javascript:x">z</a>',
        '<a href="data:text/html,x">z</a>', '<p style="width:expression(alert(1))">z</p>', '<p style="background:url(x)">z</p>',
        '<iframe src="https://e.org"></iframe>', '<base href="https://e.org/">', '<meta http-equiv="refresh" content="0;url=https://e.org">',
        "<style>p{}</style>", '<a href="//evil.example/">z</a>', '<form action="https://e.org"></form>', '<object data="https://e.org/x"></object>',
    ]:
        with pytest.raises(AssertionError):
            email_checks(clean.replace("<p class", bad + "<p class"), bad)
    with pytest.raises(AssertionError):
        assert_clean_text("a\x1bb", "esc", newlines=True)
    with pytest.raises(AssertionError):
        assert_clean_text("a\u2028b", "ls", newlines=False)


# === point 3: no header injection ======================================================================================

# TOML escapes: CR/LF, NUL, ESC, NEL, the Unicode line and paragraph separators, and non-ASCII in every header source.
# config.toml and subscriber files refuse control characters and line breaks (tested below); what they accept still
# carries non-ASCII, quotes, commas, angle brackets, a fake encoded word and header-like text.
HOSTILE_TITLE = r"Päpers \"Bcc: evil@example.org\" =?utf-8?q?X-Evil=3A_1?= 論文 <&>, ; X-Evil: 1"
HOSTILE_SENDER_NAME = r"Zoë's Papers, Inc. (X-Evil: sender) =?utf-8?b?QmNjOiBldmls?="
HOSTILE_NAME = r"Zoë 李, \"Bcc: evil@example.org\" <evil2@example.org> =?utf-8?q?Bcc=3A_x?="
HOSTILE_TOPIC = r"Distillation: Bcc: evil@example.org — Ünïcode"
# ... and where they are refused, the reader is reported and gets nothing.
REFUSED_NAMES = [r"Ada\r\nBcc: evil@example.org", r"Ada\u2028Bcc: evil@example.org", r"Ada\u0085X", r"Ada\u0000", r"Ada\u001b[31m"]
EXPECTED_HEADERS = [
    "from", "to", "subject", "message-id", "date", "list-id", "list-unsubscribe", "list-unsubscribe-post", "auto-submitted",
    "mime-version", "content-type",
]


def toml_unescape(text: str) -> str:
    return json.loads(f'"{text}"')


def printable_line(text: str) -> str:
    """What a header may show of ``text``: no control character, separators as spaces, whitespace collapsed."""
    kept = "".join(" " if unicodedata.category(ch) in ("Zl", "Zp") or ch in "\r\n\t\x0b\x0c\x1c\x1d\x1e\x1f\x85" else ch
                   for ch in text if ch in "\r\n\t\x0b\x0c\x1c\x1d\x1e\x1f\x85" or unicodedata.category(ch) != "Cc")
    return " ".join(kept.split())


def header_lines(raw: bytes) -> list[tuple[str, str]]:
    """(name, unfolded raw value) of every header field on the wire, in order."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in head.replace(b"\r\n", b""), "a bare LF in the header"
    unfolded = re.sub(rb"\r\n[ \t]", b" ", head)
    fields = []
    for line in unfolded.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        assert colon and re.fullmatch(rb"[!-9;-~]+", name), f"not a header field: {line!r}"
        fields.append((name.decode("ascii"), value.decode("ascii").strip()))
    return fields


@pytest.fixture(scope="module")
def injected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, dict[str, tuple[EmailMessage, bytes]], object]:
    root = tmp_path_factory.mktemp("headers")
    published = NOON - dt.timedelta(hours=6)
    item = (
        f"<item><title>{escape('Distillation of teachers — Ünïcode: a study')}</title><link>https://example.org/paper/1</link>"
        f"<description>Knowledge distillation.</description><pubDate>{published:%a, %d %b %Y %H:%M:%S} +0000</pubDate></item>"
    )
    (root / "feed.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>t</title><link>https://example.org/</link>'
        f"<description>x</description>{item}</channel></rss>", encoding="utf-8",
    )
    deployment = Deployment(root)
    deployment.header += f'title = "{HOSTILE_TITLE}"\nsender = "\\"{HOSTILE_SENDER_NAME}\\" <papers@example.org>"\nbase_url = "{BASE_URL}"\n'
    deployment.extra = f'\n[web]\nsecret_env = "{SECRET_ENV}"\n'
    deployment.add_feed("feed", root / "feed.xml")
    topic = f'[[topics]]\nname = "{HOSTILE_TOPIC}"\nkeywords = ["distillation"]\n'
    deployment.add_subscriber("zoe", f'email = "zoe@example.org"\nname = "{HOSTILE_NAME}"\ntimezone = "UTC"\n\n{topic}')
    deployment.add_subscriber("idn", f'email = "ana@bücher.example"\nname = "Ana Bücher"\ntimezone = "UTC"\n\n{topic}')
    deployment.add_subscriber("crlf", f'email = "mallory@example.org\\r\\nBcc: victim@example.org"\nname = "M"\ntimezone = "UTC"\n\n{topic}')
    deployment.add_subscriber("utf8", f'email = "zoë@example.org"\nname = "Zoë"\ntimezone = "UTC"\n\n{topic}')
    for number, name in enumerate(REFUSED_NAMES):
        deployment.add_subscriber(f"refused{number}", f'email = "r{number}@example.org"\nname = "{name}"\ntimezone = "UTC"\n\n{topic}')
        bad_topic = f'[[topics]]\nname = "{name}"\nkeywords = ["distillation"]\n'
        deployment.add_subscriber(f"topic{number}", f'email = "t{number}@example.org"\nname = "T"\ntimezone = "UTC"\n\n{bad_topic}')
    config = deployment.config()
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SECRET_ENV, SECRET)
        assert all(feed.error is None for feed in pipeline.ingest_feeds(config, clock=fixed_clock(NOON)).feeds)
        report = pipeline.run_digests(config, clock=fixed_clock(NOON))
    return config, delivered(config.maildir), report


def test_bad_addresses_are_refused_and_never_reach_a_header(injected) -> None:
    """An address with CR/LF, or with a non-ASCII mailbox name (SMTPUTF8 is not used), is a reported problem; no mail."""
    _, messages, report = injected
    assert {"ana@xn--bcher-kva.example", "zoe@example.org"} <= set(messages)  # an IDN domain goes out in its IDNA form
    problems = " ".join(report.problems)
    assert "crlf.toml" in problems and "utf8.toml" in problems, report.problems
    for number in range(len(REFUSED_NAMES)):
        # a name or topic with a line break or control character: refused and reported by the subscriber checks, or
        # (without them) sent with clean headers, which the two tests below check for every message
        assert f"refused{number}.toml" in problems or f"r{number}@example.org" in messages, (number, report.problems)
        assert f"topic{number}.toml" in problems or f"t{number}@example.org" in messages, (number, report.problems)
    assert len(messages) == 2 + sum(f"{kind}{n}.toml" not in problems for kind in ("refused", "topic") for n in range(len(REFUSED_NAMES)))
    for _, raw in messages.values():
        assert b"victim" not in raw and b"mallory" not in raw


def test_every_header_is_one_line_of_ascii_and_the_set_is_exact(injected) -> None:
    """CR/LF, NUL, ESC, BEL, NEL, U+2028/2029 in title, sender name, reader name and topic add or split no header."""
    _, messages, _ = injected
    for address, (message, raw) in messages.items():
        fields = header_lines(raw)
        assert [name.lower() for name, _ in fields] == EXPECTED_HEADERS, f"{address}: {[name for name, _ in fields]}"
        for name, value in fields:
            assert value.isascii() and not any(unicodedata.category(ch) == "Cc" for ch in value), f"{address} {name}: {value!r}"
        assert [a.addr_spec for a in message["To"].addresses] == [address]
        assert [a.addr_spec for a in message["From"].addresses] == ["papers@example.org"]
        assert message.get_all("Bcc") is None and message.get_all("Cc") is None and message.get_all("X-Evil") is None
        assert [part.get_content_type() for part in message.walk()] == ["multipart/alternative", "text/plain", "text/html"]


def rfc2047(value: str) -> str:
    """A raw header value decoded the way RFC 2047 says (adjacent encoded words join without their whitespace)."""
    return str(make_header(decode_header(value)))


def mailbox_of(decoded: str) -> tuple[str, str]:
    """(display name, address) of a decoded 'name <address>' (the name is one encoded word run, unquoted once decoded)."""
    name, _, address = decoded.rpartition(" <")
    if len(name) > 1 and name[0] == name[-1] == '"':  # an ASCII name with specials is a quoted string
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    return name, address.removesuffix(">")


def shown(text: str) -> str:
    """A literal "=?...?=" is kept as text with a WORD JOINER after "=", so no mail program decodes it."""
    return text.replace("=?", "=\u2060?")


def test_decoded_headers_are_the_values_on_one_line_encoded_per_rfc_2047(injected) -> None:
    """Non-ASCII display names, subject and List-Id phrase are RFC 2047 encoded words (no SMTPUTF8 / RFC 6532 here)."""
    config, messages, _ = injected
    title = shown(toml_unescape(HOSTILE_TITLE))
    topic = toml_unescape(HOSTILE_TOPIC)
    assert config.title == toml_unescape(HOSTILE_TITLE)  # the config keeps what the operator wrote
    names = {"zoe@example.org": shown(toml_unescape(HOSTILE_NAME)), "ana@xn--bcher-kva.example": "Ana Bücher"}
    names |= {f"r{n}@example.org": printable_line(toml_unescape(name)) for n, name in enumerate(REFUSED_NAMES)}
    topics = {f"t{n}@example.org": printable_line(toml_unescape(name)) for n, name in enumerate(REFUSED_NAMES)}
    for address, (message, raw) in messages.items():
        name = names.get(address, "T")
        fields = {n.lower(): v for n, v in header_lines(raw)}
        assert rfc2047(fields["subject"]) == f"{title} — 1 pick: {_in_sentence(topics.get(address, topic))}"
        assert fields["subject"].lower().startswith("=?utf-8?")
        to_name, to_address = mailbox_of(rfc2047(fields["to"]))
        assert (to_name, to_address) == (name, address) and message["To"].addresses[0].addr_spec == address
        assert len(message["To"].addresses) == 1 and len(message["From"].addresses) == 1
        assert mailbox_of(rfc2047(fields["from"])) == (shown(toml_unescape(HOSTILE_SENDER_NAME)), "papers@example.org")
        assert fields["from"].lower().startswith("=?utf-8?") and fields["from"].endswith(" <papers@example.org>")
        assert fields["to"].endswith(f" <{address}>") and (name.isascii() or "=?utf-8?" in fields["to"].lower())
        assert rfc2047(fields["list-id"]) == f"{title} <{pipeline.list_slug(config.title)}.example.org>"
        assert fields["list-unsubscribe-post"] == "List-Unsubscribe=One-Click" and fields["auto-submitted"] == "auto-generated"
        unsubscribe = re.findall(r"<([^<>]+)>", fields["list-unsubscribe"])
        assert unsubscribe[0].startswith(f"{BASE_URL}/unsubscribe/") and unsubscribe[1].startswith("mailto:papers@example.org?subject=")
        html, text = body_parts(message)
        inert(html, address, tags=EMAIL_TAGS, attrs=EMAIL_ATTRS, own_styles=2)
        assert_clean_text(text, address, newlines=True)
        if address in ("zoe@example.org", "ana@xn--bcher-kva.example"):
            assert f"Hello {name.replace(chr(0x2060), '')}" in " ".join(text.split())  # the body shows the name as written


@pytest.mark.parametrize("key", ["title", "sender"])
def test_title_and_sender_with_cr_lf_are_refused(tmp_path: Path, key: str) -> None:
    from newsletter.errors import ConfigError

    deployment = Deployment(tmp_path)
    value = {"title": "Papers\\r\\nBcc: evil@example.org", "sender": "Papers\\nBcc: evil@example.org <papers@example.org>"}[key]
    deployment.header += f'{key} = "{value}"\n'
    with pytest.raises(ConfigError, match=f"newsletter.{key} must be a single line"):
        deployment.config()


# --- below the config checks: build_message and Renderer on their own ----------------------------------------------------

CONTROLS = ["\r\n", "\n", "\r", "\x00", "\x07", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"]


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: f"U+{ord(c[-1]):04X}")
def test_build_message_keeps_every_value_on_its_own_header(control: str) -> None:
    """Whatever reaches build_message (the config checks are one layer; this is the other), headers stay exactly these."""
    from newsletter.deliver import Envelope, build_message
    from newsletter.models import RenderedEmail

    evil = f"{control}Bcc: evil@example.org{control}{control}X-Evil: 1"
    envelope = Envelope(
        sender=f'"Päpers{evil}" <papers@example.org>', recipient="zoe@example.org", recipient_name=f"Zoë{evil}",
        list_id=f"Päpers{evil} <papers.example.org>", unsubscribe_mailto="mailto:papers@example.org?subject=unsubscribe%20zoe",
        unsubscribe_https=f"{BASE_URL}/unsubscribe/abc",
    )
    _, raw = build_message(RenderedEmail(subject=f"Daily — 論文{evil}", html="<p>x</p>", text="x\n"), envelope=envelope, now=NOON)
    fields = header_lines(raw)
    assert [name.lower() for name, _ in fields] == EXPECTED_HEADERS
    for name, value in fields:
        assert value.isascii() and not any(unicodedata.category(ch) == "Cc" for ch in value), (name, value)
    decoded = {name.lower(): rfc2047(value) for name, value in fields}
    tail = printable_line(evil)
    assert decoded["subject"] == printable_line(f"Daily — 論文{evil}") and tail.endswith("X-Evil: 1")
    assert decoded["to"] == f"{printable_line('Zoë' + evil)} <zoe@example.org>"
    assert decoded["from"] == f"{printable_line('Päpers' + evil)} <papers@example.org>"
    assert decoded["list-id"] == f"{printable_line('Päpers' + evil)} <papers.example.org>"
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message.get_all("Bcc") is None and message.get_all("X-Evil") is None
    assert [a.addr_spec for a in message["To"].addresses] == ["zoe@example.org"]


def test_renderer_prints_no_control_character_whatever_the_entry_holds() -> None:
    """An Entry that did not come through ingest (or a future field ingest forgets) still renders printable."""
    from newsletter.links import digest_links
    from newsletter.models import Digest, Entry, Reason, ScoredEntry, Subscriber, Topic
    from newsletter.render import Branding, Renderer

    evil = "".join(CONTROLS) + "<script>alert(1)</script>"
    entry = Entry(
        id="arxiv:2611.00001", title=f"Distillation {evil}", link=f"https://example.org/a b{evil}", summary=f"Abstract {evil} distillation.",
        authors=(f"Ada {evil}", "Bob"), pdf_url=f"javascript:alert(1){evil}",
    )
    topic = Topic(f"Distillation {evil}", ("distillation",))
    reader = Subscriber(id="zoe", email="zoe@example.org", name=f"Zoë {evil}", timezone="UTC", send_at=dt.time(7), topics=(topic,))
    item = ScoredEntry(entry, 3.0, (Reason("topic", topic.name, ("distillation",)),), ("distillation",))
    digest = Digest(subscriber=reader, items=(item,), considered=5, period="2026-11-26", created_at=NOON)
    links = digest_links(subscriber_id="zoe", sender=SENDER, base_url=None, signer=None, issued=NOON.date())
    rendered = Renderer(REPO / "templates").render(digest, branding=Branding(title=f"Daily {evil}", sender=SENDER), links=links)
    email_checks(rendered.html, "Renderer html")
    assert_clean_text(rendered.subject, "Renderer subject", newlines=False)
    assert_clean_text(rendered.text, "Renderer text", newlines=True)
    hrefs = [a.get("href") for a in lxml.html.document_fromstring(rendered.html).iter("a")]
    assert hrefs[0].startswith("https://example.org/a%20b") and "https://arxiv.org/pdf/2611.00001" in hrefs
