"""Small helpers the parts of the store share: timestamps, rows as dicts, SQLite errors as StoreError."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

from ..errors import StoreError


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


def _store_error(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return StoreError(f"{path}: database is busy ({exc}); try again")
    return StoreError(f"{path}: the database is damaged or not a newsletter database ({exc}); it was left as it is — restore a backup or point newsletter.database elsewhere")
