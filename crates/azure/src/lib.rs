//! renderburst's only door to Azure.
//!
//! - [`credential`]: credentials from configuration (via `azure_identity`) and a token cache
//!   that refreshes ahead of expiry, one refresh at a time, backing off after failures.
//! - [`governor`]: one rate governor per subscription, shared by every caller.
//! - `pipeline`: one request — token, ids, timeout, governor, bounded jittered retries.
//! - [`lro`]: long-running operations that can be persisted and resumed.
//! - `ops`: typed operations on the resources renderburst uses; [`computeschedule`]: bulk
//!   VM operations (Compute Schedule).
//! - [`error`]: [`ArmError`] and the questions callers ask of it.
//!
//! Token and ARM traffic share one `reqwest` client, so one TLS set-up (and one extra CA,
//! for the simulator or a corporate proxy) applies to both.

pub mod computeschedule;
pub mod credential;
pub mod error;
pub mod governor;
pub mod lro;
mod ops;
mod pipeline;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use computeschedule::{CreateBatch, bulk_error};
pub use credential::{CredentialConfig, TokenSource};
pub use error::{ArmError, ErrorData, ErrorKind, QuotaInfo, Result};
pub use governor::{ComputeGroup, GovernorLimits, GovernorSnapshot};
pub use lro::{Operation, Poll};
pub use ops::{ApiVersions, TagFilter};
pub use pipeline::{ArmOutage, PipelineCounters, PipelineOptions, Response};

use crate::governor::{ArmClass, Draw, Governor};
use crate::pipeline::{Call, Pipeline};

/// How long-running operations are polled.
#[derive(Debug, Clone)]
pub struct PollOptions {
    /// Used when the service gives no `Retry-After`.
    pub default_interval: Duration,
    /// Caps `Retry-After` (a simulator with sub-second latencies still says 1 s).
    pub max_interval: Option<Duration>,
}

impl Default for PollOptions {
    fn default() -> Self {
        Self {
            default_interval: Duration::from_secs(3),
            max_interval: None,
        }
    }
}

/// Everything the client needs to know.
#[derive(Debug, Clone)]
pub struct AzureConfig {
    pub subscription_id: String,
    /// `https://management.azure.com`, a sovereign cloud's, or the simulator's.
    pub arm_endpoint: String,
    /// `https://login.microsoftonline.com`, or the simulator's.
    pub authority_host: String,
    /// Audience of ARM tokens. Not derived from `arm_endpoint`: sovereign clouds and the
    /// simulator keep Azure's.
    pub token_scope: String,
    pub batch_token_scope: String,
    pub credential: CredentialConfig,
    /// PEM of an extra trusted root, for token and ARM traffic alike.
    pub extra_ca_pem: Option<Vec<u8>>,
    pub pipeline: PipelineOptions,
    pub governor: GovernorLimits,
    pub governor_enabled: bool,
    pub poll: PollOptions,
    pub api_versions: ApiVersions,
}

impl AzureConfig {
    /// Azure public cloud defaults around a subscription and a credential.
    pub fn new(subscription_id: impl Into<String>, credential: CredentialConfig) -> Self {
        Self {
            subscription_id: subscription_id.into(),
            arm_endpoint: "https://management.azure.com".into(),
            authority_host: "https://login.microsoftonline.com".into(),
            token_scope: "https://management.azure.com/.default".into(),
            batch_token_scope: "https://batch.core.windows.net/.default".into(),
            credential,
            extra_ca_pem: None,
            pipeline: PipelineOptions::default(),
            governor: GovernorLimits::default(),
            governor_enabled: true,
            poll: PollOptions::default(),
            api_versions: ApiVersions::default(),
        }
    }
}

struct Inner {
    cfg: AzureConfig,
    base: url::Url,
    pipeline: Pipeline,
    arm_tokens: TokenSource,
    batch_tokens: TokenSource,
}

/// The ARM client. Cheap to clone; clones share the governor, tokens and connections.
#[derive(Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("arm_endpoint", &self.inner.cfg.arm_endpoint)
            .field("subscription_id", &self.inner.cfg.subscription_id)
            .field("credential", &self.inner.cfg.credential)
            .finish()
    }
}

