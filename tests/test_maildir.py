"""MaildirTransport: whole files (a short write is continued), nothing left in tmp/ on failure, and flush (one syncfs, or an fsync per file).

tests/test_outbox.py covers the ordinary path (unique names, tmp/ -> new/, a folder that cannot be written).
"""

from __future__ import annotations

import mailbox
import os
import stat
from pathlib import Path

import pytest

from newsletter import deliver
from newsletter.deliver import MaildirTransport
from newsletter.errors import DeliveryError

MESSAGE = b"Subject: x\r\n\r\n" + b"0123456789" * 5000 + b"\r\n"


def test_a_short_write_is_continued_until_the_whole_message_is_in_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    monkeypatch.setattr(deliver.os, "write", lambda fd, data: real_write(fd, bytes(data[:4096])))  # as a signal or a pipe could
    box = MaildirTransport(tmp_path / "box")
    key = box.send(MESSAGE, sender="a@example.org", recipient="b@example.org")
    assert mailbox.Maildir(tmp_path / "box", create=False).get_bytes(key) == MESSAGE
    assert list((tmp_path / "box" / "tmp").iterdir()) == []


def test_a_failed_write_leaves_no_file_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    box = MaildirTransport(tmp_path / "box")
    monkeypatch.setattr(deliver.os, "write", full_disk)
    with pytest.raises(DeliveryError, match="b@example.org: No space left on device"):
        box.send(MESSAGE, sender="a@example.org", recipient="b@example.org")
    assert list((tmp_path / "box" / "tmp").iterdir()) == list((tmp_path / "box" / "new").iterdir()) == []


def test_files_are_made_with_the_umask_like_any_other_file(tmp_path: Path) -> None:
    box = MaildirTransport(tmp_path / "box")
    key = box.send(MESSAGE, sender="a@example.org", recipient="b@example.org")
    (tmp_path / "plain").write_bytes(b"x")
    mode = stat.S_IMODE((tmp_path / "box" / "new" / key).stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_without_syncfs_flush_syncs_every_message_written_since_the_last_flush_then_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(deliver.os, "fsync", fsync)
    box = MaildirTransport(tmp_path / "box", syncfs=None)  # where there is no syncfs(2)
    first = [box.send(MESSAGE, sender="a@example.org", recipient=f"r{n}@example.org") for n in range(3)]
    assert synced == []  # nothing is synced message by message
    box.flush()
    new = tmp_path / "box" / "new"
    assert synced == [str(new / key) for key in first] + [str(new)]
    synced.clear()
    later = box.send(MESSAGE, sender="a@example.org", recipient="r@example.org")
    box.close()
    assert synced == [str(new / later), str(new)]
    synced.clear()
    box.flush()
    assert synced == []  # nothing new: no fsync at all


def test_flush_syncs_the_filesystem_once_for_a_batch_and_not_at_all_when_nothing_was_written(tmp_path: Path) -> None:
    synced: list[str] = []
    box = MaildirTransport(tmp_path / "box", syncfs=lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")))
    for n in range(3):
        box.send(MESSAGE, sender="a@example.org", recipient=f"r{n}@example.org")
    assert synced == []
    box.flush()
    assert synced == [str(tmp_path / "box" / "new")]  # one call, on the folder the messages are in
    box.flush()
    box.close()
    assert len(synced) == 1


@pytest.mark.skipif(deliver._SYNCFS is None, reason="no syncfs(2) in this C library")
def test_the_real_syncfs_runs_and_its_failure_names_the_maildir(tmp_path: Path) -> None:
    box = MaildirTransport(tmp_path / "box")
    key = box.send(MESSAGE, sender="a@example.org", recipient="b@example.org")
    box.flush()  # the C library's syncfs on this filesystem
    assert (tmp_path / "box" / "new" / key).read_bytes() == MESSAGE
    assert deliver._SYNCFS is not None
    with pytest.raises(OSError, match="Bad file descriptor"):
        deliver._SYNCFS(-1)  # the C call's errno becomes the OSError

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    broken = MaildirTransport(tmp_path / "box", syncfs=failing)
    broken.send(MESSAGE, sender="a@example.org", recipient="c@example.org")
    with pytest.raises(DeliveryError, match=r"box: cannot sync the messages written: Input/output error"):
        broken.flush()
