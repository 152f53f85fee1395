//! The governor against a token bucket played by the test, on tokio's paused clock: what it
//! learns, how it starts, and how it paces Compute's per-VM buckets.

use std::sync::Arc;

use super::*;

fn writes() -> Draw {
    Draw {
        class: ArmClass::Writes,
        compute: None,
        resource: None,
    }
}

fn put_vm(vm: &str) -> Draw {
    Draw {
        class: ArmClass::Writes,
        compute: Some(ComputeGroup::PutVm),
        resource: Some(format!(
            "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/{vm}"
        )),
    }
}

fn headers(pairs: &[(&'static str, String)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, v.parse().unwrap());
    }
    h
}

fn writes_left(n: u64) -> http::HeaderMap {
    headers(&[(
        "x-ms-ratelimit-remaining-subscription-writes",
        n.to_string(),
    )])
}

/// ARM's write bucket as the simulator keeps it: a request takes a token or is refused with
/// 429 and `Retry-After` (whole seconds, at least 1); every answer says what is left.
struct Server {
    tokens: f64,
    capacity: f64,
    per_s: f64,
    last: Instant,
    refused: u64,
}

impl Server {
    fn new(capacity: f64, per_s: f64) -> Self {
        Self {
            tokens: capacity,
            capacity,
            per_s,
            last: Instant::now(),
            refused: 0,
        }
    }

    fn answer(&mut self) -> (u16, http::HeaderMap, Duration) {
        let now = Instant::now();
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_s).min(self.capacity);
        self.last = now;
        let (status, retry) = if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            (200, Duration::ZERO)
        } else {
            self.refused += 1;
            let s = ((1.0 - self.tokens) / self.per_s).ceil().max(1.0);
            (429, Duration::from_secs_f64(s))
        };
        (status, writes_left(self.tokens.floor() as u64), retry)
    }
}

/// `n` writes at once, each retried after a 429 as the pipeline does, `rtt` from send to
/// answer (the server counts half-way). Returns the time until the last was taken.
async fn burst(
    g: &Arc<Governor>,
    server: &Arc<Mutex<Server>>,
    n: usize,
    rtt: Duration,
) -> Duration {
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (g, server) = (g.clone(), server.clone());
            tokio::spawn(async move {
                let d = writes();
                loop {
                    let t = g.acquire(&d).await;
                    tokio::time::sleep(rtt / 2).await;
                    let (status, h, retry) = server.lock().unwrap().answer();
                    tokio::time::sleep(rtt / 2).await;
                    g.complete(&d, &t, Some((status, &h)));
                    if status != 429 {
                        return Instant::now();
                    }
                    g.throttled(&d, &t, retry, None);
                }
            })
        })
        .collect();
    let mut last = t0;
    for t in tasks {
        last = last.max(t.await.unwrap());
    }
    last - t0
}

fn class<'a>(s: &'a GovernorSnapshot, name: &str) -> &'a BucketSnapshot {
    s.classes.iter().find(|c| c.name == name).unwrap()
}

#[test]
fn classify_compute_requests() {
    let vm = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1";
    assert_eq!(
        ComputeGroup::classify(&http::Method::PUT, vm),
        Some(ComputeGroup::PutVm)
    );
    assert_eq!(
        ComputeGroup::classify(&http::Method::DELETE, vm),
        Some(ComputeGroup::DeleteVm)
    );
    assert_eq!(
        ComputeGroup::classify(&http::Method::POST, &format!("{vm}/deallocate")),
        Some(ComputeGroup::DeleteVm)
    );
    assert_eq!(
        ComputeGroup::classify(&http::Method::POST, &format!("{vm}/start")),
        Some(ComputeGroup::UpdateVm)
    );
    assert_eq!(
        ComputeGroup::classify(
            &http::Method::GET,
            "/subscriptions/s/providers/Microsoft.Compute/virtualMachines"
        ),
        Some(ComputeGroup::HighCostGet)
    );
    assert_eq!(ComputeGroup::classify(&http::Method::GET, vm), None);
    assert_eq!(
        ComputeGroup::classify(&http::Method::PUT, "/subscriptions/s/resourceGroups/rg"),
        None
    );
}

