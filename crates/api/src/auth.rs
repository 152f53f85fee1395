//! Bearer-token authentication and roles.
//!
//! A presented token is hashed (SHA-256, hex) and compared in constant time with the admin
//! token's hash from the config; otherwise the hash is looked up among the tokens in the store.
//! Only hashes are ever kept or compared, and neither the token nor the `Authorization` header
//! is logged. A peer that sends many tokens nobody issued gets its answers late, with 429
//! ([`crate::throttle`]); good tokens are never held back.
//!
//! Handlers state the role they need through their extractor type ([`Reader`],
//! [`Requester`], [`Admin`]), placed first among their arguments, so that authentication is
//! decided before anything in the request (path, query, body) is looked at: a caller without
//! rights learns nothing about what is valid.
//!
//! | role | may |
//! |---|---|
//! | `admin` | everything |
//! | `requester` | every read (GET) except `/v1/tokens`; create node requests, and list and release its own; heartbeats |
//! | `viewer` | every read (GET) except `/v1/tokens` |
//!
//! A node request belongs to the token that made it (not to the `requester` label of its
//! body): a requester token lists and releases only its own, and another's is a 404 as if it
//! did not exist (nor does it get another token's `request.*` events); admins and viewers see
//! every request. Pool specs are shown to admins
//! whole; to viewers and requesters with the `bootstrap` section redacted, in pools and in
//! events alike (it names the farm's accounts, shares, domain and secrets).
//! | node token (`rbn_...`) | register its own node and send its heartbeats; nothing else |
//! | enrollment token (`rbp_...`) | enroll a node of its Batch pool, once per node; nothing else |
//!
//! Draining a node and managing tokens and pools are operator actions: admin only.
//!
//! Node tokens are made by the controller, one per VM of a pool with a `bootstrap` section,
//! and stored hashed in `node_tokens`; a node token acting on another node is a 403.
//! Enrollment tokens are made by the controller, one per Batch pool with a `bootstrap`
//! section (its start task carries it), and stored hashed in `pool_enroll_tokens`; a Batch
//! node trades it once for its own node token (`POST /v1/nodes/{name}/enroll`).

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::ApiState;
use crate::error::ApiError;

/// What a token may do (DESIGN.md section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Node requests, heartbeats, reads.
    Requester,
    /// Reads.
    Viewer,
}

impl Role {
    /// The role stored with a token; `None` for a name this version does not know (such a
    /// token authenticates but is allowed nothing).
    pub fn parse(name: &str) -> Option<Role> {
        // Keep in step with `as_str`.
        match name {
            "admin" => Some(Role::Admin),
            "requester" => Some(Role::Requester),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

impl Role {
    /// The name stored with a token.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Requester => "requester",
            Role::Viewer => "viewer",
        }
    }
}

/// Who is calling: the token's name (`"admin"` for the configured admin token) and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Option<Role>,
    /// For a node token: the node it belongs to (and `role` is None).
    pub node: Option<String>,
    /// For an enrollment token: the Batch pool it belongs to (and `role` is None).
    pub pool: Option<String>,
    /// Hex SHA-256 of the presented token: what owns the node requests it makes.
    pub token_sha256: String,
}

impl Caller {
    /// Whether this caller sees and releases every node request (admins, and viewers, which
    /// only read) or only the ones its own token made (requesters).
    pub fn sees_all_requests(&self) -> bool {
        self.role != Some(Role::Requester)
    }

    /// Whether pool specs are shown whole, `bootstrap` section included (the farm's
    /// accounts, shares, domain, client command and secret names): admins only.
    pub fn sees_bootstrap(&self) -> bool {
        self.role == Some(Role::Admin)
    }
}

impl Caller {
    fn refused(&self, needs: &str) -> ApiError {
        if self.node.is_some() {
            return ApiError::forbidden(
                "a node token may only register its own node and send its heartbeats",
            );
        }
        if self.pool.is_some() {
            return ApiError::forbidden(
                "an enrollment token may only enroll the nodes of its Batch pool",
            );
        }
        ApiError::forbidden(format!(
            "token {:?} may not do this: it needs the {needs} role",
            self.name
        ))
    }

