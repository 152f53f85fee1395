//! Identity documents beyond the client-credentials token in `common`: the managed identity
//! token served by IMDS, and the OpenID configuration MSAL fetches before it asks for a token.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// IMDS `GET /metadata/identity/oauth2/token`. Unlike Entra's own token response every number
/// is a JSON *string* (`"expires_in": "3599"`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ManagedIdentityTokenResponse {
    pub access_token: String,
    /// Always empty for managed identities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Seconds, as a string. Numbers are accepted too (some identity endpoints send them).
    #[serde(
        default,
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_in: Option<String>,
    /// Unix seconds, as a string; the field the Rust and Python SDKs rely on.
    #[serde(
        default,
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_on: Option<String>,
    #[serde(
        default,
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<String>,
    /// The audience, e.g. `https://management.azure.com/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Present when the VM has several identities and one was selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl ManagedIdentityTokenResponse {
    /// `expires_on` as Unix seconds, if it is a plain integer.
    pub fn expires_on_unix(&self) -> Option<u64> {
        self.expires_on.as_deref()?.trim().parse().ok()
    }

    /// `expires_in` as seconds, if it is a plain integer.
    pub fn expires_in_secs(&self) -> Option<u64> {
        self.expires_in.as_deref()?.trim().parse().ok()
    }
}

/// `GET {authority}/{tenant}/v2.0/.well-known/openid-configuration`. MSAL needs only the token
/// and authorization endpoints; the rest is optional here so a minimal document parses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OpenIdConfiguration {
    pub token_endpoint: String,
    pub authorization_endpoint: String,
    /// Only checked by MSAL for OIDC authorities; Entra puts `{tenantid}` in it for `common`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_types_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_modes_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_types_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_signing_alg_values_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims_supported: Option<Vec<String>>,
    /// Entra sends `null` for the public cloud's `common` tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_region_scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_instance_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_graph_host_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msgraph_host: Option<String>,
}

/// Accepts `"3599"`, `3599` or `null`, yielding the decimal string, because identity endpoints
/// disagree about whether token lifetimes are strings.
fn string_or_number<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    struct StringOrNumber;

    impl<'de> Visitor<'de> for StringOrNumber {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string, an integer or null")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    deserializer.deserialize_any(StringOrNumber)
}
