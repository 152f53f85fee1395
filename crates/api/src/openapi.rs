//! The OpenAPI 3 document of the API (`GET /openapi.json`), generated from the code.
//!
//! Each handler carries its `#[utoipa::path]` (method, path, security, body, responses) and
//! `utoipa_axum::routes!` registers it in the router from that same annotation, so a route is
//! served if and only if it is documented ([`crate::routes`]). The schemas are those of the
//! types the handlers read and answer: request bodies are the DTOs [`crate::Body`] reads
//! (the domain's own `PoolSpec` and `ScheduleSpec` where they exist), responses the
//! `Serialize` types the handlers return, and errors [`crate::error::ErrorBody`], which
//! [`crate::ApiError`] serializes. There is no second description of a body to drift.
//!
//! Security: every operation lists the roles that may call it as the scopes of its `bearer`
//! requirement (OpenAPI 3.1 allows role names there), repeated as `x-roles`; `[]` roles means
//! no token needed. Every secured operation documents 401 and 403, and every operation a
//! `default` error response: the one error shape, [`crate::error::ErrorBody`].

use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "renderburst",
        description = "Scales render-farm VM pools in Azure. Errors are {\"error\":{\"code\",\"message\",\"field\"}}.",
    ),
    modifiers(&BearerScheme),
    components(schemas(crate::error::ErrorBody)),
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
