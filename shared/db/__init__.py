"""PostgreSQL access: connections (Cloud SQL connector or direct), a small pool, migrations."""

from shared.db.database import Database, DatabaseUnavailable, FatalDatabaseError, get_database

__all__ = ["Database", "DatabaseUnavailable", "FatalDatabaseError", "get_database"]