#[tokio::test(start_paused = true)]
async fn without_headers_paces_to_the_configured_limits_and_honours_holds() {
    let limits = GovernorLimits {
        reads_bucket: 2.0,
        reads_per_s: 10.0,
        ..Default::default()
    };
    let g = Governor::new(&limits, true);
    let draw = Draw {
        class: ArmClass::Reads,
        compute: None,
        resource: None,
    };
    let none = http::HeaderMap::new();
    let t0 = Instant::now();
    let mut last = None;
    for _ in 0..4 {
        let t = g.acquire(&draw).await;
        g.complete(&draw, &t, Some((200, &none)));
        last = Some(t);
    }
    // Two from the burst, two more at 10/s.
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= Duration::from_millis(190) && elapsed < Duration::from_millis(400),
        "{elapsed:?}"
    );
    g.throttled(&draw, &last.unwrap(), Duration::from_secs(3), None);
    let t1 = Instant::now();
    g.acquire(&draw).await;
    assert!(
        t1.elapsed() >= Duration::from_secs(3),
        "a 429 holds the class for its Retry-After"
    );
    let snap = g.snapshot();
    assert_eq!(snap.classes[0].name, "reads");
    assert_eq!(snap.classes[0].throttled_total, 1);
}

#[tokio::test(start_paused = true)]
async fn headers_correct_the_model() {
    let g = Governor::new(&GovernorLimits::default(), true);
    let draw = put_vm("vm1");
    let t = g.acquire(&draw).await;
    let h = headers(&[
        ("x-ms-ratelimit-remaining-subscription-writes", "7".into()),
        (
            "x-ms-ratelimit-remaining-resource",
            "Microsoft.Compute/PutVM.Subscription;3,Microsoft.Compute/PutVM.Resource;11".into(),
        ),
    ]);
    g.complete(&draw, &t, Some((201, &h)));
    let snap = g.snapshot();
    let w = class(&snap, "writes");
    assert!(w.tokens <= 7.01, "{w:?}");
    assert_eq!(w.in_flight, 0);
    assert_eq!(
        w.learned_capacity,
        Some(8.0),
        "the bucket held at least 7 + 1"
    );
    assert!(w.fresh);
    let put = class(&snap, "compute_put_vm");
    assert!(put.tokens <= 3.01, "{put:?}");
    let room = g.vm_room(draw.resource.as_deref().unwrap(), ComputeGroup::PutVm);
    assert!((room - 11.0).abs() < 0.01, "{room}");
}

