//! The OpenAPI 3 document of the API (`GET /openapi.json`), generated from the code.
//!
//! Each handler carries its `#[utoipa::path]` (method, path, security, body, responses) and
//! `utoipa_axum::routes!` registers it in the router from that same annotation, so a route is
//! served if and only if it is documented ([`crate::routes`]). Request bodies reuse the
//! domain's own types where they exist (`PoolSpec`, `Plan`); the other bodies, which handlers
//! parse field by field to name the bad field, are described by the types below.
//!
//! Security: every operation lists the roles that may call it as the scopes of its `bearer`
//! requirement (OpenAPI 3.1 allows role names there), repeated as `x-roles`; `[]` roles means
//! no token needed. Every secured operation documents 401 and 403, and every operation a
//! `default` error response: the one error shape, [`ErrorBody`].

#![allow(dead_code)] // The types here describe JSON; only their schemas are used.

use std::collections::BTreeMap;

use rb_core::{PoolMode, Priority};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error: `{"error":{"code","message","field"?}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable identifier clients can branch on (`not_found`, `invalid_spec`...).
    pub code: String,
    /// For people.
    pub message: String,
    /// The input to blame: a spec field, a path or query parameter, or a body key. Absent
    /// when no single input is to blame.
    #[schema(required = false, nullable = false)]
    pub field: Option<String>,
}

/// `GET /healthz`, `GET /readyz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
}

