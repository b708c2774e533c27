"""Ingest over real HTTP: a ThreadingHTTPServer on 127.0.0.1 serves the real feed files.

The server implements conditional GET (ETag / Last-Modified -> 304), a failing
path, a slow path and gzip, and logs every request so the tests can check
what the client actually sent and what it got back.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import FEEDS, NOON, REPO, Deployment, fixed_clock

from newsletter import pipeline
from newsletter.models import FeedReport, RunReport
from newsletter.store import Store

RSS_FEED = FEEDS / "arxiv-to-rss" / "2026-08-20_bdc6c39f79" / "feeds" / "feed.xml"
API_FEED = FEEDS / "xiv" / "tests" / "fixtures" / "arxiv_response.xml"
LAST_MODIFIED = formatdate(1_787_000_000, usegmt=True)
SLOW_SECONDS = 5.0  # far longer than the 0.5 s timeout; released early at teardown


@dataclass(frozen=True)
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/xml"
    slow: bool = False
    gzip: bool = False
    last_modified: str = LAST_MODIFIED
    with_etag: bool = True
    trickle: float = 0.0  # seconds between 1000-byte chunks

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    status: int


@dataclass
class FeedServer:
    base_url: str = ""
    routes: dict[str, Route] = field(default_factory=dict)
    log: list[Request] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def serve(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.base_url + path

    def requests_to(self, path: str) -> list[Request]:
        return [request for request in self.log if request.path == path]


def _handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            route = server.routes.get(self.path, Route(status=404))
            if route.slow and server.released.wait(SLOW_SECONDS):
                return  # the test is over; the client gave up long ago
            status = self._status(route)
            server.log.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, status))
            body = b"" if status == 304 else (gzip.compress(route.body, mtime=0) if route.gzip else route.body)
            self.send_response(status)
            self.send_header("Content-Type", route.content_type)
            if route.with_etag:
                self.send_header("ETag", route.etag)
            self.send_header("Last-Modified", route.last_modified)
            if route.gzip:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not route.trickle:
                self.wfile.write(body)
                return
            for start in range(0, len(body), 1000):
                if server.released.wait(route.trickle):
                    return
                self.wfile.write(body[start : start + 1000])
                self.wfile.flush()

        def _status(self, route: Route) -> int:
            if route.status != 200:
                return route.status
            # RFC 9110 13.2.2: If-None-Match, when sent, decides; If-Modified-Since only without it.
            if "If-None-Match" in self.headers:
                return 304 if self.headers["If-None-Match"] == route.etag else 200
            return 304 if self.headers.get("If-Modified-Since") == route.last_modified else 200

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep pytest output clean
            pass

    return Handler


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    state = FeedServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


# --- helpers --------------------------------------------------------------------------


def ingest(deployment: Deployment) -> RunReport:
    return pipeline.ingest_feeds(deployment.config(), clock=fixed_clock(NOON))


def by_name(report: RunReport) -> dict[str, FeedReport]:
    return {feed.name: feed for feed in report.feeds}


def count_items(raw: bytes) -> int:
    """<item> (RSS) or <entry> (Atom) elements, counted without any feed parser."""
    return len(re.findall(rb"<(?:item|entry)>", raw))


def stored_count(deployment: Deployment) -> int:
    with Store(deployment.config().database, clock=fixed_clock(NOON)) as store:
        return store.count_entries()


# --- conditional GET --------------------------------------------------------------------


def test_first_fetch_stores_entries_and_identifies_itself(deployment: Deployment, feed_server: FeedServer) -> None:
    body = RSS_FEED.read_bytes()
    deployment.add_feed("jwst", feed_server.serve("/feed.xml", Route(body)))

    feed = by_name(ingest(deployment))["jwst"]

    assert (feed.new, feed.error, feed.warning, feed.not_modified) == (count_items(body), None, None, False)
    assert stored_count(deployment) == count_items(body)
    [request] = feed_server.requests_to("/feed.xml")
    assert request.status == 200
    assert request.headers["user-agent"].startswith("newsletter/")
    assert "if-none-match" not in request.headers and "if-modified-since" not in request.headers


def test_second_fetch_sends_validators_and_gets_304(deployment: Deployment, feed_server: FeedServer) -> None:
    route = Route(RSS_FEED.read_bytes())
    deployment.add_feed("jwst", feed_server.serve("/feed.xml", route))
    ingest(deployment)

    feed = by_name(ingest(deployment))["jwst"]

    first, second = feed_server.requests_to("/feed.xml")
    assert (first.status, second.status) == (200, 304)
    assert second.headers.get("if-none-match") == route.etag
    assert second.headers.get("if-modified-since") == LAST_MODIFIED
    assert second.headers["user-agent"].startswith("newsletter/")
    assert feed.not_modified and feed.error is None
    assert (feed.new, feed.duplicate, feed.updated) == (0, 0, 0)
    assert stored_count(deployment) == count_items(route.body)


def test_last_modified_alone_gets_304(deployment: Deployment, feed_server: FeedServer) -> None:
    body = API_FEED.read_bytes()
    deployment.add_feed("papers", feed_server.serve("/feed.xml", Route(body, with_etag=False)))
    ingest(deployment)

    feed = by_name(ingest(deployment))["papers"]

    second = feed_server.requests_to("/feed.xml")[1]
    assert "if-none-match" not in second.headers
    assert (second.headers.get("if-modified-since"), second.status) == (LAST_MODIFIED, 304)
    assert feed.not_modified and (feed.new, feed.duplicate) == (0, 0)
    assert stored_count(deployment) == count_items(body)


def test_changed_feed_is_fetched_again(deployment: Deployment, feed_server: FeedServer) -> None:
    deployment.add_feed("papers", feed_server.serve("/feed.xml", Route(API_FEED.read_bytes())))
    ingest(deployment)
    rss = RSS_FEED.read_bytes()
    feed_server.serve("/feed.xml", Route(rss, last_modified=formatdate(1_787_086_400, usegmt=True)))  # new ETag too

    feed = by_name(ingest(deployment))["papers"]

    assert [request.status for request in feed_server.requests_to("/feed.xml")] == [200, 200]
    assert (feed.new, feed.not_modified) == (count_items(rss), False)
    assert stored_count(deployment) == count_items(API_FEED.read_bytes()) + count_items(rss)


# --- failing feeds ------------------------------------------------------------------------


@pytest.mark.parametrize("failure", [Route(status=500), Route(API_FEED.read_bytes(), slow=True)], ids=["http-500", "timeout"])
def test_failing_feed_is_reported_and_others_still_ingest(
    deployment: Deployment, feed_server: FeedServer, failure: Route
) -> None:
    good = API_FEED.read_bytes()
    deployment.extra = "\n[ingest]\ntimeout = 0.5\n"
    deployment.add_feed("good", feed_server.serve("/good.xml", Route(good)))
    deployment.add_feed("broken", feed_server.serve("/broken.xml", failure))
    after = RSS_FEED.read_bytes()
    deployment.add_feed("after", feed_server.serve("/after.xml", Route(after)))

    report = ingest(deployment)
    feeds = by_name(report)

    assert not report.ok
    assert feeds["broken"].error is not None and "broken" in feeds["broken"].error
    assert (feeds["good"].new, feeds["good"].error) == (count_items(good), None)
    assert (feeds["after"].new, feeds["after"].error) == (count_items(after), None)
    assert stored_count(deployment) == count_items(good) + count_items(after)


def test_timeout_error_says_it_timed_out(deployment: Deployment, feed_server: FeedServer) -> None:
    deployment.extra = "\n[ingest]\ntimeout = 0.5\n"
    deployment.add_feed("sluggish", feed_server.serve("/slow.xml", Route(API_FEED.read_bytes(), slow=True)))

    feed = by_name(ingest(deployment))["sluggish"]

    assert feed.error is not None and "sluggish" in feed.error and "timed out" in feed.error
    assert stored_count(deployment) == 0


# --- size cap ---------------------------------------------------------------------------------


def test_feed_over_the_size_cap_is_refused(deployment: Deployment, feed_server: FeedServer) -> None:
    body = API_FEED.read_bytes()
    assert len(body) > 2048
    deployment.extra = "\n[ingest]\nmax_bytes = 2048\n"
    deployment.add_feed("big", feed_server.serve("/big.xml", Route(body)))

    report = ingest(deployment)

    error = by_name(report)["big"].error
    assert error is not None and "big" in error and "2048" in error and "cap" in error
    assert not report.ok
    assert stored_count(deployment) == 0


# The arXiv API response is 5,435 bytes and gzips to about 2 KB: a 4096-byte cap
# sits between the two with room to spare on both sides.
GZIP_CAP = 4096


def test_gzip_feed_is_decoded_under_the_default_cap(deployment: Deployment, feed_server: FeedServer) -> None:
    body = API_FEED.read_bytes()
    deployment.add_feed("zipped", feed_server.serve("/zipped.xml", Route(body, gzip=True)))

    feed = by_name(ingest(deployment))["zipped"]

    assert (feed.new, feed.error) == (count_items(body), None)


def test_gzip_feed_over_the_cap_once_decoded_is_refused(deployment: Deployment, feed_server: FeedServer) -> None:
    body = API_FEED.read_bytes()
    assert len(gzip.compress(body, mtime=0)) < GZIP_CAP < len(body)
    deployment.extra = f"\n[ingest]\nmax_bytes = {GZIP_CAP}\n"
    deployment.add_feed("zipped", feed_server.serve("/zipped.xml", Route(body, gzip=True)))

    report = ingest(deployment)

    error = by_name(report)["zipped"].error
    assert error is not None and "zipped" in error and str(GZIP_CAP) in error and "cap" in error
    assert feed_server.requests_to("/zipped.xml")[0].status == 200
    assert stored_count(deployment) == 0


# --- the CLI over HTTP ------------------------------------------------------------------------------


def test_cli_ingest_reports_good_and_failed_feeds(deployment: Deployment, feed_server: FeedServer, tmp_path: Path) -> None:
    good = API_FEED.read_bytes()
    deployment.add_feed("good", feed_server.serve("/good.xml", Route(good)))
    deployment.add_feed("broken", feed_server.serve("/broken.xml", Route(status=500)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}

    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "--config", str(deployment.config_path), "ingest"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"good: {count_items(good)} new" in result.stdout
    assert re.search(r"^broken: FAILED: .*broken.*500", result.stderr, re.M)
    assert "Traceback" not in result.stdout + result.stderr


# --- regressions found in review ---------------------------------------------------------


def test_trickling_server_hits_the_overall_timeout(feed_server: FeedServer, deployment: Deployment) -> None:
    """Each read arrives within the 0.5 s timeout, but the whole download would take ~2 s."""
    deployment.extra = "\n[ingest]\ntimeout = 0.5\n"
    deployment.add_feed("trickle", feed_server.serve("/trickle.xml", Route(API_FEED.read_bytes(), trickle=0.3)))
    report = by_name(ingest(deployment))["trickle"]
    assert report.error is not None and "timed out" in report.error and '"trickle"' in report.error


def test_changed_feed_url_does_not_reuse_the_old_validators(feed_server: FeedServer, deployment: Deployment) -> None:
    deployment.add_feed("papers", feed_server.serve("/a.xml", Route(API_FEED.read_bytes())))
    assert by_name(ingest(deployment))["papers"].new == 2
    deployment.feeds.clear()
    deployment.add_feed("papers", feed_server.serve("/b.xml", Route(RSS_FEED.read_bytes())))  # same Last-Modified
    report = by_name(ingest(deployment))["papers"]
    assert not report.not_modified and report.new == count_items(RSS_FEED.read_bytes())
    assert "if-modified-since" not in feed_server.requests_to("/b.xml")[0].headers


def test_well_formed_feed_served_as_text_plain_has_no_warning(feed_server: FeedServer, deployment: Deployment) -> None:
    deployment.add_feed("plain", feed_server.serve("/plain.txt", Route(API_FEED.read_bytes(), content_type="text/plain; charset=utf-8")))
    report = by_name(ingest(deployment))["plain"]
    assert report.new == 2 and report.warning is None and report.error is None
