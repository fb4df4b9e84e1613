//! Unit tests of the parent module.

use super::*;

#[test]
fn paths_map_to_methods() {
    let m = MethodId::from_path("/etcdserverpb.KV/Range").unwrap();
    assert_eq!(m.grpc_type(), GrpcType::Unary);
    assert_eq!(
        MethodId::from_path("/v3electionpb.Election/Observe")
            .unwrap()
            .grpc_type(),
        GrpcType::ServerStream
    );
    assert!(MethodId::from_path("/nope.Svc/X").is_none());
}

#[test]
fn handled_counts_by_code_and_out_of_range_codes_are_unknown() {
    let metrics = Metrics::default();
    let m = MethodId::from_path("/etcdserverpb.KV/Put").unwrap();
    metrics.started(Some(m));
    metrics.started(Some(m));
    assert_eq!(metrics.in_flight(m), 2);
    metrics.handled(m, 0);
    metrics.handled(m, 99);
    assert_eq!(metrics.in_flight(m), 0);
    assert_eq!(metrics.methods[m.0].handled[2].load(Ordering::Relaxed), 1);
}
