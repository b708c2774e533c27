"""Hostile and broken input never breaks a digest.

The whole feedparser test corpus (2,100+ well-formed, ill-formed, encoding and
entity feeds) goes through the real path (config.toml, pipeline.ingest_feeds,
SQLite); bombs and giants (size cap, gzip bomb over loopback HTTP, billion
laughs, a 5 MB abstract, 100,000 entries) each run in a fresh subprocess whose
peak RSS is measured, beside a good feed that must still ingest.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import tomllib
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import FEEDS, REPO, SHARED_DATA

from newsletter.ingest import clean_text

CORPUS = SHARED_DATA / "feedparser-corpus"
GOOD = FEEDS / "xiv" / "tests" / "fixtures" / "arxiv_response.xml"  # 2 entries
RUNNER = Path(__file__).with_name("hostile_run.py")
PEAK_RSS_BOUND_MB = 400


def run_ingest(config: Path) -> dict:
    """pipeline.ingest_feeds in a fresh process: its reports, peak RSS and time; never a traceback."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, str(RUNNER), str(config)], cwd=config.parent, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"\n{config.stem}: peak RSS {outcome['peak_rss_mb']} MB, {outcome['seconds']} s, {outcome['feeds']}")
    return outcome


def write_config(root: Path, feeds: list[tuple[str, str]], ingest: str = "") -> Path:
    text = '[newsletter]\ndatabase = "newsletter.db"\n' + (f"[ingest]\n{ingest}\n" if ingest else "")
    text += "".join(f'[[feeds]]\nname = "{name}"\nurl = "{url}"\n' for name, url in feeds)
    path = root / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def rows(root: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(root / "newsletter.db") as conn:
        return conn.execute(sql).fetchall()


# --- the feedparser corpus -------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict[str, Path]]:
    """Every corpus file as one feed of a single config, ingested once by bench/ingest_corpus.py."""
    root = tmp_path_factory.mktemp("corpus")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "ingest_corpus.py"), str(CORPUS), str(root)],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert result.returncode == 0 and "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    print("\n" + result.stdout)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    config = tomllib.loads((root / "config.toml").read_text("utf-8"))
    files = {feed["name"]: Path(feed["url"]) for feed in config["feeds"]}
    return root, summary, files


def test_every_corpus_file_is_ingested_reported_or_skipped_never_a_crash(corpus: tuple[Path, dict, dict[str, Path]]) -> None:
    root, summary, files = corpus
    assert summary["feeds"] == len(files) >= 2100
    # Every feed has one outcome line; only files with nothing readable (feedparser's own tests say "bozo") are errors.
    for name, error in summary["errors"].items():
        assert f'feed "{name}"' in error and "\n" not in error
        assert re.match(r"bozo\b", _expect_line(files[name])), (files[name], error)
    assert summary["feeds_with_errors"] == len(summary["errors"]) <= 5
    stored = rows(root, "SELECT count(*) FROM entries")[0][0]
    assert stored == summary["stored"] >= 200
    # Every stored entry has a title and readable text (no mojibake marker, no control characters, no raw tags).
    for title, summary_text in rows(root, "SELECT title, summary FROM entries"):
        assert title.strip()
        for text in (title, summary_text or ""):
            assert "\ufffd" not in text and not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", text), text


def _expect_line(path: Path) -> str:
    head = path.read_bytes()[:2000].decode("utf-8", "replace")
    found = re.search(r"^Expect:\s*(.+)$", head, re.M)
    return found.group(1).strip() if found else ""


def _stored_by_file(root: Path, files: dict[str, Path]) -> dict[Path, list[tuple[str, str]]]:
    """(title, summary) of the entries each file alone carried.

    Many corpus files share a link such as http://example.com/1: by the identity contract those are one
    entry whose first title is kept, so they say nothing about one file's text and are left out.
    """
    stored: dict[Path, list[tuple[str, str]]] = {}
    query = (
        "SELECT s.feed, e.title, e.summary FROM entry_sources s JOIN entries e ON e.id = s.entry_id"
        " WHERE (SELECT count(*) FROM entry_sources o WHERE o.entry_id = e.id) = 1"
    )
    for feed, title, summary in rows(root, query):
        stored.setdefault(files[feed], []).append((title, summary))
    return stored


def test_undeclared_legacy_encodings_are_decoded_to_the_right_unicode(corpus: tuple[Path, dict, dict[str, Path]]) -> None:
    """illformed/chardet: Big5, EUC-JP, EUC-KR, GB2312, KOI8-R, Shift_JIS, ... with no declaration; Expect names the codec."""
    root, _, files = corpus
    stored = _stored_by_file(root, files)
    checked = 0
    for path in sorted((CORPUS / "tests" / "illformed" / "chardet").glob("*.xml")):
        codec = re.search(r"encoding == '([^']+)'", _expect_line(path)).group(1)
        titles = re.findall(r"<(?:item|entry)\b[^>]*>\s*<title>(.*?)</title>", path.read_bytes().decode(codec), re.S)
        if not titles:
            continue  # a feed-level title only: no entry to store
        assert [title for title, _ in stored.get(path, [])] == [clean_text(titles[0])], path.name
        checked += 1
    assert checked >= 5  # EUC-JP, EUC-KR, GB2312, KOI8-R, Shift_JIS (the others have no entry title)


