"""The faster date / timestamptz parsers registered on every connection (shared/db/connect.py) give exactly
pg8000's values: on the forms a UTC session sends, and, through pg8000's own parser, on every other form."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pg8000.converters

from shared.config import DatabaseSection
from shared.db.connect import date_in, timestamptz_in
from shared.db.database import Database


def _samples() -> list[str]:
    rng = random.Random(7)
    out = []
    for _ in range(2000):
        ts = datetime(1, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(0, 315_000_000_000_000_000))
        text = ts.strftime("%Y-%m-%d %H:%M:%S")
        micro = ts.microsecond
        if micro and rng.random() < 0.8:
            text += "." + f"{micro:06d}".rstrip("0")  # PostgreSQL drops trailing zeros of the fraction
        out.append(text + "+00")
    return out


ODD = [
    "infinity",
    "-infinity",
    "2025-03-01 10:00:00+05:30",
    "2025-03-01 10:00:00.5-08",
    "1883-11-18 12:00:00+00:53:28",
    "0044-03-15 12:00:00+00 BC",
    "2025-03-01 10:00:00.123456+00",
]


def test_timestamptz_and_date_parse_as_pg8000_does() -> None:
    for text in _samples() + ODD:
        mine, theirs = timestamptz_in(text), pg8000.converters.timestamptz_in(text)
        assert mine == theirs and type(mine) is type(theirs), text
        if isinstance(mine, datetime):
            assert mine.tzinfo is theirs.tzinfo or mine.utcoffset() == theirs.utcoffset(), text
            assert repr(mine) == repr(theirs), text
        day = text[:10]
        assert date_in(day) == pg8000.converters.date_in(day), day
    for text in ("infinity", "-infinity", "0044-03-15 BC", "10000-01-01", "2025-02-30"):
        assert date_in(text) == pg8000.converters.date_in(text), text


def test_connections_use_them(shared_db_url: str) -> None:
    db = Database(DatabaseSection.model_validate({"database_url": shared_db_url, "db_pool_size": 1}), "conv-test")
    try:
        row = db.one("SELECT timestamptz '2025-03-01 10:00:00.25+00' AS ts, date '2025-03-01' AS d")
        assert row == {"ts": datetime(2025, 3, 1, 10, 0, 0, 250000, tzinfo=UTC), "d": datetime(2025, 3, 1).date()}
        with db.connection() as conn:
            assert conn.pg_types[1184] is timestamptz_in and conn.pg_types[1082] is date_in
    finally:
        db.close()
