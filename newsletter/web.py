"""`newsletter serve`: the small web app behind the email's links.

A Flask app served by waitress. Every link in an email carries a token signed
with the deployment's secret (links.py); the app reads it back through
actions.py, which checks it and records what the reader asked for:

- ``/unsubscribe/<token>``: a POST unsubscribes at once — the RFC 8058
  one-click target of the List-Unsubscribe header, which mail providers POST
  (``List-Unsubscribe=One-Click``) with no cookies and no page in between; the
  answer is a 200 page, never a redirect. A GET (the footer's link, opened in
  a browser) shows a page with a confirm button: a GET never changes anything.
- ``/feedback/<token>``: "more like this" / "not for me" on one paper. A GET
  names the paper and the action, with a button that POSTs; a tiny script
  submits it on load, so one click in the email records it, while link
  scanners that fetch the URL without running scripts change nothing. A POST
  records it (idempotent: the same click twice counts once, and the page says
  so).
- ``/healthz``: "ok", for a load balancer or a monitor.

An altered, expired or foreign token answers 400 with the reason and changes
nothing. Pages are plain inline-styled HTML (autoescaped), carry no cookies
and send no Referer (the token is a credential). config.toml is read afresh
for every request, like the preview page.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, Response, render_template_string, request
from werkzeug.exceptions import HTTPException

from . import actions, pipeline
from .clock import utc_now
from .config import Config, load_config
from .errors import ConfigError, LinkError, NewsletterError, StoreError
from .links import LESS, MORE, UNSUBSCRIBE

Clock = Callable[[], dt.datetime]
log = logging.getLogger("newsletter.web")

# Submits the feedback form on load. Its hash is the only script the Content-Security-Policy allows.
_AUTOSUBMIT = 'document.getElementById("act").submit();'
_AUTOSUBMIT_HASH = base64.b64encode(hashlib.sha256(_AUTOSUBMIT.encode()).digest()).decode()
_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{_AUTOSUBMIT_HASH}'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
}
_WHAT = {MORE: "More like this", LESS: "Not for me"}


def check_ready(config: Config) -> None:
    """ConfigError (one line) unless the links in emails can be served: base_url set and its secret in the environment."""
    if config.base_url is None:
        raise ConfigError(
            f"{config.path}: newsletter.base_url is not set, so emails carry no web links for `serve` to answer; "
            "set it to the address where this server is reachable"
        )
    pipeline.link_signer(config)  # raises the ConfigError naming the missing or short secret


def create_app(config_path: Path | None, *, clock: Clock = utc_now) -> Flask:
    """The app; raises ConfigError now if config.toml is broken or the links cannot be served."""
    first = load_config(config_path)
    check_ready(first)
    app = Flask("newsletter.web")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024  # a one-click POST is a few bytes
    app.config["NEWSLETTER_URL_PREFIX"] = urlsplit(first.base_url or "").path.rstrip("/")  # base_url may have a path

    def config() -> Config:
        return load_config(config_path)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.get("/unsubscribe/<token>")
    def unsubscribe_page(token: str) -> Response | str:
        cfg = config()
        action = _read(cfg, token, UNSUBSCRIBE, clock=clock)
        return render_template_string(_CONFIRM_UNSUBSCRIBE, title=cfg.title, name=action.subscriber_name)

    @app.post("/unsubscribe/<token>")
    def unsubscribe(token: str) -> Response | str:
        """RFC 8058 one-click (body ``List-Unsubscribe=One-Click``) or the confirm page's button: both unsubscribe."""
        cfg = config()
        _read(cfg, token, UNSUBSCRIBE, clock=clock)
        via = "one-click" if request.form.get("List-Unsubscribe") == "One-Click" else "web"
        done = actions.act_on_link(cfg, token, clock=clock, via=via)
        if done.changed:
            log.info("%s: unsubscribed (%s)", done.claim.subscriber_id, via)
        return render_template_string(
            _UNSUBSCRIBED, title=cfg.title, name=done.subscriber_name, changed=done.changed, contact=parseaddr(cfg.sender)[1],
        )

    @app.get("/feedback/<token>")
    def feedback_page(token: str) -> Response | str:
        action = _read(config(), token, MORE, LESS, clock=clock)
        return render_template_string(
            _CONFIRM_FEEDBACK, paper=action.entry_title, name=action.subscriber_name, kind=action.claim.action, what=_WHAT,
        )

    @app.post("/feedback/<token>")
    def feedback(token: str) -> Response | str:
        cfg = config()
        _read(cfg, token, MORE, LESS, clock=clock)
        done = actions.act_on_link(cfg, token, clock=clock)
        if done.changed:
            log.info("%s: %s on %s", done.claim.subscriber_id, done.claim.action, done.claim.entry_id)
        return render_template_string(
            _FEEDBACK_DONE, paper=done.entry_title, name=done.subscriber_name, kind=done.claim.action, changed=done.changed, what=_WHAT,
        )

    @app.errorhandler(LinkError)
    def bad_link(exc: LinkError) -> Response:
        message = str(exc)
        hint = "Nothing was changed. Use the links in your most recent email."
        return _page(400, "This link does not work", message[:1].upper() + message[1:], hint=hint)

    @app.errorhandler(NewsletterError)
    def broken(exc: NewsletterError) -> Response:
        log.error("cannot answer %s %s: %s", request.method, request.url_rule.rule if request.url_rule else "?", exc)  # not the token
        status = 503 if isinstance(exc, StoreError) else 500
        return _page(status, "Something went wrong on our side", "Nothing was changed; please try again later.")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        page = _page(exc.code or 500, exc.name, exc.description or "")
        page.headers.update((name, value) for name, value in exc.get_headers() if name.lower() != "content-type")  # Allow, ...
        return page

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.update(_HEADERS)
        return response

    return app