def test_titles_match_what_feedparsers_own_tests_expect(corpus: tuple[Path, dict, dict[str, Path]]) -> None:
    """Files whose Expect says entries[0]['title'] == '...' (entities, CDATA, base, namespaces...): the stored title is that text."""
    root, _, files = corpus
    stored = _stored_by_file(root, files)
    checked = 0
    for path in sorted(files.values()):
        found = re.search(r"entries\[0\]\['title'\] == (u?'(?:[^'\\]|\\.)*')\s*$", _expect_line(path))
        if not found or "bozo and" in _expect_line(path) and "not bozo" not in _expect_line(path):
            continue
        literal = ast.literal_eval(found.group(1).lstrip("u"))
        # A text-typed title keeps "<b>" as text; an HTML one loses the tag: either way the words and characters are exact.
        expected = {clean_text(literal), clean_text(literal, is_html=False)}
        if not any(expected) or len(stored.get(path, [])) != 1:
            continue
        assert stored[path][0][0] in expected, path
        checked += 1
    print(f"\n{checked} titles checked against feedparser's Expect lines")
    assert checked >= 30


def test_encoding_declared_by_http_header_keeps_curly_quotes_and_pound(corpus: tuple[Path, dict, dict[str, Path]]) -> None:
    root, _, files = corpus
    path = CORPUS / "tests" / "encoding" / "http_text_xml_charset_2.xml"
    [feed] = [name for name, file in files.items() if file == path]
    assert "This is a \xa3\u201ctest.\u201d" in _expect_line(path).encode().decode("unicode_escape")
    stored = rows(root, f"SELECT e.title, e.summary FROM entries e JOIN entry_sources s ON s.entry_id = e.id WHERE s.feed = '{feed}'")
    assert stored == [("Foo", "This is a \xa3\u201ctest.\u201d")]


def test_every_html_entity_of_the_corpus_decodes_in_an_entry_title(tmp_path: Path) -> None:
    """tests/entities/*: each file's channel title (one named entity) moved into an item, ingested, compared with Expect."""
    feeds, expected = [], {}
    for path in sorted((CORPUS / "tests" / "entities").glob("*.xml")):
        found = re.fullmatch(r"feed\['title'\] == ('(?:[^'\\]|\\.)*')", _expect_line(path))
        text = path.read_text("utf-8")
        if not found or text.count("<title>") != 1:
            continue
        name = f"entity-{path.stem}"
        item = f"<channel><title>entities</title><item><link>https://example.org/{path.stem}</link><title>\\1</title></item>"
        (tmp_path / path.name).write_text(re.sub(r"<channel>\s*<title>(.*?)</title>", item, text, count=1, flags=re.S), "utf-8")
        feeds.append((name, str(tmp_path / path.name)))
        expected[f"https://example.org/{path.stem}"] = ast.literal_eval(found.group(1))
    assert len(feeds) >= 250
    outcome = run_ingest(write_config(tmp_path, feeds))
    assert not [feed for feed in outcome["feeds"] if feed["error"] or feed["new"] != 1 or "mismatched" in (feed["warning"] or "")]
    stored = dict(rows(tmp_path, "SELECT id, title FROM entries"))
    assert stored == expected


# --- bombs and giants ------------------------------------------------------------------------------


def _rss(items: str) -> str:
    return f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>t</title>\n{items}</channel></rss>\n'


def test_feed_over_the_size_cap_is_refused_and_the_good_feed_still_ingests(tmp_path: Path) -> None:
    big = tmp_path / "big.xml"
    big.write_text(_rss("<item><title>x</title><link>https://example.org/x</link></item>\n" * 40_000))  # ~2.4 MB
    outcome = run_ingest(write_config(tmp_path, [("big", str(big)), ("good", str(GOOD))], "max_bytes = 1000000"))
    big_report, good = outcome["feeds"]
    assert big_report["error"] and '"big"' in big_report["error"] and "1000000" in big_report["error"] and "cap" in big_report["error"]
    assert (good["new"], good["error"]) == (2, None)
    assert outcome["peak_rss_mb"] < PEAK_RSS_BOUND_MB


