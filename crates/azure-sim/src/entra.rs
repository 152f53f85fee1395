//! Entra ID endpoints (see `auth` for tokens).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::{Shared, base_of};
use crate::auth::Audience;
use crate::reply::Reply;

fn base(headers: &HeaderMap, uri: &http::Uri) -> String {
    let mut req = http::Request::new(());
    *req.uri_mut() = uri.clone();
    *req.headers_mut() = headers.clone();
    let (parts, _) = req.into_parts();
    base_of(&parts).0
}

pub async fn openid_configuration(
    Path(tenant): Path<String>,
    headers: HeaderMap,
    uri: http::Uri,
) -> Response {
    let b = base(&headers, &uri);
    Reply::ok(json!({
        "token_endpoint": format!("{b}/{tenant}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{b}/{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{b}/{tenant}/oauth2/v2.0/devicecode"),
        "end_session_endpoint": format!("{b}/{tenant}/oauth2/v2.0/logout"),
        "issuer": format!("{b}/{tenant}/v2.0"),
        "jwks_uri": format!("{b}/{tenant}/discovery/v2.0/keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "azure-sim",
    }))
    .into_response()
}

pub async fn instance_discovery(headers: HeaderMap, uri: http::Uri) -> Response {
    let b = base(&headers, &uri);
    let host = b.trim_start_matches("https://").to_owned();
    Reply::ok(json!({
        "tenant_discovery_endpoint": format!("{b}/common/v2.0/.well-known/openid-configuration"),
        "api-version": "1.1",
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
    }))
    .into_response()
}

/// What the Azure CLI reads to register a cloud from its ARM endpoint.
pub async fn cloud_metadata(headers: HeaderMap, uri: http::Uri) -> Response {
    let b = base(&headers, &uri);
    let doc = json!({
        "name": "AzureSim",
        "portal": format!("{b}/portal"),
        "resourceManager": format!("{b}/"),
        "authentication": {
            "loginEndpoint": format!("{b}/"),
            "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "media": format!("{b}/media"),
        "graphAudience": "https://graph.windows.net/",
        "graph": "https://graph.windows.net/",
        "batch": "https://batch.core.windows.net/",
        "gallery": format!("{b}/gallery"),
        "microsoftGraphResourceId": "https://graph.microsoft.com/",
        "sqlManagement": "https://management.core.windows.net:8443/",
        "vmImageAliasDoc": format!("{b}/vmimagealiases"),
        "activeDirectoryDataLake": "https://datalake.azure.net/",
        "appInsightsResourceId": "https://api.applicationinsights.io",
        "appInsightsTelemetryChannelResourceId": "https://dc.applicationinsights.azure.com/v2/track",
        "attestationResourceId": "https://attest.azure.net",
        "synapseAnalyticsResourceId": "https://dev.azuresynapse.net",
        "logAnalyticsResourceId": "https://api.loganalytics.io",
        "ossrDbmsResourceId": "https://ossrdbms-aad.database.windows.net",
        "suffixes": {
            "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
            "acrLoginServer": "azurecr.io",
            "sqlServerHostname": "database.windows.net",
            "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
            "keyVaultDns": "vault.azure.net",
            "storage": "core.windows.net",
            "azureFrontDoorEndpointSuffix": "azurefd.net",
            "storageSyncEndpointSuffix": "afs.azure.net",
            "mhsmDns": "managedhsm.azure.net",
            "mysqlServerEndpoint": "mysql.database.azure.com",
            "postgresqlServerEndpoint": "postgres.database.azure.com",
            "mariadbServerEndpoint": "mariadb.database.azure.com",
            "synapseAnalytics": "dev.azuresynapse.net",
            "attestationEndpoint": "attest.azure.net",
        },
    });
    // api-version 2022-09-01 answers one object (what current Azure CLIs read); the
    // 2019-05-01 to 2020-06-01 versions answered an array of clouds.
    let as_array = uri.query().is_some_and(|q| {
        ["2019-05-01", "2020-06-01"]
            .iter()
            .any(|v| q.contains(&format!("api-version={v}")))
    });
    Reply::ok(if as_array { json!([doc]) } else { doc }).into_response()
}

#[derive(serde::Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion: Option<String>,
    client_assertion_type: Option<String>,
    scope: Option<String>,
}

fn token_error(status: StatusCode, error: &str, code: u64, description: String) -> Response {
    let body = arm_model::TokenErrorResponse {
        error: error.to_owned(),
        error_description: description,
        error_codes: vec![code],
        timestamp: Some(crate::state::rfc3339(time::OffsetDateTime::now_utc())),
        trace_id: Some(uuid::Uuid::new_v4().to_string()),
        correlation_id: Some(uuid::Uuid::new_v4().to_string()),
        error_uri: Some(format!(
            "https://login.microsoftonline.com/error?code={code}"
        )),
    };
    Reply::json(status, serde_json::to_value(body).unwrap_or_default()).into_response()
}

pub async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    uri: http::Uri,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "AADSTS900144: The request body must contain the following parameter: 'grant_type'."
                .into(),
        );
    };
    let id = shared.lock().cfg.identity.clone();
    if !tenant.eq_ignore_ascii_case(&id.tenant_id) {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            format!(
                "AADSTS90002: Tenant '{}' not found.",
                crate::arm::truncate(&tenant, 64)
            ),
        );
    }
    if form.grant_type.as_deref() != Some("client_credentials") {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "AADSTS70003: The app requested an unsupported grant type; only client_credentials is simulated.".into(),
        );
    }
    if !form
        .client_id
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case(&id.client_id))
    {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "AADSTS700016: Application with identifier '{}' was not found in the directory '{}'.",
                crate::arm::truncate(form.client_id.as_deref().unwrap_or(""), 64),
                id.tenant_id
            ),
        );
    }
    // A client assertion (workload identity, certificates) is accepted without checking
    // its signature: the simulator has no trust configuration to check it against.
    let assertion_ok = form.client_assertion_type.as_deref()
        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        && form
            .client_assertion
            .as_deref()
            .is_some_and(|a| !a.is_empty());
    if !assertion_ok && form.client_secret.as_deref() != Some(id.client_secret.as_str()) {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            format!(
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                id.client_id
            ),
        );
    }
    let scope = form.scope.unwrap_or_default();
    let Some((_, aud)) = Audience::from_scope(&scope) else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            format!(
                "AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope {} is not valid.",
                crate::arm::truncate(&scope, 200)
            ),
        );
    };
    let b = base(&headers, &uri);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = shared.mint.issue(
        &id.tenant_id,
        &id.client_id,
        &aud,
        &format!("{b}/{}/v2.0", id.tenant_id),
        now,
        id.token_lifetime_seconds,
    );
    let body = arm_model::TokenResponse {
        token_type: "Bearer".into(),
        expires_in: id.token_lifetime_seconds,
        ext_expires_in: Some(id.token_lifetime_seconds),
        access_token: token,
    };
    Reply::ok(serde_json::to_value(body).unwrap_or_default()).into_response()
}