#[tokio::test(start_paused = true)]
async fn slow_start_sends_one_request_first_then_sizes_the_burst_from_its_answer() {
    let g = Arc::new(Governor::new(&GovernorLimits::default(), true));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..10 {
        let (g, tx) = (g.clone(), tx.clone());
        tokio::spawn(async move {
            let t = g.acquire(&writes()).await;
            let _ = tx.send(t);
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probe = rx.try_recv().expect("one request goes at once");
    assert!(
        rx.try_recv().is_err(),
        "with no header yet, Azure's default of 200 is not assumed"
    );
    // The answer says 3 are left: exactly 3 more go.
    g.complete(&writes(), &probe, Some((201, &writes_left(3))));
    tokio::time::sleep(Duration::from_millis(1)).await;
    let mut sent = Vec::new();
    while let Ok(t) = rx.try_recv() {
        sent.push(t);
    }
    assert_eq!(sent.len(), 3, "the burst the header confirmed");
    // Nothing more until an answer confirms room, however long the wait.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(rx.try_recv().is_err());
    for t in &sent {
        g.complete(&writes(), t, Some((201, &writes_left(0))));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(rx.try_recv().is_ok(), "answered, the probing goes on");
}

#[tokio::test(start_paused = true)]
async fn a_bucket_not_heard_from_lately_is_probed_before_a_burst() {
    let g = Arc::new(Governor::new(&GovernorLimits::default(), true));
    let t = g.acquire(&writes()).await;
    g.complete(&writes(), &t, Some((201, &writes_left(150))));
    // Fresh: the header's room is used at once.
    for _ in 0..5 {
        let t = g.acquire(&writes()).await;
        g.complete(&writes(), &t, Some((201, &writes_left(150))));
    }
    // Quiet for longer than a header is trusted; meanwhile another client empties the bucket.
    tokio::time::sleep(bucket::FRESH_FOR + Duration::from_secs(1)).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..20 {
        let (g, tx) = (g.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(g.acquire(&writes()).await);
        });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let probe = rx.try_recv().expect("one request");
    assert!(rx.try_recv().is_err(), "not the 150 the old header showed");
    assert!(!class(&g.snapshot(), "writes").fresh);
    g.complete(&writes(), &probe, Some((201, &writes_left(2))));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok());
    assert!(rx.try_recv().is_err(), "only the room the header confirmed");
}

#[tokio::test(start_paused = true)]
async fn learns_a_bucket_smaller_than_azures_default() {
    // The case: 5 burst, 4/s, while the governor is told Azure's 200 and 10/s.
    let g = Arc::new(Governor::new(&GovernorLimits::default(), true));
    let server = Arc::new(Mutex::new(Server::new(5.0, 4.0)));
    let elapsed = burst(&g, &server, 40, Duration::from_millis(20)).await;
    let refused = server.lock().unwrap().refused;
    assert!(refused <= 2, "{refused} 429s for 40 writes");
    // Lower bound: (40 − 5) / 4 = 8.75 s.
    assert!(
        elapsed.as_secs_f64() <= 8.75 * 1.15,
        "{elapsed:?} against a bound of 8.75 s"
    );
    let snap = g.snapshot();
    let w = class(&snap, "writes");
    // Lower bounds, near the truth: the largest count seen since the 429 plus one, and
    // the best window's refill.
    let capacity = w.learned_capacity.expect("a size learnt");
    assert!((4.0..=5.0).contains(&capacity), "{w:?}");
    assert_eq!(w.capacity, capacity, "the learnt size is the one in use");
    let rate = w.learned_refill_per_s.expect("a rate learnt");
    assert!(rate > 3.0 && rate <= 4.0, "{w:?}");

    // Known now: the next burst, after the bucket refilled, costs no 429.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let elapsed = burst(&g, &server, 20, Duration::from_millis(20)).await;
    assert_eq!(server.lock().unwrap().refused, refused, "no new 429");
    assert!(elapsed.as_secs_f64() <= 15.0 / 4.0 * 1.1, "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn azures_default_bucket_is_not_paced_slower_than_it_refills() {
    let g = Arc::new(Governor::new(&GovernorLimits::default(), true));
    let server = Arc::new(Mutex::new(Server::new(200.0, 10.0)));
    let elapsed = burst(&g, &server, 500, Duration::from_millis(20)).await;
    assert_eq!(server.lock().unwrap().refused, 0);
    // Lower bound: (500 − 200) / 10 = 30 s.
    assert!(elapsed.as_secs_f64() <= 30.0 * 1.01, "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_write_to_a_vm_whose_bucket_is_empty_waits_for_it() {
    let g = Governor::new(&GovernorLimits::default(), true);
    let (a, b) = (put_vm("a"), put_vm("b"));
    let id_a = a.resource.clone().unwrap();
    let t = g.acquire(&a).await;
    let h = headers(&[
        ("x-ms-ratelimit-remaining-subscription-writes", "199".into()),
        (
            "x-ms-ratelimit-remaining-resource",
            "Microsoft.Compute/PutVM.Subscription;1499,Microsoft.Compute/PutVM.Resource;0".into(),
        ),
    ]);
    g.complete(&a, &t, Some((201, &h)));
    assert_eq!(
        g.vm_room(&id_a.to_ascii_uppercase(), ComputeGroup::PutVm),
        0.0
    );
    assert_eq!(
        g.vm_room(b.resource.as_deref().unwrap(), ComputeGroup::PutVm),
        12.0
    );
    assert_eq!(
        g.vm_room(&id_a, ComputeGroup::DeleteVm),
        12.0,
        "its own bucket"
    );
    assert_eq!(g.snapshot().vm_buckets_empty, 1);

    // Another VM goes at once; this one waits for a token at 4/min.
    let ok = headers(&[("x-ms-ratelimit-remaining-subscription-writes", "199".into())]);
    let t0 = Instant::now();
    let t = g.acquire(&b).await;
    assert!(t0.elapsed() < Duration::from_millis(10));
    g.complete(&b, &t, Some((201, &ok)));
    let t = g.acquire(&a).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(15) && waited < Duration::from_secs(16),
        "{waited:?}"
    );
    g.complete(&a, &t, Some((201, &ok)));

    // A per-VM 429 holds that VM, not the class.
    let t = g.acquire(&a).await;
    g.complete(&a, &t, Some((429, &h)));
    g.throttled(&a, &t, Duration::from_secs(30), Some("PutVM.Resource"));
    assert_eq!(g.vm_room(&id_a, ComputeGroup::PutVm), 0.0);
    let t1 = Instant::now();
    let t = g.acquire(&b).await;
    assert!(t1.elapsed() < Duration::from_millis(10));
    g.complete(&b, &t, Some((201, &ok)));
    g.acquire(&a).await;
    assert!(t1.elapsed() >= Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn per_vm_buckets_are_forgotten_once_full() {
    let g = Governor::new(&GovernorLimits::default(), true);
    let h = headers(&[
        ("x-ms-ratelimit-remaining-subscription-writes", "199".into()),
        (
            "x-ms-ratelimit-remaining-resource",
            "Microsoft.Compute/PutVM.Resource;11".into(),
        ),
    ]);
    for i in 0..300 {
        let d = put_vm(&format!("vm{i}"));
        let t = g.acquire(&d).await;
        g.complete(&d, &t, Some((201, &h)));
    }
    assert_eq!(g.snapshot().vm_buckets, 300);
    // One token back at 4/min takes 15 s; then a write sweeps the full ones out.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let d = put_vm("last");
    let t = g.acquire(&d).await;
    g.complete(&d, &t, Some((201, &h)));
    assert_eq!(g.snapshot().vm_buckets, 1);
}
