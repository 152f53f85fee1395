//! renderburst's persistent state: the only crate that speaks SQL.
//!
//! It owns the SQLite database and its schema (`migrations/` at the repository root,
//! forward-only, embedded in the binary by [`MIGRATOR`]), and one module per table:
//!
//! - [`pools`]: desired state, one row per pool (spec, generation, deleting, next node index);
//! - [`vms`]: the VM inventory (what Azure last showed, plus heartbeats and drain marks),
//!   Batch nodes included;
//! - [`backoff`]: each pool's backoff after failed writes, and the names of failed creates;
//! - [`batch`]: what the controller last saw of each Batch pool, and the Batch planner's memory;
//! - [`intents`]: the intent journal, written before every ARM write and closed after it;
//! - [`events`]: the append-only audit log;
//! - [`requests`]: node requests (leases) from render managers, which add to desired counts;
//! - [`schedules`]: off-hours schedules and the last firing each applied;
//! - [`offerings`]: VM sizes Azure refused for capacity or quota, and until when;
//! - [`tasks`]: the last status each background task reported;
//! - [`tokens`]: API tokens, stored only as hashes;
//! - [`secret`]: the one generator of every secret renderburst makes (OS CSPRNG);
//! - [`meta`]: facts about the database itself, such as the owner id tagged on our resources.
//!
//! It does not own policy: validating specs and targets, choosing what to do, and deciding
//! what to log are the callers' (api, controller). It never talks to Azure.
//!
//! # Queries are checked at run time, not compile time
//!
//! Every statement is a runtime `sqlx::query` with explicit row mapping instead of the
//! compile-time-checked `query!` macros, because CI has no database (and no `DATABASE_URL` or
//! offline query cache) at build time. The `macros` feature is enabled only for
//! `sqlx::migrate!`. The integration tests in `tests/store.rs` exercise every statement against
//! a real SQLite file instead.
//!
//! # Concurrency
//!
//! The database runs in WAL mode with two connection pools: one connection for every write,
//! and a few query-only connections for reads. SQLite has one writer at a time anyway; queuing
//! writes in the writer pool (in order, without sleeping) beats letting several connections
//! race for the write lock, where each loser sleeps in SQLite's busy handler for 1 ms, 2 ms,
//! 5 ms... In WAL mode readers never wait for the writer, nor the writer for readers, so reads
//! (API handlers) proceed while the controller writes. A method that writes runs on the
//! writer; a read-only connection refuses writes, so a write sent to it by mistake fails
//! loudly. The busy timeout remains for other processes (the `sqlite3` shell, backups). Every
//! method is short: it either runs a single statement (an `UPDATE ... RETURNING` where a read and a
//! write must agree) or a transaction whose first statement is a write, so no transaction ever
//! waits on anything but SQLite and no read lock has to be upgraded under contention.
//!
//! One daemon per database: [`Store::open`] takes an exclusive lock on `{db}.lock` that the
//! kernel drops when the process dies, so a daemon killed with SIGKILL can restart at once.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rb_core::UnixSeconds;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub mod addresses;
pub mod backoff;
pub mod batch;
mod error;
pub mod events;
pub mod intents;
pub mod meta;
pub mod offerings;
pub mod planning;
pub mod pools;
pub mod requests;
pub mod schedules;
pub mod secret;
pub mod tasks;
pub mod tokens;
pub mod vms;

pub use backoff::BackoffRow;
pub use batch::BatchState;
pub use error::StoreError;
pub use events::{Event, EventQuery, NewEvent};
pub use intents::{Intent, IntentOutcome, NewIntent, OpenIntent};
pub use planning::node_views;
pub use pools::PoolRecord;
pub use requests::RequestRecord;
pub use schedules::{FiringOutcome, PoolBoundsUpdate, PutOutcome, ScheduleRecord};
pub use secret::random_token;
pub use tokens::TokenRecord;
pub use vms::VmRecord;

