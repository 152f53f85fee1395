//! The ARM front door: authentication, api-version, fault injection, subscription
//! throttling, routing by path, and the headers ARM puts on every answer.

use std::time::Instant;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::TokenError;
use crate::reply::{ArmErr, Reply};
use crate::state::{RType, State, key};
use crate::throttle::{
    ArmClass, ComputeGroup, PER_VM_BURST, PER_VM_PER_MIN, TokenBucket, retry_after_secs,
};

/// One parsed request, as handlers see it.
pub struct Ctx {
    pub method: Method,
    /// Path segments, percent-decoded.
    pub segs: Vec<String>,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// `scheme://host[:port]` the client used, for absolute URLs in answers.
    pub base: String,
    /// Host and port only, for Batch `accountEndpoint`.
    pub host: String,
    pub body: bytes::Bytes,
    pub if_match: Option<String>,
    pub now: Instant,
    pub api_version: String,
    /// Headers added by throttling checks (`x-ms-ratelimit-remaining-resource`).
    pub extra_headers: Vec<(&'static str, String)>,
    /// The ARM type the request is about, for `/_sim/stats`.
    pub stat_type: Option<String>,
}

impl Ctx {
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as a JSON object; malformed JSON is ARM's `InvalidRequestContent`.
    pub fn json_body(&self) -> Result<Value, ArmErr> {
        if self.body.is_empty() {
            return Err(ArmErr::invalid_content(
                "The request content was invalid and could not be deserialized: 'Request body is empty.'",
            ));
        }
        let v: Value = serde_json::from_slice(&self.body).map_err(|e| {
            ArmErr::invalid_content(format!(
                "The request content was invalid and could not be deserialized: '{e}'."
            ))
        })?;
        if !v.is_object() {
            return Err(ArmErr::invalid_content(
                "The request content was invalid and could not be deserialized: 'expected a JSON object'.",
            ));
        }
        Ok(v)
    }

    /// URLs of a new operation: (Azure-AsyncOperation, Location).
    pub fn op_urls(
        &self,
        sub: &str,
        namespace: &str,
        location: &str,
        op: &str,
    ) -> (String, String) {
        let base = format!(
            "{}/subscriptions/{sub}/providers/{namespace}/locations/{location}/operations/{op}",
            self.base
        );
        let p = &op[..8.min(op.len())];
        (
            format!("{base}?p={p}&api-version={}", self.api_version),
            format!("{base}?p={p}&monitor=true&api-version={}", self.api_version),
        )
    }

    /// A 202 with both polling headers, as Compute answers POST actions and DELETE.
    pub fn accepted(
        &self,
        sub: &str,
        namespace: &str,
        location: &str,
        op: &str,
        retry_s: u64,
    ) -> Reply {
        let (aao, loc) = self.op_urls(sub, namespace, location, op);
        Reply::empty(StatusCode::ACCEPTED)
            .header("azure-asyncoperation", aao)
            .header("location", loc)
            .header("azure-asyncnotification", "Enabled")
            .header("retry-after", retry_s.to_string())
    }

