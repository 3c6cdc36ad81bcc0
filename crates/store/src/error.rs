//! [`StoreError`] and how sqlx errors map to it.

use crate::events::ingest;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The head revision was not the expected one (someone else wrote first).
    #[error("revision conflict: expected {expected}, current is {current}")]
    Conflict { expected: i64, current: i64 },
    /// The thing named (e.g. "active API key 'ci'") does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The thing named (e.g. "active API key named 'ci'") exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The URL is not one the store understands. Passwords are masked.
    #[error("invalid database URL '{url}': {reason}")]
    BadUrl { url: String, reason: String },
    /// The database cannot be reached right now (refused, timed out, pool
    /// closed, I/O error, server shutting down).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The thing is not in a state that allows the change, e.g. "trial 'x'
    /// is running; starting needs draft".
    #[error("{0}")]
    InvalidState(String),
    /// A draft trial's spec was changed by someone else: its spec hash is
    /// not the one the caller based its change on.
    #[error("spec conflict: expected spec hash {expected}, current is {current}")]
    SpecConflict { expected: String, current: String },
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Database(sqlx::Error),
}

impl StoreError {
    /// Whether the database refused a row for its values (a check or other
    /// constraint, a value it cannot store) rather than failing as a whole:
    /// retrying the same row fails the same way.
    pub fn is_refused_row(&self) -> bool {
        ingest::is_row_refusal(self)
    }
}

/// A string that names no variant of an enum (see the `FromStr` impls).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}'")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

impl UnknownValue {
    pub(crate) fn new(what: &'static str, value: &str) -> Self {
        UnknownValue {
            what,
            value: value.to_string(),
        }
    }
}

pub(crate) fn bad_url(url: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::BadUrl {
        url: redact_url(url),
        reason: reason.to_string(),
    }
}

/// A database URL fit to print or log: the password of
/// `scheme://user:password@host…` and the value of any query parameter whose
/// name contains `password` are replaced by `***`. A password written
/// without percent-encoding may hold `/`, `@` or `#`: everything between the
/// first `:` of the user part and the last `@` before the query is masked.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let start = scheme_end + 3;
    let query_start = url[start..].find('?').map_or(url.len(), |i| start + i);
    let mut out = match url[start..query_start].rfind('@') {
        Some(at) => {
            let at = start + at;
            match url[start..at].find(':') {
                Some(colon) => format!("{}***{}", &url[..start + colon + 1], &url[at..query_start]),
                None => url[..query_start].to_string(),
            }
        }
        None => url[..query_start].to_string(),
    };
    if query_start < url.len() {
        let (query, fragment) = match url[query_start + 1..].find('#') {
            Some(i) => url[query_start + 1..].split_at(i),
            None => (&url[query_start + 1..], ""),
        };
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
        out.push_str(fragment);
    }
    out
}

/// Whether an error means the database could not be reached (as opposed to
/// a query failing).
fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => {
                let code = code.as_ref();
                // PostgreSQL: connection exceptions, shutdown, too many
                // connections, database missing / being started.
                code.starts_with("08")
                    || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "3D000")
                    // SQLite: SQLITE_CANTOPEN (and its extended codes).
                    || sqlite_primary_code(code) == Some(14)
            }
            None => false,
        },
        _ => false,
    }
}

/// The primary result code (low byte) of a SQLite error code. SQLite
/// reports its (extended) codes as decimal numbers below 10000; PostgreSQL's
/// SQLSTATEs always have five characters, and some are all digits (22021,
/// "invalid byte sequence", would otherwise read as SQLITE_BUSY).
pub(crate) fn sqlite_primary_code(code: &str) -> Option<i32> {
    if code.len() > 4 {
        return None;
    }
    code.parse::<i32>().ok().map(|c| c & 0xff)
}

/// Maps a sqlx error: connection trouble to `Unavailable`, the rest to
/// `Database`.
pub(crate) fn db_err(err: sqlx::Error) -> StoreError {
    if is_unavailable(&err) {
        StoreError::Unavailable(match &err {
            sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".to_string(),
            other => other.to_string(),
        })
    } else {
        StoreError::Database(err)
    }
}

pub(crate) fn migrate_err(err: sqlx::migrate::MigrateError) -> StoreError {
    match err {
        sqlx::migrate::MigrateError::Execute(e) if is_unavailable(&e) => db_err(e),
        other => StoreError::Migrate(other),
    }
}

pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether `err` is a unique violation of an index or constraint whose name
/// (PostgreSQL) or column list (SQLite message) mentions `needle`.
pub(crate) fn unique_violation_on(err: &sqlx::Error, needle: &str) -> bool {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            db.constraint().is_some_and(|c| c.contains(needle)) || db.message().contains(needle)
        }
        _ => false,
    }
}

/// Whether a write failed because another writer held a lock (SQLite
/// busy/locked; PostgreSQL serialization failure, deadlock, lock timeout).
pub(crate) fn is_contention(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            let code = code.as_ref();
            matches!(code, "40001" | "40P01" | "55P03")
                || matches!(sqlite_primary_code(code), Some(5 | 6))
        }),
        _ => false,
    }
}

/// Maps a failed write: lock contention (SQLite busy across processes,
/// PostgreSQL deadlock or lock timeout) to `Unavailable`, the rest as
/// [`db_err`].
pub(crate) fn write_err(err: sqlx::Error) -> StoreError {
    if is_contention(&err) {
        StoreError::Unavailable(format!("database busy, try again ({err})"))
    } else {
        db_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
        assert_eq!(redact_url("mysql://x"), "mysql://x");
        let cases = [
            // A password that was not percent-encoded.
            ("postgres://u:p@ss/w#rd@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u:pw@h/db?options=a@b",
                "postgres://u:***@h/db?options=a@b",
            ),
            (
                "postgres://h/db?user=u&password=s3cret&sslmode=disable",
                "postgres://h/db?user=u&password=***&sslmode=disable",
            ),
            (
                "postgres://h/db?sslpassword=k#f",
                "postgres://h/db?sslpassword=***#f",
            ),
            ("postgres://u:s3cret@h", "postgres://u:***@h"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn numeric_sqlstates_are_not_sqlite_codes() {
        assert_eq!(sqlite_primary_code("5"), Some(5));
        assert_eq!(sqlite_primary_code("517"), Some(5)); // SQLITE_BUSY_SNAPSHOT
        assert_eq!(sqlite_primary_code("262"), Some(6)); // SQLITE_LOCKED_SHAREDCACHE
        assert_eq!(sqlite_primary_code("22021"), None);
        assert_eq!(sqlite_primary_code("22030"), None);
        assert_eq!(sqlite_primary_code("40P01"), None);
    }
}