/// Checkpoints the WAL every second from its own connection, so the writer never does.
/// PASSIVE copies what it can without waiting for the writer or readers; the task ends when
/// the store's pools close.
fn spawn_checkpointer(conn: SqlitePool) -> tokio::sync::watch::Sender<()> {
    let (stop, mut stopped) = tokio::sync::watch::channel(());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                // The Store was dropped or closed.
                _ = stopped.changed() => break,
            }
            // Not fatal if it fails: the next tick tries again; the WAL only grows meanwhile.
            let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&conn)
                .await;
        }
        conn.close().await;
    });
    stop
}

/// The schema migrations, embedded at compile time from the repository's `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections for reads: a few let reads (API handlers) proceed side by side and while the
/// controller writes. Writes have a pool of their own with one connection.
const READ_CONNECTIONS: u32 = 4;

/// Each reader's page cache (SQLite's `cache_size`; negative: KiB).
const READER_CACHE_KIB: &str = "-512";

/// The handle to renderburst's database. Cheap to share behind an `Arc`; every method takes
/// `&self`.
///
/// Holds the exclusive lock on `{db}.lock` for as long as it lives.
#[derive(Debug)]
pub struct Store {
    /// Query-only connections, for methods that only read.
    pub(crate) pool: SqlitePool,
    /// The one connection for methods that write (see "Concurrency" above).
    pub(crate) writer: SqlitePool,
    /// Node-request creates, committed in groups by one task (see `requests.rs`).
    pub(crate) creates: tokio::sync::mpsc::Sender<requests::CreateJob>,
    /// Dropping it stops the WAL checkpointer.
    _checkpoints: tokio::sync::watch::Sender<()>,
    /// `api_tokens` in memory (see `tokens.rs`).
    pub(crate) tokens: tokens::TokenCache,
    /// Notified by every change of `schedules` (see `schedules.rs`).
    pub(crate) schedules_changed: std::sync::Arc<tokio::sync::Notify>,
    path: PathBuf,
    /// Held, never read: the exclusive lock lives as long as this open file.
    _lock: File,
}

impl Store {
    /// Opens (creating if missing) the database at `path`, takes the one-daemon lock, and
    /// brings the schema up to date.
    ///
    /// Errors: [`StoreError::Locked`] if another daemon (or another `Store` in this process)
    /// holds the database; [`StoreError::Io`] if the lock file cannot be opened;
    /// [`StoreError::Db`] or [`StoreError::Migrate`] if SQLite or the migrations fail.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let lock = take_lock(path)?;
        create_private(path).map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // Connections to a local file do not go stale: no ping before every use, which would
        // cost a round trip to the connection's thread per statement.
        // The writer never checkpoints the WAL itself: a checkpoint on the commit path stalls
        // every queued write for tens of milliseconds. A background task checkpoints instead
        // (PASSIVE, so it never blocks the writer).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        MIGRATOR.run(&writer).await?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        let checkpoints = spawn_checkpointer(checkpointer);
        // Readers keep a smaller page cache than SQLite's 2 MB default: each of them fills
        // its own while a large farm's inventory is read, and the file's pages stay in the
        // kernel's cache for all of them anyway.
        let pool = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(
                options
                    .pragma("query_only", "ON")
                    .pragma("cache_size", READER_CACHE_KIB),
            )
            .await?;
        let creates = requests::spawn_create_batcher(writer.clone());
        Ok(Store {
            pool,
            writer,
            creates,
            _checkpoints: checkpoints,
            tokens: tokens::TokenCache::default(),
            schedules_changed: Default::default(),
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// Opens the database named by the config's `[store] url` (see [`path_from_url`]).
    pub async fn open_url(url: &str) -> Result<Store, StoreError> {
        Store::open(&path_from_url(url)?).await
    }

    /// The database file's path, as given to [`Store::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection (checkpointing the WAL) and then releases the lock. Dropping a
    /// `Store` also releases the lock, but leaves closing the connections to the background.
    pub async fn close(self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    /// Runs a trivial query: the database answers (for readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Runs SQLite's `PRAGMA integrity_check`; [`StoreError::Corrupt`] with its findings if it
    /// reports anything but "ok".
    pub async fn check_integrity(&self) -> Result<(), StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check")
            .fetch_all(&self.pool)
            .await?;
        let findings: Vec<String> = rows.into_iter().map(|(line,)| line).collect();
        if findings == ["ok"] {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "integrity check: {}",
                findings.join("; ")
            )))
        }
    }
}

