//! What the `x-ms-ratelimit-remaining-*` headers teach about a bucket: a lower bound of its
//! capacity and of its refill rate, from the answers alone.
//!
//! An answer says the bucket held `remaining` whole tokens just after the server took (or
//! refused) that request, at some moment between the request's send and its answer. Between
//! two answers `a` and `b` the bucket refilled by at least
//! `remaining_b − (remaining_a + 1) + k`, where `k` counts the requests that surely drew on it
//! in between: `b` itself if it was taken, and those answered after `a` and before `b` was
//! sent, less any that were still in flight when `a` was answered (they may have been taken
//! before `a`). That refill took at most `answer_b − send_a`. So
//!
//! ```text
//! rate ≥ (remaining_b − remaining_a − 1 + k) / (answer_b − send_a)
//! ```
//!
//! holds however many requests overlap, whatever order they are answered in, and even when
//! the bucket was full for part of the window (refill lost to the cap only makes the true rate
//! higher). Other clients drawing on the same bucket lower `remaining_b`, so the bound is of
//! *our share* of the rate — which is what pacing needs. The estimate is the best bound over
//! windows ending in the last [`HORIZON`]; long windows make the rounding of `remaining` (the
//! `− 1`) small. Being a lower bound it never paces faster than the bucket refills; the
//! headers themselves then hand back what it leaves unused (see `bucket.rs`).
//!
//! A 429 means the model was wrong (the bucket shrank, another client started): the
//! estimator forgets what it learnt before it and keeps half the rate in use as a fallback
//! until new windows give a bound.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Bounds older than this are forgotten, so a bucket that shrank is relearnt.
pub(super) const HORIZON: Duration = Duration::from_secs(30);
/// Observations kept as window starts.
const RING: usize = 64;
/// Answers closer together than this share one slot of the ring (the one with fewer
/// requests in flight, the better window start), so a busy bucket's ring still spans
/// seconds.
const THIN: Duration = Duration::from_millis(20);

/// Where a request stood when it was sent: what the bucket had heard by then.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    /// Answers with a header received before the send.
    pub(super) answers: u64,
    /// Answers counted as taken (neither 429 nor 5xx) received before the send.
    pub(super) taken: u64,
}

/// One answer's header, as the bucket hands it to the estimator.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answer {
    pub sent: Instant,
    pub at: Instant,
    pub remaining: u64,
    /// The request drew a token (an answer other than 429 or 5xx).
    pub taken: bool,
    /// Other requests on this bucket still in flight when it came.
    pub others: u64,
    pub mark: Mark,
}

#[derive(Debug, Clone, Copy)]
struct Obs {
    sent: Instant,
    at: Instant,
    remaining: u64,
    others: u64,
    /// This answer's number (answers with a header before it, plus one).
    ordinal: u64,
    /// Taken answers up to and including this one.
    taken_total: u64,
    /// Best lower bound of the refill rate over windows ending here.
    rate_lb: Option<f64>,
}

#[derive(Debug, Default)]
pub(super) struct Estimator {
    ring: VecDeque<Obs>,
    answers: u64,
    taken: u64,
    capacity: Option<f64>,
    fallback_rate: Option<f64>,
}

impl Estimator {
    /// What a request sent now will be measured against.
    pub fn mark(&self) -> Mark {
        Mark {
            answers: self.answers,
            taken: self.taken,
        }
    }

    /// The largest bucket the headers have shown (`remaining + 1`: the answer's own token)
    /// since the last reset.
    pub fn capacity(&self) -> Option<f64> {
        self.capacity
    }

    /// The best lower bound of the refill rate over the last [`HORIZON`], if any window gave
    /// one.
    pub fn learned_rate(&self, now: Instant) -> Option<f64> {
        self.ring
            .iter()
            .filter(|o| now.saturating_duration_since(o.at) <= HORIZON)
            .filter_map(|o| o.rate_lb)
            .reduce(f64::max)
    }

    /// After a 429: half the rate that was in use, until a window gives a bound.
    pub fn fallback_rate(&self) -> Option<f64> {
        self.fallback_rate
    }

    /// Reads one answer's header.
    pub fn observe(&mut self, a: Answer) {
        self.answers += 1;
        if a.taken {
            self.taken += 1;
        }
        self.capacity = Some(self.capacity.unwrap_or(0.0).max(a.remaining as f64 + 1.0));
        let mut b = Obs {
            sent: a.sent,
            at: a.at,
            remaining: a.remaining,
            others: a.others,
            ordinal: self.answers,
            taken_total: self.taken,
            rate_lb: None,
        };
        for s in &self.ring {
            // Only windows whose start was answered before `b` was sent: then `b` was
            // surely taken after it.
            if a.mark.answers < s.ordinal {
                continue;
            }
            let between = a.mark.taken as f64 - s.taken_total as f64 - s.others as f64;
            let k = between.max(0.0) + if a.taken { 1.0 } else { 0.0 };
            let refilled = a.remaining as f64 - s.remaining as f64 - 1.0 + k;
            let dt = a.at.saturating_duration_since(s.sent).as_secs_f64();
            if refilled > 0.0 && dt >= 1e-3 {
                let lb = refilled / dt;
                b.rate_lb = Some(b.rate_lb.map_or(lb, |r: f64| r.max(lb)));
            }
        }
        match self.ring.back_mut() {
            Some(last) if a.at.saturating_duration_since(last.at) < THIN => {
                let lb = match (last.rate_lb, b.rate_lb) {
                    (Some(x), Some(y)) => Some(x.max(y)),
                    (x, y) => x.or(y),
                };
                if b.others <= last.others {
                    *last = b;
                }
                last.rate_lb = lb;
            }
            _ => self.ring.push_back(b),
        }
        while self.ring.len() > RING
            || self
                .ring
                .front()
                .is_some_and(|o| a.at.saturating_duration_since(o.at) > HORIZON)
        {
            self.ring.pop_front();
        }
    }

