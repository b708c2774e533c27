"""The SMTP password (smtp.password_env) and the link secret ([web] secret_env) never leak.

Real CLI processes with both set: `digest --all` and `run` delivering over
STARTTLS + AUTH to a real aiosmtpd, `status`, `check`, `preview`, and a
Maildir delivery; then the same with a password the server rejects. Neither
secret (nor its base64, as AUTH PLAIN/LOGIN send it) may appear in stdout,
stderr, the run log, the database files, the Maildir or the messages received.
"""

from __future__ import annotations

import base64
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import smtp_server
from conftest import EXAMPLES, Deployment
from smtp_server import PASSWORD, USERNAME, WAIT, MailServer

from newsletter import pipeline
from newsletter.config import Config

smtp_ca, smtp_tls = smtp_server.smtp_ca, smtp_server.smtp_tls  # fixtures

PASSWORD_ENV = "TEST_SMTP_PASSWORD"
SECRET_ENV = "TEST_LINK_SECRET"
LINK_SECRET = "link-secret-Zq8vK2mN5pR7tW1y-never-shown"
WRONG = "wrong-Passw0rd-Xy7Qk3-also-never-shown"
READERS = 3


def forms(secret: str) -> list[str]:
    """The secret and the encodings a careless log line could carry it in."""
    b64 = lambda raw: base64.b64encode(raw.encode()).decode()  # noqa: E731
    return [secret, b64(secret), b64(f"\0{USERNAME}\0{secret}"), secret.encode().hex(), repr(secret.encode())[2:-1]]


def assert_no_secret(where: str, text: str | bytes, secrets: list[str]) -> None:
    blob = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    for secret in secrets:
        for form in forms(secret):
            assert form not in blob, f"a secret leaked into {where}"


def reader_toml(number: int) -> str:
    return (
        f'email = "reader{number:02d}@example.org"\nname = "Reader {number}"\ntimezone = "UTC"\nsend_at = "00:00"\n\n'
        '[[topics]]\nname = "Agents"\nkeywords = ["agent", "reasoning", "language model", "learning"]\n'
    )


def deploy(deployment: Deployment, server: MailServer, *, method: str = "smtp") -> Config:
    deployment.add_feed("cs-ai", EXAMPLES / "arxiv-cs.AI.atom.xml")
    for number in range(READERS):
        deployment.add_subscriber(f"reader{number:02d}", reader_toml(number))
    deployment.header += 'base_url = "https://papers.example.org"\n'
    smtp = server.smtp_toml(password_env=PASSWORD_ENV).replace('method = "smtp"', f'method = "{method}"')
    deployment.extra = smtp + f'\n[web]\nsecret_env = "{SECRET_ENV}"\n'
    config = deployment.config()
    pipeline.ingest_feeds(config)
    return config


def env(password: str) -> dict[str, str]:
    return {**os.environ, PASSWORD_ENV: password, SECRET_ENV: LINK_SECRET}


def cli(config: Config, *args: str) -> list[str]:
    return [sys.executable, "-m", "newsletter", "--config", str(config.path), *args]


def run_cli(config: Config, *args: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cli(config, *args), capture_output=True, text=True, timeout=WAIT * 3, env=env(password))
    assert "Traceback" not in result.stderr, result.stderr
    return result


def database_files(config: Config) -> dict[str, bytes]:
    """The database and its WAL/SHM and lock files, as bytes on disk."""
    return {path.name: path.read_bytes() for path in config.database.parent.glob(config.database.name + "*") if path.is_file()}


def all_rows(config: Config) -> str:
    conn = sqlite3.connect(config.database, timeout=WAIT)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"'))
    finally:
        conn.close()


def run_scheduler_until(config: Config, done: object, password: str) -> tuple[str, str]:
    """`newsletter run` until ``done()`` holds, then SIGTERM; its stdout and stderr (the run log)."""
    process = subprocess.Popen(cli(config, "run", "--reload-every", "0.5"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env(password))
    try:
        smtp_server_wait(done)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=WAIT * 3)
    assert "Traceback" not in err, err
    return out, err


def smtp_server_wait(done: object) -> None:
    import time

    deadline = time.monotonic() + WAIT * 2
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting for the scheduler"
        time.sleep(0.1)