def _read(config: Config, token: str, *kinds: str, clock: Clock) -> actions.ReaderAction:
    """The checked link, and LinkError if it is valid but made for the other page (an unsubscribe token at /feedback)."""
    action = actions.read_link(config, token, clock=clock)
    if action.claim.action not in kinds:
        wanted = "an unsubscribe" if UNSUBSCRIBE in kinds else "a feedback"
        raise LinkError(f"this is not {wanted} link; use the link exactly as it is in the email")
    return action


def _page(status: int, heading: str, message: str, *, hint: str = "") -> Response:
    return Response(render_template_string(_MESSAGE, heading=heading, message=message, hint=hint, status=status), status=status)


_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex, nofollow">"""
_BODY = (
    '<body style="margin: 0; padding: 24px 16px; background: #f6f8fa; color: #1f2328; '
    'font-family: -apple-system, \'Segoe UI\', Roboto, Helvetica, Arial, sans-serif; font-size: 16px; line-height: 1.5;">\n'
    '<main style="max-width: 560px; margin: 0 auto; background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 20px 24px;">'
)
_END = "</main></body></html>"
_BUTTON = (
    'style="font: inherit; font-weight: 600; color: #fff; background: #0a58ca; border: 0; border-radius: 6px; '
    'padding: 10px 18px; cursor: pointer;"'
)
_H1 = 'style="font-size: 22px; margin: 0 0 12px 0;"'
_SMALL = 'style="color: #57606a; font-size: 14px;"'

_CONFIRM_UNSUBSCRIBE = _HEAD + """<title>Unsubscribe from {{ title }}</title></head>
""" + _BODY + """
<h1 """ + _H1 + """>Unsubscribe from {{ title }}?</h1>
<p id="message">{{ name }}, press the button to stop receiving {{ title }}.</p>
<form method="post" id="confirm"><button type="submit" name="confirm" value="yes" """ + _BUTTON + """>Unsubscribe</button></form>
<p """ + _SMALL + """>Nothing changes until you press it.</p>
""" + _END

_UNSUBSCRIBED = _HEAD + """<title>Unsubscribed from {{ title }}</title></head>
""" + _BODY + """
<h1 """ + _H1 + """>{% if changed %}You are unsubscribed{% else %}You were already unsubscribed{% endif %}</h1>
<p id="result" data-changed="{{ 'yes' if changed else 'no' }}">
{%- if changed %}{{ name }}, you will get no more emails from {{ title }}.
{%- else %}{{ name }}, you unsubscribed from {{ title }} before; nothing changed.{% endif %}</p>
<p """ + _SMALL + """>Changed your mind? Write to {{ contact }} and ask to be resubscribed.</p>
""" + _END

_CONFIRM_FEEDBACK = _HEAD + """<title>{{ what[kind] }}: {{ paper }}</title></head>
""" + _BODY + """
<h1 """ + _H1 + """>{{ what[kind] }}</h1>
<p id="message">{{ name }}, you asked for {{ "more" if kind == "more" else "fewer" }} papers like <strong id="paper">{{ paper }}</strong>.</p>
<form method="post" id="act"><button type="submit" """ + _BUTTON + """>{% if kind == "more" %}Yes, more like this{% else %}Yes, not for me{% endif %}</button></form>
<p """ + _SMALL + """>Recording it… if nothing happens, press the button.</p>
<script>""" + _AUTOSUBMIT + """</script>
""" + _END

_FEEDBACK_DONE = _HEAD + """<title>{{ what[kind] }}: noted</title></head>
""" + _BODY + """
<h1 """ + _H1 + """>{% if changed %}Thanks, noted{% else %}Already noted{% endif %}</h1>
<p id="result" data-changed="{{ 'yes' if changed else 'no' }}" data-kind="{{ kind }}">
{%- if changed %}{{ name }}, your next digests {{ "favour" if kind == "more" else "push down" }} papers like <strong>{{ paper }}</strong>.
{%- else %}{{ name }}, you had already told us this about <strong>{{ paper }}</strong>; it counts once.{% endif %}</p>
<p """ + _SMALL + """>You can close this page.</p>
""" + _END

_MESSAGE = _HEAD + """<title>{{ heading }}</title></head>
""" + _BODY + """
<h1 """ + _H1 + """>{{ heading }}</h1>
<p id="problem" data-status="{{ status }}" style="background: #ffebe9; color: #82071e; border: 1px solid #ff8182; padding: 10px 14px;">{{ message }}</p>
{% if hint %}<p>{{ hint }}</p>{% endif %}
""" + _END


def serve(app: Flask, *, host: str, port: int, on_listening: Callable[[str], object] | None = None) -> None:
    """Serve until interrupted (waitress, a few threads); ``on_listening`` gets the URL once the port is bound.

    A path in base_url is accepted with or without the prefix (a reverse proxy may strip it or pass it on).
    """
    import waitress

    try:
        server = waitress.create_server(
            app, host=host, port=port, threads=4, ident="newsletter", url_prefix=app.config.get("NEWSLETTER_URL_PREFIX", ""),
        )
    except OSError as exc:
        raise NewsletterError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    if on_listening:
        on_listening(f"http://{host}:{port}/")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
