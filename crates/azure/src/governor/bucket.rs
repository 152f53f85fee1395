//! The governor's model of one subscription-wide bucket (an ARM class or a Compute group):
//! how many requests it lets through now, corrected by every answer's remaining count.
//!
//! Rules, in order of precedence:
//! - **A 429 holds the class** for its `Retry-After`.
//! - **No fresh header, no burst.** A bucket whose last header is older than [`FRESH_FOR`]
//!   (or that never had one) lets one request out at a time: its answer says how much room
//!   there is, and that sizes the burst. Another client may have emptied the bucket since we
//!   last heard; this costs one round trip, not a burst of 429s.
//! - **Headers win.** Every answer sets the model to what the server counted, less what is
//!   still in flight. Lower always; higher only when no other header arrived while the
//!   request was out (so the answer is the newest state we have).
//! - **Refill at what was learnt.** Between headers the model refills at the estimator's lower
//!   bound ([`super::estimator`]), capped at the configured rate, up to the largest bucket
//!   seen. Until a bound exists (or after a 429, at half the rate then in use) the configured
//!   limits are only an upper prior: room they credit is unconfirmed, and only one request
//!   may be out on unconfirmed room at a time.
//! - **No headers at all** (successes without them: a proxy that strips them): the
//!   configured limits, as before.

use std::time::Duration;

use tokio::time::Instant;

use super::estimator::{Answer, Estimator, Mark};

/// How long a header's count is trusted to size a burst.
pub(super) const FRESH_FOR: Duration = Duration::from_secs(5);

/// What a bucket says about sending one more request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    Now,
    For(Duration),
    /// Until an answer comes back (the room is not confirmed).
    Answer,
}

#[derive(Debug)]
pub(super) struct Bucket {
    prior_capacity: f64,
    prior_rate: f64,
    tokens: f64,
    last: Instant,
    /// Room the latest header showed, less what was sent since.
    confirmed: f64,
    last_header: Option<Instant>,
    /// Whether answers carry this bucket's header; until one does not, we expect them to.
    headers: bool,
    pub in_flight: u64,
    held_until: Option<Instant>,
    pub observed_remaining: Option<u64>,
    pub throttled: u64,
    pub waited: Duration,
    est: Estimator,
    /// Answers received when the estimator was last reset: 429s of requests sent before
    /// that do not halve the rate again.
    reset_at: u64,
}

impl Bucket {
    pub fn new(capacity: f64, refill_per_s: f64, now: Instant) -> Self {
        Self {
            prior_capacity: capacity,
            prior_rate: refill_per_s,
            tokens: 0.0,
            last: now,
            confirmed: 0.0,
            last_header: None,
            headers: true,
            in_flight: 0,
            held_until: None,
            observed_remaining: None,
            throttled: 0,
            waited: Duration::ZERO,
            est: Estimator::default(),
            reset_at: 0,
        }
    }

    /// The bucket size in use: the largest seen in headers, else the configured one.
    pub fn capacity(&self) -> f64 {
        match (self.headers, self.est.capacity()) {
            (true, Some(c)) => c,
            _ => self.prior_capacity,
        }
    }

    /// The refill rate in use, and whether it was learnt (not a guess). Never above the
    /// configured rate: a bucket that refills faster still gets used at its speed, since
    /// every answer hands back the room it shows, and a window that saw a jump of the
    /// server's clock (the simulator's `/_sim/clock`) cannot make the governor race.
    pub fn rate(&self, now: Instant) -> (f64, bool) {
        if !self.headers {
            return (self.prior_rate, true);
        }
        match self.est.learned_rate(now) {
            Some(r) => (r.min(self.prior_rate), true),
            None => (self.est.fallback_rate().unwrap_or(self.prior_rate), false),
        }
    }

    pub fn learned(&self, now: Instant) -> (Option<f64>, Option<f64>) {
        (self.est.capacity(), self.est.learned_rate(now))
    }

