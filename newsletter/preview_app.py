"""`newsletter preview --serve`: a local page to look at every subscriber's next digest.

A Flask app served by waitress on 127.0.0.1. Every request reads the
deployment afresh (config.toml, subscriber files, templates), so an edit
shows on the next load; the pages poll ``/_version`` (a fingerprint of those
files and the database) and reload themselves when it changes. Problems —
a template's syntax error with its file and line, a bad subscriber file —
are shown on the page instead of stopping the server. Nothing is sent or
recorded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from flask import Flask, Response, abort, render_template_string, request

from . import pipeline
from .clock import utc_now
from .config import Config, load_config
from .errors import NewsletterError

Clock = Callable[[], dt.datetime]
# iframe widths: a desktop reading pane is wider than the 600px column (the phone rules start at 620px).
VIEWS = {"desktop": 680, "mobile": 375, "dark": 680}
VIEW_LABELS = {"desktop": "desktop (600px)", "mobile": "mobile (375px)", "dark": "dark (600px)"}
_DARK_QUERY = re.compile(r"@media\s*\(\s*prefers-color-scheme\s*:\s*dark\s*\)")


def create_app(config_path: Path | None, *, clock: Clock = utc_now) -> Flask:
    app = Flask("newsletter.preview")

    def config() -> Config:
        return load_config(config_path)

    def version() -> str:
        """Taken before a page reads any file, so an edit made while it is built still triggers a reload."""
        try:
            return fingerprint(config())
        except NewsletterError as exc:  # a broken config.toml is a state too: reload when it changes
            return hashlib.sha1(str(exc).encode()).hexdigest()

    @app.get("/")
    def index() -> Response | str:
        seen = version()
        try:
            cfg = config()
            upcoming, problems = pipeline.next_digests(cfg, clock=clock)
        except NewsletterError as exc:
            return _problem_page(str(exc), version=seen)
        return render_template_string(
            _INDEX, title=cfg.title, upcoming=upcoming, problems=problems, now=clock(), when=_when, version=seen, labels=VIEW_LABELS,
        )

    @app.get("/s/<subscriber_id>")
    def viewer(subscriber_id: str) -> Response | str:
        view = request.args.get("view", "desktop")
        if view not in VIEWS:
            abort(404)
        seen = version()
        try:
            email = pipeline.preview(config(), subscriber_id, clock=clock)
        except NewsletterError as exc:
            return _problem_page(str(exc), subscriber_id=subscriber_id, version=seen)
        return render_template_string(
            _VIEWER, subscriber_id=subscriber_id, subject=email.subject, view=view, labels=VIEW_LABELS, width=VIEWS[view],
            text=email.text, size=len(email.html.encode()), version=seen,
        )

    @app.get("/s/<subscriber_id>/email.html")
    def email_html(subscriber_id: str) -> Response:
        try:
            html = pipeline.preview(config(), subscriber_id, clock=clock).html
        except NewsletterError as exc:
            return Response(render_template_string(_PROBLEM, message=str(exc), version=None), status=500)
        if request.args.get("view") == "dark":
            html = force_dark(html)
        return Response(html, mimetype="text/html")

    @app.get("/s/<subscriber_id>/email.txt")
    def email_text(subscriber_id: str) -> Response:
        try:
            text = pipeline.preview(config(), subscriber_id, clock=clock).text
        except NewsletterError as exc:
            return Response(str(exc) + "\n", status=500, mimetype="text/plain")
        return Response(text, mimetype="text/plain")

    @app.get("/_version")
    def current_version() -> dict[str, str]:
        return {"version": version()}

    return app


def force_dark(html: str) -> str:
    """The email as a client in dark mode shows it: its prefers-color-scheme rules applied unconditionally."""
    return _DARK_QUERY.sub("@media all", html)


def fingerprint(config: Config) -> str:
    """Changes whenever config.toml, a template, a subscriber file or the database changes."""
    files = [config.path, config.database, *sorted(config.templates.rglob("*")), *sorted(config.subscribers.glob("*.toml"))]
    digest = hashlib.sha1()
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        digest.update(f"{path}:{stat.st_mtime_ns}:{stat.st_size};".encode())
    return digest.hexdigest()


def _when(moment: dt.datetime, now: dt.datetime) -> str:
    """"due now", or "Thu 27 Nov 07:30 (in 12 h)" in the reader's own zone."""
    if moment <= now:
        return "due now"
    hours = (moment - now).total_seconds() / 3600
    ahead = f"in {round(hours * 60)} min" if hours < 1 else f"in {hours:.0f} h" if hours < 48 else f"in {hours / 24:.0f} days"
    return f"{moment:%a} {moment.day} {moment:%b %H:%M} ({ahead})"


def _problem_page(message: str, *, version: str, subscriber_id: str | None = None) -> Response:
    return Response(render_template_string(_PROBLEM, message=message, subscriber_id=subscriber_id, version=version), status=500)


