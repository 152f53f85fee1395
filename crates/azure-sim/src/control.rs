//! The simulator's control API (`/_sim/*`): not ARM, but what tests, demos and benchmarks
//! use to look at the whole world, tune it and break it. It needs no token and is never
//! subject to faults or throttling; so it never shows the client secret, and `renderburst
//! sim` serves it beyond loopback only when told to (`--allow-remote`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use serde_json::{Value, json};

use crate::Shared;
use crate::reply::Reply;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/resources", get(resources))
        .route("/_sim/stats", get(stats))
        .route("/_sim/config", get(get_config).put(put_config))
        .route("/_sim/evict", post(evict))
        .route("/_sim/batch/preempt", post(preempt))
        .route("/_sim/reset", post(reset))
        .route("/_sim/clock", get(get_clock).post(advance_clock))
}

fn bad(code: &str, message: impl Into<String>, field: Option<&str>) -> Response {
    let mut body = json!({"error": {"code": code, "message": message.into()}});
    if let Some(f) = field {
        body["error"]["field"] = json!(f);
    }
    Reply::json(StatusCode::BAD_REQUEST, body).into_response()
}

async fn resources(State(shared): State<Arc<Shared>>) -> Response {
    let mut st = shared.lock();
    st.advance(shared.clock.now());
    let all: Vec<Value> = st.res.values().map(|r| st.render(r, true)).collect();
    Reply::ok(json!({"resources": all})).into_response()
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let mut st = shared.lock();
    // Count what is due (evictions, failed operations) even if no ARM request came since.
    st.advance(shared.clock.now());
    let mut body = st.stats.to_json();
    // VMs by power state: a census that costs a benchmark's poll far less than
    // `/_sim/resources` at thousands of VMs.
    let mut power = serde_json::Map::new();
    for vm in st.res.values().filter_map(|r| r.vm()) {
        let n = power.entry(vm.power.code()).or_insert(json!(0));
        *n = json!(n.as_u64().unwrap_or(0) + 1);
    }
    body["vm_power"] = Value::Object(power);
    Reply::ok(body).into_response()
}

async fn get_config(State(shared): State<Arc<Shared>>) -> Response {
    let st = shared.lock();
    Reply::ok(shown(&st.cfg)).into_response()
}

/// The settings as `/_sim/config` shows them: without `identity.client_secret`, which this
/// unauthenticated API must not hand out (it is what `renderburst sim` prints at start and
/// [`crate::Simulator::identity`] returns). Left out rather than masked, so a client that
/// PUTs back what it read leaves the secret as it was; a PUT may still set it.
fn shown(cfg: &crate::SimConfig) -> Value {
    let mut v = serde_json::to_value(cfg).unwrap_or_default();
    if let Some(identity) = v.get_mut("identity").and_then(Value::as_object_mut) {
        identity.remove("client_secret");
    }
    v
}

async fn put_config(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad("InvalidJson", format!("the body is not JSON: {e}"), None),
    };
    let mut st = shared.lock();
    let merged = match st.cfg.merged(&patch) {
        Ok(c) => c,
        Err(e) => return bad("InvalidConfig", e.to_string(), None),
    };
    let limits_changed = merged.limits != st.cfg.limits;
    st.cfg = merged;
    if limits_changed {
        st.reset_buckets(shared.clock.now());
    }
    Reply::ok(shown(&st.cfg)).into_response()
}

async fn evict(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad("InvalidJson", format!("the body is not JSON: {e}"), None),
    };
    let Some(count) = v
        .get("count")
        .and_then(Value::as_u64)
        .filter(|n| *n <= 100_000)
    else {
        return bad(
            "InvalidCount",
            "count must be a whole number from 0 to 100000",
            Some("count"),
        );
    };
    let now = shared.clock.now();
    let mut st = shared.lock();
    st.advance(now);
    let evicted = st.evict_some(count as usize, now);
    Reply::ok(json!({"evicted": evicted})).into_response()
}

/// `{"count": N, "pool": "name"?}`: preempts N Spot nodes of Batch pools (of one pool if
/// named); Batch reallocates them after a while.
async fn preempt(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad("InvalidJson", format!("the body is not JSON: {e}"), None),
    };
    let Some(count) = v
        .get("count")
        .and_then(Value::as_u64)
        .filter(|n| *n <= 100_000)
    else {
        return bad(
            "InvalidCount",
            "count must be a whole number from 0 to 100000",
            Some("count"),
        );
    };
    let pool = match v.get("pool") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(p.clone()),
        Some(_) => return bad("InvalidPool", "pool must be a string", Some("pool")),
    };
    let now = shared.clock.now();
    let mut st = shared.lock();
    st.advance(now);
    let preempted = st.preempt_batch_nodes(pool.as_deref(), count as usize, now);
    Reply::ok(json!({"preempted": preempted})).into_response()
}

async fn reset(State(shared): State<Arc<Shared>>) -> Response {
    let mut st = shared.lock();
    let clock = st.clock.clone();
    *st = crate::state::State::new(shared.initial.clone(), shared.clock.now());
    // The clock keeps its advance: time does not go back on a reset.
    st.clock = clock;
    Reply::empty(StatusCode::NO_CONTENT).into_response()
}

/// `GET /_sim/clock`: how far the manual advance has put the simulator ahead of real time.
async fn get_clock(State(shared): State<Arc<Shared>>) -> Response {
    clock_body(&shared)
}

fn clock_body(shared: &Shared) -> Response {
    let ahead = shared.clock.ahead();
    Reply::ok(json!({
        "ahead_ms": u64::try_from(ahead.as_millis()).unwrap_or(u64::MAX),
        "now": crate::state::rfc3339(shared.clock.wall()),
    }))
    .into_response()
}

/// `POST /_sim/clock {"advance_ms": N}`: moves the simulator's clock N ms ahead at once
/// (see the `clock` module); what came due meanwhile (operations, evictions, Batch
/// allocations) happens now. At most a day per call; time never goes back.
async fn advance_clock(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad("InvalidJson", format!("the body is not JSON: {e}"), None),
    };
    if let Some(k) = v
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "advance_ms"))
    {
        return bad(
            "UnknownField",
            format!("unknown field {k}: the body is {{\"advance_ms\": N}}"),
            Some(k),
        );
    }
    let Some(ms) = v
        .get("advance_ms")
        .and_then(Value::as_u64)
        .filter(|n| *n <= 86_400_000)
    else {
        return bad(
            "InvalidAdvance",
            "advance_ms must be a whole number of milliseconds from 0 to 86400000 (a day)",
            Some("advance_ms"),
        );
    };
    shared.advance_clock(std::time::Duration::from_millis(ms));
    clock_body(&shared)
}
