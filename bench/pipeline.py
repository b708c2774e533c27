"""One day's `newsletter digest`, end to end, on real data: ingest, rank, render, MIME, Maildir.

Workload (all in a temp deployment dir: config.toml, subscribers/, SQLite, Maildir):
  - feeds: the first --entries (default 2,000) unique arXiv papers of
    ../shared/data/papers/daily-arXiv-ai-enhanced (real listings; one file holds 230-670
    rows, so "a day" of ~2,000 is several listing days taken together), written as one
    RSS 2.0 file, plus one real daily-papers API JSON file of
    ../shared/data/papers/hf-daily-paper-newsletter-chinese (the last day);
  - subscribers: N synthetic TOML files made by bench/rank_speed.py's make_subscribers
    (3-6 topics each drawn from the 34 topic profiles of bench/ranking_eval.py, i.e. the
    real topic names of ../shared/data/labelled/, plus one niche topic from paper titles;
    mixed time zones, excluded words, authors, categories, liked papers).

Printed:
  - ingest: pipeline.ingest_feeds on the RSS file (fetch + parse + dedupe + store + FTS index)
    in entries/s, next to feedparser.parse on the same bytes (with the garbage collector paused,
    as ingest pauses it for its own parse; medians of --repeats, each into a fresh database),
    and the JSON feed's ingest;
  - rank / render: on a sample of --sample subscribers, with the store and pool the run uses:
    candidate_pool once, then pipeline.build_digest per subscriber (subscribers/s), then
    Renderer.render + deliver.build_message + MaildirTransport.send (digests/s);
  - the whole daily run: pipeline.run_digests(config, DigestRequest(ignore_time=True),
    clock=fixed) into the Maildir: wall time, digests/s, peak RSS (VmHWM of a fresh process
    per run, so runs do not share a peak; with workers, the largest worker's too), and its CPU
    time (user + system, workers included): digests per CPU second is the per-core figure that
    other work on a shared machine disturbs least;
  - the same day's run with `--workers 2` (pipeline.run_digests(..., workers=2)) on a copy of the
    same database, and its speed-up over one worker; at up to 10,000 readers both runs are made
    DAY_REPEATS times, alternating, and the run of median wall time is shown;
  - naive reference on --naive-sample subscribers, extrapolated per digest, as the issue describes
    it (wall and CPU time): ranking by a Python loop over every entry and keyword for each subscriber (keyword words
    looked up in each entry's word sets, split once for all subscribers, which favours the naive
    side; excluded words, followed authors),
    premailer per email (Renderer(templates, inline=False)), one EmailMessage per digest
    (deliver.build_email_message), Maildir write; and ours/naive;
  - scaling: per-digest cost of the whole run at N vs at 1,000 subscribers (both sizes run
    in this invocation when --subscribers > 1000).

Run: python bench/pipeline.py [--subscribers 1000] [--entries 2000] [--sample 300] [--naive-sample 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import heapq
import json
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import feedparser  # noqa: E402
from rank_speed import load_entries, make_subscribers  # noqa: E402

from newsletter import pipeline  # noqa: E402
from newsletter.config import load_config  # noqa: E402
from newsletter.deliver import MaildirTransport, build_email_message, build_message  # noqa: E402
from newsletter.models import Entry, Subscriber  # noqa: E402
from newsletter.render import Renderer  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "papers"
DAILY_JSON = max((DATA / "hf-daily-paper-newsletter-chinese" / "Paper_metadata_download").glob("*.json"))
DAY_REPEATS = 3  # later-day runs (one process, and with workers) per size of at most 10,000 readers: their medians are shown
NOW = dt.datetime(2026, 7, 1, 6, tzinfo=dt.timezone.utc)  # the store's clock: ingest, then the digest run


def clock() -> dt.datetime:
    return NOW


# --- the deployment -------------------------------------------------------------------


def write_rss(entries: list[Entry], path: Path) -> None:
    items = []
    for entry in entries:
        arxiv_id = entry.id.removeprefix("arxiv:")
        creators = "".join(f"<dc:creator>{escape(name)}</dc:creator>" for name in entry.authors)
        categories = "".join(f"<category>{escape(c)}</category>" for c in entry.categories)
        items.append(
            f"<item><title>{escape(entry.title)}</title><link>https://arxiv.org/abs/{arxiv_id}</link>"
            f"<description>{escape(entry.summary)}</description>"
            f'<guid isPermaLink="false">oai:arXiv.org:{arxiv_id}v1</guid>{creators}{categories}'
            f"<pubDate>{format_datetime(NOW - dt.timedelta(hours=6))}</pubDate></item>"
        )
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<channel><title>arXiv cs (bench)</title><link>https://arxiv.org/</link><description>bench</description>"
        + "".join(items) + "</channel></rss>\n",
        encoding="utf-8",
    )


def toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string for this text


def write_subscriber(subscriber: Subscriber, directory: Path) -> None:
    lines = [
        f"email = {toml_str(subscriber.email)}", f"name = {toml_str(subscriber.name)}",
        f"timezone = {toml_str(subscriber.timezone)}", f'send_at = "{subscriber.send_at:%H:%M}"',
        f"max_items = {subscriber.max_items}",
    ]
    for key in ("exclude", "authors", "categories", "liked"):
        values = getattr(subscriber, key)
        if values:
            lines.append(f"{key} = [{', '.join(toml_str(v) for v in values)}]")
    for topic in subscriber.topics:
        lines += ["", "[[topics]]", f"name = {toml_str(topic.name)}",
                  f"keywords = [{', '.join(toml_str(k) for k in topic.keywords)}]", f"weight = {float(topic.weight)}"]
    (directory / f"{subscriber.id}.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_config(directory: Path, *, database: str, maildir: str = "outbox") -> Path:
    path = directory / f"config-{database}.toml"
    path.write_text(
        f"""[newsletter]
