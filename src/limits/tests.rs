use super::*;

fn limits(defaults: LimitSet) -> ClientLimits {
    ClientLimits::new(
        ClientLimitsConfig {
            defaults,
            file: None,
        },
        Arc::new(Metrics::default()),
    )
    .expect("no file")
}

fn id(name: &str) -> ClientId {
    ClientId(name.into())
}

#[test]
fn a_rate_allows_its_burst_then_refuses_and_counts() {
    let l = limits(LimitSet {
        write_rps: 0.001,
        write_burst: 3,
        ..Default::default()
    });
    let noisy = id("user:noisy");
    for _ in 0..3 {
        assert!(l.admit_call(&noisy, CallClass::Write, true).is_ok());
    }
    let refusal = l
        .admit_call(&noisy, CallClass::Write, true)
        .err()
        .expect("past the burst");
    assert_eq!(refusal.kind, RefusalKind::Write);
    assert!(refusal.to_string().contains("user:noisy"), "{refusal}");
    // Reads and other clients are not touched.
    assert!(l.admit_call(&noisy, CallClass::Read, true).is_ok());
    assert!(l
        .admit_call(&id("user:quiet"), CallClass::Write, true)
        .is_ok());
    assert_eq!(
        l.metrics.limits.client_refused[RefusalKind::Write as usize].load(Ordering::Relaxed),
        1
    );
}

#[test]
fn permits_bound_what_is_held_and_come_back_when_dropped() {
    let l = limits(LimitSet {
        concurrent_calls: 2,
        watchers: 1,
        ..Default::default()
    });
    let c = id("ip:10.0.0.1");
    let a = l.admit_call(&c, CallClass::Read, true).expect("first");
    let _b = l.admit_call(&c, CallClass::Read, true).expect("second");
    assert_eq!(
        l.admit_call(&c, CallClass::Read, true)
            .err()
            .map(|r| r.kind),
        Some(RefusalKind::Concurrency)
    );
    // Streams other than keep-alives hold no call permit.
    assert!(matches!(l.admit_call(&c, CallClass::Read, false), Ok(None)));
    drop(a);
    assert!(l.admit_call(&c, CallClass::Read, true).is_ok());
    let w = l.admit_watcher(&c).expect("one watcher");
    assert!(l.admit_watcher(&c).is_err());
    drop(w);
    assert!(l.admit_watcher(&c).is_ok());
    // No keep-alive limit: any number.
    let held: Vec<_> = (0..100).map(|_| l.admit_keepalive_stream(&c)).collect();
    assert!(held.iter().all(Result::is_ok));
}

#[test]
fn a_replaced_setting_applies_to_clients_already_known() {
    let l = limits(LimitSet {
        watchers: 1,
        ..Default::default()
    });
    let c = id("user:a");
    let _w = l.admit_watcher(&c).expect("one");
    assert!(l.admit_watcher(&c).is_err());
    l.replace(LimitSettings::parse(LimitSet::default(), "[user:a]\nwatchers = 3").expect("ok"));
    let _x = l.admit_watcher(&c).expect("now three");
    let _y = l.admit_watcher(&c).expect("now three");
    assert!(l.admit_watcher(&c).is_err());
}

#[test]
fn the_client_map_is_bounded() {
    let l = limits(LimitSet {
        read_rps: 1000.0,
        ..Default::default()
    });
    for i in 0..(MAX_CLIENTS + 5_000) {
        let c = id(&format!("ip:{i}"));
        let _ = l.admit_call(&c, CallClass::Read, true);
    }
    assert!(l.clients() <= MAX_CLIENTS, "{}", l.clients());
}