class _BombServer:
    """Loopback HTTP: /bomb.xml is ~100 KB of gzip that inflates to 100 MB; /good.xml is a real feed."""

    def __init__(self) -> None:
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
        head = _rss("<item><title>bomb</title><link>https://example.org/bomb</link><description>").encode()
        parts = [compressor.compress(head)]
        block = b" " * 1_000_000
        parts += [compressor.compress(block) for _ in range(100)]
        parts.append(compressor.compress(b"</description></item></channel></rss>") + compressor.flush())
        self.bomb = b"".join(parts)
        self.good = GOOD.read_bytes()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                body = server.bomb if self.path == "/bomb.xml" else server.good
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                if self.path == "/bomb.xml":
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up at the cap, as it should

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def bomb_server() -> Iterator[_BombServer]:
    server = _BombServer()
    thread = threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join()


def test_gzip_bomb_is_stopped_at_the_cap_with_bounded_memory(tmp_path: Path, bomb_server: _BombServer) -> None:
    assert len(bomb_server.bomb) < 1_000_000  # small on the wire, 100 MB inflated
    (tmp_path / "baseline").mkdir()
    baseline = run_ingest(write_config(tmp_path / "baseline", [("good", f"{bomb_server.url}/good.xml")]))["peak_rss_mb"]
    config = write_config(tmp_path, [("bomb", f"{bomb_server.url}/bomb.xml"), ("good", f"{bomb_server.url}/good.xml")], "max_bytes = 5000000")
    outcome = run_ingest(config)
    bomb, good = outcome["feeds"]
    assert bomb["error"] and '"bomb"' in bomb["error"] and "cap" in bomb["error"] and "\n" not in bomb["error"]
    assert (good["new"], good["error"]) == (2, None)
    # Never more than about the 5 MB cap inflated at once (the body is held twice while joined): not 64 MB per network chunk.
    assert outcome["peak_rss_mb"] < baseline + 40 < PEAK_RSS_BOUND_MB


def test_billion_laughs_does_not_expand(tmp_path: Path) -> None:
    entities = '<!ENTITY lol0 "lol">\n' + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">\n' for i in range(1, 10))
    laughs = tmp_path / "laughs.xml"
    laughs.write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n{entities}]>\n'
        '<rss version="2.0"><channel><title>laughs</title><item><title>Laughs &lol9;</title>'
        "<link>https://example.org/lol</link><description>&lol9;</description></item></channel></rss>\n"
    )
    outcome = run_ingest(write_config(tmp_path, [("laughs", str(laughs)), ("good", str(GOOD))]))
    report, good = outcome["feeds"]
    assert report["error"] or report["warning"]  # reported either way, naming what went wrong
    assert (good["new"], good["error"]) == (2, None)
    longest = rows(tmp_path, "SELECT max(length(title) + length(summary)) FROM entries")[0][0]
    assert longest < 10_000  # 10^9 "lol"s were never built
    assert outcome["peak_rss_mb"] < PEAK_RSS_BOUND_MB


def test_a_5_mb_abstract_is_trimmed_and_reported(tmp_path: Path) -> None:
    huge = tmp_path / "huge.xml"
    huge.write_text(_rss("<item><title>Huge</title><link>https://example.org/huge</link><description>" + "word " * 1_000_000 + "</description></item>\n"))
    outcome = run_ingest(write_config(tmp_path, [("huge", str(huge)), ("good", str(GOOD))]))
    report, good = outcome["feeds"]
    assert report["new"] == 1 and '"huge"' in report["warning"] and "20000" in report["warning"] and "trimmed" in report["warning"]
    [(summary,)] = rows(tmp_path, "SELECT summary FROM entries WHERE id = 'https://example.org/huge'")
    assert 19_000 < len(summary) <= 20_000 and summary.endswith("word…")
    assert (good["new"], good["error"]) == (2, None)
    assert outcome["peak_rss_mb"] < PEAK_RSS_BOUND_MB


def test_a_feed_of_100000_entries_keeps_the_cap_and_reports_the_rest(tmp_path: Path) -> None:
    giant = tmp_path / "giant.xml"
    item = "<item><title>Paper {i}</title><link>https://example.org/p/{i}</link><description>Abstract {i}.</description></item>\n"
    giant.write_text(_rss("".join(item.format(i=i) for i in range(100_000))))
    outcome = run_ingest(write_config(tmp_path, [("giant", str(giant)), ("good", str(GOOD))], "max_bytes = 64000000\nmax_entries = 5000"))
    report, good = outcome["feeds"]
    assert (report["new"], report["error"]) == (5000, None)
    assert '"giant"' in report["warning"] and "100000 entries" in report["warning"] and "ingest.max_entries" in report["warning"]
    assert rows(tmp_path, "SELECT min(title), count(*) FROM entries WHERE id LIKE 'https://example.org/p/%'")[0][1] == 5000
    assert rows(tmp_path, "SELECT count(*) FROM entries WHERE id = 'https://example.org/p/4999'")[0][0] == 1
    assert (good["new"], good["error"]) == (2, None)
    assert outcome["peak_rss_mb"] < PEAK_RSS_BOUND_MB
