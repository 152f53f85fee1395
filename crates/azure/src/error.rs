//! One error type for everything that can go wrong talking to Azure, with the questions
//! callers ask of it.
//!
//! A synchronous error (ARM answered the PUT with 409) and an asynchronous one (the
//! operation ended `Failed`) carry the same code and classify the same way, so the planner
//! never has to care which path a quota or capacity error took.

use std::fmt;
use std::time::Duration;

use arm_model::ErrorDetail;

/// Where an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// ARM (or the Batch service) answered with an error status.
    Http,
    /// A long-running operation ended `Failed` or `Canceled`.
    Operation,
    /// The request never got an answer: connection refused or dropped, or timed out, after
    /// every retry allowed.
    Transport,
    /// No access token could be obtained.
    Credential,
    /// An answer could not be understood.
    Decode,
    /// The client was configured wrongly (bad URL, bad CA file...).
    Config,
}

/// Quota figures parsed from Azure's quota message, when present.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuotaInfo {
    /// e.g. `standardNCASv3_T4Family`, `Total Regional`, `LowPriority`.
    pub family: Option<String>,
    pub limit: Option<u64>,
    pub usage: Option<u64>,
    pub required: Option<u64>,
}

/// The error. Boxed so `Result<T, ArmError>` stays one pointer wide on the error side;
/// fields and questions are reached through `Deref` to [`ErrorData`].
#[derive(Debug, Clone)]
pub struct ArmError(Box<ErrorData>);

impl std::ops::Deref for ArmError {
    type Target = ErrorData;
    fn deref(&self) -> &ErrorData {
        &self.0
    }
}

impl std::ops::DerefMut for ArmError {
    fn deref_mut(&mut self) -> &mut ErrorData {
        &mut self.0
    }
}

#[derive(Debug, Clone)]
pub struct ErrorData {
    pub kind: ErrorKind,
    /// HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// ARM's error code (`ResourceNotFound`, `AllocationFailed`...), or one of ours for
    /// errors without an answer (`Transport`, `CredentialUnavailable`, `DecodeError`).
    pub code: String,
    pub message: String,
    pub target: Option<String>,
    pub details: Vec<ErrorDetail>,
    /// `x-ms-request-id` of the answer, for support requests.
    pub request_id: Option<String>,
    /// The `x-ms-client-request-id` we sent.
    pub client_request_id: Option<String>,
    /// `Retry-After` given with the answer.
    pub retry_after: Option<Duration>,
}

impl ArmError {
    pub fn new(kind: ErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self(Box::new(ErrorData {
            kind,
            status: None,
            code: code.into(),
            message: message.into(),
            target: None,
            details: Vec::new(),
            request_id: None,
            client_request_id: None,
            retry_after: None,
        }))
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, "InvalidClientConfig", message)
    }

    pub(crate) fn decode(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Decode, "DecodeError", message)
    }

    /// From an ARM error body (sync) or an operation's `error` (async).
    pub fn from_detail(kind: ErrorKind, status: Option<u16>, detail: ErrorDetail) -> Self {
        Self(Box::new(ErrorData {
            kind,
            status,
            code: detail.code,
            message: detail.message,
            target: detail.target,
            details: detail.details,
            request_id: None,
            client_request_id: None,
            retry_after: None,
        }))
    }
}