    /// For the node routes: a node token may act on its own node only.
    pub fn check_node(&self, name: &str) -> Result<(), ApiError> {
        match &self.node {
            Some(own) if !own.eq_ignore_ascii_case(name) => Err(ApiError::forbidden(
                "this node token belongs to another node",
            )),
            _ => Ok(()),
        }
    }
}

/// Extractor: a requester or admin token, or a node token (heartbeats; the handler checks
/// the node with [`Caller::check_node`]).
#[derive(Debug, Clone)]
pub struct NodeOrRequester(pub Caller);

/// Extractor: an admin token, or a node token (registration; the handler checks the node
/// with [`Caller::check_node`]).
#[derive(Debug, Clone)]
pub struct NodeOrAdmin(pub Caller);

/// Extractor: a Batch pool's enrollment token, and nothing else (`caller.pool` is set).
#[derive(Debug, Clone)]
pub struct Enroller(pub Caller);

impl FromRequestParts<ApiState> for Enroller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state).await?;
        if caller.pool.is_some() {
            Ok(Enroller(caller))
        } else {
            Err(ApiError::forbidden(
                "only a Batch pool's enrollment token (from its start task) enrolls a node",
            ))
        }
    }
}

impl FromRequestParts<ApiState> for NodeOrRequester {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state).await?;
        match caller.role {
            Some(Role::Admin | Role::Requester) => Ok(NodeOrRequester(caller)),
            _ if caller.node.is_some() => Ok(NodeOrRequester(caller)),
            _ => Err(caller.refused("requester or admin")),
        }
    }
}

impl FromRequestParts<ApiState> for NodeOrAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state).await?;
        match caller.role {
            Some(Role::Admin) => Ok(NodeOrAdmin(caller)),
            _ if caller.node.is_some() => Ok(NodeOrAdmin(caller)),
            _ => Err(ApiError::forbidden(format!(
                "token {:?} may not do this: it needs the node's own token or the admin role",
                caller.name
            ))),
        }
    }
}

/// Extractor: any valid token with a known role (reads).
#[derive(Debug, Clone)]
pub struct Reader(pub Caller);

/// Extractor: a token with the admin or requester role (node requests, heartbeats).
#[derive(Debug, Clone)]
pub struct Requester(pub Caller);

/// Extractor: a token with the admin role (pool writes, drain, tokens).
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<ApiState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state).await?;
        match caller.role {
            Some(_) => Ok(Reader(caller)),
            None if caller.node.is_some() => Err(caller.refused("viewer")),
            None => Err(ApiError::forbidden(format!(
                "token {:?} has a role this version does not know; it may do nothing",
                caller.name
            ))),
        }
    }
}

impl FromRequestParts<ApiState> for Requester {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state).await?;
        match caller.role {
            Some(Role::Admin | Role::Requester) => Ok(Requester(caller)),
            _ => Err(caller.refused("requester or admin")),
        }
    }
}

impl FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state).await?;
        match caller.role {
            Some(Role::Admin) => Ok(Admin(caller)),
            _ => Err(caller.refused("admin")),
        }
    }
}

