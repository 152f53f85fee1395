//! A simulator that survives a restart: its world saved to a state file and loaded again.
//!
//! `renderburst serve` on its embedded default keeps a simulated Azure beside its database;
//! the database holds VM names, Batch account endpoints and operation URLs that only mean
//! something if the simulator comes back with the same resources, on the same address, with
//! the same CA. So the file holds the resources (Batch pools and their nodes included),
//! operations (Compute Schedule's too), pending evictions, statistics, the address, the TLS
//! chain and key, and the token-signing key. It does not hold the settings (the caller passes them at every start,
//! so an edited configuration applies) nor the throttling buckets (they start full).
//!
//! Saving: the whole world is serialized under the lock and written outside it, to a
//! temporary file (mode 0600: VM custom data and keys are in it) renamed over the old one, so
//! a reader never sees half a file. A request that may have changed the world (anything but
//! a GET) asks for a save within [`DEBOUNCE`]; ARM reads, which only advance time and count
//! statistics, at most every [`PERIOD`]; and a shutdown saves last. A SIGKILL so loses at most
//! the writes of the last few dozen milliseconds, which a client's intent journal resolves by
//! reading ARM: the same as Azure losing nothing but a client losing its answer.
//!
//! Time: instants are saved as wall-clock Unix milliseconds and loaded back relative to the
//! new process's clock. Since time is lazy (`State::advance`), a VM that was being created
//! when the process stopped has finished when the next request looks, as it would have in
//! Azure, and an operation due while stopped completes then.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::Shared;
use crate::config::SimConfig;
use crate::schedule::BulkOp;
use crate::state::{Op, PendingEviction, Res, State, Stats, key};
use crate::tls::TlsParts;

/// How long after a write request the state is saved (writes arriving meanwhile join it).
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// How often reads (statistics, lazy transitions) are saved.
pub const PERIOD: Duration = Duration::from_secs(2);
/// The file's format; another number is refused rather than misread.
const FORMAT: u32 = 1;

/// A persistent simulator's file and what must stay the same across its restarts.
pub(crate) struct Persist {
    pub path: PathBuf,
    pub addr: SocketAddr,
    pub tls: TlsParts,
    /// A write request was answered: save soon.
    pub urgent: Notify,
    /// A read was answered: save at the next period.
    pub touched: AtomicBool,
    /// One save at a time (the periodic task and a shutdown's last save).
    writing: Mutex<()>,
}

impl Persist {
    pub fn new(path: PathBuf, addr: SocketAddr, tls: TlsParts) -> Self {
        Self {
            path,
            addr,
            tls,
            urgent: Notify::new(),
            touched: AtomicBool::new(false),
            writing: Mutex::new(()),
        }
    }

    /// Notes that a request was answered.
    pub fn mark(&self, write: bool) {
        if write {
            self.urgent.notify_one();
        } else {
            self.touched.store(true, Ordering::Relaxed);
        }
    }
}

#[derive(Serialize)]
struct SnapshotRef<'a> {
    format: u32,
    saved_at_unix_ms: i64,
    addr: SocketAddr,
    tls: &'a TlsParts,
    token_key: String,
    seq: u64,
    next_ip: u32,
    stats: &'a Stats,
    resources: Vec<&'a Res>,
    operations: Vec<&'a Op>,
    evictions: &'a [PendingEviction],
    bulk_operations: Vec<&'a BulkOp>,
}

