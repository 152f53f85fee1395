//! Credentials from configuration, through `azure_identity`, and a token cache in front of
//! them that refreshes before expiry, lets one refresh run at a time, and backs off after a
//! failure so a wrong secret never turns into a storm of token requests.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::error::{ArmError, ErrorKind, Result};

/// How renderburst authenticates to Entra ID.
#[derive(Clone)]
pub enum CredentialConfig {
    ClientSecret {
        tenant_id: String,
        client_id: String,
        client_secret: Secret,
    },
    /// The VM's (or App Service's) managed identity; `client_id` picks a user-assigned one.
    ManagedIdentity { client_id: Option<String> },
    /// Federated token file (Kubernetes workload identity); `None` fields come from the
    /// usual `AZURE_*` environment variables.
    WorkloadIdentity {
        tenant_id: Option<String>,
        client_id: Option<String>,
        token_file: Option<PathBuf>,
    },
    /// The signed-in Azure CLI.
    AzureCli { tenant_id: Option<String> },
}

impl fmt::Debug for CredentialConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .finish(),
            Self::ManagedIdentity { client_id } => f
                .debug_struct("ManagedIdentity")
                .field("client_id", client_id)
                .finish(),
            Self::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
            } => f
                .debug_struct("WorkloadIdentity")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("token_file", token_file)
                .finish(),
            Self::AzureCli { tenant_id } => f
                .debug_struct("AzureCli")
                .field("tenant_id", tenant_id)
                .finish(),
        }
    }
}

impl CredentialConfig {
    /// Who we are, for error messages (never the secret).
    pub fn describe(&self) -> String {
        match self {
            Self::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => {
                format!("client secret credential (tenant {tenant_id}, client id {client_id})")
            }
            Self::ManagedIdentity { client_id: Some(c) } => {
                format!("managed identity (client id {c})")
            }
            Self::ManagedIdentity { client_id: None } => "system-assigned managed identity".into(),
            Self::WorkloadIdentity {
                tenant_id,
                client_id,
                ..
            } => format!(
                "workload identity (tenant {}, client id {})",
                tenant_id.as_deref().unwrap_or("from AZURE_TENANT_ID"),
                client_id.as_deref().unwrap_or("from AZURE_CLIENT_ID")
            ),
            Self::AzureCli { .. } => "Azure CLI credential".into(),
        }
    }

    /// Builds the `azure_identity` credential, sending its token requests through `http`
    /// (the same client, TLS set-up and extra CA as ARM traffic).
    pub(crate) fn build(
        &self,
        http: &reqwest::Client,
        authority_host: &str,
    ) -> Result<Arc<dyn TokenCredential>> {
        let client_options = || {
            let mut cloud = azure_core::cloud::CustomConfiguration::default();
            cloud.authority_host = authority_host.trim_end_matches('/').to_owned();
            ClientOptions {
                transport: Some(Transport::new(Arc::new(http.clone()))),
                cloud: Some(Arc::new(cloud.into())),
                ..ClientOptions::default()
            }
        };
        let describe = self.describe();
        let wrap = |e: azure_core::Error| {
            ArmError::new(
                ErrorKind::Config,
                "CredentialConfig",
                format!("cannot set up the {describe}: {e}"),
            )
        };
        Ok(match self {
            Self::ClientSecret {
                tenant_id,
                client_id,
                client_secret,
            } => azure_identity::ClientSecretCredential::new(
                tenant_id,
                client_id.clone(),
                client_secret.clone(),
                Some(azure_identity::ClientSecretCredentialOptions {
                    client_options: client_options(),
                }),
            )
            .map_err(wrap)?,
            Self::ManagedIdentity { client_id } => azure_identity::ManagedIdentityCredential::new(
                Some(azure_identity::ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id
                        .clone()
                        .map(azure_identity::UserAssignedId::ClientId),
                    client_options: client_options(),
                }),
            )
            .map_err(wrap)?,
            Self::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
            } => azure_identity::WorkloadIdentityCredential::new(Some(
                azure_identity::WorkloadIdentityCredentialOptions {
                    credential_options: azure_identity::ClientAssertionCredentialOptions {
                        client_options: client_options(),
                    },
                    client_id: client_id.clone(),
                    tenant_id: tenant_id.clone(),
                    token_file_path: token_file.clone(),
                },
            ))
            .map_err(wrap)?,
            Self::AzureCli { tenant_id } => azure_identity::AzureCliCredential::new(Some(
                azure_identity::AzureCliCredentialOptions {
                    tenant_id: tenant_id.clone(),
                    ..Default::default()
                },
            ))
            .map_err(wrap)?,
        })
    }
}