/// The caller behind the request's bearer token.
///
/// Errors: 401 if the header is missing, malformed, or the token is unknown; 500 if the
/// store cannot be asked.
pub async fn authenticate(parts: &Parts, state: &ApiState) -> Result<Caller, ApiError> {
    let token = bearer_token(parts)?;
    let hash = sha256_hex(token);
    if constant_time_eq(
        hash.as_bytes(),
        state.admin_token_sha256.to_ascii_lowercase().as_bytes(),
    ) {
        return Ok(Caller {
            name: "admin".to_string(),
            role: Some(Role::Admin),
            node: None,
            pool: None,
            token_sha256: hash,
        });
    }
    // Node tokens have their own prefix and table.
    if token.starts_with(NODE_TOKEN_PREFIX) {
        return match state.store.node_for_token_hash(&hash).await {
            Ok(Some(node)) => Ok(Caller {
                name: format!("node:{node}"),
                role: None,
                node: Some(node),
                pool: None,
                token_sha256: hash,
            }),
            Ok(None) => Err(bad_token(parts).await),
            Err(err) => Err(ApiError::internal("cannot check the token", &err)),
        };
    }
    if token.starts_with(POOL_TOKEN_PREFIX) {
        return match state.store.pool_for_enroll_token_hash(&hash).await {
            Ok(Some(pool)) => Ok(Caller {
                name: format!("enroll:{pool}"),
                role: None,
                node: None,
                pool: Some(pool),
                token_sha256: hash,
            }),
            Ok(None) => Err(bad_token(parts).await),
            Err(err) => Err(ApiError::internal("cannot check the token", &err)),
        };
    }
    // A lookup by hash leaks at most timing about the hash, which does not help guess a token.
    match state.store.find_token_by_hash(&hash).await {
        Ok(Some(record)) => Ok(Caller {
            role: Role::parse(&record.role),
            name: record.name,
            node: None,
            pool: None,
            token_sha256: hash,
        }),
        Ok(None) => Err(bad_token(parts).await),
        Err(err) => Err(ApiError::internal("cannot check the token", &err)),
    }
}

/// The answer to a token nobody issued: 401 at once, or, for a peer that sent too many,
/// 429 after a delay ([`crate::throttle`]). The peer is the connection's address when the
/// router is served with `ConnectInfo<SocketAddr>`; without it every caller shares one
/// bucket.
async fn bad_token(parts: &Parts) -> ApiError {
    let unauthorized = ApiError::unauthorized("the bearer token is not valid");
    let Some(throttle) = parts
        .extensions
        .get::<std::sync::Arc<crate::throttle::AuthThrottle>>()
    else {
        return unauthorized;
    };
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    match throttle.failure(peer, std::time::Instant::now()) {
        crate::throttle::Verdict::Unauthorized => unauthorized,
        crate::throttle::Verdict::Throttled {
            delay,
            retry_after_seconds,
        } => {
            tokio::time::sleep(delay).await;
            ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_bad_tokens",
                format!(
                    "too many invalid tokens from this address; the bearer token is not valid \
                     either. Retry after {retry_after_seconds} s with a valid token"
                ),
            )
            .with_retry_after(retry_after_seconds)
        }
    }
}

/// Prefix of the per-node tokens the controller makes (API tokens start with `rb_`).
pub const NODE_TOKEN_PREFIX: &str = "rbn_";

/// Prefix of Batch pools' enrollment tokens.
pub const POOL_TOKEN_PREFIX: &str = "rbp_";

fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let missing = || ApiError::unauthorized("send a token: Authorization: Bearer <token>");
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    // The scheme is case-insensitive (RFC 9110).
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(missing());
    }
    Ok(token)
}

/// Lower-case hex SHA-256 of a token: the only form in which tokens are stored or compared.
pub fn sha256_hex(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(digest.len() * 2);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// Compares two byte strings in time that depends only on their lengths (which are public:
/// both are hex SHA-256), so a caller cannot learn a prefix of the admin hash by timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // `black_box` keeps the optimizer from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_matches_the_known_digest() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn roles_parse_by_name() {
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(Role::parse("requester"), Some(Role::Requester));
        assert_eq!(Role::parse("viewer"), Some(Role::Viewer));
        assert_eq!(Role::parse("root"), None);
    }
}

/// Extractor for `/metrics` and `/openapi.json` (DESIGN.md section 5): open to peers on
/// loopback whatever they send; from anywhere else, any valid token with a known role.
/// Without the peer's address (a router not served with connect info) the peer counts as
/// remote.
#[derive(Debug, Clone)]
pub struct LocalOrReader;

impl FromRequestParts<ApiState> for LocalOrReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let loopback = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .is_some_and(|peer| peer.0.ip().to_canonical().is_loopback());
        if loopback {
            return Ok(LocalOrReader);
        }
        Reader::from_request_parts(parts, state)
            .await
            .map(|_| LocalOrReader)
    }
}