impl ArmClient {
    pub fn new(cfg: AzureConfig) -> Result<Self> {
        let base = url::Url::parse(&cfg.arm_endpoint).map_err(|e| {
            ArmError::config(format!(
                "arm_endpoint '{}' is not a URL: {e}",
                cfg.arm_endpoint
            ))
        })?;
        if base.scheme() != "https" {
            return Err(ArmError::config(format!(
                "arm_endpoint '{}' must use https: bearer tokens are never sent in clear text",
                cfg.arm_endpoint
            )));
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(cfg.pipeline.user_agent.clone())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90));
        if let Some(pem) = &cfg.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                ArmError::config(format!("the extra CA is not a PEM certificate: {e}"))
            })?;
            if certs.is_empty() {
                return Err(ArmError::config("the extra CA file holds no certificate"));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| ArmError::config(format!("cannot build the HTTP client: {e}")))?;
        let credential = cfg.credential.build(&http, &cfg.authority_host)?;
        let describe = cfg.credential.describe();
        let arm_tokens = TokenSource::new(
            credential.clone(),
            cfg.token_scope.clone(),
            describe.clone(),
        );
        let batch_tokens = TokenSource::new(credential, cfg.batch_token_scope.clone(), describe);
        let pipeline = Pipeline {
            http,
            governor: Arc::new(Governor::new(&cfg.governor, cfg.governor_enabled)),
            opts: cfg.pipeline.clone(),
            counters: Arc::new(PipelineCounters::default()),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                base,
                pipeline,
                arm_tokens,
                batch_tokens,
            }),
        })
    }

    pub fn subscription_id(&self) -> &str {
        &self.inner.cfg.subscription_id
    }

    pub fn config(&self) -> &AzureConfig {
        &self.inner.cfg
    }

    pub fn governor(&self) -> GovernorSnapshot {
        self.inner.pipeline.governor.snapshot()
    }

    /// Room in Compute's per-VM bucket of `group` for the VM `name` in `rg`: writes of that
    /// group that may go to it now without waiting (a VM not written to lately has the
    /// documented 12; a VM held after a per-VM 429 has none). One map look-up, for a planner's
    /// caller choosing among VMs.
    pub fn vm_room(&self, rg: &str, name: &str, group: ComputeGroup) -> f64 {
        self.inner
            .pipeline
            .governor
            .vm_room(&vm_id_of(&self.vm_path(rg, name)), group)
    }

    pub fn counters(&self) -> &PipelineCounters {
        &self.inner.pipeline.counters
    }

    /// ARM failing now: every ARM attempt since `since_unix` failed with a 5xx, a 408 or no
    /// answer (the Batch data plane is not ARM and does not count).
    pub fn arm_outage(&self) -> Option<ArmOutage> {
        self.inner.pipeline.counters.arm_outage()
    }

    /// Token requests made so far (ARM scope).
    pub fn token_refreshes(&self) -> u64 {
        self.inner.arm_tokens.refresh_count()
    }

    /// An absolute ARM URL for `path` (which starts with `/subscriptions/...`).
    pub(crate) fn url(&self, path: &str, api_version: &str, query: &[(&str, &str)]) -> url::Url {
        let mut u = self.inner.base.clone();
        u.set_path(path);
        {
            let mut q = u.query_pairs_mut();
            q.clear();
            q.append_pair("api-version", api_version);
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        u
    }

    pub(crate) fn poll_interval(&self, retry_after: Option<Duration>) -> Duration {
        let p = &self.inner.cfg.poll;
        let d = retry_after
            .filter(|d| !d.is_zero())
            .unwrap_or(p.default_interval);
        match p.max_interval {
            Some(max) => d.min(max),
            None => d,
        }
    }

    /// Sends an ARM request through the governor and retries.
    pub async fn request(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
    ) -> Result<Response> {
        let path = url.path().to_owned();
        let compute = ComputeGroup::classify(&method, &path);
        let resource = match compute {
            Some(ComputeGroup::HighCostGet) | None => None,
            Some(_) => Some(vm_id_of(&path)),
        };
        let draw = Draw {
            class: ArmClass::of(&method),
            compute,
            resource,
        };
        let body = encode(body)?;
        self.inner
            .pipeline
            .send(Call {
                method,
                url,
                body,
                tokens: &self.inner.arm_tokens,
                draw: Some(draw),
                extra_headers: Vec::new(),
            })
            .await
    }

    /// GET of an absolute URL the service gave us (operation status, nextLink).
    pub async fn get_url(&self, url: &str) -> Result<Response> {
        let u = url::Url::parse(url)
            .map_err(|e| ArmError::decode(format!("the service gave a bad URL '{url}': {e}")))?;
        self.request(Method::GET, u, None).await
    }

    /// A Batch data-plane request: Batch-scoped token, no ARM buckets.
    pub(crate) async fn batch_request(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
    ) -> Result<Response> {
        let body = encode(body)?;
        self.inner
            .pipeline
            .send(Call {
                method,
                url,
                body,
                tokens: &self.inner.batch_tokens,
                draw: None,
                extra_headers: vec![(
                    "content-type",
                    "application/json; odata=minimalmetadata".into(),
                )],
            })
            .await
    }

    /// Pages of a list call, following `nextLink`.
    pub fn pager<T: DeserializeOwned>(&self, first: url::Url) -> Pager<T> {
        Pager {
            client: self.clone(),
            next: Some(first.to_string()),
            batch: false,
            _t: std::marker::PhantomData,
        }
    }

    pub(crate) fn batch_pager<T: DeserializeOwned>(&self, first: url::Url) -> Pager<T> {
        Pager {
            client: self.clone(),
            next: Some(first.to_string()),
            batch: true,
            _t: std::marker::PhantomData,
        }
    }
}

