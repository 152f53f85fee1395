//! Types shared by every resource provider: the resource envelope, list pages, errors,
//! asynchronous operation status and Entra ID token responses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Tags on a tracked resource. Names compare case-insensitively in Azure; values do not.
pub type Tags = BTreeMap<String, String>;

/// The envelope every tracked ARM resource shares, generic over its `properties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource<P> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<String>>,
    /// Top-level on disks, scale sets and a few other resources (`{"name": "Premium_LRS"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,
    /// The resource that manages this one: the VM a disk is attached to, or the owner of a
    /// managed resource group. Top-level, not inside `properties`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    /// Managed identity block of VMs and Batch pools, kept opaque: renderburst only passes it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<serde_json::Value>,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub properties: Option<P>,
}

impl<P> Default for Resource<P> {
    fn default() -> Self {
        Self {
            id: None,
            name: None,
            resource_type: None,
            location: None,
            tags: None,
            etag: None,
            zones: None,
            sku: None,
            managed_by: None,
            identity: None,
            properties: None,
        }
    }
}

/// A tracked resource whose `properties` are kept as raw JSON, for code that handles every
/// resource type alike (list pages of mixed types, the simulator's resource dump).
pub type GenericResource = Resource<serde_json::Value>;

/// The SKU block of the envelope. `capacity` is the instance count on scale sets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sku {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
}

/// A resource nested inside its parent's body (subnets, IP configurations, security rules,
/// NIC references). It has an id and a name but no location, tags or SKU of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildResource<P> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub properties: Option<P>,
}

impl<P> Default for ChildResource<P> {
    fn default() -> Self {
        Self {
            id: None,
            name: None,
            resource_type: None,
            etag: None,
            properties: None,
        }
    }
}

/// A reference to another resource by id (`{"id": "/subscriptions/..."}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubResource {
    pub id: String,
}

/// One page of an ARM list call. Clients follow `nextLink` until it is absent or null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// ARM's error response: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

/// The body of an ARM error. `details` nest the same shape.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_info: Vec<serde_json::Value>,
}

impl ErrorResponse {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                ..ErrorDetail::default()
            },
        }
    }

    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.error.target = Some(target.into());
        self
    }
}

/// Status of an asynchronous operation, as served at its `Azure-AsyncOperation` URL.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `InProgress`, `Succeeded`, `Failed` or `Canceled` (compare case-insensitively).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_complete: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

impl OperationStatus {
    pub const IN_PROGRESS: &'static str = "InProgress";
    pub const SUCCEEDED: &'static str = "Succeeded";
    pub const FAILED: &'static str = "Failed";
    pub const CANCELED: &'static str = "Canceled";

    /// Terminal states per the ARM RPC: Succeeded, Failed, Canceled (any casing).
    pub fn is_terminal(&self) -> bool {
        [Self::SUCCEEDED, Self::FAILED, Self::CANCELED]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&self.status))
    }
}

/// A successful Entra ID token response (OAuth 2.0 client credentials, v2 endpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token_type: String,
    pub expires_in: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_expires_in: Option<u64>,
    pub access_token: String,
}

/// An Entra ID error response (`invalid_client`, `invalid_request`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenErrorResponse {
    pub error: String,
    pub error_description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_uri: Option<String>,
}