    /// Splits `items` into the requested page, with an absolute `nextLink` that keeps every
    /// query parameter of the first call (api-version, $filter, statusOnly...).
    pub fn page(&self, items: Vec<Value>, page_size: usize, link_key: &str) -> Value {
        let skip: usize = self
            .q("$skiptoken")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let size = self
            .q("maxresults")
            .or_else(|| self.q("$top"))
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .map_or(page_size, |n| n.min(page_size));
        let total = items.len();
        let value: Vec<Value> = items.into_iter().skip(skip).take(size).collect();
        let mut out = json!({ "value": value });
        if skip + size < total {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &self.query {
                if !k.eq_ignore_ascii_case("$skiptoken") {
                    ser.append_pair(k, v);
                }
            }
            ser.append_pair("$skiptoken", &(skip + size).to_string());
            out[link_key] = json!(format!("{}{}?{}", self.base, self.path, ser.finish()));
        }
        out
    }
}

/// `YYYY-MM-DD` with an optional suffix (`-preview`), or Batch's `YYYY-MM-DD.NN.N`.
pub fn valid_api_version(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() < 10 {
        return false;
    }
    let date_ok = b[..10].iter().enumerate().all(|(i, c)| {
        if i == 4 || i == 7 {
            *c == b'-'
        } else {
            c.is_ascii_digit()
        }
    });
    let rest = &v[10..];
    date_ok
        && (rest.is_empty()
            || (rest.starts_with('-')
                && rest.len() > 1
                && rest[1..].chars().all(|c| c.is_ascii_alphanumeric()))
            || (rest.starts_with('.') && rest[1..].chars().all(|c| c.is_ascii_digit() || c == '.')))
}

/// ARM's rules for resource names: 1..=max characters, no `<>%&:\?/` or control
/// characters, not ending in `.` or space. U+FFFD stands for percent escapes that were not
/// UTF-8 (`percent_decode` is lossy), so it is refused too.
pub fn validate_name(rtype: RType, name: &str) -> Result<(), ArmErr> {
    let bad = name.is_empty()
        || name.chars().count() > rtype.max_name_len()
        || name.chars().any(|c| {
            c.is_control() || c == char::REPLACEMENT_CHARACTER || "<>%&:\\?/#*".contains(c)
        })
        || name.ends_with('.')
        || name.ends_with(' ');
    if bad {
        return Err(ArmErr::bad_request(
            "InvalidResourceName",
            format!(
                "Resource name {} is invalid. The name can be up to {} characters long. It must \
                 not contain '<', '>', '%', '&', ':', '\\', '?', '/' or control characters and \
                 must not end with '.' or a space.",
                truncate(name, 100),
                rtype.max_name_len()
            ),
        ));
    }
    Ok(())
}

pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

/// Tag rules: at most 50, names ≤512 characters without `<>%&\?/`, values ≤256.
pub fn validate_tags(body: &Value) -> Result<(), ArmErr> {
    let Some(tags) = body.get("tags") else {
        return Ok(());
    };
    if tags.is_null() {
        return Ok(());
    }
    let Some(map) = tags.as_object() else {
        return Err(ArmErr::invalid_content(
            "The request content was invalid and could not be deserialized: 'tags must be an object'.",
        ));
    };
    if map.len() > 50 {
        return Err(ArmErr::bad_request(
            "InvalidTag",
            format!(
                "The resource has {} tags; at most 50 are allowed.",
                map.len()
            ),
        ));
    }
    for (k, v) in map {
        if k.is_empty() || k.chars().count() > 512 || k.chars().any(|c| "<>%&\\?/".contains(c)) {
            return Err(ArmErr::bad_request(
                "InvalidTagNameCharacters",
                format!("The tag name '{}' is invalid.", truncate(k, 64)),
            ));
        }
        match v.as_str() {
            Some(s) if s.chars().count() <= 256 => {}
            _ => {
                return Err(ArmErr::bad_request(
                    "InvalidTag",
                    format!(
                        "The value of tag '{}' must be a string of at most 256 characters.",
                        truncate(k, 64)
                    ),
                ));
            }
        }
    }
    Ok(())
}

pub fn token_error_reply(err: TokenError) -> ArmErr {
    let (code, msg) = match err {
        TokenError::Missing => (
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.".to_owned(),
        ),
        TokenError::Malformed => (
            "InvalidAuthenticationToken",
            "The access token is invalid.".to_owned(),
        ),
        TokenError::Expired { exp, now } => (
            "ExpiredAuthenticationToken",
            format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                fmt_unix(exp),
                fmt_unix(now)
            ),
        ),
        TokenError::WrongAudience => (
            "InvalidAuthenticationTokenAudience",
            "The access token has been obtained for wrong audience or resource.".to_owned(),
        ),
    };
    ArmErr::new(StatusCode::UNAUTHORIZED, code, msg)
}

fn fmt_unix(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(crate::state::rfc3339)
        .unwrap_or_default()
}

/// Parsed ARM path.
pub enum Route {
    ListSubscriptions,
    GetSubscription,
    ListTenants,
    ListResourceGroups,
    ResourceGroup {
        name: String,
    },
    /// A list of `rtype` in a resource group (`rg`) or the subscription (`rg` None).
    List {
        rg: Option<String>,
        rtype: RType,
        parent: Option<String>,
    },
    /// A resource by id (rg name, type, id).
    Resource {
        rg: String,
        rtype: RType,
        id: String,
        name: String,
        parent: Option<String>,
    },
    Action {
        rg: String,
        rtype: RType,
        id: String,
        name: String,
        action: String,
    },
    Operation {
        namespace: String,
        id: String,
    },
    ListResources {
        rg: Option<String>,
    },
    Provider {
        namespace: String,
    },
}

