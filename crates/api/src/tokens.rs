//! `/v1/tokens` (admin only): API tokens for render managers, dashboards and people.
//!
//! A token is `rb_` and 40 random letters and digits (about 238 bits) drawn from the operating
//! system's random source; it is shown once, in the answer that creates it, and stored only as
//! its hex SHA-256. Names are `[a-z0-9][a-z0-9._-]{0,63}`; `admin` is reserved for the admin
//! token of the config (or the one generated at start).

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::{NewEvent, StoreError};
use utoipa::ToSchema;

use crate::auth::{Admin, Role, sha256_hex};
use crate::error::ApiError;
use crate::extract::{Body, RequestBody, path_param};
use crate::view::{Rfc3339, Token, token_json};
use crate::{ApiState, audit};

const CODE: &str = "invalid_token_spec";

/// The name of the config's admin token, which the API cannot create or revoke.
pub const RESERVED_NAME: &str = "admin";

/// Checks a token name: `[a-z0-9][a-z0-9._-]{0,63}`.
pub fn check_token_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "token name {name:?} must be 1 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
        ))
    }
}

/// A fresh API token: `rb_` + 40 characters of `[A-Za-z0-9]` from the OS CSPRNG
/// ([`store::secret`]).
pub fn generate_token() -> String {
    store::random_token(store::secret::API_TOKEN_PREFIX)
}

/// `POST /v1/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    /// `[a-z0-9][a-z0-9._-]{0,63}`; `admin` is reserved.
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    pub name: String,
    pub role: RoleName,
}

impl RequestBody for NewTokenBody {
    const CODE: &'static str = CODE;
}

/// The role of a token, as a body names it.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    Admin,
    Requester,
    Viewer,
}

impl From<RoleName> for Role {
    fn from(role: RoleName) -> Self {
        match role {
            RoleName::Admin => Role::Admin,
            RoleName::Requester => Role::Requester,
            RoleName::Viewer => Role::Viewer,
        }
    }
}

/// A new token: `token` is shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCreated {
    pub name: String,
    pub role: String,
    pub token: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Rfc3339,
}

/// `GET /v1/tokens`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<Token>,
}

/// The name and role of a new token: the name follows [`check_token_name`] and is not
/// `admin`; 422 naming the field otherwise.
fn check_new_token(body: NewTokenBody) -> Result<(String, Role), ApiError> {
    let NewTokenBody { name, role } = body;
    check_token_name(&name)
        .map_err(|message| ApiError::unprocessable(CODE, message).with_field("name"))?;
    if name == RESERVED_NAME {
        return Err(ApiError::unprocessable(
            CODE,
            "the name \"admin\" is reserved for the admin token of the daemon's config",
        )
        .with_field("name"));
    }
    Ok((name, role.into()))
}

#[cfg(test)]
fn parse_new_token(body: &serde_json::Value) -> Result<(String, Role), ApiError> {
    check_new_token(crate::extract::decode(body.clone(), CODE)?)
}

