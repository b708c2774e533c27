"""LinkSigner.sign writes the token itsdangerous's URLSafeSerializer.dumps writes (read() loads it with itsdangerous)."""

from __future__ import annotations

import datetime as dt

from hypothesis import example, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer

from newsletter.links import LESS, MORE, UNSUBSCRIBE, LinkClaim, LinkSigner

SECRET = "correct-horse-battery-staple-0123456789"


@settings(max_examples=300, deadline=None)
@given(
    action=st.sampled_from([UNSUBSCRIBE, MORE, LESS]),
    subscriber_id=st.one_of(st.text(max_size=60), st.text(alphabet="ab", max_size=200)),  # "ab" runs compress
    entry_id=st.one_of(st.none(), st.text(max_size=40)),
    issued=st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 1, 1)),
    secret=st.sampled_from([SECRET, "ünïcode-secret-0123456789", "s" * 64]),
)
@example(action=MORE, subscriber_id="a" * 120, entry_id="arxiv:2601.00001", issued=dt.date(2026, 11, 26), secret=SECRET)
@example(action=UNSUBSCRIBE, subscriber_id="zoë \"quoted\" \\ \u2028 😀", entry_id=None, issued=dt.date(2026, 11, 26), secret=SECRET)
def test_sign_gives_the_token_itsdangerous_gives(action: str, subscriber_id: str, entry_id: str | None, issued: dt.date, secret: str) -> None:
    signer = LinkSigner(secret)
    token = signer.sign(action, subscriber_id, issued=issued, entry_id=entry_id)
    assert token == URLSafeSerializer(secret, salt="newsletter-links").dumps([action, subscriber_id, entry_id, issued.isoformat()])
    if action == UNSUBSCRIBE or entry_id:
        assert signer.read(token, today=issued) == LinkClaim(action, subscriber_id, entry_id, issued)


def test_the_compressed_form_is_used_when_it_is_shorter() -> None:
    token = LinkSigner(SECRET).sign(MORE, "a" * 120, issued=dt.date(2026, 11, 26), entry_id="arxiv:2601.00001")
    assert token.startswith(".")  # itsdangerous marks a zlib payload with a leading "."
    assert not LinkSigner(SECRET).sign(MORE, "ada", issued=dt.date(2026, 11, 26), entry_id="arxiv:2601.00001").startswith(".")