fn not_a_route(path: &str) -> ArmErr {
    ArmErr::bad_request(
        "InvalidResourceType",
        format!(
            "The resource type could not be found for the request path '{}'.",
            truncate(path, 200)
        ),
    )
}

/// Maps a path to a route. The subscription is checked by the caller.
pub fn route(segs: &[String], path: &str) -> Result<(Option<String>, Route), ArmErr> {
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l = |i: usize| lower.get(i).map(String::as_str);
    match l(0) {
        Some("subscriptions") if segs.len() == 1 => return Ok((None, Route::ListSubscriptions)),
        Some("tenants") if segs.len() == 1 => return Ok((None, Route::ListTenants)),
        Some("subscriptions") => {}
        _ => return Err(not_a_route(path)),
    }
    let sub = segs[1].clone();
    let rest = &segs[2..];
    let lrest = &lower[2..];
    let r = match lrest.first().map(String::as_str) {
        None => Route::GetSubscription,
        Some("resourcegroups") => match rest.len() {
            1 => Route::ListResourceGroups,
            2 => Route::ResourceGroup {
                name: rest[1].clone(),
            },
            _ => {
                let rg = rest[1].clone();
                match lrest[2].as_str() {
                    "resources" if rest.len() == 3 => Route::ListResources { rg: Some(rg) },
                    "providers" if rest.len() >= 5 => {
                        provider_route(&sub, Some(&rg), &rest[3..], path)?
                    }
                    _ => return Err(not_a_route(path)),
                }
            }
        },
        Some("resources") if rest.len() == 1 => Route::ListResources { rg: None },
        Some("providers") if rest.len() == 2 => Route::Provider {
            namespace: rest[1].clone(),
        },
        Some("providers") if rest.len() >= 3 => {
            let ns = rest[1].clone();
            let tail = &lrest[2..];
            if tail.len() == 4
                && tail[0] == "locations"
                && (tail[2] == "operations"
                    || tail[2] == "operationresults"
                    || tail[2] == "operationstatuses")
            {
                Route::Operation {
                    namespace: ns,
                    id: rest[5].clone(),
                }
            } else {
                provider_route(&sub, None, &rest[1..], path)?
            }
        }
        _ => return Err(not_a_route(path)),
    };
    Ok((Some(sub), r))
}

/// `{ns}/{type}[/{name}[/{child}[/{childName}]|/{action}]]` below a resource group or the
/// subscription.
fn provider_route(sub: &str, rg: Option<&str>, p: &[String], path: &str) -> Result<Route, ArmErr> {
    let ns = &p[0];
    let Some(ty) = p.get(1) else {
        return Err(not_a_route(path));
    };
    let rtype = RType::top_level(ns, ty).ok_or_else(|| {
        ArmErr::bad_request(
            "InvalidResourceType",
            format!(
                "The resource type '{}' could not be found in the namespace '{}'.",
                truncate(ty, 80),
                truncate(ns, 80)
            ),
        )
    })?;
    let Some(rg) = rg else {
        return if p.len() == 2 {
            Ok(Route::List {
                rg: None,
                rtype,
                parent: None,
            })
        } else {
            Err(not_a_route(path))
        };
    };
    let id_of = |t: RType, name: &str| {
        format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/{}/{name}",
            t.arm_type()
        )
    };
    match p.len() {
        2 => Ok(Route::List {
            rg: Some(rg.to_owned()),
            rtype,
            parent: None,
        }),
        3 => Ok(Route::Resource {
            rg: rg.to_owned(),
            rtype,
            id: id_of(rtype, &p[2]),
            name: p[2].clone(),
            parent: None,
        }),
        4 => {
            let parent_id = id_of(rtype, &p[2]);
            if let Some(child) = RType::child(rtype, &p[3]) {
                Ok(Route::List {
                    rg: Some(rg.to_owned()),
                    rtype: child,
                    parent: Some(parent_id),
                })
            } else {
                Ok(Route::Action {
                    rg: rg.to_owned(),
                    rtype,
                    id: parent_id,
                    name: p[2].clone(),
                    action: p[3].to_ascii_lowercase(),
                })
            }
        }
        5 | 6 => {
            let child = RType::child(rtype, &p[3]).ok_or_else(|| not_a_route(path))?;
            let parent_id = id_of(rtype, &p[2]);
            let id = format!("{parent_id}/{}/{}", child.segment(), p[4]);
            if p.len() == 5 {
                Ok(Route::Resource {
                    rg: rg.to_owned(),
                    rtype: child,
                    id,
                    name: p[4].clone(),
                    parent: Some(parent_id),
                })
            } else {
                Ok(Route::Action {
                    rg: rg.to_owned(),
                    rtype: child,
                    id,
                    name: p[4].clone(),
                    action: p[5].to_ascii_lowercase(),
                })
            }
        }
        _ => Err(not_a_route(path)),
    }
}

