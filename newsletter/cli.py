"""The `newsletter` command: parses options, calls one library function, formats the result.

Exit codes: 0 success, 1 a user error or a failed feed/digest (one line
naming the file, key or feed), 2 usage errors (click's own).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import tempfile
import threading
import webbrowser
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from . import __version__, pipeline
from .config import Config, load_config
from .errors import ConfigError, NewsletterError
from .models import DigestOutcome, FeedReport, RunReport


class _Group(click.Group):
    """Turns the library's errors into one clean line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            _fail(str(exc))


def _fail(message: str) -> NoReturn:
    for line in message.splitlines():
        click.secho(f"error: {line}", err=True, fg="red")
    sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="config.toml to use (default: $NEWSLETTER_CONFIG, else ./config.toml).")
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """Daily Papers: each subscriber's new research papers, ranked and emailed at their local time.

    \b
    Example, with the shipped demo:
      newsletter ingest && newsletter digest --all
    """
    ctx.obj = config_path


def _config(ctx: click.Context) -> Config:
    return load_config(ctx.obj)


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate config.toml and every subscriber file; list every problem.

    \b
    Example:
      newsletter --config config.toml check
    """
    try:
        config = _config(ctx)
    except ConfigError as exc:
        _fail("\n".join(exc.problems))
    problems = pipeline.check(config)
    if problems:
        _fail("\n".join(problems))
    count = len(pipeline.subscribers_of(config).subscribers)
    click.echo(f"{config.path}: OK — {len(config.feeds)} feeds, {count} subscribers")


@main.command()
@click.option("--feed", "feed_name", metavar="NAME", help="Only this feed (its name in config.toml).")
@click.pass_context
def ingest(ctx: click.Context, feed_name: str | None) -> None:
    """Fetch the feeds and store new entries; print new / duplicate / updated / failed.

    \b
    Example:
      newsletter ingest --feed daily-papers
    """
    with _Progress() as progress:
        report = pipeline.ingest_feeds(_config(ctx), only=feed_name, on_feed=progress.later(_print_feed), progress=progress)
    totals = {key: sum(getattr(feed, key) for feed in report.feeds) for key in ("new", "duplicate", "updated")}
    failed = sum(feed.failed for feed in report.feeds)
    click.echo(f"total: {totals['new']} new, {totals['duplicate']} duplicate, {totals['updated']} updated, {failed} failed")
    if not report.ok:
        sys.exit(1)


def _print_feed(feed: FeedReport) -> None:
    if feed.error:
        click.secho(f"{feed.name}: FAILED: {feed.error}", fg="red", err=True)
        return
    if feed.not_modified:
        click.echo(f"{feed.name}: not modified")
        return
    line = f"{feed.name}: {feed.new} new, {feed.duplicate} duplicate, {feed.updated} updated"
    click.echo(line + (f", {feed.skipped} skipped" if feed.skipped else ""))
    if feed.warning:
        click.secho(f"{feed.name}: warning: {feed.warning}", fg="yellow")


@main.command()
@click.argument("subscriber")
@click.option("--limit", type=click.IntRange(1, 1000), help="How many to show (default: the subscriber's max_items).")
@click.option("--json", "as_json", is_flag=True, help='Print a JSON list of {"id", "title", "score", "reasons"}.')
@click.option("--all", "show_all", is_flag=True, help="Also list candidates below the threshold, with their scores (for tuning).")
@click.pass_context
def rank(ctx: click.Context, subscriber: str, limit: int | None, as_json: bool, show_all: bool) -> None:
    """Show SUBSCRIBER's next digest candidates, best first, with score and reasons.

    \b
    Example:
      newsletter rank ada --limit 5 --json
      newsletter rank ada --all --limit 40
    """
    items = pipeline.rank_for(_config(ctx), subscriber, limit=limit, include_below_threshold=show_all)
    if as_json:
        rows = [{"id": i.entry.id, "title": i.entry.title, "score": i.score, "reasons": [r.describe() for r in i.reasons]} for i in items]
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not items:
        click.echo(f"{subscriber}: nothing new passes the threshold")
    for position, item in enumerate(items, start=1):
        click.echo(f"{position:>2}. {item.score:6.2f}  {item.entry.id}  {item.entry.title}")
        if item.reasons:
            click.echo(f"              why: {'; '.join(r.describe() for r in item.reasons)}")


@main.command()
@click.argument("subscriber", required=False)
@click.option("--out", type=click.Path(dir_okay=False, writable=True, path_type=Path), help="Write the HTML here (default: a temp file).")
@click.option("--text", "show_text", is_flag=True, help="Print the plain-text part instead of writing HTML.")
@click.option("--open", "open_browser", is_flag=True, help="Open the HTML in a web browser.")
@click.option("--serve", "serve_page", is_flag=True, help="Serve a live preview page of every subscriber on 127.0.0.1.")
@click.option("--port", type=click.IntRange(0, 65535), default=8025, show_default=True, help="Port for --serve.")
@click.pass_context
def preview(
    ctx: click.Context, subscriber: str | None, out: Path | None, show_text: bool, open_browser: bool, serve_page: bool, port: int,
) -> None:
    """Render SUBSCRIBER's next digest without sending or recording anything.

    With --serve, a local web page lists every subscriber's next digest, shows
    each in desktop (600px), mobile (375px) and dark views, and reloads when a
    template, subscriber file or config.toml changes.

    \b
    Example:
      newsletter preview ada --out /tmp/ada.html --open
      newsletter preview ada --text
      newsletter preview --serve --port 8025
    """
    if serve_page:
        _serve_preview(ctx, port=port, open_browser=open_browser)
        return
    if subscriber is None:
        raise click.UsageError("give a SUBSCRIBER to preview, or --serve for the page of every subscriber")
    email = pipeline.preview(_config(ctx), subscriber)
    if show_text:
        click.echo(f"Subject: {email.subject}\n")
        click.echo(email.text, nl=False)
        if not out and not open_browser:
            return
    if out is None:
        handle = tempfile.NamedTemporaryFile("w", suffix=f"-{subscriber}.html", delete=False, encoding="utf-8")
        out = Path(handle.name)
        handle.close()
    try:
        out.write_text(email.html, encoding="utf-8")
    except OSError as exc:
        _fail(f"{out}: cannot write the preview: {exc.strerror}")
    click.echo(f"{email.subject}\nHTML preview written to {out}")
    if open_browser:
        webbrowser.open(out.resolve().as_uri())


def _serve_preview(ctx: click.Context, *, port: int, open_browser: bool) -> None:
    from . import preview_app  # Flask loads only for --serve

    _config(ctx)  # a broken config.toml is reported before the server starts
    url = f"http://127.0.0.1:{port}/"
    click.echo(f"Previewing every subscriber at {url} (Ctrl-C stops)")
    if open_browser:
        webbrowser.open(url)
    preview_app.serve(preview_app.create_app(ctx.obj), host="127.0.0.1", port=port)


@main.command()
@click.option("--subscriber", "subscribers", multiple=True, metavar="ID", help="Only this subscriber (repeatable); skips the time check.")
@click.option("--all", "everyone", is_flag=True, help="Everyone, without waiting for their send_at (still once per period).")
@click.option("--dry-run", is_flag=True, help="Build and render, but send and record nothing.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes building and sending digests (one per core); each keeps its own mail connection.")
@click.pass_context
def digest(ctx: click.Context, subscribers: tuple[str, ...], everyone: bool, dry_run: bool, workers: int) -> None:
    """Build and deliver the digests that are due now (run it from cron).

    A digest is due when the reader's local send_at has passed and this
    period's digest (day, or week for weekly readers) was not sent yet.
    --all or --subscriber skip the time check, never the once-per-period rule.

    \b
    Example (crontab, every 15 minutes):
      */15 * * * *  newsletter --config /srv/papers/config.toml digest
    """
    request = pipeline.DigestRequest(subscriber_ids=subscribers, ignore_time=everyone or bool(subscribers), dry_run=dry_run)
    config = _config(ctx)
    stop = _stop_on_signals(pipeline.SharedStop())
    with _Progress() as progress:
        report = pipeline.run_digests(
            config, request, on_digest=progress.later(_print_digest), stop=stop, progress=progress, lock=not dry_run, workers=workers,
        )
    for problem in report.problems:
        click.secho(f"error: {problem}", err=True, fg="red")
    states = ("sent", "queued", "retrying", "unavailable", "bounced", "empty", "unsubscribed", "failed", "dry-run")
    counts = {status: sum(o.status == status for o in report.digests) for status in states}
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n or status in ("sent", "failed"))
    where = f" into {config.maildir}" if config.delivery_method == "maildir" and counts["sent"] else ""
    click.echo(f"total: {summary}{where}" + ("; stopped by a signal, the rest stays queued" if stop.is_set() else ""))
    if not report.ok:
        sys.exit(1)


@main.command()
@click.option("--subscriber", "subscriber_id", metavar="ID", help="Only this subscriber's digests.")
@click.pass_context
def retry(ctx: click.Context, subscriber_id: str | None) -> None:
    """Put failed and bounced digests back in the outbox; the next `digest` or `run` sends them.

    A digest whose papers have since gone out in a later digest stays as it
    is (the reader would get those papers twice).

    \b
    Example:
      newsletter retry && newsletter digest
    """
    results = pipeline.retry_failed(_config(ctx), subscriber_id=subscriber_id)
    for subscriber, period, what in results:
        click.echo(f"{subscriber} [{period}]: {what}")
    requeued = sum(what == "requeued" for _, _, what in results)
    click.echo(f"total: {requeued} requeued, {len(results) - requeued} left as they are")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (put a TLS reverse proxy at base_url in front).")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port to listen on.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int) -> None:
    """Serve the web app behind the email's links: one-click unsubscribe (RFC 8058), "more like this" / "not for me".

    It must be reachable at newsletter.base_url, and it needs the link secret
    in the environment variable [web] secret_env names.

    \b
    Example (a reverse proxy forwards https://papers.example.org here):
      NEWSLETTER_SECRET=... newsletter serve --port 8080
    """
    from . import web  # Flask loads only for serve

    app = web.create_app(ctx.obj)  # refuses, in one line, without base_url or the secret
    base_url = _config(ctx).base_url
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    web.serve(app, host=host, port=port, on_listening=lambda url: click.echo(f"Serving the links of {base_url} on {url} (Ctrl-C stops)"))


@main.command()
@click.argument("subscriber")
@click.pass_context
def resubscribe(ctx: click.Context, subscriber: str) -> None:
    """Undo SUBSCRIBER's unsubscribe: their digests start again from the next due one.

    \b
    Example:
      newsletter resubscribe ada
    """
    from . import actions

    if actions.resubscribe(_config(ctx), subscriber):
        click.echo(f"{subscriber}: resubscribed")
    else:
        click.echo(f"{subscriber}: was not unsubscribed; nothing to do")


_Stop = TypeVar("_Stop", threading.Event, pipeline.SharedStop)


def _stop_on_signals(stop: _Stop) -> _Stop:
    """SIGTERM / SIGINT set ``stop``: finish the message in flight (in every worker), then stop; what is left stays queued.

    `digest` uses a SharedStop, which its forked workers see at once; the scheduler a threading.Event.
    """

    def request_stop(signum: int, _frame: object) -> None:
        if stop.is_set():  # a second Ctrl-C: stop now (the outbox keeps the claim; the next run resends it)
            raise KeyboardInterrupt
        stop.set()
        click.echo(f"\n{signal.Signals(signum).name}: stopping after the message in flight", err=True)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


class _Progress:
    """A progress bar per phase on a terminal; elsewhere (cron, logs) plain lines as each item finishes.

    ``later(print_line)`` defers a per-item line while a bar is drawn, so the bar is not torn apart.
    """

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._bar: Any = None
        self._label = ""
        self._deferred: list[Any] = []

    def __call__(self, label: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None or label.split()[0] != self._label.split()[0]:
            self._finish()
            self._bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr, show_pos=True)
            self._bar.__enter__()
        self._label = label
        self._bar.label = label
        self._bar.update(max(0, done - self._bar.pos))

    def later(self, print_line: Any) -> Any:
        def deferred(item: Any) -> None:
            if self.enabled:
                self._deferred.append(lambda: print_line(item))
            else:
                print_line(item)

        return deferred

    def _finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()
        for print_line in self._deferred:
            print_line()


def _print_digest(outcome: DigestOutcome) -> None:
    colour = {"sent": "green", "failed": "red", "gave-up": "red", "bounced": "red", "unavailable": "red", "retrying": "yellow", "dry-run": "cyan"}.get(outcome.status)
    picked = f" ({outcome.items} of {outcome.considered})" if outcome.items else ""
    detail = f": {outcome.detail}" if outcome.detail else ""
    click.secho(f"{outcome.subscriber} [{outcome.period}]: {outcome.status}{picked}{detail}", fg=colour)


DIGEST_STATES = ("sent", "queued", "retrying", "sending", "bounced", "failed", "empty", "cancelled")


@main.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show feeds' health, the last ingest, and digests sent / queued / retrying / bounced / failed per day.

    \b
    Example:
      newsletter status
    """
    info = pipeline.status(_config(ctx))
    click.echo(f"database: {info['database']} ({info['entries']} entries, {info['subscribers']} subscribers)")
    click.echo("feeds:")
    if not info["feeds"]:
        click.echo("  never ingested: run `newsletter ingest`")
    for feed in info["feeds"]:
        counts = f"{feed['new']} new, {feed['duplicate']} duplicate, {feed['updated']} updated"
        error = f" — {feed['last_error']}" if feed["last_error"] else ""
        click.echo(f"  {feed['name']}: {feed['last_status']} at {feed['last_fetch']}; last success {feed['last_success'] or 'never'}; {counts}{error}")
    click.echo("digests:")
    if not info["digests"]:
        click.echo("  none yet")
    for row in info["digests"]:
        counts = ", ".join(f"{row[key]} {key}" for key in DIGEST_STATES if row[key] or key == "sent")
        error = f" — last error: {row['last_error']}" if row["last_error"] else ""
        click.echo(f"  {row['period']}: {counts}{error}")
    if any(row["failed"] or row["bounced"] for row in info["digests"]):
        click.echo("  (`newsletter retry` puts failed and bounced digests back in the outbox)")
    if info["unsubscribed"]:
        click.echo("unsubscribed (their files stay in subscribers/; `newsletter resubscribe ID` undoes it):")
        for subscriber_id, row in info["unsubscribed"].items():
            click.echo(f"  {subscriber_id}: since {row['at']} ({row['via']})")


@main.command()
@click.option("--reload-every", type=click.FloatRange(min=0.1), default=30.0, show_default=True, metavar="SECONDS",
              help="How often subscriber files and config.toml are re-read.")
@click.pass_context
def run(ctx: click.Context, reload_every: float) -> None:
    """Run the scheduler: ingest every ingest_every, each digest at its reader's local send_at.

    Edits to subscriber files and config.toml take effect without a restart.
    A digest missed while the scheduler was down goes out when it starts, if
    it is still the reader's day (or week). Only one `run` per database.
    SIGTERM or Ctrl-C stops after the message in flight.

    \b
    Example:
      newsletter --config /srv/papers/config.toml run
    """
    from .schedule import Intervals, run_scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    run_scheduler(ctx.obj, stop=_stop_on_signals(threading.Event()), on_report=_log_report, intervals=Intervals(sync=reload_every))


def _log_report(kind: str, report: RunReport) -> None:
    for feed in report.feeds:
        _print_feed(feed)
    for outcome in report.digests:
        if outcome.status not in ("not-due", "already-sent"):
            _print_digest(outcome)
    for problem in report.problems:
        click.secho(f"error: {problem}", err=True, fg="red")