impl ErrorData {
    /// Every code in the error and its details, outermost first.
    fn codes(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.code.as_str()).chain(self.details.iter().map(|d| d.code.as_str()))
    }

    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
            || self.codes().any(|c| {
                matches!(
                    c,
                    "ResourceNotFound"
                        | "NotFound"
                        | "ResourceGroupNotFound"
                        | "PoolNotFound"
                        | "NodeNotFound"
                )
            })
    }

    pub fn is_conflict(&self) -> bool {
        self.status == Some(409) && !self.is_quota() && !self.is_capacity()
    }

    pub fn is_throttled(&self) -> bool {
        self.status == Some(429)
    }

    /// A vCPU quota was exceeded (regional, family or Spot), synchronously or not.
    pub fn is_quota(&self) -> bool {
        let quota_code = self.codes().any(|c| {
            matches!(
                c,
                "OperationNotAllowed"
                    | "QuotaExceeded"
                    | "AccountCoreQuotaReached"
                    | "AccountLowPriorityCoreQuotaReached"
                    | "AccountSpotCoreQuotaReached"
                    | "AccountVMSeriesCoreQuotaReached"
            )
        });
        let batch_code = self
            .codes()
            .any(|c| c.starts_with("Account") && c.ends_with("QuotaReached"));
        let m = &self.message;
        batch_code
            || (quota_code
                && (m.contains("Family Cores quota")
                    || m.contains("Total Regional Cores quota")
                    || m.contains("LowPriorityCores")
                    || m.contains("Submit a request for Quota increase")
                    || m.contains("Cores quota")))
    }

    /// Quota figures, when the message carries them.
    pub fn quota(&self) -> Option<QuotaInfo> {
        if !self.is_quota() {
            return None;
        }
        let m = &self.message;
        let number_after = |label: &str| -> Option<u64> {
            let i = m.find(label)? + label.len();
            let digits: String = m[i..]
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        let family = m.find("exceeding approved ").and_then(|i| {
            let rest = &m[i + "exceeding approved ".len()..];
            rest.find(" quota")
                .map(|j| rest[..j].trim_end_matches(" Cores").to_owned())
        });
        Some(QuotaInfo {
            family,
            limit: number_after("Current Limit:"),
            usage: number_after("Current Usage:"),
            required: number_after("Additional Required:"),
        })
    }

    /// Azure has no capacity for the size (or zone) right now.
    pub fn is_capacity(&self) -> bool {
        self.codes().any(|c| {
            matches!(
                c,
                "AllocationFailed"
                    | "ZonalAllocationFailed"
                    | "OverconstrainedAllocationRequest"
                    | "OverconstrainedZonalAllocationRequest"
                    | "SkuNotAvailable"
                    | "AllocationTimedout"
                    | "AllocationTimedOut"
            )
        })
    }

    /// Whether sending the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Transport => true,
            ErrorKind::Credential | ErrorKind::Decode | ErrorKind::Config => false,
            ErrorKind::Http | ErrorKind::Operation => {
                matches!(self.status, Some(408 | 429 | 500..=599))
                    || self.codes().any(|c| {
                        matches!(
                            c,
                            "InternalExecutionError" | "RetryableError" | "OperationPreempted"
                        )
                    })
            }
        }
    }

    /// A failure that sending the same request again will not fix: only a person changing
    /// the configuration, the pool spec, a role assignment or the subscription will. The
    /// reconciler backs off for long on these instead of retrying at full speed (issue 13:
    /// a missing subnet made 6,241 VM PUTs in ten minutes).
    ///
    /// The codes are those Azure documents as configuration or permission errors in
    /// "Troubleshoot common Azure deployment errors"
    /// (learn.microsoft.com/azure/azure-resource-manager/troubleshooting/common-deployment-errors)
    /// and "Resolve errors for resource provider registration" (same folder,
    /// error-register-resource-provider). Capacity and quota errors are not here: capacity comes
    /// back by itself and quota is handled per offering ([`Self::is_capacity`],
    /// [`Self::is_quota`]).
    pub fn is_permanent(&self) -> bool {
        if self.is_retryable() || self.is_capacity() || self.is_quota() {
            return false;
        }
        // A credential failure is not here: an IMDS or Entra hiccup looks the same as a wrong
        // secret from this side, and must not block a pool for minutes.
        self.kind == ErrorKind::Config || self.codes().any(|c| permanent_fix(c).is_some())
    }

    /// For a permanent error, what a person has to change, in words that name the setting
    /// (`azure.subnet_id`, the pool's `image`, a role assignment...). None when the error is
    /// not permanent or its code says nothing more specific than itself.
    pub fn fix_hint(&self) -> Option<&'static str> {
        if !self.is_permanent() {
            return None;
        }
        let subnet = self.message.contains("/subnets/") || self.message.contains("subnet");
        self.codes().find_map(|c| match c {
            "InvalidResourceReference" if subnet => Some(
                "the subnet does not exist: check azure.subnet_id (or the pool's batch.subnet_id)",
            ),
            c => permanent_fix(c),
        })
    }

    /// A low-cardinality label for metrics: the ARM code, never the message.
    pub fn metric_code(&self) -> &str {
        &self.code
    }
}

