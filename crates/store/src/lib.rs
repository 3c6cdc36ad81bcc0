//! Persistence over SQLite and PostgreSQL.