/// The database path in a `[store] url`: `sqlite://renderburst.db` (relative to the working
/// directory), `sqlite:///var/lib/renderburst/renderburst.db` (absolute), or `sqlite:PATH`.
///
/// Query parameters (`?mode=...`) and in-memory databases are rejected: the daemon always
/// opens a file read-write, creating it if missing, and needs a file to lock.
pub fn path_from_url(url: &str) -> Result<PathBuf, StoreError> {
    let bad = |why: &str| StoreError::BadUrl {
        url: url.to_string(),
        why: why.to_string(),
    };
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| bad("it must start with sqlite://, as in sqlite://renderburst.db"))?;
    if rest.contains('?') {
        return Err(bad(
            "query parameters such as ?mode= are not supported; give only the file path",
        ));
    }
    if rest.is_empty() {
        return Err(bad("it names no file"));
    }
    if rest == ":memory:" || rest.starts_with(":memory:") {
        return Err(bad(
            "an in-memory database would lose all state on restart; give a file path",
        ));
    }
    Ok(PathBuf::from(rest))
}

/// Creates the database file, empty and mode 0600, if it does not exist, before SQLite opens
/// it: the database holds API token hashes, node tokens' hashes and pool specs naming the
/// farm's accounts and shares, and SQLite gives its `-wal` and `-shm` files the database
/// file's mode. An existing file keeps the mode its operator gave it.
fn create_private(db: &Path) -> std::io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The umask can only narrow it.
        opts.mode(0o600);
    }
    match opts.open(db) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Takes the exclusive, non-blocking lock on `{db}.lock` and writes our process id into it so
/// that a second daemon can say who holds it.
fn take_lock(db: &Path) -> Result<File, StoreError> {
    let lock_path = lock_path(db);
    let io_err = |source| StoreError::Io {
        path: lock_path.clone(),
        source,
    };
    // Not truncated on open: the file may hold the current holder's pid.
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(&lock_path).map_err(io_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(StoreError::Locked {
                path: db.to_path_buf(),
                pid,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io_err(e)),
    }
    // Best effort: the lock is what matters, the pid only helps an admin find the holder.
    let _ = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| {
            write!(file, "{}", std::process::id())?;
            file.flush()
        });
    Ok(file)
}

/// `{db}.lock`, beside the database file.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = OsString::from(db.as_os_str());
    name.push(".lock");
    PathBuf::from(name)
}

/// Now, in Unix seconds, for the rows that record when they were written.
pub(crate) fn now() -> UnixSeconds {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An enum's serde name (`"running"`, `"spot"`...), the form stored in the database.
pub(crate) fn enum_str<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => {
            unreachable!("enum stored in the database does not serialize to a string: {other:?}")
        }
    }
}

/// Parses an enum from its serde name; a name this version does not know is a corrupt row.
pub(crate) fn parse_enum<T: DeserializeOwned>(column: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|e| StoreError::Corrupt(format!("{column} {text:?}: {e}")))
}

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Serializing our own plain data types (no maps with non-string keys) cannot fail.
    serde_json::to_string(value).expect("serializing a value to JSON")
}

pub(crate) fn parse_json<T: DeserializeOwned>(column: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// u64 counts and indexes to SQLite's i64; beyond i64::MAX is a caller's bug, reported as a
/// conflict rather than a wrapped number.
pub(crate) fn to_i64(what: &str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Conflict {
        what: format!("{what} {value} is too large"),
    })
}