impl State {
    /// Takes a token from the ARM bucket of the request's class, or refuses with 429.
    pub fn arm_throttle(&mut self, class: ArmClass, sub: &str, now: Instant) -> Result<(), ArmErr> {
        let b = self
            .arm_buckets
            .get_mut(&class)
            .expect("every class has a bucket");
        let wait = b.wait_s(now);
        if wait > 0.0 {
            self.stats.throttled_429 += 1;
            let s = retry_after_secs(wait);
            return Err(ArmErr::new(
                StatusCode::TOO_MANY_REQUESTS,
                "SubscriptionRequestsThrottled",
                format!(
                    "Number of '{}' requests for subscription '{sub}' actor '{}' exceeded. Please try again after '{s}' seconds.",
                    class.verb(),
                    self.cfg.identity.client_id
                ),
            )
            .retry_after(s));
        }
        b.take(now);
        Ok(())
    }

    /// Remaining tokens for the headers of an answer.
    pub fn arm_remaining(&mut self, class: ArmClass, now: Instant) -> u64 {
        self.arm_buckets
            .get_mut(&class)
            .map(|b| b.remaining(now))
            .unwrap_or(0)
    }

    /// Compute RP throttling: the subscription bucket of `group` and, for writes to one VM,
    /// that VM's bucket. Adds `x-ms-ratelimit-remaining-resource` to the answer.
    pub fn compute_throttle(
        &mut self,
        ctx: &mut Ctx,
        group: ComputeGroup,
        vm: Option<&str>,
    ) -> Result<(), ArmErr> {
        let now = ctx.now;
        let f = self.cfg.limits.compute_factor;
        let vm_key = vm.filter(|_| group.per_vm()).map(|v| (key(v), group));
        if let Some(k) = &vm_key {
            self.vm_buckets.entry(k.clone()).or_insert_with(|| {
                // At least one token, as for the subscription buckets: 12 × a small
                // factor must still let a VM be created.
                TokenBucket::new((PER_VM_BURST * f).max(1.0), PER_VM_PER_MIN * f / 60.0, now)
            });
        }
        let sub_wait = self
            .compute_buckets
            .get_mut(&group)
            .map_or(0.0, |b| b.wait_s(now));
        let vm_wait = vm_key
            .as_ref()
            .and_then(|k| self.vm_buckets.get_mut(k))
            .map_or(0.0, |b| b.wait_s(now));
        let wait = sub_wait.max(vm_wait);
        if wait > 0.0 {
            self.stats.throttled_429 += 1;
            let s = retry_after_secs(wait);
            let scope = if vm_wait > sub_wait {
                "Resource"
            } else {
                "Subscription"
            };
            let policy = format!("{}.{scope}", group.policy());
            let detail = arm_model::ErrorDetail {
                code: "TooManyRequests".into(),
                target: Some(policy.clone()),
                message: json!({"operationGroup": policy, "allowedRequestCount": 0, "retryAfterSeconds": s}).to_string(),
                ..Default::default()
            };
            ctx.extra_headers.push((
                "x-ms-ratelimit-remaining-resource",
                format!("Microsoft.Compute/{policy};0"),
            ));
            return Err(ArmErr::new(
                StatusCode::TOO_MANY_REQUESTS,
                "OperationNotAllowed",
                "The server rejected the request because too many requests have been received for this subscription.",
            )
            .detail(detail)
            .retry_after(s));
        }
        let mut parts = Vec::new();
        if let Some(b) = self.compute_buckets.get_mut(&group) {
            b.take(now);
            parts.push(format!(
                "Microsoft.Compute/{}.Subscription;{}",
                group.policy(),
                b.remaining(now)
            ));
        }
        if let Some(b) = vm_key.as_ref().and_then(|k| self.vm_buckets.get_mut(k)) {
            b.take(now);
            parts.push(format!(
                "Microsoft.Compute/{}.Resource;{}",
                group.policy(),
                b.remaining(now)
            ));
        }
        ctx.extra_headers
            .push(("x-ms-ratelimit-remaining-resource", parts.join(",")));
        Ok(())
    }

