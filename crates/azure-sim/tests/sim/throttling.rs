//! Throttling: ARM's per-subscription read and write buckets, and Compute's own buckets per
//! subscription and per VM.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

fn remaining(r: &Resp, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name}: {r:#?}"))
        .parse()
        .unwrap()
}

fn retry_after(r: &Resp) -> u64 {
    r.header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {r:#?}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn reads_bucket() {
    let s = spawn_sim(json!({})).await;
    s.create_rg("rg").await;
    // Refill 0.5/s: five quick GETs cannot earn a sixth token unless they take 2 s.
    s.set_config(json!({"limits": {"reads_bucket": 5, "reads_per_s": 0.5}}))
        .await;
    let header = "x-ms-ratelimit-remaining-subscription-reads";
    let mut last = u64::MAX;
    for i in 0..5 {
        let r = s.get(&s.rg_path("rg")).await;
        r.expect(200);
        let left = remaining(&r, header);
        assert!(left < last, "GET {i}: remaining {left} after {last}");
        last = left;
    }
    let r = s.get(&s.rg_path("rg")).await;
    r.expect_err(429, "SubscriptionRequestsThrottled");
    let wait = retry_after(&r);
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert_eq!(remaining(&r, header), 0);
    assert!(r.message().contains("read"), "{}", r.message());
    assert!(s.stats().await["throttled_429"].as_u64().unwrap() >= 1);
    // Writes are a separate bucket.
    s.put(&s.rg_path("rg2"), &json!({"location": LOCATION}))
        .await
        .expect(201);
    // After Retry-After seconds, reads work again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    s.get(&s.rg_path("rg")).await.expect(200);
}

#[tokio::test]
async fn writes_bucket() {
    let s = spawn_sim(json!({})).await;
    s.set_config(json!({"limits": {"writes_bucket": 3, "writes_per_s": 0.5}}))
        .await;
    let header = "x-ms-ratelimit-remaining-subscription-writes";
    let mut last = u64::MAX;
    for i in 0..3 {
        let r = s
            .put(
                &s.rg_path(&format!("rg{i}")),
                &json!({"location": LOCATION}),
            )
            .await;
        r.expect(201);
        let left = remaining(&r, header);
        assert!(left < last, "PUT {i}: remaining {left} after {last}");
        last = left;
    }
    let r = s
        .put(&s.rg_path("rg3"), &json!({"location": LOCATION}))
        .await;
    r.expect_err(429, "SubscriptionRequestsThrottled");
    let wait = retry_after(&r);
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert!(r.message().contains("write"), "{}", r.message());
    // The refused write did nothing; reads still work.
    s.get(&s.rg_path("rg3"))
        .await
        .expect_err(404, "ResourceGroupNotFound");
    // Deletes have their own bucket too.
    let r = s.delete(&s.rg_path("rg0")).await;
    r.expect(202);
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-deletes")
            .is_some()
    );
    tokio::time::sleep(Duration::from_secs(wait)).await;
    s.put(&s.rg_path("rg3"), &json!({"location": LOCATION}))
        .await
        .expect(201);
}

/// `Microsoft.Compute/<policy>;<n>` entries of `x-ms-ratelimit-remaining-resource`.
fn compute_remaining(r: &Resp, policy: &str) -> Option<u64> {
    r.header("x-ms-ratelimit-remaining-resource")?
        .split(',')
        .find_map(|p| {
            p.strip_prefix(&format!("Microsoft.Compute/{policy};"))
                .and_then(|n| n.parse().ok())
        })
}

fn assert_compute_429(r: &Resp, policy: &str) {
    r.expect_err(429, "OperationNotAllowed");
    assert!(retry_after(r) >= 1);
    let details = r.body["error"]["details"].as_array().expect("details");
    let d: &Value = details
        .iter()
        .find(|d| d["code"] == "TooManyRequests")
        .unwrap_or_else(|| panic!("no TooManyRequests detail: {r:#?}"));
    assert_eq!(d["target"], policy, "{r:#?}");
    assert_eq!(compute_remaining(r, policy), Some(0), "{r:#?}");
}

#[tokio::test]
async fn compute_subscription_bucket_for_creates() {
    // PutVM: burst 1500 × 0.005 = 7.5, refill 500/min × 0.005 = one token every 24 s.
    let s = spawn_sim(json!({"limits": {"compute_factor": 0.005}})).await;
    let subnet = s.create_network("rg").await;
    let mut last = u64::MAX;
    for i in 0..7 {
        let name = format!("vm{i}");
        let r = s
            .put(&s.vm_path("rg", &name), &vm_body(&subnet, &name, SIZE))
            .await;
        r.expect(201);
        let left = compute_remaining(&r, "PutVM.Subscription").expect("PutVM header");
        assert!(left < last, "create {i}: {left} after {last}");
        last = left;
    }
    let r = s
        .put(&s.vm_path("rg", "vm7"), &vm_body(&subnet, "vm7", SIZE))
        .await;
    assert_compute_429(&r, "PutVM.Subscription");
    s.get(&s.vm_path("rg", "vm7")).await.expect(404);
    assert_eq!(
        s.resources_of("Microsoft.Compute/virtualMachines")
            .await
            .len(),
        7
    );
    // Other Compute groups and ARM itself are not affected: a VM can still be deallocated.
    eventually("vm0 to finish creating", async || {
        (s.power_state("rg", "vm0").await.as_deref() == Some("running")).then_some(())
    })
    .await;
    s.vm_action_ok("rg", "vm0", "deallocate").await;
}

#[tokio::test]
async fn compute_per_vm_bucket() {
    // Per VM: burst 12 × 0.25 = 3 per group; the subscription buckets hold 375.
    let s = spawn_sim(json!({"limits": {"compute_factor": 0.25}})).await;
    let subnet = s.create_network("rg").await;
    s.create_vm_ok("rg", "vm1", &vm_body(&subnet, "vm1", SIZE))
        .await;
    s.create_vm_ok("rg", "vm2", &vm_body(&subnet, "vm2", SIZE))
        .await;
    for _ in 0..3 {
        s.vm_action_ok("rg", "vm1", "deallocate").await;
        s.vm_action_ok("rg", "vm1", "start").await;
    }
    // vm1 has used its three deallocates and three starts.
    let r = s
        .post(&format!("{}/deallocate", s.vm_path("rg", "vm1")), None)
        .await;
    assert_compute_429(&r, "DeleteVM.Resource");
    let r = s
        .post(&format!("{}/restart", s.vm_path("rg", "vm1")), None)
        .await;
    assert_compute_429(&r, "UpdateVM.Resource");
    assert_eq!(s.power_state("rg", "vm1").await.as_deref(), Some("running"));
    // Another VM has its own buckets.
    let r = s
        .post(&format!("{}/deallocate", s.vm_path("rg", "vm2")), None)
        .await;
    r.expect(202);
    assert!(
        compute_remaining(&r, "DeleteVM.Resource").is_some(),
        "{r:#?}"
    );
    assert!(compute_remaining(&r, "DeleteVM.Subscription").unwrap() > 300);
}
