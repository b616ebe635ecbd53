"""Fixtures of the intelligence tests: one migrated database for the module's tests, a user per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.config import DatabaseSection
from shared.db.database import Database


@pytest.fixture(scope="session")
def intel_db(shared_db_url: str) -> Iterator[Database]:
    db = Database(
        DatabaseSection.model_validate({"database_url": shared_db_url, "db_pool_size": 4}), "intelligence-tests"
    )
    yield db
    db.close()


def make_user(db: Any) -> str:
    user_id = str(uuid.uuid4())
    db.execute("INSERT INTO users (id, email) VALUES (%s, %s)", [user_id, f"{user_id[:8]}@example.com"])
    return user_id


@pytest.fixture
def user_id(intel_db: Database) -> str:
    return make_user(intel_db)
