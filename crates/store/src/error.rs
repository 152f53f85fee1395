use std::path::PathBuf;

/// What can go wrong in the store. Messages are plain English and do not repeat their source;
/// log the chain with `{err:#}`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing (`pool "maya"`, `vm "maya-00003"`, `token "ci"`...) does not exist.
    #[error("{what} does not exist")]
    NotFound { what: String },
    /// The change contradicts what is stored: it already exists, or is being deleted.
    #[error("{what}")]
    Conflict { what: String },
    /// Another daemon holds the database. `pid` is its process id when the lock file says it.
    #[error(
        "the database file {} is locked by another running renderburst daemon{}; stop it or use a different [store] url",
        path.display(),
        match pid { Some(pid) => format!(" (process {pid}, see {}.lock)", path.display()), None => format!(" (see {}.lock)", path.display()) }
    )]
    Locked { path: PathBuf, pid: Option<u32> },
    /// The `[store] url` is not one the store can open.
    #[error("[store] url {url:?} is not usable: {why}")]
    BadUrl { url: String, why: String },
    /// The database file or its lock file could not be created, opened or locked.
    #[error("cannot use {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("cannot bring the database schema up to date")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row holds something this version cannot read (bad JSON, unknown enum name).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        StoreError::NotFound { what: what.into() }
    }

    pub(crate) fn conflict(what: impl Into<String>) -> Self {
        StoreError::Conflict { what: what.into() }
    }
}

/// Whether a database error is a UNIQUE or PRIMARY KEY violation.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether a database error is a FOREIGN KEY violation.
pub(crate) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}
