//! Subscription throttling, dispatch of a routed request to its provider, and the generic
//! calls ARM answers itself (subscriptions, providers, lists, operations).

use std::time::Instant;

use http::StatusCode;
use serde_json::{Value, json};

use super::route::{Route, route};

use super::{Ctx, truncate};
use crate::reply::{ArmErr, Reply};
use crate::state::{RType, State, key};
use crate::throttle::{
    ArmClass, ComputeGroup, PER_VM_BURST, PER_VM_PER_MIN, TokenBucket, retry_after_secs,
};

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
            if let Some(vm) = vm {
                self.stats.vm_op(vm, group.policy(), now);
            }
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

    /// Compute Schedule's call to Compute for one VM at `at`: reserves a token in the
    /// group's subscription bucket and the VM's (into debt if need be) and answers the seconds
    /// until both are earned, when the call may go. The service waits rather than failing:
    /// it "shields the customer from having to deal with throttling"
    /// (https://learn.microsoft.com/en-us/rest/api/computeschedule/?view=rest-computeschedule-2025-05-01).
    pub fn compute_reserve(&mut self, group: ComputeGroup, vm: &str, at: Instant) -> f64 {
        let f = self.cfg.limits.compute_factor;
        let sub_wait = self
            .compute_buckets
            .get_mut(&group)
            .map_or(0.0, |b| b.reserve(at));
        if !group.per_vm() {
            return sub_wait;
        }
        let vm_wait = self
            .vm_buckets
            .entry((key(vm), group))
            .or_insert_with(|| {
                TokenBucket::new((PER_VM_BURST * f).max(1.0), PER_VM_PER_MIN * f / 60.0, at)
            })
            .reserve(at);
        let wait = sub_wait.max(vm_wait);
        self.stats.vm_op(
            vm,
            group.policy(),
            at + std::time::Duration::from_secs_f64(wait.max(0.0)),
        );
        wait
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
            Route::ComputeSchedule { location, action } => {
                self.compute_schedule(ctx, &sub, &location, &action)
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

    /// The page of `matching` the request asks for, each rendered by `render`, with its
    /// `nextLink`. Only that page is rendered: rendering every match for each page made
    /// listing N resources cost N² / page size renders (5,000 VMs: a million per listing).
    fn render_page(
        &self,
        ctx: &Ctx,
        matching: &[&crate::state::Res],
        render: impl Fn(&crate::state::Res) -> Value,
    ) -> Value {
        let (skip, size) = ctx.page_bounds(self.cfg.paging.page_size);
        let value: Vec<Value> = matching
            .iter()
            .skip(skip)
            .take(size)
            .map(|r| render(r))
            .collect();
        ctx.paged(value, skip, size, matching.len(), "nextLink")
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
        let matching: Vec<&crate::state::Res> = self
            .res
            .iter()
            .filter(|(k, r)| {
                r.rtype == rtype
                    && rg.as_ref().is_none_or(|g| &r.rg == g)
                    && parent_prefix
                        .as_ref()
                        .is_none_or(|p| k.starts_with(p.as_str()))
            })
            .map(|(_, r)| r)
            .collect();
        Ok(Reply::ok(self.render_page(ctx, &matching, |r| {
            let full = self.render(r, expand);
            if status_only {
                status_only_view(&full)
            } else {
                full
            }
        })))
    }

    /// `GET …/resources` with `$filter=tagName eq 'k' [and tagValue eq 'v']` or
    /// `resourceType eq 't'`: what a client uses to find its resources by tag.
    fn list_generic(&mut self, ctx: &Ctx, rg: Option<&str>) -> Result<Reply, ArmErr> {
        let filter = parse_filter(ctx.q("$filter").unwrap_or(""))?;
        let rg = rg.map(str::to_ascii_lowercase);
        let matching: Vec<&crate::state::Res> = self
            .res
            .values()
            .filter(|r| r.rtype != RType::ResourceGroup && rg.as_ref().is_none_or(|g| &r.rg == g))
            .filter(|r| filter.matches(r.rtype.arm_type(), &r.tags()))
            .collect();
        Ok(Reply::ok(self.render_page(ctx, &matching, |r| {
            let full = self.render(r, false);
            json!({"id": full["id"], "name": full["name"], "type": full["type"],
                   "location": full["location"], "tags": full.get("tags").cloned().unwrap_or(json!({}))})
        })))
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