/// What a state file holds.
#[derive(Deserialize)]
pub(crate) struct Snapshot {
    format: u32,
    pub addr: SocketAddr,
    pub tls: TlsParts,
    token_key: String,
    seq: u64,
    next_ip: u32,
    stats: Stats,
    resources: Vec<Res>,
    operations: Vec<Op>,
    evictions: Vec<PendingEviction>,
    /// Compute Schedule operations (absent from files written before they were modelled).
    #[serde(default)]
    bulk_operations: Vec<BulkOp>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("addr", &self.addr)
            .field("resources", &self.resources.len())
            .field("operations", &self.operations.len())
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    pub fn token_key(&self) -> anyhow::Result<[u8; 32]> {
        let bytes = (0..self.token_key.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(self.token_key.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .context("token_key is not hex")?;
        bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("token_key is not 32 bytes"))
    }

    /// The world as saved, with the given settings, and what came due while it was stopped
    /// applied.
    pub fn into_state(self, cfg: SimConfig, now: Instant) -> State {
        let mut st = State::new(cfg, now);
        st.res = self
            .resources
            .into_iter()
            .map(|r| (key(&r.id), r))
            .collect();
        st.ops = self
            .operations
            .into_iter()
            .map(|o| (o.id.clone(), o))
            .collect();
        st.evictions = self.evictions;
        st.bulk = self
            .bulk_operations
            .into_iter()
            .map(|b| (b.id.clone(), b))
            .collect();
        st.stats = self.stats;
        st.seq = self.seq;
        st.next_ip = self.next_ip;
        st.advance(now);
        st
    }
}

/// Reads a state file; `None` if there is none.
pub(crate) fn load(path: &Path) -> anyhow::Result<Option<Snapshot>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let snap: Snapshot = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not a simulator state file this version can read",
            path.display()
        )
    })?;
    if snap.format != FORMAT {
        anyhow::bail!(
            "{} has format {}, this version reads {FORMAT}",
            path.display(),
            snap.format
        );
    }
    Ok(Some(snap))
}

/// Writes the world to the state file, atomically.
pub(crate) fn save(shared: &Shared) -> anyhow::Result<()> {
    let Some(p) = shared.persist.as_ref() else {
        return Ok(());
    };
    let _one = p.writing.lock().unwrap_or_else(|e| e.into_inner());
    p.touched.store(false, Ordering::Relaxed);
    let token_key: String = shared
        .mint
        .key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let bytes = {
        let st = shared.lock();
        serde_json::to_vec(&SnapshotRef {
            format: FORMAT,
            saved_at_unix_ms: unix_ms_now(),
            addr: p.addr,
            tls: &p.tls,
            token_key,
            seq: st.seq,
            next_ip: st.next_ip,
            stats: &st.stats,
            resources: st.res.values().collect(),
            operations: st.ops.values().collect(),
            evictions: &st.evictions,
            bulk_operations: st.bulk.values().collect(),
        })?
    };
    write_atomic(&p.path, &bytes)
        .with_context(|| format!("cannot write the simulator's state to {}", p.path.display()))
}

/// `path.tmp`, created 0600, synced, renamed over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A leftover of a crash may have other permissions: start from nothing.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Saves off the async runtime, logging a failure (the next save retries).
pub(crate) async fn save_logged(shared: &Arc<Shared>) {
    let s = shared.clone();
    match tokio::task::spawn_blocking(move || save(&s)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot save the simulator's state")
        }
        Err(e) => tracing::warn!(error = %e, "the simulator's save task failed"),
    }
}

/// Saves after write requests, periodically after reads, and once more when told to stop.
pub(crate) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let Some(p) = shared.persist.as_ref() else {
        return;
    };
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = p.urgent.notified() => {
                // Let a burst of writes land in one save.
                tokio::select! {
                    _ = tokio::time::sleep(DEBOUNCE) => {}
                    _ = stop.changed() => break,
                }
            }
            _ = tick.tick() => {
                if !p.touched.load(Ordering::Relaxed) {
                    continue;
                }
            }
            _ = stop.changed() => break,
        }
        save_logged(&shared).await;
    }
    save_logged(&shared).await;
}

/// Binds the address of a first start. Port 0 picks a port below the kernel's ephemeral
/// range when it can, since the next start must get the same one back, and an ephemeral
/// port may by then be some outgoing connection's.
pub(crate) async fn bind_first(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    if addr.port() != 0 {
        return tokio::net::TcpListener::bind(addr).await;
    }
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (lo, hi) = (10_000u16, ephemeral_low);
    if hi > lo + 100 {
        for _ in 0..64 {
            let mut a = addr;
            a.set_port(fastrand::u16(lo..hi));
            if let Ok(l) = tokio::net::TcpListener::bind(a).await {
                return Ok(l);
            }
        }
    }
    tokio::net::TcpListener::bind(addr).await
}

