//! Slows down token guessing: per peer address, a few bad tokens are answered at once (a
//! mistyped token, a revoked one still configured somewhere); beyond that each bad token is
//! answered late, one per [`STEP`] per peer, with 429 and `Retry-After`.
//!
//! Only bad tokens are throttled. A missing header guesses nothing and is answered 401 at
//! once; a good token is served at once even from a peer that is being throttled (it never
//! waits for this table), so a render manager sharing an address with a guesser keeps
//! working. The answer to a bad token is held back rather than refused early, because
//! refusing a throttled peer before looking at its token would either deny its good callers
//! or tell the guesser, by a fast answer, that its guess was wrong.
//!
//! A lone guesser gets one answer per [`STEP`]; one with many connections at most one per
//! connection per [`MAX_DELAY`] (the connection cap bounds those). Tokens have about 238
//! random bits, so this is defence in depth and a signal: `renderburst_auth_failures_total`
//! and `renderburst_auth_throttled_total` in `/metrics`.
//!
//! The table is bounded: at most [`MAX_PEERS`] addresses (IPv6 by /64, since one host owns a
//! whole /64); when it is full, peers that have nothing against them are forgotten, and if
//! none can be, new peers share one bucket. A router served without the peer's address
//! (no `ConnectInfo`) puts every caller in that shared bucket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bad tokens a peer may send before it is slowed down.
pub const FREE_FAILURES: u32 = 10;
/// One free failure comes back every this long (10 a minute sustained).
pub const REFILL: Duration = Duration::from_secs(6);
/// A throttled peer's bad tokens are answered this far apart.
pub const STEP: Duration = Duration::from_secs(1);
/// The longest a bad token's answer is held back.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// Most peer addresses remembered.
pub const MAX_PEERS: usize = 4096;

/// What to answer a bad token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 401 at once.
    Unauthorized,
    /// 429 after `delay`, with `Retry-After: retry_after_seconds` (when a free failure is
    /// back).
    Throttled {
        delay: Duration,
        retry_after_seconds: u64,
    },
}

/// Who a failure is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Peer {
    Ip(IpAddr),
    /// No address known, or the table is full.
    Shared,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Free failures left (refilled with time, at most [`FREE_FAILURES`]).
    allowance: f64,
    updated: Instant,
    /// When the last throttled answer is due; the next one comes [`STEP`] after it.
    last_answer: Instant,
}

impl Entry {
    fn refill(&mut self, now: Instant) {
        let gained =
            now.saturating_duration_since(self.updated).as_secs_f64() / REFILL.as_secs_f64();
        self.allowance = (self.allowance + gained).min(f64::from(FREE_FAILURES));
        self.updated = now;
    }

    /// Nothing held against it at `now`: it can be forgotten.
    fn is_idle(&self, now: Instant) -> bool {
        let mut e = *self;
        e.refill(now);
        e.allowance >= f64::from(FREE_FAILURES) && e.last_answer <= now
    }
}

/// Bad-token bookkeeping per peer, shared by every request of one router.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    peers: Mutex<HashMap<Peer, Entry>>,
    failures: AtomicU64,
    throttled: AtomicU64,
}

impl AuthThrottle {
    /// Records a bad token from `peer` (None: unknown) at `now` and says how to answer it.
    pub fn failure(&self, peer: Option<IpAddr>, now: Instant) -> Verdict {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut key = peer.map_or(Peer::Shared, |ip| Peer::Ip(bucket_of(ip)));
        if !peers.contains_key(&key) && peers.len() >= MAX_PEERS {
            peers.retain(|_, e| !e.is_idle(now));
            if peers.len() >= MAX_PEERS {
                key = Peer::Shared;
            }
        }
        let entry = peers.entry(key).or_insert(Entry {
            allowance: f64::from(FREE_FAILURES),
            updated: now,
            last_answer: now,
        });
        entry.refill(now);
        if entry.allowance >= 1.0 {
            entry.allowance -= 1.0;
            return Verdict::Unauthorized;
        }
        let answer = (entry.last_answer.max(now) + STEP).min(now + MAX_DELAY);
        entry.last_answer = answer;
        let wait = (1.0 - entry.allowance) * REFILL.as_secs_f64();
        self.throttled.fetch_add(1, Ordering::Relaxed);
        Verdict::Throttled {
            delay: answer - now,
            retry_after_seconds: (wait.ceil() as u64).max(1),
        }
    }