    /// The model was wrong (a 429): forget every bound and the capacity seen, keep only the
    /// latest answer as the start of new windows, and fall back to half of `rate_in_use`.
    pub fn reset(&mut self, rate_in_use: f64) {
        let latest = self.ring.pop_back();
        self.ring.clear();
        if let Some(mut o) = latest {
            o.rate_lb = None;
            self.capacity = Some(o.remaining as f64 + 1.0);
            self.ring.push_back(o);
        } else {
            self.capacity = None;
        }
        self.fallback_rate = Some(rate_in_use / 2.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server bucket and a client that sends one request at a time, `rtt` long, answered
    /// with the bucket's remaining count.
    struct Sim {
        tokens: f64,
        cap: f64,
        rate: f64,
        last: Instant,
    }

    impl Sim {
        fn take(&mut self, at: Instant) -> (bool, u64) {
            let dt = at.saturating_duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.cap);
            self.last = at;
            let taken = self.tokens >= 1.0;
            if taken {
                self.tokens -= 1.0;
            }
            (taken, self.tokens.floor() as u64)
        }
    }

    #[test]
    fn sequential_answers_bound_the_rate_from_below_and_converge() {
        let t0 = Instant::now();
        let mut sim = Sim {
            tokens: 5.0,
            cap: 5.0,
            rate: 4.0,
            last: t0,
        };
        let mut e = Estimator::default();
        let mut t = t0;
        // Faster than the bucket refills: it stays near empty, so windows are unsaturated.
        for _ in 0..80 {
            let mark = e.mark();
            let sent = t;
            let (taken, remaining) = sim.take(t + Duration::from_millis(2));
            t += Duration::from_millis(5);
            e.observe(Answer {
                sent,
                at: t,
                remaining,
                taken,
                others: 0,
                mark,
            });
            t += Duration::from_millis(150);
        }
        let rate = e.learned_rate(t).expect("a bound");
        assert!(rate <= 4.0 + 1e-9, "a lower bound: {rate}");
        assert!(rate > 3.5, "long windows make it tight: {rate}");
        assert_eq!(e.capacity(), Some(5.0), "the first answer showed 4 left");
    }

    #[test]
    fn overlapping_answers_never_overstate_the_rate() {
        // Ten requests sent at once and answered in reverse order of their taking: counting
        // them as taken between two of their own answers would claim a refill that never was.
        let t0 = Instant::now();
        let mut e = Estimator::default();
        let mark = e.mark();
        for i in 0..10u64 {
            e.observe(Answer {
                sent: t0,
                at: t0 + Duration::from_millis(10 + i),
                remaining: 190 + i,
                taken: true,
                others: 9 - i,
                mark,
            });
        }
        assert_eq!(e.learned_rate(t0 + Duration::from_secs(1)), None);
        // A request sent after them, 2 s later, sees 4 more than the last answer: a real
        // refill of at least 4 + 1 (itself) − 1 (rounding) − 0 in flight at that answer.
        let mark = e.mark();
        let sent = t0 + Duration::from_secs(2);
        e.observe(Answer {
            sent,
            at: sent + Duration::from_millis(10),
            remaining: 203,
            taken: true,
            others: 0,
            mark,
        });
        let rate = e.learned_rate(sent).expect("a bound");
        assert!(rate > 1.9 && rate <= 2.5, "{rate}");
    }

    #[test]
    fn a_reset_forgets_the_rate_and_keeps_half_as_a_fallback() {
        let t0 = Instant::now();
        let mut e = Estimator::default();
        for (i, remaining) in [0u64, 10].into_iter().enumerate() {
            let mark = e.mark();
            let sent = t0 + Duration::from_secs(i as u64);
            e.observe(Answer {
                sent,
                at: sent,
                remaining,
                taken: true,
                others: 0,
                mark,
            });
        }
        assert!(e.learned_rate(t0 + Duration::from_secs(1)).is_some());
        e.reset(8.0);
        assert_eq!(e.learned_rate(t0 + Duration::from_secs(1)), None);
        assert_eq!(e.fallback_rate(), Some(4.0));
        assert_eq!(e.capacity(), Some(11.0), "the latest answer stays");
        // Bounds also age out.
        let mut e2 = Estimator::default();
        for (i, remaining) in [0u64, 10].into_iter().enumerate() {
            let mark = e2.mark();
            let sent = t0 + Duration::from_secs(i as u64);
            e2.observe(Answer {
                sent,
                at: sent,
                remaining,
                taken: true,
                others: 0,
                mark,
            });
        }
        assert_eq!(e2.learned_rate(t0 + HORIZON + Duration::from_secs(2)), None);
    }
}