    /// Dispatches an authenticated, throttled ARM request.
    pub fn dispatch(&mut self, ctx: &mut Ctx) -> Result<Reply, ArmErr> {
        let (sub, route) = route(&ctx.segs, &ctx.path)?;
        if let Some(sub) = &sub
            && !sub.eq_ignore_ascii_case(&self.cfg.identity.subscription_id)
        {
            return Err(ArmErr::new(
                StatusCode::NOT_FOUND,
                "SubscriptionNotFound",
                format!(
                    "The subscription '{}' could not be found.",
                    truncate(sub, 80)
                ),
            ));
        }
        let sub = self.cfg.identity.subscription_id.clone();
        match route {
            Route::ListSubscriptions => {
                ctx.stat_type = Some("Microsoft.Resources/subscriptions".into());
                Ok(Reply::ok(json!({"value": [self.subscription_json()]})))
            }
            Route::GetSubscription => {
                ctx.stat_type = Some("Microsoft.Resources/subscriptions".into());
                Ok(Reply::ok(self.subscription_json()))
            }
            Route::ListTenants => {
                ctx.stat_type = Some("Microsoft.Resources/tenants".into());
                let t = &self.cfg.identity.tenant_id;
                Ok(Reply::ok(json!({"value": [{
                    "id": format!("/tenants/{t}"), "tenantId": t, "tenantCategory": "Home",
                    "displayName": "azure-sim", "defaultDomain": "azure-sim.onmicrosoft.com",
                    "domains": ["azure-sim.onmicrosoft.com"]
                }]})))
            }
            Route::Provider { namespace } => {
                ctx.stat_type = Some("Microsoft.Resources/providers".into());
                Ok(Reply::ok(self.provider_json(&sub, &namespace)))
            }
            Route::ListResourceGroups => {
                ctx.stat_type = Some(RType::ResourceGroup.arm_type().into());
                let items = self
                    .res
                    .values()
                    .filter(|r| r.rtype == RType::ResourceGroup)
                    .map(|r| self.render(r, false))
                    .collect();
                Ok(Reply::ok(ctx.page(
                    items,
                    self.cfg.paging.page_size,
                    "nextLink",
                )))
            }
            Route::ResourceGroup { name } => {
                ctx.stat_type = Some(RType::ResourceGroup.arm_type().into());
                self.resource_group(ctx, &sub, &name)
            }
            Route::ListResources { rg } => {
                ctx.stat_type = Some("Microsoft.Resources/resources".into());
                if let Some(rg) = &rg {
                    self.require_rg(&sub, rg)?;
                }
                self.list_generic(ctx, rg.as_deref())
            }
            Route::Operation { namespace, id } => {
                ctx.stat_type = Some(format!("{namespace}/operations"));
                self.operation(ctx, &id)
            }
            Route::List { rg, rtype, parent } => {
                ctx.stat_type = Some(rtype.arm_type().into());
                if let Some(rg) = &rg {
                    self.require_rg(&sub, rg)?;
                }
                if let Some(parent) = &parent
                    && self.get(parent).is_none()
                {
                    let (pty, pname) = parent_type_name(parent);
                    return Err(ArmErr::not_found(&pty, &pname, rg.as_deref().unwrap_or("")));
                }
                if rtype == RType::VirtualMachine {
                    self.compute_throttle(ctx, ComputeGroup::HighCostGet, None)?;
                }
                self.list(ctx, rg.as_deref(), rtype, parent.as_deref())
            }
            Route::Resource {
                rg,
                rtype,
                id,
                name,
                parent,
            } => {
                ctx.stat_type = Some(rtype.arm_type().into());
                let rg_name = self.require_rg(&sub, &rg)?;
                let id = canonical_id(&sub, &rg_name, &id);
                if let Some(parent) = &parent {
                    let parent = canonical_id(&sub, &rg_name, parent);
                    if self.get(&parent).is_none() {
                        let (pty, pname) = parent_type_name(&parent);
                        return Err(ArmErr::not_found(&pty, &pname, &rg_name));
                    }
                }
                self.resource(ctx, &sub, &rg_name, rtype, &id, &name, parent.as_deref())
            }
            Route::Action {
                rg,
                rtype,
                id,
                name,
                action,
            } => {
                ctx.stat_type = Some(rtype.arm_type().into());
                let rg_name = self.require_rg(&sub, &rg)?;
                let id = canonical_id(&sub, &rg_name, &id);
                self.action(ctx, &sub, &rg_name, rtype, &id, &name, &action)
            }
        }
    }