    /// Bad tokens seen since start.
    pub fn failures_total(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Bad tokens answered late with 429 since start.
    pub fn throttled_total(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Peers remembered now.
    pub fn peers(&self) -> usize {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// The address failures are counted by: IPv4 as is, IPv6 by its /64 (IPv4-mapped IPv6 as
/// the IPv4 address).
fn bucket_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[4..].fill(0);
            IpAddr::V6(s.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_peer_gets_ten_free_failures_then_one_answer_a_second() {
        let t = AuthThrottle::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.failure(ip("10.0.0.9"), t0), Verdict::Unauthorized);
        }
        // Sent one after another: each answered a step after the last.
        let mut now = t0;
        for _ in 0..3 {
            match t.failure(ip("10.0.0.9"), now) {
                Verdict::Throttled {
                    delay,
                    retry_after_seconds,
                } => {
                    assert_eq!(delay, STEP);
                    assert!((1..=6).contains(&retry_after_seconds));
                    now += delay;
                }
                other => panic!("{other:?}"),
            }
        }
        // Sent all at once: queued a step apart, never beyond MAX_DELAY.
        let delays: Vec<Duration> = (0..8)
            .map(|_| match t.failure(ip("10.0.0.9"), now) {
                Verdict::Throttled { delay, .. } => delay,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(delays[..5], [1, 2, 3, 4, 5].map(Duration::from_secs));
        assert!(delays[5..].iter().all(|d| *d == MAX_DELAY), "{delays:?}");
        // Another peer is not affected; nor is an IPv6 host by its neighbour's /64.
        assert_eq!(t.failure(ip("10.0.0.10"), now), Verdict::Unauthorized);
        assert_eq!(t.failure(ip("2001:db8::1"), now), Verdict::Unauthorized);
        assert_eq!((t.failures_total(), t.throttled_total()), (23, 11));
    }

    #[test]
    fn free_failures_come_back_with_time() {
        let t = AuthThrottle::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            t.failure(ip("10.0.0.9"), t0);
        }
        assert!(matches!(
            t.failure(ip("10.0.0.9"), t0),
            Verdict::Throttled { .. }
        ));
        let later = t0 + REFILL * 2 + STEP;
        assert_eq!(t.failure(ip("10.0.0.9"), later), Verdict::Unauthorized);
        assert_eq!(t.failure(ip("10.0.0.9"), later), Verdict::Unauthorized);
        assert!(matches!(
            t.failure(ip("10.0.0.9"), later),
            Verdict::Throttled { .. }
        ));
    }

    #[test]
    fn one_ipv6_host_is_one_peer_across_its_64() {
        let t = AuthThrottle::default();
        let t0 = Instant::now();
        for i in 0..FREE_FAILURES {
            t.failure(ip(&format!("2001:db8:0:1::{i:x}")), t0);
        }
        assert!(matches!(
            t.failure(ip("2001:db8:0:1:ffff::1"), t0),
            Verdict::Throttled { .. }
        ));
        assert_eq!(t.failure(ip("2001:db8:0:2::1"), t0), Verdict::Unauthorized);
        // IPv4-mapped is the IPv4 peer.
        for _ in 0..FREE_FAILURES {
            t.failure(ip("192.0.2.1"), t0);
        }
        assert!(matches!(
            t.failure(ip("::ffff:192.0.2.1"), t0),
            Verdict::Throttled { .. }
        ));
    }

    #[test]
    fn the_table_is_bounded() {
        let t = AuthThrottle::default();
        let t0 = Instant::now();
        // Many peers that each failed to the end of their allowance: none can be forgotten,
        // so past the cap newcomers share one bucket.
        for n in 0..MAX_PEERS as u32 + 100 {
            let peer = Some(IpAddr::from(n.to_be_bytes()));
            for _ in 0..FREE_FAILURES {
                t.failure(peer, t0);
            }
        }
        assert!(t.peers() <= MAX_PEERS + 1, "{}", t.peers());
        // Once they have nothing against them, they make room.
        let later = t0 + REFILL * FREE_FAILURES + MAX_DELAY;
        t.failure(ip("198.51.100.1"), later);
        assert_eq!(t.peers(), 1);
        // Without an address, every caller shares one bucket.
        for _ in 0..FREE_FAILURES {
            t.failure(None, later);
        }
        assert!(matches!(t.failure(None, later), Verdict::Throttled { .. }));
    }
}
