//! `GET /metrics`: Prometheus text exposition (format 0.0.4), written by hand.
//!
//! The API renders what it knows — pool node counts (the pool status's own counting,
//! [`PoolStatus`]), open intents, and its own request latency — and appends the text the
//! binary renders from the controller and the ARM client ([`crate::ApiState::metrics`]).
//! Labels are low-cardinality only: pool names, node states, route templates, status classes,
//! ARM classes and status codes; never node names, request ids or messages.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::auth::LocalOrReader;
use crate::error::ApiError;
use crate::throttle::AuthThrottle;
use crate::view::{self, PoolStatus};
use crate::{ApiState, pools};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the API latency histogram's buckets.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A metrics text being written: `# HELP`/`# TYPE` once per family, then samples.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a family: `kind` is `counter`, `gauge`, `histogram` or `summary`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample. Label values are escaped.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let value = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{key}=\"{value}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
        self
    }

    /// A histogram's samples: `buckets` are (upper bound, cumulative count), `+Inf` is added.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) -> &mut Self {
        let bucket = format!("{name}_bucket");
        for (le, n) in buckets {
            let le = number(*le);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, *n as f64);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, count as f64);
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, count as f64)
    }

    /// Appends text rendered elsewhere (complete families, newline-terminated).
    pub fn raw(&mut self, text: &str) -> &mut Self {
        self.out.push_str(text);
        if !text.is_empty() && !text.ends_with('\n') {
            self.out.push('\n');
        }
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
}

/// A fixed-bucket histogram (non-cumulative counts; rendered cumulative).
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    /// (upper bound, cumulative count), sum, count.
    pub fn cumulative(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let mut total = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(b, n)| {
                total += n;
                (*b, total)
            })
            .collect();
        (buckets, self.sum, self.count)
    }
}

/// API request latency by (method, route template, status class).
#[derive(Debug, Default)]
pub struct HttpMetrics {
    latency: Mutex<BTreeMap<(&'static str, String, &'static str), Histogram>>,
}

impl HttpMetrics {
    /// Records one request. `route` must be a route template or `unmatched`, never a raw path.
    pub fn observe(&self, method: &axum::http::Method, route: &str, status: u16, took: Duration) {
        let method = match method.as_str() {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "DELETE" => "DELETE",
            "PATCH" => "PATCH",
            "HEAD" => "HEAD",
            "OPTIONS" => "OPTIONS",
            _ => "other",
        };
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        if let Ok(mut map) = self.latency.lock() {
            map.entry((method, route.to_owned(), class))
                .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
                .observe(took.as_secs_f64());
        }
    }

    fn render(&self, out: &mut Exposition) {
        out.family(
            "renderburst_http_request_duration_seconds",
            "histogram",
            "API request latency by method, route template and status class.",
        );
        let Ok(map) = self.latency.lock() else {
            return;
        };
        for ((method, route, class), histogram) in map.iter() {
            let (buckets, sum, count) = histogram.cumulative();
            out.histogram(
                "renderburst_http_request_duration_seconds",
                &[("method", method), ("route", route), ("status", class)],
                &buckets,
                sum,
                count,
            );
        }
    }
}

/// The per-pool node states exported, in the pool status's own names.
fn state_counts(status: &PoolStatus) -> [(&'static str, u32); 10] {
    [
        ("creating", status.creating),
        ("starting", status.starting),
        ("running", status.running),
        ("stopped", status.stopped),
        ("deallocating", status.deallocating),
        ("deallocated", status.deallocated),
        ("deleting", status.deleting),
        ("failed", status.failed),
        ("preempted", status.preempted),
        ("desired", status.desired),
    ]
}

/// `GET /metrics` → Prometheus text.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security((), ("bearer" = [])),
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String))
)]
pub async fn metrics(
    LocalOrReader: LocalOrReader,
    State(st): State<ApiState>,
    Extension(http): Extension<Arc<HttpMetrics>>,
    Extension(auth): Extension<Arc<AuthThrottle>>,
) -> Result<Response, ApiError> {
    let mut out = Exposition::new();
    let records = st.store.list_pools().await?;
    let vms = st.store.list_vms(None).await?;
    let tasks = pools::task_map(&st.store).await?;
    let now = view::now();
    out.family(
        "renderburst_pool_desired_nodes",
        "gauge",
        "A pool's desired node count now (target, live requests, min and max).",
    );
    let mut statuses = Vec::with_capacity(records.len());
    for record in &records {
        let desired = st.store.desired(record, now).await?;
        let mine: Vec<_> = vms.iter().filter(|v| v.pool == record.spec.name).collect();
        let status = PoolStatus::new(record, desired, &mine, &tasks);
        out.sample(
            "renderburst_pool_desired_nodes",
            &[("pool", &record.spec.name)],
            f64::from(status.desired),
        );
        statuses.push((record.spec.name.as_str(), status));
    }
    out.family(
        "renderburst_pool_nodes",
        "gauge",
        "A pool's nodes by state, as its status counts them.",
    );
    for (pool, status) in &statuses {
        for (state, n) in state_counts(status) {
            if state != "desired" {
                out.sample(
                    "renderburst_pool_nodes",
                    &[("pool", pool), ("state", state)],
                    f64::from(n),
                );
            }
        }
    }
    let intents = st.store.open_intents().await?.len();
    out.family(
        "renderburst_open_intents",
        "gauge",
        "ARM writes begun and not yet finished (open intents).",
    );
    out.sample("renderburst_open_intents", &[], intents as f64);
    http.render(&mut out);
    out.family(
        "renderburst_auth_failures_total",
        "counter",
        "Requests with a bearer token nobody issued (a missing header is not counted).",
    )
    .sample(
        "renderburst_auth_failures_total",
        &[],
        auth.failures_total() as f64,
    );
    out.family(
        "renderburst_auth_throttled_total",
        "counter",
        "Bad tokens answered late with 429: their peer had sent too many.",
    )
    .sample(
        "renderburst_auth_throttled_total",
        &[],
        auth.throttled_total() as f64,
    );
    out.raw(&(st.metrics)());
    let mut response = out.finish().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_escapes_and_histograms_are_cumulative() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(7.0);
        let (buckets, sum, count) = h.cumulative();
        assert_eq!(buckets, vec![(0.1, 1), (1.0, 2)]);
        assert_eq!((sum, count), (7.55, 3));
        let mut out = Exposition::new();
        out.family("x_seconds", "histogram", "Help.").histogram(
            "x_seconds",
            &[("a", "q\"\\\n")],
            &buckets,
            sum,
            count,
        );
        assert_eq!(
            out.finish(),
            "# HELP x_seconds Help.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{a=\"q\\\"\\\\\\n\",le=\"0.1\"} 1\n\
             x_seconds_bucket{a=\"q\\\"\\\\\\n\",le=\"1\"} 2\n\
             x_seconds_bucket{a=\"q\\\"\\\\\\n\",le=\"+Inf\"} 3\n\
             x_seconds_sum{a=\"q\\\"\\\\\\n\"} 7.55\n\
             x_seconds_count{a=\"q\\\"\\\\\\n\"} 3\n"
        );
    }
}