    fn subscription_json(&self) -> Value {
        let i = &self.cfg.identity;
        json!({
            "id": format!("/subscriptions/{}", i.subscription_id),
            "subscriptionId": i.subscription_id,
            "tenantId": i.tenant_id,
            "displayName": "azure-sim",
            "state": "Enabled",
            "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
            "authorizationSource": "RoleBased",
        })
    }

    fn provider_json(&self, sub: &str, namespace: &str) -> Value {
        let types: Vec<Value> = [
            RType::VirtualNetwork,
            RType::Subnet,
            RType::NetworkSecurityGroup,
            RType::NetworkInterface,
            RType::VirtualMachine,
            RType::Disk,
            RType::BatchAccount,
            RType::BatchPool,
        ]
        .into_iter()
        .filter(|t| t.namespace().eq_ignore_ascii_case(namespace))
        .map(|t| {
            let ty = t.arm_type().split_once('/').map(|x| x.1).unwrap_or_default();
            json!({"resourceType": ty, "locations": [self.cfg.location.clone()],
                   "apiVersions": ["2026-04-01", "2025-07-01", "2025-06-01", "2025-04-01", "2025-01-02"]})
        })
        .collect();
        json!({"id": format!("/subscriptions/{sub}/providers/{namespace}"), "namespace": namespace,
               "registrationState": "Registered", "resourceTypes": types})
    }

    /// The resource group's name as created, or ARM's 404.
    pub fn require_rg(&self, sub: &str, rg: &str) -> Result<String, ArmErr> {
        self.get(&format!("/subscriptions/{sub}/resourceGroups/{rg}"))
            .map(|r| r.name.clone())
            .ok_or_else(|| ArmErr::rg_not_found(rg))
    }

    fn list(
        &mut self,
        ctx: &Ctx,
        rg: Option<&str>,
        rtype: RType,
        parent: Option<&str>,
    ) -> Result<Reply, ArmErr> {
        let rg = rg.map(str::to_ascii_lowercase);
        let parent_prefix = parent.map(|p| format!("{}/", key(p)));
        let status_only = ctx
            .q("statusOnly")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let expand = status_only
            || ctx
                .q("$expand")
                .is_some_and(|v| v.eq_ignore_ascii_case("instanceView"));
        let items: Vec<Value> = self
            .res
            .iter()
            .filter(|(k, r)| {
                r.rtype == rtype
                    && rg.as_ref().is_none_or(|g| &r.rg == g)
                    && parent_prefix
                        .as_ref()
                        .is_none_or(|p| k.starts_with(p.as_str()))
            })
            .map(|(_, r)| {
                let full = self.render(r, expand);
                if status_only {
                    status_only_view(&full)
                } else {
                    full
                }
            })
            .collect();
        Ok(Reply::ok(ctx.page(
            items,
            self.cfg.paging.page_size,
            "nextLink",
        )))
    }