def test_a_real_run_with_both_secrets_set_never_shows_them(deployment: Deployment, smtp_tls: MailServer) -> None:
    config = deploy(deployment, smtp_tls)
    secrets = [PASSWORD, LINK_SECRET]
    outputs = {}
    digest = run_cli(config, "digest", "--all")
    assert digest.returncode == 0, (digest.stdout, digest.stderr)
    assert sorted(smtp_tls.handler.recipients()) == [f"reader{n:02d}@example.org" for n in range(READERS)]
    assert all(message.login == USERNAME for message in smtp_tls.handler.received)  # the password was really used
    outputs["digest"] = digest.stdout + digest.stderr
    for args in (["status"], ["check"], ["preview", "reader01", "--text"], ["rank", "reader01"], ["digest", "--all", "--dry-run"]):
        result = run_cli(config, *args)
        outputs[" ".join(args)] = result.stdout + result.stderr
    for where, text in outputs.items():
        assert_no_secret(f"`newsletter {where}`", text, secrets)
    for message in smtp_tls.handler.received:
        assert_no_secret("a message received", message.data, secrets)
        assert b"https://papers.example.org/" in message.data  # signed links are there, the key that signed them is not
    for name, data in database_files(config).items():
        assert_no_secret(name, data, secrets)
    assert_no_secret("the database rows", all_rows(config), secrets)


def test_the_scheduler_log_never_shows_the_secrets(deployment: Deployment, smtp_tls: MailServer) -> None:
    config = deploy(deployment, smtp_tls)
    handler = smtp_tls.handler
    out, err = run_scheduler_until(config, lambda: handler.count() >= READERS, PASSWORD)
    assert "reader00" in out + err  # the log is about the run ...
    assert_no_secret("the `run` log", out + err, [PASSWORD, LINK_SECRET])  # ... and never about the secrets
    for message in handler.received:
        assert_no_secret("a message received", message.data, [PASSWORD, LINK_SECRET])
    for name, data in database_files(config).items():
        assert_no_secret(name, data, [PASSWORD, LINK_SECRET])


def test_maildir_messages_never_carry_the_secrets(deployment: Deployment, smtp_tls: MailServer) -> None:
    config = deploy(deployment, smtp_tls, method="maildir")
    result = run_cli(config, "digest", "--all")
    assert result.returncode == 0, (result.stdout, result.stderr)
    files = [path for path in config.maildir.rglob("*") if path.is_file()]
    assert len(files) == READERS
    for path in files:
        assert_no_secret(f"Maildir {path.name}", path.read_bytes(), [PASSWORD, LINK_SECRET])
    assert_no_secret("`digest` output", result.stdout + result.stderr, [PASSWORD, LINK_SECRET])


@pytest.mark.parametrize("command", ["digest", "run"])
def test_a_password_the_server_rejects_is_never_shown(deployment: Deployment, smtp_tls: MailServer, command: str) -> None:
    config = deploy(deployment, smtp_tls)
    secrets = [WRONG, PASSWORD, LINK_SECRET]

    def failed_once() -> bool:
        conn = sqlite3.connect(config.database, timeout=WAIT)
        try:
            return conn.execute("SELECT count(*) FROM digests WHERE last_error IS NOT NULL").fetchone()[0] > 0
        except sqlite3.OperationalError:  # no digests table yet
            return False
        finally:
            conn.close()

    if command == "digest":
        result = run_cli(config, "digest", "--all", password=WRONG)
        assert result.returncode == 1, (result.stdout, result.stderr)
        log = result.stdout + result.stderr
    else:
        out, err = run_scheduler_until(config, failed_once, WRONG)
        log = out + err
    assert "authentication failed" in log and "535" in log, log  # the failure is clear ...
    assert_no_secret(f"`newsletter {command}` with a rejected password", log, secrets)  # ... and shows no secret
    assert smtp_tls.handler.received == []
    for args in (["status"], ["check"]):
        result = run_cli(config, *args, password=WRONG)
        assert_no_secret(f"`newsletter {' '.join(args)}`", result.stdout + result.stderr, secrets)
    for name, data in database_files(config).items():
        assert_no_secret(name, data, secrets)
    assert_no_secret("the database rows", all_rows(config), secrets)


def test_the_secret_check_can_fail(tmp_path: Path) -> None:
    """The checker itself finds a secret however it is encoded (so a pass above means something)."""
    for leaked in (f"AUTH PLAIN {base64.b64encode(f'{chr(0)}{USERNAME}{chr(0)}{PASSWORD}'.encode()).decode()}", f"pw={PASSWORD}",
                   base64.b64encode(PASSWORD.encode()).decode()):
        with pytest.raises(AssertionError, match="leaked"):
            assert_no_secret("a test string", leaked, [PASSWORD])