/// The permanent ARM error codes and what fixes each (see [`ErrorData::is_permanent`]).
fn permanent_fix(code: &str) -> Option<&'static str> {
    Some(match code {
        "AuthorizationFailed" | "LinkedAuthorizationFailed" => {
            "the daemon's identity lacks a permission: check its role assignments (deploy/azure)"
        }
        "InvalidResourceReference" => {
            "a resource the request refers to does not exist: check azure.subnet_id and the pool's image"
        }
        // InvalidPropertyValue: "The value of a property in the HTTP request body is invalid"
        // (400), one of the common REST API error codes of Azure Batch, "Batch Status and
        // Error Codes" (learn.microsoft.com/rest/api/batchservice/batch-status-and-error-codes);
        // a Batch pool whose vmSize Batch does not offer is refused with it.
        "InvalidParameter"
        | "InvalidRequestContent"
        | "InvalidRequestFormat"
        | "InvalidPropertyValue" => {
            "Azure refused a value of the request: the error's target names it"
        }
        "MissingSubscriptionRegistration"
        | "SubscriptionNotRegistered"
        | "NoRegisteredProviderFound" => {
            "register the resource provider: az provider register --namespace <namespace in the message>"
        }
        "SubscriptionNotFound" | "ReadOnlyDisabledSubscription" | "SubscriptionNotEnabled" => {
            "the subscription is missing or disabled: check azure.subscription_id"
        }
        "ResourceGroupNotFound" => "the resource group does not exist: check azure.resource_group",
        // SubnetIsFull: "Subnet ... with address prefix ... doesn't have enough capacity for
        // IP addresses" (learn.microsoft.com/troubleshoot/azure/azure-kubernetes/
        // create-upgrade-delete/error-code-subnetisfull-upgrade). Retrying does not free an
        // address; a larger subnet (or fewer nodes in it) does.
        "SubnetIsFull" => {
            "the subnet has no free address: give azure.subnet_id a larger prefix or lower the pool's max"
        }
        // Image not found, as Azure's "Troubleshoot VM deployment: image not found" and
        // Compute Gallery troubleshooting pages name them: marketplace, gallery and managed
        // images.
        "ImageNotFound"
        | "PlatformImageNotFound"
        | "InvalidImageReference"
        | "GalleryImageNotFound"
        | "GalleryImageVersionNotFound"
        | "VMMarketplaceInvalidInput" => {
            "the image does not exist in this region: check the pool's image"
        }
        "MarketplacePurchaseEligibilityFailed" | "ResourcePurchaseValidationFailed" => {
            "the marketplace image's terms must be accepted: az vm image terms accept --urn <image>"
        }
        "RequestDisallowedByPolicy" => {
            "an Azure Policy assignment refuses the request: the message names the policy"
        }
        "LocationNotAvailableForResourceType" | "NoRegisteredProviderFoundForLocation" => {
            "the resource type is not offered in this region: check azure.location"
        }
        _ => return None,
    })
}