    /// `GET …/resources` with `$filter=tagName eq 'k' [and tagValue eq 'v']` or
    /// `resourceType eq 't'`: what a client uses to find its resources by tag.
    fn list_generic(&mut self, ctx: &Ctx, rg: Option<&str>) -> Result<Reply, ArmErr> {
        let filter = parse_filter(ctx.q("$filter").unwrap_or(""))?;
        let rg = rg.map(str::to_ascii_lowercase);
        let items: Vec<Value> = self
            .res
            .values()
            .filter(|r| r.rtype != RType::ResourceGroup && rg.as_ref().is_none_or(|g| &r.rg == g))
            .filter(|r| filter.matches(r.rtype.arm_type(), &r.tags()))
            .map(|r| {
                let full = self.render(r, false);
                json!({"id": full["id"], "name": full["name"], "type": full["type"],
                       "location": full["location"], "tags": full.get("tags").cloned().unwrap_or(json!({}))})
            })
            .collect();
        Ok(Reply::ok(ctx.page(
            items,
            self.cfg.paging.page_size,
            "nextLink",
        )))
    }

    fn operation(&mut self, ctx: &Ctx, id: &str) -> Result<Reply, ArmErr> {
        let retry = self.cfg.polling.retry_after_seconds.to_string();
        if let Some(op) = self.ops.get_mut(id)
            && let crate::state::OpStatus::Failed(detail, _) = &op.status
            && !op.failure_reported
        {
            op.failure_reported = true;
            let code = detail.code.clone();
            *self.stats.failures_reported.entry(code).or_default() += 1;
        }
        let Some(op) = self.ops.get(id) else {
            return Err(ArmErr::new(
                StatusCode::NOT_FOUND,
                "OperationNotFound",
                format!("The operation '{}' could not be found.", truncate(id, 64)),
            ));
        };
        let monitor = ctx
            .q("monitor")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if monitor {
            // Location semantics: 202 while running, the action's own answer when done.
            return Ok(match &op.status {
                crate::state::OpStatus::InProgress => Reply::empty(StatusCode::ACCEPTED)
                    .header(
                        "location",
                        format!("{}{}?{}", ctx.base, ctx.path, raw_query(&ctx.query)),
                    )
                    .header("retry-after", retry),
                crate::state::OpStatus::Succeeded => Reply::empty(StatusCode::OK),
                crate::state::OpStatus::Failed(detail, status) => ArmErr {
                    status: *status,
                    body: Box::new(arm_model::ErrorResponse {
                        error: detail.clone(),
                    }),
                    retry_after_s: None,
                }
                .into_reply(),
                crate::state::OpStatus::Canceled(detail) => ArmErr {
                    status: StatusCode::CONFLICT,
                    body: Box::new(arm_model::ErrorResponse {
                        error: detail.clone(),
                    }),
                    retry_after_s: None,
                }
                .into_reply(),
            });
        }
        let (status, error) = match &op.status {
            crate::state::OpStatus::InProgress => ("InProgress", None),
            crate::state::OpStatus::Succeeded => ("Succeeded", None),
            crate::state::OpStatus::Failed(d, _) => ("Failed", Some(d.clone())),
            crate::state::OpStatus::Canceled(d) => ("Canceled", Some(d.clone())),
        };
        let body = arm_model::OperationStatus {
            name: Some(op.id.clone()),
            status: status.into(),
            start_time: Some(crate::state::rfc3339(op.start)),
            end_time: op.end.map(crate::state::rfc3339),
            error,
            ..Default::default()
        };
        let mut reply = Reply::ok(serde_json::to_value(body).unwrap_or_default());
        if status == "InProgress" {
            reply = reply.header("retry-after", retry);
        }
        Ok(reply)
    }
}

/// The fields a `statusOnly=true` list returns: identity and run-time status only.
fn status_only_view(full: &Value) -> Value {
    json!({
        "id": full["id"], "name": full["name"], "type": full["type"], "location": full["location"],
        "properties": {
            "vmId": full["properties"]["vmId"],
            "instanceView": {"statuses": full["properties"]["instanceView"]["statuses"]}
        }
    })
}