    pub fn fresh(&self, now: Instant) -> bool {
        !self.headers
            || self
                .last_header
                .is_some_and(|t| now.saturating_duration_since(t) < FRESH_FOR)
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        let (rate, _) = self.rate(now);
        self.tokens = (self.tokens + dt * rate).min(self.capacity());
        self.last = now;
    }

    /// The model's tokens now, for snapshots and queries.
    pub fn tokens(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    pub fn held_for(&self, now: Instant) -> Option<Duration> {
        self.held_until.filter(|h| *h > now).map(|h| h - now)
    }

    pub fn wait(&mut self, now: Instant) -> Wait {
        if let Some(h) = self.held_until {
            if h > now {
                return Wait::For(h - now);
            }
            self.held_until = None;
        }
        self.refill(now);
        if !self.fresh(now) {
            return if self.in_flight == 0 {
                Wait::Now
            } else {
                Wait::Answer
            };
        }
        if self.tokens >= 1.0 {
            let (_, learned) = self.rate(now);
            if learned || self.confirmed >= 1.0 || self.in_flight == 0 {
                Wait::Now
            } else {
                Wait::Answer
            }
        } else {
            let (rate, _) = self.rate(now);
            Wait::For(Duration::from_secs_f64(
                ((1.0 - self.tokens) / rate.max(1e-3)).min(3600.0),
            ))
        }
    }

    /// Takes a token for a request sent now; returns where the request stands.
    pub fn take(&mut self) -> Mark {
        // A request sent with no fresh header may find the model below one token; its
        // answer sets the model anyway.
        self.tokens = (self.tokens - 1.0).max(0.0);
        self.confirmed = (self.confirmed - 1.0).max(0.0);
        self.in_flight += 1;
        self.est.mark()
    }

    /// The request sent at `sent` (with `mark`) is over; `answer` is its status and this
    /// bucket's remaining count if it was answered.
    pub fn finish(
        &mut self,
        sent: Instant,
        mark: Mark,
        answer: Option<(u16, Option<u64>)>,
        now: Instant,
    ) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some((status, remaining)) = answer else {
            return;
        };
        let Some(remaining) = remaining else {
            // An error may come from before the bucket (ARM refusing a Compute write, a
            // front-door fault): nothing to learn. A success without our header means they do
            // not come at all: pace by the configured limits and, never having heard
            // otherwise, assume the bucket full as they say.
            if !(200..300).contains(&status) {
                return;
            }
            if self.headers && self.last_header.is_none() {
                self.tokens = (self.prior_capacity - 1.0 - self.in_flight as f64).max(0.0);
                self.last = now;
            }
            self.headers = false;
            return;
        };
        self.headers = true;
        self.refill(now);
        let newest = mark.answers == self.est.mark().answers;
        self.est.observe(Answer {
            sent,
            at: now,
            remaining,
            taken: status != 429 && status < 500,
            others: self.in_flight,
            mark,
        });
        self.observed_remaining = Some(remaining);
        self.last_header = Some(now);
        let view = (remaining as f64 - self.in_flight as f64).max(0.0);
        if newest || view < self.tokens {
            self.tokens = view;
        }
        self.confirmed = if newest {
            view
        } else {
            self.confirmed.min(view)
        };
    }

    /// A 429 for a request sent with `mark`: hold until `until` and, unless a 429 of the same
    /// burst already did, forget what was learnt and halve the rate.
    pub fn hold(&mut self, mark: Mark, until: Instant, now: Instant) {
        self.tokens = self.tokens.min(0.0);
        self.confirmed = 0.0;
        self.held_until = Some(self.held_until.map_or(until, |h| h.max(until)));
        self.throttled += 1;
        if mark.answers >= self.reset_at {
            let (rate, _) = self.rate(now);
            self.est.reset(rate);
            self.reset_at = self.est.mark().answers;
        }
    }
}