/// A pool: its spec's fields, plus `status`, `deleting` and `generation`.
#[derive(Serialize, ToSchema)]
pub struct Pool {
    pub name: String,
    pub mode: PoolMode,
    pub vm_sizes: Vec<String>,
    pub priority: Priority,
    pub spot: rb_core::SpotSpec,
    pub image: String,
    pub os: rb_core::Os,
    pub min: u32,
    pub max: u32,
    pub target: u32,
    pub idle_timeout_seconds: u64,
    pub scale_down: rb_core::ScaleDown,
    pub tags: BTreeMap<String, String>,
    /// `mode: batch` pools only.
    pub batch: Option<rb_core::BatchSpec>,
    /// License servers (Batch pools: through the start task).
    pub licenses: Vec<rb_core::LicenseServer>,
    /// What a new node does on its first boot (`PoolSpec`'s section), shown whole to admins
    /// only: to viewers and requesters `{"redacted": true}` when the pool has one.
    pub bootstrap: Option<Value>,
    pub status: crate::view::PoolStatus,
    /// Deletion requested: the pool drains to zero resources, then disappears.
    pub deleting: bool,
    /// Bumped by every change of the spec.
    pub generation: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PoolList {
    pub pools: Vec<Pool>,
}

/// A node of `GET /v1/nodes`.
#[derive(Serialize, ToSchema)]
pub struct Node {
    pub name: String,
    pub pool: String,
    /// creating, starting, running, draining, stopped, deallocating, deallocated, deleting,
    /// failed, missing.
    pub state: String,
    pub size: String,
    pub priority: Priority,
    pub busy: bool,
    pub draining: bool,
    /// RFC 3339.
    pub last_heartbeat: Option<String>,
    pub azure_id: Option<String>,
    /// RFC 3339: when the node registered with its own token (bootstrap pools).
    pub registered_at: Option<String>,
    /// RFC 3339: the last call the node made with its own token.
    pub node_seen_at: Option<String>,
    /// The node's private IP address, as Batch's node list gives it or as the node said when
    /// it registered; null when neither has (`GET /v1/nodes` only).
    pub private_ip: Option<String>,
}

/// `GET /v1/pools/{name}/bootstrap`: what a new node of the pool would run.
#[derive(Serialize, ToSchema)]
pub struct BootstrapPreview {
    pub pool: String,
    /// The name the next node would get.
    pub node: String,
    /// `cloud-init` (Linux VMs), `powershell` (Windows VMs), `batch-shell` or
    /// `batch-powershell` (what a Batch node gets when it enrolls).
    pub format: String,
    /// The exact script, with secrets and the node token masked.
    pub script: String,
    /// VM pools: its size as base64 `customData`, and Azure's limit.
    pub custom_data_bytes: Option<u64>,
    pub custom_data_limit: Option<u64>,
    /// Batch pools: the pool's start task (the enrollment token masked).
    pub start_task: Option<StartTaskPreview>,
    /// Secret references the daemon cannot resolve now (a node would fail to be created).
    pub unresolved_secrets: Vec<String>,
}

/// `GET /v1/offerings/unavailable`.
#[derive(Serialize, ToSchema)]
pub struct UnavailableList {
    pub unavailable: Vec<UnavailableMark>,
}

/// An offering the planners avoid until `until`.
#[derive(Serialize, ToSchema)]
pub struct UnavailableMark {
    pub size: String,
    /// `regular` or `spot`.
    pub priority: String,
    /// `capacity`, `quota` or `sku_not_available`.
    pub reason: String,
    /// The ARM or Batch error code that caused it.
    pub code: String,
    pub since: String,
    pub until: String,
    /// Null: subscription-wide (VM pools); else the Batch pool whose own mark it is.
    pub pool: Option<String>,
}

/// `DELETE /v1/offerings/unavailable`.
#[derive(Serialize, ToSchema)]
pub struct Cleared {
    /// Marks that were in force.
    pub cleared: u64,
}

/// A Batch pool's start task as renderburst sets it.
#[derive(Serialize, ToSchema)]
pub struct StartTaskPreview {
    pub command_line: String,
    /// `environmentSettings`: name and value.
    pub environment: Vec<NameValue>,
}

#[derive(Serialize, ToSchema)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Serialize, ToSchema)]
pub struct NodeList {
    pub nodes: Vec<Node>,
}

/// A node request (lease).
#[derive(Serialize, ToSchema)]
pub struct NodeRequest {
    pub id: String,
    pub pool: String,
    pub count: u32,
    pub ttl_seconds: i64,
    pub requester: String,
    pub job: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub released_at: Option<String>,
    pub released_by: Option<String>,
    /// live, expired or released.
    pub state: String,
}

#[derive(Serialize, ToSchema)]
pub struct RequestList {
    pub requests: Vec<NodeRequest>,
}

/// A token as listed (never its hash).
#[derive(Serialize, ToSchema)]
pub struct Token {
    pub name: String,
    pub role: String,
    pub created_at: String,
}

/// A new token: `token` is shown only here.
#[derive(Serialize, ToSchema)]
pub struct TokenCreated {
    pub name: String,
    pub role: String,
    pub token: String,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<Token>,
}

/// An entry of the audit and event log.
#[derive(Serialize, ToSchema)]
pub struct Event {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub pool: Option<String>,
    pub node: Option<String>,
    pub actor: String,
    pub message: String,
    pub data: Value,
}

#[derive(Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<Event>,
    /// Pass as the next `after` to follow the log.
    pub next_after: i64,
}

/// A schedule: its spec's fields, plus its next firing (in UTC and in its zone) and its last.
#[derive(Serialize, ToSchema)]
pub struct Schedule {
    pub name: String,
    /// Exactly one of `pool` and `pool_tag`.
    #[schema(required = false, nullable = false)]
    pub pool: Option<String>,
    /// Every pool whose tags include all of these pairs.
    #[schema(required = false, nullable = false)]
    pub pool_tag: Option<BTreeMap<String, String>>,
    pub cron: String,
    pub timezone: String,
    pub set: rb_core::ScheduleSet,
    /// RFC 3339 in UTC; null if the pattern never fires again.
    pub next_firing_utc: Option<String>,
    /// The same instant, RFC 3339 with the zone's offset then.
    pub next_firing_local: Option<String>,
    /// The scheduled instant of the last firing applied.
    pub last_firing_utc: Option<String>,
    pub last_firing_local: Option<String>,
    /// When it was applied (later than the firing after downtime).
    pub last_applied_at: Option<String>,
    /// What it did.
    pub last_outcome: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<Schedule>,
}

