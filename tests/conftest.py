"""Test-wide setup. Fixtures live in tests/fixtures/*, loaded as plugins."""

import os

os.environ.setdefault("NETRA_ENV", "test")
# Tests never read a developer's .env file.
os.environ.setdefault("NETRA_DOTENV", "/nonexistent/.env")

pytest_plugins = [
    "tests.fixtures.emulators",
    "tests.fixtures.postgres",
    "tests.fixtures.processes",
    "tests.fixtures.firestore",
    "tests.fixtures.auth",
    "tests.fixtures.pubsub",
]
