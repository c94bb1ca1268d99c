"""The store: SQLModel tables, engines and Alembic migrations, row locks, the hash-chained audit
trail and bearer tokens."""