/// Binds the address saved in a state file, saying clearly when something else holds it.
pub(crate) async fn bind_saved(
    addr: SocketAddr,
    path: &Path,
) -> anyhow::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(anyhow::anyhow!(
            "the simulator's address {addr} (kept in {}) is in use by another process; \
             stop that process, or delete {} together with the database to start afresh",
            path.display(),
            path.display()
        )),
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot listen on the simulator's address {addr} (kept in {})",
                path.display()
            )
        }),
    }
}

fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn to_unix_ms(t: Instant) -> i64 {
    let (now_i, now_w) = (Instant::now(), unix_ms_now());
    if t >= now_i {
        now_w.saturating_add((t - now_i).as_millis() as i64)
    } else {
        now_w.saturating_sub((now_i - t).as_millis() as i64)
    }
}

fn from_unix_ms(ms: i64) -> Instant {
    let (now_i, now_w) = (Instant::now(), unix_ms_now());
    let d = ms.saturating_sub(now_w);
    if d >= 0 {
        now_i + Duration::from_millis(d as u64)
    } else {
        // Further back than this clock goes: as good as "long ago" for lazy time.
        now_i
            .checked_sub(Duration::from_millis(d.unsigned_abs()))
            .unwrap_or(now_i)
    }
}

/// `Instant` as wall-clock Unix milliseconds.
pub(crate) mod instant {
    use super::*;

    pub fn serialize<S: serde::Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(to_unix_ms(*t))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        Ok(from_unix_ms(i64::deserialize(d)?))
    }
}

pub(crate) mod opt_instant {
    use super::*;

    pub fn serialize<S: serde::Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        t.map(to_unix_ms).serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Instant>, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.map(from_unix_ms))
    }
}

/// `OffsetDateTime` as RFC 3339.
pub(crate) mod datetime {
    use super::*;
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn serialize<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let text = t.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom)
    }
}

pub(crate) mod opt_datetime {
    use super::*;
    use time::OffsetDateTime;

    #[derive(Serialize, Deserialize)]
    struct W(#[serde(with = "super::datetime")] OffsetDateTime);

    pub fn serialize<S: serde::Serializer>(
        t: &Option<OffsetDateTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        t.map(W).serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

pub(crate) mod status_code {
    use super::*;

    pub fn serialize<S: serde::Serializer>(c: &http::StatusCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(c.as_u16())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<http::StatusCode, D::Error> {
        http::StatusCode::from_u16(u16::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// An operation's decided failure: its error and HTTP status.
pub(crate) mod opt_failure {
    use super::*;
    use arm_model::ErrorDetail;

    #[derive(Serialize, Deserialize)]
    struct W(
        ErrorDetail,
        #[serde(with = "super::status_code")] http::StatusCode,
    );

    pub fn serialize<S: serde::Serializer>(
        f: &Option<(ErrorDetail, http::StatusCode)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        f.clone().map(|(e, c)| W(e, c)).serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<(ErrorDetail, http::StatusCode)>, D::Error> {
        Ok(Option::<W>::deserialize(d)?.map(|W(e, c)| (e, c)))
    }
}

/// `&'static str` under another name: serde's derive borrows every field spelled `&str` from
/// the input, which a `'static` one cannot be.
pub(crate) type StaticStr = &'static str;

/// The `&'static str` fields of the world (Batch node and allocation states, quota
/// families): saved as text, loaded back as the one static string of that value.
pub(crate) mod static_str {
    use super::*;

    const KNOWN: &[&str] = &[
        "creating",
        "idle",
        "running",
        "leavingpool",
        "preempted",
        "starting",
        "rebooting",
        "reimaging",
        "offline",
        "unusable",
        "unknown",
        "waitingforstarttask",
        "starttaskfailed",
        "Steady",
        "Resizing",
        "Stopping",
    ];

    pub fn serialize<S: serde::Serializer>(v: &StaticStr, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<StaticStr, D::Error> {
        let text = String::deserialize(d)?;
        KNOWN
            .iter()
            .copied()
            .chain(arm_model::sizes::catalog().iter().map(|s| s.family))
            .find(|k| *k == text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown value {text:?}")))
    }
}