/// `POST /v1/tokens` `{"name","role"}` → 201 `{"name","role","token","created_at"}`: the token
/// is shown only here. 422 naming the field; 409 naming `name` if it is taken.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    security(("bearer" = ["admin"])),
    request_body = NewTokenBody,
    responses(
        (status = 201, description = "The token, shown once", body = TokenCreated),
        (status = 409, description = "Name taken", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid body, naming the field", body = crate::error::ErrorBody),
    )
)]
pub async fn create(
    Admin(caller): Admin,
    State(st): State<ApiState>,
    Body(body): Body<NewTokenBody>,
) -> Result<Response, ApiError> {
    let (name, role) = check_new_token(body)?;
    let token = generate_token();
    let record = st
        .store
        .insert_token(&name, role.as_str(), &sha256_hex(&token))
        .await
        .map_err(|err| match err {
            StoreError::Conflict { .. } => ApiError::from(err).with_field("name"),
            other => other.into(),
        })?;
    audit(
        &st,
        NewEvent {
            kind: "token.created".into(),
            pool: None,
            node: None,
            actor: caller.name,
            message: format!("token {name:?} created with role {}", role.as_str()),
            data: json!({ "name": name, "role": role.as_str() }),
        },
    )
    .await;
    let body = TokenCreated {
        name: record.name,
        role: record.role,
        token,
        created_at: Rfc3339(record.created_at),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/tokens` → `{"tokens":[{"name","role","created_at"}]}`, by name; never a hash.
#[utoipa::path(
    get,
    path = "/v1/tokens",
    tag = "tokens",
    security(("bearer" = ["admin"])),
    responses((status = 200, description = "Tokens by name, never a hash", body = TokenList))
)]
pub async fn list(
    Admin(_): Admin,
    State(st): State<ApiState>,
) -> Result<Json<TokenList>, ApiError> {
    let tokens = st
        .store
        .list_tokens()
        .await?
        .iter()
        .map(token_json)
        .collect();
    Ok(Json(TokenList { tokens }))
}

/// A token name from the path; a malformed one is a 400 naming `name`.
pub struct TokenName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for TokenName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let name = path_param(parts, state, "name").await?;
        check_token_name(&name)
            .map_err(|message| ApiError::bad_request("invalid_name", message).with_field("name"))?;
        Ok(TokenName(name))
    }
}

/// `DELETE /v1/tokens/{name}` → 200 with the revoked token (`{"name","role","created_at"}`);
/// it stops working at once. 404 if unknown; 422 naming `name` for the config's admin token.
#[utoipa::path(
    delete,
    path = "/v1/tokens/{name}",
    tag = "tokens",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Token name", pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")),
    responses(
        (status = 200, description = "Revoked", body = Token),
        (status = 404, description = "No such token", body = crate::error::ErrorBody),
    )
)]
pub async fn revoke(
    Admin(caller): Admin,
    TokenName(name): TokenName,
    State(st): State<ApiState>,
) -> Result<Json<Token>, ApiError> {
    let existing = st
        .store
        .list_tokens()
        .await?
        .into_iter()
        .find(|t| t.name == name);
    let Some(record) = existing else {
        if name == RESERVED_NAME {
            return Err(ApiError::unprocessable(
                CODE,
                "the admin token comes from the daemon's config; change it there",
            )
            .with_field("name"));
        }
        return Err(ApiError::not_found(format!(
            "token {name:?} does not exist"
        )));
    };
    st.store.delete_token(&name).await?;
    audit(
        &st,
        NewEvent {
            kind: "token.revoked".into(),
            pool: None,
            node: None,
            actor: caller.name,
            message: format!("token {name:?} ({}) revoked", record.role),
            data: json!({ "name": name, "role": record.role }),
        },
    )
    .await;
    Ok(Json(token_json(&record)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_alphanumeric() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a.starts_with("rb_"));
        assert!(a[3..].chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
    }

    #[test]
    fn token_names() {
        for ok in ["ci", "deadline-01", "a.b_c", "0", &"a".repeat(64)] {
            assert!(check_token_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "CI", "-ci", ".ci", "ci!", "c i", &"a".repeat(65)] {
            assert!(check_token_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_token_bodies() {
        assert_eq!(
            parse_new_token(&json!({"name": "ci", "role": "viewer"})).unwrap(),
            ("ci".to_string(), Role::Viewer)
        );
        for (body, field) in [
            (json!({"role": "viewer"}), "name"),
            (json!({"name": 1, "role": "viewer"}), "name"),
            (json!({"name": "Bad", "role": "viewer"}), "name"),
            (json!({"name": "admin", "role": "admin"}), "name"),
            (json!({"name": "ci"}), "role"),
            (json!({"name": "ci", "role": "root"}), "role"),
            (
                json!({"name": "ci", "role": "viewer", "token": "x"}),
                "token",
            ),
            (json!(null), "body"),
        ] {
            let err = parse_new_token(&body).unwrap_err();
            assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(err.field.as_deref(), Some(field), "{body}");
        }
    }
}