_RELOAD = """
<script>
  // Reload when a template, subscriber file, config.toml or the database changes.
  (function () {
    let seen = {{ version | tojson }};  // the state this page was built from (null: learn it from the first poll)
    async function poll() {
      try {
        const response = await fetch("/_version", {cache: "no-store"});
        const {version} = await response.json();
        if (seen !== null && version !== seen) { location.reload(); return; }
        seen = version;
      } catch (error) { /* the server is restarting: try again */ }
      setTimeout(poll, 1000);
    }
    poll();
  })();
</script>
"""

_STYLE = """
<style>
  body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }
  header { padding: 12px 20px; background: #24292f; color: #fff; display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
  header a { color: #fff; }
  main { padding: 16px 20px; }
  table.list { border-collapse: collapse; background: #fff; }
  table.list th, table.list td { text-align: left; padding: 6px 12px; border-bottom: 1px solid #d0d7de; vertical-align: top; }
  .problem { background: #ffebe9; color: #82071e; border: 1px solid #ff8182; padding: 10px 14px; white-space: pre-wrap; font-family: Menlo, Consolas, monospace; }
  nav a { margin-right: 10px; color: #fff; }
  nav a[aria-current] { font-weight: 700; text-decoration: none; border-bottom: 2px solid #fff; }
  iframe { border: 1px solid #d0d7de; background: #fff; height: 85vh; display: block; }
  pre.text { background: #fff; border: 1px solid #d0d7de; padding: 12px; max-width: 80ch; overflow-x: auto; }
</style>
"""

_INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} — preview</title>""" + _STYLE + """</head>
<body>
<header><strong>{{ title }} — preview</strong><span>nothing here is sent or recorded</span></header>
<main>
{% for problem in problems %}<p class="problem">{{ problem }}</p>{% endfor %}
<table class="list">
<thead><tr><th>Subscriber</th><th>Next digest</th><th>Subject</th><th>Picks</th><th>Views</th></tr></thead>
<tbody>
{% for next in upcoming %}
<tr id="subscriber-{{ next.subscriber.id }}">
  <td><a href="/s/{{ next.subscriber.id }}">{{ next.subscriber.name }}</a><br><small>{{ next.subscriber.email }}</small></td>
  <td>{% if next.unsubscribed %}<strong>unsubscribed</strong> — nothing is sent until <code>newsletter resubscribe {{ next.subscriber.id }}</code>{% else %}{{ when(next.send_at, now) }}{% endif %}<br><small>{{ next.subscriber.timezone }}, {{ next.subscriber.frequency }}{% if next.period_status %}; this period: {{ next.period_status }}{% endif %}</small></td>
  <td>{{ next.subject }}</td>
  <td>{{ next.picks }} of {{ next.considered }}</td>
  <td><a href="/s/{{ next.subscriber.id }}?view=desktop">desktop</a> · <a href="/s/{{ next.subscriber.id }}?view=mobile">mobile</a> · <a href="/s/{{ next.subscriber.id }}?view=dark">dark</a></td>
</tr>
{% else %}
<tr><td colspan="5">No subscribers yet: add a file to the subscribers folder.</td></tr>
{% endfor %}
</tbody></table>
</main>""" + _RELOAD + """</body></html>"""

_VIEWER = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ subject }} — preview</title>""" + _STYLE + """</head>
<body>
<header>
  <a href="/">← all subscribers</a>
  <strong id="subject">{{ subject }}</strong>
  <nav aria-label="views">
  {% for name, label in labels.items() %}<a href="?view={{ name }}"{% if name == view %} aria-current="page"{% endif %}>{{ label }}</a>{% endfor %}
  </nav>
  <span>{{ (size / 1024) | round(1) }} KB of HTML</span>
</header>
<main>
<iframe id="email" title="the email, {{ view }} view" src="/s/{{ subscriber_id }}/email.html?view={{ view }}" style="width: {{ width }}px"></iframe>
<h2>Plain-text part</h2>
<pre class="text">{{ text }}</pre>
</main>""" + _RELOAD + """</body></html>"""

_PROBLEM = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>preview: a problem</title>""" + _STYLE + """</head>
<body>
<header><a href="/">← all subscribers</a><strong>Cannot render{% if subscriber_id %} {{ subscriber_id }}'s digest{% endif %}</strong></header>
<main><p class="problem" id="problem">{{ message }}</p><p>Fix the file; this page reloads by itself.</p></main>""" + _RELOAD + """</body></html>"""


def serve(app: Flask, *, host: str, port: int) -> None:
    """Serve until interrupted (waitress: a production WSGI server, a few threads)."""
    import waitress  # imported here: only `preview --serve` needs it

    waitress.serve(app, host=host, port=port, threads=4, ident="newsletter-preview")