/// A JSON request body as bytes.
fn encode(body: Option<&Value>) -> Result<Option<Bytes>> {
    body.map(|v| {
        serde_json::to_vec(v)
            .map(Bytes::from)
            .map_err(|e| ArmError::decode(e.to_string()))
    })
    .transpose()
}

/// The VM id of a Compute VM URL (lower-cased, without the action), for per-VM holds.
fn vm_id_of(path: &str) -> String {
    let lower = path.to_ascii_lowercase();
    let marker = "/virtualmachines/";
    match lower.find(marker) {
        Some(i) => {
            let rest = &lower[i + marker.len()..];
            let name = rest.split('/').next().unwrap_or_default();
            format!("{}{name}", &lower[..i + marker.len()])
        }
        None => lower,
    }
}

/// A list result, one page at a time.
pub struct Pager<T> {
    client: ArmClient,
    next: Option<String>,
    batch: bool,
    _t: std::marker::PhantomData<T>,
}

impl<T: DeserializeOwned> Pager<T> {
    /// The next page, or None after the last.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>> {
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        let resp = if self.batch {
            let u = url::Url::parse(&url)
                .map_err(|e| ArmError::decode(format!("bad nextLink '{url}': {e}")))?;
            self.client.batch_request(Method::GET, u, None).await?
        } else {
            self.client.get_url(&url).await?
        };
        let page: Value = resp.json()?;
        self.next = page
            .get("nextLink")
            .or_else(|| page.get("odata.nextLink"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let items = match page.get("value") {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| ArmError::decode(format!("cannot decode a list page: {e}")))?,
            None => Vec::new(),
        };
        Ok(Some(items))
    }

    /// Every item of every page.
    pub async fn collect_all(mut self) -> Result<Vec<T>> {
        let mut all = Vec::new();
        while let Some(mut page) = self.next_page().await? {
            all.append(&mut page);
        }
        Ok(all)
    }

    /// The pages as a stream.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Vec<T>>> {
        futures::stream::try_unfold(self, |mut p| async move {
            Ok(p.next_page().await?.map(|page| (page, p)))
        })
    }
}
