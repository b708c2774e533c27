"""`newsletter preview --serve`: a real server process on 127.0.0.1, spoken to over HTTP.

The browser-side checks (375px layout, live reload seen by a page, screenshots) are in
tests/test_preview_browser.py; this file checks what the server answers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import EXAMPLES, SUBSCRIBER_ADA, SUBSCRIBER_GRACE, Deployment

from newsletter import pipeline


@dataclass
class PreviewServer:
    url: str
    process: subprocess.Popen[str]
    deployment: Deployment

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30)

    def version(self) -> str:
        return self.get("/_version").json()["version"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_preview_server(deployment: Deployment) -> PreviewServer:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(deployment.config_path), "preview", "--serve", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"preview server exited {process.returncode}: {process.stdout.read() if process.stdout else ''}")
        try:
            httpx.get(url + "/_version", timeout=2)
            return PreviewServer(url, process, deployment)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("preview server did not answer within 30 s")


def stop(server: PreviewServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


def demo_deployment(deployment: Deployment) -> Deployment:
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    deployment.add_feed("daily", EXAMPLES / "daily-papers.xml")
    deployment.add_subscriber("ada", SUBSCRIBER_ADA)
    deployment.add_subscriber("grace", SUBSCRIBER_GRACE)
    pipeline.ingest_feeds(deployment.config())
    return deployment


@pytest.fixture
def server(deployment: Deployment) -> Iterator[PreviewServer]:
    running = start_preview_server(demo_deployment(deployment))
    yield running
    stop(running)


def test_index_lists_every_subscriber_with_their_next_digest(server: PreviewServer) -> None:
    page = server.get("/").text
    for subscriber_id, zone in (("ada", "Europe/London"), ("grace", "America/New_York")):
        assert f'id="subscriber-{subscriber_id}"' in page
        assert zone in page
        assert f"/s/{subscriber_id}?view=mobile" in page and f"/s/{subscriber_id}?view=dark" in page
    assert "Daily Papers — " in page and " picks" in page  # each row carries the next digest's subject
    assert "due now" in page or "(in " in page


def test_views_set_the_width_and_dark_applies_the_dark_rules(server: PreviewServer) -> None:
    mobile = server.get("/s/ada?view=mobile").text
    assert "width: 375px" in mobile and "/s/ada/email.html?view=mobile" in mobile
    assert "width: 680px" in server.get("/s/ada?view=desktop").text  # a desktop pane: the 600px column plus margins
    light = server.get("/s/ada/email.html?view=desktop").text
    dark = server.get("/s/ada/email.html?view=dark").text
    assert "prefers-color-scheme: dark" in light and "@media all" not in light
    assert "prefers-color-scheme" not in dark and "@media all" in dark
    assert server.get("/s/ada?view=sepia").status_code == 404


def test_preview_page_shows_the_same_email_as_the_preview_command(server: PreviewServer) -> None:
    served = server.get("/s/grace/email.html").text
    text = server.get("/s/grace/email.txt").text
    rendered = pipeline.preview(server.deployment.config(), "grace")
    assert rendered.subject in served
    assert text.splitlines()[2:] == rendered.text.splitlines()[2:]  # the first lines carry the date


def test_a_template_error_shows_file_and_line_and_the_fix_shows_after_reload(server: PreviewServer) -> None:
    template = server.deployment.root / "templates" / "digest.html.j2"
    good = template.read_text(encoding="utf-8")
    before = server.version()
    lines = good.splitlines()
    broken_line = next(number for number, line in enumerate(lines, start=1) if "paper-title" in line and "<h3" in line)
    lines[broken_line - 1] = lines[broken_line - 1].replace("{% if item.link %}", "{% if item.link %")
    template.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _bump_mtime(template)

    assert server.version() != before  # the page's poller sees the change and reloads
    problem = server.get("/s/ada")
    assert problem.status_code == 500
    assert f"digest.html.j2:{broken_line}" in problem.text and "syntax error" in problem.text

    template.write_text(good, encoding="utf-8")
    _bump_mtime(template)
    assert server.get("/s/ada").status_code == 200


def test_subscriber_file_changes_show_without_a_restart(server: PreviewServer) -> None:
    before = server.version()
    server.deployment.add_subscriber("linus", SUBSCRIBER_GRACE.replace("grace@", "linus@").replace("Grace", "Linus"))
    assert server.version() != before
    assert 'id="subscriber-linus"' in server.get("/").text
    server.deployment.add_subscriber("broken", 'email = "x@example.org"\nsend_at = "7am"\n')
    page = server.get("/").text
    assert 'broken.toml: send_at &#34;7am&#34; is not HH:MM' in page or "broken.toml: send_at &quot;7am&quot; is not HH:MM" in page
    assert 'id="subscriber-ada"' in page  # one bad file never hides the others


def test_unknown_subscriber_is_a_clear_error(server: PreviewServer) -> None:
    response = server.get("/s/nobody")
    assert response.status_code == 500 and "nobody" in response.text and 'id="problem"' in response.text


def _bump_mtime(path: Path) -> None:
    """Filesystems with coarse timestamps: make sure the edit shows in st_mtime_ns."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def test_pages_carry_the_version_they_were_built_from(server: PreviewServer) -> None:
    """An edit made while a page is being built is not missed: the page starts from the version it was built from."""
    current = server.version()
    for path in ("/", "/s/ada", "/s/nobody"):
        assert f'let seen = "{current}";' in server.get(path).text, path