title = "Daily Papers"
sender = "Daily Papers <papers@example.org>"
database = "{database}"
templates = "{ROOT / 'templates'}"
subscribers = "subscribers"

[[feeds]]
name = "arxiv"
url = "feeds/arxiv.rss.xml"

[[feeds]]
name = "daily-papers"
url = "feeds/daily-papers.json"

[ranking]
max_items = 10
lookback_days = 7

[delivery]
method = "maildir"
maildir = "{maildir}"

[ingest]
max_entries = 100000
""",
        encoding="utf-8",
    )
    return path


def timed_both(work):  # -> (wall seconds, CPU seconds of this process, result)
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def raw_parse(content: bytes):
    """feedparser.parse alone, with the collector paused as ingest.parse pauses it for its own parse: the ratio then
    shows what cleaning and storing cost, not what the collector costs the raw side (1,000 readers: 0.94x with it on,
    0.76x paused)."""
    gc.disable()
    try:
        return feedparser.parse(content, sanitize_html=False, resolve_relative_uris=True)
    finally:
        gc.enable()


def timed(work):  # -> (seconds, result)
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


# --- one size, in its own process -----------------------------------------------------


def run_size(count: int, entries_wanted: int, sample: int, naive_sample: int, repeats: int, do_ingest: bool) -> dict:
    """Build the deployment in a temp dir (kept: the parent runs the day there, then removes it); measure the parts."""
    out: dict = {"subscribers": count, "repeats": repeats}
    base = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    out["dir"] = str(base)
    if True:  # (one level kept for the diff)
        (base / "feeds").mkdir()
        (base / "subscribers").mkdir()
        entries = load_entries(entries_wanted)
        rss = base / "feeds" / "arxiv.rss.xml"
        write_rss(entries, rss)
        shutil.copyfile(DAILY_JSON, base / "feeds" / "daily-papers.json")
        subscribers = make_subscribers(count, entries)
        out["setup_s"], _ = timed(lambda: [write_subscriber(s, base / "subscribers") for s in subscribers])
        out["entries"] = len(entries)
        out["rss_bytes"] = rss.stat().st_size

        # ingest: fresh databases for the repeats, the last one is the run's
        if do_ingest:  # raw parse and ingest alternate in each repeat, so both see the same load; wall and CPU time
            content = rss.read_bytes()
            raw_wall, raw_cpu, ingest_wall, ingest_cpu, json_times = [], [], [], [], []
            for number in range(repeats):
                # Each timed part starts from the same collector state: otherwise a full collection (0.05 s beside
                # this process's 1,000 readers) falls wherever the collector's counters cross their thresholds, and
                # one part pays for the other's allocations. It fell in the ingest 4 times out of 5 while the ingest's
                # parse ran with the collector on; with it paused (ingest.parse), in the raw parse 2 out of 3.
                gc.collect()
                wall, cpu, _ = timed_both(lambda: raw_parse(content))
                raw_wall.append(wall)
                raw_cpu.append(cpu)
                scratch = load_config(write_config(base, database=f"ingest{number}.db"))
                gc.collect()
                wall, cpu, report = timed_both(functools.partial(pipeline.ingest_feeds, scratch, only="arxiv", clock=clock))
                assert report.feeds[0].error is None and report.feeds[0].new == len(entries), report.feeds[0]
                ingest_wall.append(wall)
                ingest_cpu.append(cpu)
                seconds, report = timed(functools.partial(pipeline.ingest_feeds, scratch, only="daily-papers", clock=clock))
                json_times.append(seconds)
                out["json_entries"] = report.feeds[0].new + report.feeds[0].duplicate + report.feeds[0].updated
                out["json_duplicates"] = report.feeds[0].duplicate + report.feeds[0].updated
            out["feedparser_rate"] = len(entries) / statistics.median(raw_wall)
            out["ingest_rate"] = len(entries) / statistics.median(ingest_wall)
            out["ingest_cpu_ratio"] = statistics.median(raw_cpu) / statistics.median(ingest_cpu)
            out["json_rate"] = out["json_entries"] / statistics.median(json_times)
        config = load_config(write_config(base, database="newsletter.db"))
        pipeline.ingest_feeds(config, clock=clock)
        shutil.copyfile(base / "newsletter.db", base / "sample.db")
        sample_config = load_config(write_config(base, database="sample.db", maildir="scratch-box"))

        # rank and render on a sample, on a copy of the run's database (same pool, nothing sent yet)
        out["load_subscribers_s"], loaded = timed(lambda: pipeline.subscribers_of(config))
        assert len(loaded.subscribers) == count, loaded.problems[:3]
        chosen = loaded.subscribers[: max(sample, naive_sample)]
        # The samples run in a process that built every subscriber twice (100,000 of them at the largest
        # size): without these, the collector's sweeps over them would slow both sides of the comparison.
        del subscribers, loaded
        gc.collect()
        gc.freeze()
        picked = chosen[: min(sample, count)]
        scratch_box = MaildirTransport(base / "scratch-box")
        with pipeline.open_store(sample_config, clock=clock) as store:
            out["pool_s"], pool = timed(lambda: pipeline.candidate_pool(config, store, now=NOW))
            out["pool_size"] = len(pool)
            rank_s, digests = timed(lambda: [pipeline.build_digest(config, store, s, now=NOW, pool=pool) for s in picked])
            out["rank_rate"] = len(picked) / rank_s
            out["rank_rate_with_pool"] = count / (out["pool_s"] + rank_s * count / len(picked))
            digests = [d for d in digests if d.items]
            out["nonempty_share"] = len(digests) / len(picked)
            out["renderer_start_s"], renderer = timed(lambda: Renderer(config.templates))
            branding = pipeline.branding_of(config)

            def deliver_one(digest, renderer, build=build_message) -> int:
                links = pipeline.links_for(config, digest, signer=None)
                email = renderer.render(digest, branding=branding, links=links)
                envelope = pipeline.envelope_for(config, digest.subscriber, links)
                if build is build_message:
                    _, message = build_message(email, envelope=envelope, now=NOW)
                else:
                    message = build(email, envelope=envelope, now=NOW).as_bytes()
                scratch_box.send(message, sender=config.sender, recipient=digest.subscriber.email)
                return len(message)

            def deliver_all() -> list[int]:
                sizes = [deliver_one(d, renderer) for d in digests]
                scratch_box.flush()  # as the outbox does after each batch
                return sizes

            render_s, sizes = timed(deliver_all)
            out["render_rate"] = len(digests) / render_s
            out["message_kb"] = statistics.mean(sizes) / 1024 if sizes else 0

            # naive: a Python loop over every entry per subscriber, premailer per email, EmailMessage per digest, Maildir
            few = chosen[:naive_sample]
            words = [(set(re.findall(r"\w+", e.title.lower())), set(re.findall(r"\w+", f"{e.title} {e.summary}".lower())))
                     for e in pool.entries]
            naive_rank_s, naive_rank_cpu, picks = timed_both(lambda: [naive_rank(s, pool.entries, words) for s in few])
            out["naive_rank_rate"] = len(few) / naive_rank_s
            out["naive_rank_cpu_rate"] = len(few) / naive_rank_cpu
            out["naive_nonempty_share"] = sum(1 for p in picks if p) / len(few)
            naive_renderer = Renderer(config.templates, inline=False)
            shown = [d for d in (pipeline.build_digest(config, store, s, now=NOW, pool=pool) for s in few) if d.items]
            naive_render_s, naive_render_cpu, _ = timed_both(lambda: [deliver_one(d, naive_renderer, build_email_message) for d in shown])
            out["naive_render_rate"] = len(shown) / naive_render_s if shown else float("nan")
            out["naive_render_cpu_rate"] = len(shown) / naive_render_cpu if shown else float("nan")
        scratch_box.close()

    return out


def naive_rank(subscriber: Subscriber, entries: tuple[Entry, ...], words: list[tuple[set[str], set[str]]]) -> list[Entry]:
    """The reference ranking: for this one subscriber, a Python loop over every entry and every keyword.

    Each entry's title and text words are split into sets once for all subscribers (generous to the
    naive side); a keyword matches when all its words are in the set: 2 points in the title, 1 elsewhere.
    """
    excluded = [set(word.lower().split()) for word in subscriber.exclude]
    followed = {name.lower() for name in subscriber.authors}
    keywords = [(set(keyword.lower().split()), topic.weight) for topic in subscriber.topics for keyword in topic.keywords]
    scored = []
    for entry, (title, text) in zip(entries, words):
        if any(phrase.issubset(text) for phrase in excluded):
            continue
        score = 0.0
        for phrase, weight in keywords:
            if phrase.issubset(title):
                score += 2 * weight
            elif phrase.issubset(text):
                score += weight
        if followed and any(name.lower() in followed for name in entry.authors):
            score += 2.0
        if score > 0:
            scored.append((score, entry.id, entry))
    return [entry for _, _, entry in heapq.nlargest(subscriber.max_items, scored)]


def daily_run(config_path: Path, workers: int) -> dict:
    """`newsletter digest --all [--workers N]` for one day: run_digests with a fixed clock, into the config's Maildir."""
    config = load_config(config_path)
    before = _vmhwm_mb()
    cpu_before = _cpu_seconds()
    wall, report = timed(lambda: pipeline.run_digests(config, pipeline.DigestRequest(ignore_time=True), clock=clock, workers=workers))
    cpu = _cpu_seconds() - cpu_before
    statuses: dict[str, int] = {}
    for outcome in report.digests:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    return {
        "run_s": wall, "cpu_s": cpu, "statuses": statuses, "sent": statuses.get("sent", 0), "problems": len(report.problems),
        "rss_before_run_mb": before, "peak_rss_mb": _vmhwm_mb(),
        "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if workers > 1 else 0.0,
    }


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the digest workers): what a run costs in cores."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _vmhwm_mb() -> float:
    """Linux's per-process high-water mark (VmHWM: not inherited across exec from the parent, unlike ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: this benchmark measures memory on Linux only")


# --- report -----------------------------------------------------------------------------------


def show(r: dict) -> None:
    n = r["subscribers"]
    print(f"\n=== {n:,} subscribers, {r['entries']:,} arXiv entries ({r['rss_bytes'] / 2**20:.1f} MB RSS) "
          f"+ daily-papers JSON; pool {r['pool_size']:,} candidates ===")
    if "ingest_rate" in r:
        print(f"ingest (fetch+parse+dedupe+store+FTS index): {r['ingest_rate']:8,.0f} entries/s; "
              f"feedparser.parse alone on the same bytes (collector paused, as in ingest): {r['feedparser_rate']:8,.0f} entries/s "
              f"-> ingest runs at {r['ingest_rate'] / r['feedparser_rate']:.2f}x the raw parse "
              f"(store+clean overhead {r['feedparser_rate'] / r['ingest_rate']:.2f}x); in CPU time {r['ingest_cpu_ratio']:.2f}x "
              f"(medians of {r['repeats']}, raw parse and ingest alternating)")
        print(f"ingest of the daily-papers JSON: {r['json_rate']:,.0f} entries/s ({r['json_entries']} entries, "
              f"{r['json_duplicates']} already stored from arXiv)")
    print(f"rank: candidate pool {r['pool_s']:.2f} s once; build_digest {r['rank_rate']:,.0f} subscribers/s "
          f"(sample); {r['rank_rate_with_pool']:,.0f} subscribers/s with the pool amortised over {n:,}")
    print(f"render + MIME + Maildir write: {r['render_rate']:,.0f} digests/s (sample; {r['message_kb']:.0f} KB/message; "
          f"renderer start-up {r['renderer_start_s'] * 1000:.0f} ms; {r['nonempty_share']:.0%} of sampled readers had picks)")
    sent = r["sent"]
    cold = r["cold"]
    print(f"first day (every subscriber file parsed), one process: {cold['run_s']:.1f} s wall, {cold['sent']:,} sent, "
          f"{cold['sent'] / cold['run_s']:,.0f} digests/s, {cold['run_s'] / max(cold['sent'], 1) * 1000:.2f} ms/digest; "
          f"peak RSS {cold['peak_rss_mb']:.0f} MB")
    print(f"whole daily run (a later day: files remembered; run_digests -> Maildir, one process){_of_runs(r)}: {r['run_s']:.1f} s wall, {sent:,} digests sent "
          f"({r['statuses']}), {sent / r['run_s']:,.0f} digests/s, {r['run_s'] / max(sent, 1) * 1000:.2f} ms/digest; "
          f"peak RSS {r['peak_rss_mb']:.0f} MB (VmHWM of its own process; {r['rss_before_run_mb']:.0f} MB after imports); "
          f"Maildir files {r['maildir_files']:,}; DB {r['db_mb']:.0f} MB after the run")
    print(f"  per core: {r['cpu_s']:.1f} CPU s (user + system) -> {sent / r['cpu_s']:,.0f} digests per CPU second; "
          f"wall/CPU {r['run_s'] / r['cpu_s']:.2f} (above 1: waiting on the disk's fsyncs, or on other work on this machine)")
    parts = {"pool": r["pool_s"], "rank": n / r["rank_rate"],
             "render+MIME+Maildir": sent / r["render_rate"]}
    rest = r["run_s"] - sum(parts.values())
    rest_text = (f"the rest (reading remembered subscribers, outbox: queue in SQLite, claim, mark sent; run overhead) {rest:.1f} s"
                 if rest >= 0 else  # the samples ran with caches as cold as a 300-reader run's; a long run's are warm
                 f"more than the whole run by {-rest:.1f} s: the samples' caches are colder than a {n:,}-reader run's, so this split overstates rank and render")
    print("  apportioned from the samples: " + ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())
          + f"; {rest_text}; (parsing every subscriber file, as the first day does: {r['load_subscribers_s']:.1f} s)")
    if "w2" in r:
        w2 = r["w2"]
        print(f"the same run with --workers 2{_of_runs(w2)}: {w2['run_s']:.1f} s wall, {w2['sent']:,} sent, {w2['sent'] / w2['run_s']:,.0f} digests/s "
              f"-> x{r['run_s'] / w2['run_s']:.2f} one worker ({w2['cpu_s']:.1f} CPU s in all processes); peak RSS {w2['peak_rss_mb']:.0f} MB parent, "
              f"{w2['worker_peak_rss_mb']:.0f} MB largest worker")
    naive_digest_s = 1 / r["naive_rank_rate"] + 1 / r["naive_render_rate"]  # per digest, on the naive sample
    ours_digest_s = r["run_s"] / max(sent, 1)
    print(f"naive reference (Python loop over entries per subscriber, premailer per email, EmailMessage per digest; "
          f"sampled, extrapolated per digest): rank {r['naive_rank_rate']:.1f} subscribers/s, render+MIME+Maildir "
          f"{r['naive_render_rate']:.1f} digests/s -> {1 / naive_digest_s:.1f} digests/s, {n * naive_digest_s / 60:.1f} min projected for {n:,}")
    naive_cpu = 1 / r["naive_rank_cpu_rate"] + 1 / r["naive_render_cpu_rate"]
    print(f"ours/naive: whole run x{naive_digest_s / ours_digest_s:,.1f} per digest (one process; wall), "
          f"x{naive_cpu / (r['cpu_s'] / max(sent, 1)):,.1f} in CPU time ({1 / naive_cpu:.1f} naive digests per CPU second); "
          f"rank x{r['rank_rate'] / r['naive_rank_rate']:,.1f}; render+MIME+Maildir x{r['render_rate'] / r['naive_render_rate']:.1f}")


def _of_runs(run: dict) -> str:
    """" (median of 3 runs: 2.8, 2.9, 3.1 s)" when there were several; the figures shown are that run's."""
    times = run.get("day_runs_s", [])
    return f" (median of {len(times)} runs: {', '.join(f'{t:.1f}' for t in sorted(times))} s)" if len(times) > 1 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--sample", type=int, default=300, help="subscribers for the rank/render split")
    parser.add_argument("--naive-sample", type=int, default=20, help="subscribers for the naive reference (slow)")
    parser.add_argument("--repeats", type=int, default=3, help="ingest repeats (medians)")
    parser.add_argument("--workers", type=int, default=2, help="also run the day with this many workers (1: skip)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: one size, JSON out
    parser.add_argument("--no-ingest", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run-config", help=argparse.SUPPRESS)  # internal: only the daily run, JSON out
    parser.add_argument("--run-workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_config:
        print(json.dumps(daily_run(Path(args.run_config), args.run_workers)))
        return
    if args.one:
        result = run_size(args.subscribers, args.entries, args.sample, args.naive_sample, args.repeats, not args.no_ingest)
        print(json.dumps(result))
        return
    sizes = [1000, args.subscribers] if args.subscribers > 1000 else [args.subscribers]
    print(f"bench/pipeline.py: sizes {sizes}, each in a fresh process (its own peak RSS); NOW = {NOW:%Y-%m-%d %H:%M} UTC")
    results = []
    for number, size in enumerate(sizes):
        command = [sys.executable, __file__, "--one", "--subscribers", str(size), "--entries", str(args.entries),
                   "--sample", str(args.sample), "--naive-sample", str(args.naive_sample), "--repeats", str(args.repeats)]
        if number:
            command.append("--no-ingest")  # the same feeds: ingest is measured once
        done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        base = Path(result["dir"])
        try:
            result["cold"] = run_day(base, "cold", workers=1)  # the first day: every subscriber file parsed
            # A later day (files remembered), with and without workers, alternating: the median of DAY_REPEATS runs
            # where a run takes seconds (one run of a few seconds can catch a slow minute of a shared machine).
            repeats = DAY_REPEATS if size <= 10_000 else 1
            warm, w2 = [], []
            for number in range(repeats):
                warm.append(run_day(base, f"warm{number}", workers=1, remembered_from="cold"))
                if args.workers > 1:
                    w2.append(run_day(base, f"w2-{number}", workers=args.workers, remembered_from="cold"))
            result.update(_median_run(warm))
            result["day_runs_s"] = [run["run_s"] for run in warm]
            if w2:
                result["w2"] = _median_run(w2)
                result["w2"]["day_runs_s"] = [run["run_s"] for run in w2]
        finally:
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(_spent(base), ignore_errors=True)
        results.append(result)
        show(results[-1])
    if len(results) > 1:
        small, big = results[0], results[-1]
        per_small = small["run_s"] / max(small["sent"], 1)
        per_big = big["run_s"] / max(big["sent"], 1)
        cpu_small, cpu_big = small["cpu_s"] / max(small["sent"], 1), big["cpu_s"] / max(big["sent"], 1)
        print(f"\nscaling: {per_big * 1000:.2f} ms/digest at {big['subscribers']:,} vs {per_small * 1000:.2f} ms/digest at "
              f"{small['subscribers']:,} -> x{per_big / per_small:.2f} per digest (CPU: {cpu_big * 1000:.2f} vs {cpu_small * 1000:.2f} ms, "
              f"x{cpu_big / cpu_small:.2f}); peak RSS {big['peak_rss_mb']:.0f} MB vs {small['peak_rss_mb']:.0f} MB")


def run_day(base: Path, name: str, *, workers: int, remembered_from: str | None = None) -> dict:
    """The day's run in a fresh process (its own wall time and peak RSS) on a fresh copy of the ingested database.

    ``remembered_from``: an earlier run whose remembered subscriber files this copy starts with, as on any
    day after the first (the files are unchanged).
    """
    database = f"day-{name}.db"
    shutil.copyfile(base / "newsletter.db", base / database)
    if remembered_from:
        with sqlite3.connect(base / database) as conn:
            conn.execute("ATTACH ? AS earlier", [str(base / f"day-{remembered_from}.db")])
            conn.execute("INSERT INTO subscriber_cache SELECT * FROM earlier.subscriber_cache")
    config = write_config(base, database=database, maildir=f"outbox-{name}")
    done = subprocess.run([sys.executable, __file__, "--run-config", str(config), "--run-workers", str(workers)],
                          check=True, stdout=subprocess.PIPE, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["maildir_files"] = len(list((base / f"outbox-{name}" / "new").iterdir()))
    result["db_mb"] = sum(path.stat().st_size for path in base.glob(f"{database}*")) / 2**20
    # The Maildir stays until this size is done: ext4 does not reuse an inode freed in the last ~30 s, and each new
    # file's allocation scans past every such inode, which made the next run's writes cost up to 0.5 ms each. But not
    # beside the next run's: with 16 spent 1,000-file Maildirs in its directory, two workers' run took 3.8-5.1 CPU s
    # instead of 3.1-3.5.
    _spent(base).mkdir(exist_ok=True)
    (base / f"outbox-{name}").rename(_spent(base) / f"outbox-{name}")
    return result


def _spent(base: Path) -> Path:
    """Where a size's finished Maildirs wait (on the same filesystem) until the size is done."""
    return base.with_name(base.name + "-spent")


def _median_run(runs: list[dict]) -> dict:
    """The run of median wall time (the lower middle one of an even count), its figures kept together."""
    return dict(sorted(runs, key=lambda run: run["run_s"])[(len(runs) - 1) // 2])


if __name__ == "__main__":
    main()