/// `GET /v1/status`.
#[derive(Serialize, ToSchema)]
pub struct Status {
    /// The reconciler's last activation, the ARM governor and request counters.
    pub controller: Value,
    /// Each pool's last activation (null before the first).
    pub pools: BTreeMap<String, Value>,
    /// The other background tasks' last status.
    pub tasks: Vec<Value>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "renderburst",
        description = "Scales render-farm VM pools in Azure. Errors are {\"error\":{\"code\",\"message\",\"field\"}}.",
    ),
    modifiers(&BearerScheme),
    components(schemas(ErrorBody)),
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Authorization: Bearer <token>. The roles that may call an operation are \
                         the scopes of its requirement (and its x-roles): admin, requester and \
                         viewer API tokens; `node`, a node's own token (rbn_...); `enroll`, a \
                         Batch pool's enrollment token (rbp_...).",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds, from each operation's security: `x-roles`, a line naming the roles in its
/// description, 401, 403 and 429 (bad tokens, throttled) for secured operations, and a
/// `default` error response.
pub(crate) fn finish(doc: &mut Document) {
    let error = |description: &str| -> RefOr<Response> {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let security = serde_json::to_value(&op.security).unwrap_or(Value::Null);
            let roles = roles_of(&security);
            let required = !security.as_array().is_some_and(|reqs| {
                reqs.iter()
                    .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
            });
            let text = match (&roles[..], required) {
                (_, false) => "Open on loopback; from elsewhere any valid token.".to_string(),
                ([], true) => "Open: no token needed.".to_string(),
                (roles, true) => format!("Roles: {}.", roles.join(", ")),
            };
            let description = op.description.take().unwrap_or_default();
            op.description = Some(if description.is_empty() {
                text
            } else {
                format!("{description}\n\n{text}")
            });
            let extensions = op.extensions.get_or_insert_with(Default::default);
            extensions.insert("x-roles".into(), Value::from(roles.clone()));
            let responses = &mut op.responses.responses;
            if !roles.is_empty() || !required {
                responses
                    .entry("401".into())
                    .or_insert_with(|| error("Missing or invalid bearer token"));
            }
            if !roles.is_empty() || !required {
                responses
                    .entry("403".into())
                    .or_insert_with(|| error("The token's role may not do this"));
                responses.entry("429".into()).or_insert_with(|| {
                    error(
                        "An invalid token from an address that sent too many: answered late, \
                         with Retry-After",
                    )
                });
            }
            responses
                .entry("default".into())
                .or_insert_with(|| error("Any other error"));
        }
    }
}

/// The role names of an operation's security requirements (the `bearer` scopes).
pub(crate) fn roles_of(security: &Value) -> Vec<String> {
    security
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|req| req.get("bearer"))
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every `$ref` of the document, anywhere in it.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r.clone()),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_plan_documents_its_holds_and_every_reference_resolves() {
        let doc = serde_json::to_value(crate::openapi()).unwrap();
        let plan = &doc["paths"]["/v1/pools/{name}/plan"]["get"]["responses"]["200"];
        assert_eq!(
            plan["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/PlanView",
            "{plan}"
        );
        let schemas = &doc["components"]["schemas"];
        let view = serde_json::to_string(&schemas["PlanView"]).unwrap();
        for field in ["held", "held_until", "HeldWrites", "Plan"] {
            assert!(view.contains(field), "PlanView lacks {field}: {view}");
        }
        let held = &schemas["HeldWrites"]["properties"];
        for field in ["kind", "steps", "until", "attempts", "code", "condition"] {
            assert!(!held[field].is_null(), "HeldWrites lacks {field}: {held}");
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let name = r.trim_start_matches("#/components/schemas/");
            assert!(!schemas[name].is_null(), "unresolved reference {r}");
        }
    }
}