pub fn raw_query(q: &[(String, String)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in q {
        ser.append_pair(k, v);
    }
    ser.finish()
}

/// Rewrites an id so its resource-group segment uses the group's stored casing.
pub fn canonical_id(sub: &str, rg_name: &str, id: &str) -> String {
    // id = /subscriptions/{sub}/resourceGroups/{rg}/providers/...
    let parts: Vec<&str> = id.splitn(6, '/').collect();
    match parts.as_slice() {
        ["", _, _, _, _, rest] => format!("/subscriptions/{sub}/resourceGroups/{rg_name}/{rest}"),
        _ => id.to_owned(),
    }
}

fn parent_type_name(parent_id: &str) -> (String, String) {
    let segs: Vec<&str> = parent_id.rsplitn(4, '/').collect();
    // [name, type, ns, ...]
    let name = segs.first().copied().unwrap_or_default().to_owned();
    let ty = format!(
        "{}/{}",
        segs.get(2).copied().unwrap_or_default(),
        segs.get(1).copied().unwrap_or_default()
    );
    (ty, name)
}

/// The subset of OData `$filter` that clients use to find resources.
struct Filter {
    tag_name: Option<String>,
    tag_value: Option<String>,
    resource_type: Option<String>,
}

impl Filter {
    fn matches(&self, rtype: &str, tags: &Value) -> bool {
        if let Some(t) = &self.resource_type
            && !t.eq_ignore_ascii_case(rtype)
        {
            return false;
        }
        if let Some(name) = &self.tag_name {
            let Some(map) = tags.as_object() else {
                return false;
            };
            let Some((_, v)) = map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) else {
                return false;
            };
            if let Some(want) = &self.tag_value
                && v.as_str() != Some(want.as_str())
            {
                return false;
            }
        }
        true
    }
}

fn parse_filter(f: &str) -> Result<Filter, ArmErr> {
    let mut out = Filter {
        tag_name: None,
        tag_value: None,
        resource_type: None,
    };
    if f.trim().is_empty() {
        return Ok(out);
    }
    for clause in f.split(" and ") {
        let clause = clause.trim();
        let Some((field, value)) = clause.split_once(" eq ") else {
            return Err(ArmErr::bad_request(
                "InvalidFilterInQueryString",
                format!("Invalid $filter '{}'.", truncate(f, 200)),
            ));
        };
        let value = value.trim().trim_matches('\'').to_owned();
        match field.trim().to_ascii_lowercase().as_str() {
            "tagname" => out.tag_name = Some(value),
            "tagvalue" => out.tag_value = Some(value),
            "resourcetype" => out.resource_type = Some(value),
            _ => {
                return Err(ArmErr::bad_request(
                    "InvalidFilterInQueryString",
                    format!(
                        "Invalid $filter '{}': supported are tagName, tagValue and resourceType.",
                        truncate(f, 200)
                    ),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        for ok in [
            "2025-04-01",
            "2026-04-01",
            "2024-03-01-preview",
            "2024-07-01.20.0",
        ] {
            assert!(valid_api_version(ok), "{ok}");
        }
        for bad in [
            "",
            "2025",
            "2025-4-01",
            "latest",
            "2025-04-01-",
            "2025-04-01x",
        ] {
            assert!(!valid_api_version(bad), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(validate_name(RType::VirtualMachine, "maya-spot-0001").is_ok());
        assert!(validate_name(RType::VirtualMachine, &"a".repeat(65)).is_err());
        assert!(validate_name(RType::NetworkInterface, "bad?name").is_err());
        assert!(validate_name(RType::NetworkInterface, "ends.").is_err());
        assert!(validate_name(RType::NetworkInterface, "").is_err());
    }

    #[test]
    fn routes() {
        let segs = |p: &str| {
            p.trim_matches('/')
                .split('/')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let p = "/subscriptions/s/resourcegroups/RG/providers/Microsoft.Compute/virtualMachines/vm1/start";
        match route(&segs(p), p).unwrap().1 {
            Route::Action { action, name, .. } => {
                assert_eq!(action, "start");
                assert_eq!(name, "vm1");
            }
            _ => panic!("not an action"),
        }
        let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s1";
        match route(&segs(p), p).unwrap().1 {
            Route::Resource { rtype, id, .. } => {
                assert_eq!(rtype, RType::Subnet);
                assert!(id.ends_with("/virtualNetworks/v/subnets/s1"), "{id}");
            }
            _ => panic!("not a resource"),
        }
        let p = "/subscriptions/s/providers/Microsoft.Compute/locations/westeurope/operations/abc";
        assert!(matches!(
            route(&segs(p), p).unwrap().1,
            Route::Operation { .. }
        ));
        let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Nope/things/x";
        assert_eq!(
            route(&segs(p), p).err().unwrap().code(),
            "InvalidResourceType"
        );
    }
}