impl fmt::Display for ArmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.status) {
            (ErrorKind::Operation, _) => {
                write!(f, "operation failed: {}: {}", self.code, self.message)?
            }
            (_, Some(status)) => write!(f, "HTTP {status} {}: {}", self.code, self.message)?,
            _ => write!(f, "{}: {}", self.code, self.message)?,
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ArmError {}

pub type Result<T, E = ArmError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, code: &str, message: &str) -> ArmError {
        let mut e = ArmError::new(ErrorKind::Http, code, message);
        e.status = Some(status);
        e
    }

    #[test]
    fn quota_messages_classify_and_parse() {
        let e = http(
            409,
            "OperationNotAllowed",
            "Operation could not be completed as it results in exceeding approved standardDSv3Family Cores quota. \
             Additional details - Deployment Model: Resource Manager, Location: eastus, Current Limit: 10, \
             Current Usage: 8, Additional Required: 4, (Minimum) New Limit Required: 12.",
        );
        assert!(e.is_quota());
        assert!(!e.is_conflict(), "a quota 409 is not a plain conflict");
        let q = e.quota().unwrap();
        assert_eq!(q.family.as_deref(), Some("standardDSv3Family"));
        assert_eq!((q.limit, q.usage, q.required), (Some(10), Some(8), Some(4)));
        let spot = http(
            409,
            "OperationNotAllowed",
            "exceeding approved LowPriorityCores quota. Current Limit: 3",
        );
        assert!(spot.is_quota());
        assert_eq!(
            spot.quota().unwrap().family.as_deref(),
            Some("LowPriorityCores")
        );
        let busy = http(
            409,
            "OperationNotAllowed",
            "Operation 'start' is not allowed on VM 'x' since another operation is in progress.",
        );
        assert!(!busy.is_quota());
        assert!(busy.is_conflict());
    }

    #[test]
    fn capacity_not_found_retryable() {
        let op = ArmError::from_detail(
            ErrorKind::Operation,
            None,
            ErrorDetail {
                code: "AllocationFailed".into(),
                message: "Allocation failed.".into(),
                ..Default::default()
            },
        );
        assert!(op.is_capacity());
        assert!(!op.is_retryable());
        assert!(http(409, "SkuNotAvailable", "x").is_capacity());
        assert!(http(404, "ResourceGroupNotFound", "x").is_not_found());
        assert!(http(503, "ServiceUnavailable", "x").is_retryable());
        assert!(http(429, "SubscriptionRequestsThrottled", "x").is_throttled());
        assert!(!http(400, "InvalidParameter", "x").is_retryable());
        assert!(!http(503, "ServiceUnavailable", "x").is_permanent());
        assert!(!op.is_permanent(), "capacity comes back by itself");
        assert_eq!(
            http(400, "InvalidParameter", "a long message").metric_code(),
            "InvalidParameter"
        );
    }

    #[test]
    fn permanent_errors_name_what_to_fix() {
        let subnet = http(
            400,
            "InvalidResourceReference",
            "Resource /subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/render referenced by resource /subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/maya-00001 was not found.",
        );
        assert!(subnet.is_permanent());
        assert!(subnet.fix_hint().unwrap().contains("azure.subnet_id"));
        let batch_size = http(
            400,
            "InvalidPropertyValue",
            "The VM size 'Standard_Bogus_v9' is not supported by Batch in this region.",
        );
        assert!(
            batch_size.is_permanent(),
            "a Batch pool refused for a value"
        );
        let full = http(
            400,
            "SubnetIsFull",
            "Subnet default with address prefix 10.0.0.0/29 doesn't have enough capacity for IP addresses.",
        );
        assert!(full.is_permanent(), "a full subnet blocks the pool");
        assert!(full.fix_hint().unwrap().contains("azure.subnet_id"));
        let denied = http(403, "AuthorizationFailed", "does not have authorization");
        assert!(denied.is_permanent());
        assert!(denied.fix_hint().unwrap().contains("role"));
        let async_image = ArmError::from_detail(
            ErrorKind::Operation,
            None,
            ErrorDetail {
                code: "ImageNotFound".into(),
                message: "The platform image 'a:b:c:d' is not available.".into(),
                ..Default::default()
            },
        );
        assert!(
            async_image.is_permanent(),
            "an operation's failure classifies too"
        );
        for code in [
            "InvalidParameter",
            "LinkedAuthorizationFailed",
            "SubscriptionNotRegistered",
            "PlatformImageNotFound",
            "GalleryImageNotFound",
        ] {
            assert!(http(400, code, "m").is_permanent(), "{code}");
            assert!(http(400, code, "m").fix_hint().is_some(), "{code}");
        }
        assert!(!http(500, "InternalServerError", "x").is_permanent());
        assert!(!http(409, "AllocationFailed", "no capacity").is_permanent());
        assert!(!http(429, "SubscriptionRequestsThrottled", "x").is_permanent());
        assert!(!http(409, "Conflict", "another operation").is_permanent());
        let quota = http(
            409,
            "OperationNotAllowed",
            "exceeding approved LowPriorityCores quota. Current Limit: 3",
        );
        assert!(!quota.is_permanent(), "quota is handled per offering");
        let credential = ArmError::new(ErrorKind::Credential, "CredentialUnavailable", "no token");
        assert!(!credential.is_permanent());
        assert_eq!(credential.fix_hint(), None);
    }
}