/// A bearer token ready to put in a header. `Debug` never shows it.
#[derive(Clone)]
pub struct BearerToken {
    value: Arc<str>,
    pub expires_on: OffsetDateTime,
}

impl BearerToken {
    pub(crate) fn header_value(&self) -> String {
        format!("Bearer {}", self.value)
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("value", &"<redacted>")
            .field("expires_on", &self.expires_on)
            .finish()
    }
}

struct CacheState {
    token: Option<(BearerToken, OffsetDateTime)>,
    failure: Option<(ArmError, Instant, Duration)>,
}

/// Tokens for one scope, cached. Callers wait on one refresh rather than each starting one.
pub struct TokenSource {
    credential: Arc<dyn TokenCredential>,
    scope: String,
    describe: String,
    state: Mutex<CacheState>,
    refreshes: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("scope", &self.scope)
            .field("credential", &self.describe)
            .finish()
    }
}

/// After a failed token request, the next attempt waits this long, doubling up to the cap.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl TokenSource {
    pub fn new(
        credential: Arc<dyn TokenCredential>,
        scope: impl Into<String>,
        describe: String,
    ) -> Self {
        Self {
            credential,
            scope: scope.into(),
            describe,
            state: Mutex::new(CacheState {
                token: None,
                failure: None,
            }),
            refreshes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many times a token was requested from Entra ID (for tests and status).
    pub fn refresh_count(&self) -> u64 {
        self.refreshes.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn token(&self) -> Result<BearerToken> {
        let mut st = self.state.lock().await;
        let now = OffsetDateTime::now_utc();
        if let Some((tok, fetched)) = &st.token {
            // Refresh when less than a quarter of the lifetime (at most five minutes) is
            // left, so a request never leaves with a token about to expire.
            let lifetime: time::Duration = tok.expires_on - *fetched;
            let quarter: time::Duration = lifetime / 4i32;
            let margin = quarter.min(time::Duration::minutes(5));
            if tok.expires_on - margin > now {
                return Ok(tok.clone());
            }
        }
        if let Some((err, at, backoff)) = &st.failure
            && at.elapsed() < *backoff
        {
            return Err(err.clone());
        }
        self.refreshes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self
            .credential
            .get_token(&[self.scope.as_str()], None)
            .await
        {
            Ok(t) => {
                let tok = BearerToken {
                    value: Arc::from(t.token.secret()),
                    expires_on: t.expires_on,
                };
                st.token = Some((tok.clone(), now));
                st.failure = None;
                Ok(tok)
            }
            Err(e) => {
                let err = ArmError::new(
                    ErrorKind::Credential,
                    "CredentialUnavailable",
                    format!(
                        "cannot get a token for {} with the {}: {e}",
                        self.scope, self.describe
                    ),
                );
                let backoff = match &st.failure {
                    Some((_, _, b)) => (*b * 2).min(MAX_BACKOFF),
                    None => FIRST_BACKOFF,
                };
                tracing::warn!(scope = %self.scope, credential = %self.describe, retry_in_s = backoff.as_secs(), error = %e, "token request failed");
                st.failure = Some((err.clone(), Instant::now(), backoff));
                Err(err)
            }
        }
    }

    /// Forgets the cached token (after a 401 that says it was rejected).
    pub async fn invalidate(&self) {
        self.state.lock().await.token = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_kind_builds_and_none_prints_its_secret() {
        let http = reqwest::Client::new();
        let token_file = std::env::temp_dir().join(format!(
            "renderburst-test-federated-token-{}",
            std::process::id()
        ));
        std::fs::write(&token_file, "header.payload.signature").unwrap();
        let kinds = [
            CredentialConfig::ClientSecret {
                tenant_id: "11111111-1111-1111-1111-111111111111".into(),
                client_id: "client".into(),
                client_secret: Secret::new("hunter2-secret"),
            },
            CredentialConfig::ManagedIdentity {
                client_id: Some("mi-client".into()),
            },
            CredentialConfig::ManagedIdentity { client_id: None },
            CredentialConfig::WorkloadIdentity {
                tenant_id: Some("11111111-1111-1111-1111-111111111111".into()),
                client_id: Some("wi-client".into()),
                token_file: Some(token_file.clone()),
            },
            CredentialConfig::AzureCli { tenant_id: None },
        ];
        for kind in &kinds {
            kind.build(&http, "https://login.microsoftonline.com")
                .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert!(!format!("{kind:?}").contains("hunter2"), "{kind:?}");
            assert!(!kind.describe().contains("hunter2"));
        }
        let err = kinds[0]
            .build(&http, "http://insecure.example")
            .expect_err("http authority refused");
        assert!(err.to_string().contains("HTTPS"), "{err}");
    }
}