#[derive(serde::Deserialize)]
pub struct MiQuery {
    resource: Option<String>,
}

/// A managed-identity endpoint in the App Service style (`IDENTITY_ENDPOINT` +
/// `IDENTITY_HEADER`), so managed-identity credentials can be exercised on loopback.
pub async fn managed_identity_token(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<MiQuery>,
    headers: HeaderMap,
    uri: http::Uri,
) -> Response {
    let has_header = headers.contains_key("x-identity-header")
        || headers.get("metadata").is_some_and(|v| v == "true");
    if !has_header {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            0,
            "Required metadata header not specified".into(),
        );
    }
    let resource = q.resource.unwrap_or_default();
    let Some((_, aud)) = Audience::from_scope(&resource) else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            0,
            format!(
                "Unknown resource '{}'.",
                crate::arm::truncate(&resource, 200)
            ),
        );
    };
    let id = shared.lock().cfg.identity.clone();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let b = base(&headers, &uri);
    let token = shared.mint.issue(
        &id.tenant_id,
        &id.client_id,
        &aud,
        &format!("{b}/{}/v2.0", id.tenant_id),
        now,
        id.token_lifetime_seconds,
    );
    Reply::ok(json!({
        "access_token": token,
        "expires_in": id.token_lifetime_seconds.to_string(),
        "expires_on": (now + id.token_lifetime_seconds as i64).to_string(),
        "not_before": now.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": id.client_id,
    }))
    .into_response()
}
