use super::*;

const ID: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const REVIEWS: &str = "reviews.default.svc.cluster.local";

fn own() -> Workload {
    Workload {
        name: Arc::from("productpage-v1"),
        namespace: Arc::from("default"),
        app: Arc::from("productpage"),
        version: Arc::from("v1"),
        canonical_service: Arc::from("productpage"),
        canonical_revision: Arc::from("v1"),
    }
}

fn services(list: &[&str]) -> Vec<Arc<str>> {
    list.iter().map(|s| Arc::from(*s)).collect()
}

#[test]
fn a_verified_peer_is_labelled_with_what_it_sent() {
    let h = encode(&own(), ID, REVIEWS).expect("valid header");
    let src = resolve(
        Some(&h),
        Some(ID),
        &services(&[REVIEWS, "other.ns.svc.cluster.local"]),
    );
    assert_eq!(src.workload, own());
    assert_eq!(&*src.principal, ID);
    assert_eq!(&*src.destination_service.host, REVIEWS);
    assert_eq!(&*src.destination_service.name, "reviews");
}

#[test]
fn a_forged_identity_leaves_the_source_unknown_but_keeps_the_verified_principal() {
    let h = encode(&own(), ID, REVIEWS).expect("valid header");
    let verified = "spiffe://cluster.local/ns/evil/sa/attacker";
    let src = resolve(Some(&h), Some(verified), &services(&[REVIEWS]));
    assert_eq!(src.workload, Workload::unknown());
    assert_eq!(&*src.principal, verified);
    // The pod's only service, not the claim.
    assert_eq!(&*src.destination_service.host, REVIEWS);
}

#[test]
fn a_namespace_other_than_the_identitys_is_not_believed() {
    // The right identity, but a workload claimed in another namespace: the certificate vouches
    // for `default` only.
    let elsewhere = Workload {
        namespace: Arc::from("payments"),
        ..own()
    };
    let h = encode(&elsewhere, ID, REVIEWS).expect("valid header");
    let src = resolve(Some(&h), Some(ID), &services(&[REVIEWS]));
    assert_eq!(src.workload, Workload::unknown());
    assert_eq!(&*src.principal, ID);
    // An identity that is not `ns/<ns>/sa/<sa>` vouches for no namespace.
    let odd = "spiffe://cluster.local/workload/x";
    let h = encode(&own(), odd, REVIEWS).expect("valid header");
    let src = resolve(Some(&h), Some(odd), &services(&[REVIEWS]));
    assert_eq!(src.workload, Workload::unknown());
}

#[test]
fn without_mtls_the_header_is_not_read() {
    let h = encode(&own(), ID, REVIEWS).expect("valid header");
    let src = resolve(
        Some(&h),
        None,
        &services(&[REVIEWS, "b.ns.svc.cluster.local"]),
    );
    assert_eq!(src.workload, Workload::unknown());
    assert_eq!(&*src.principal, "unknown");
    assert_eq!(&*src.destination_service.host, "unknown");
}

#[test]
fn a_destination_service_that_is_not_this_pods_is_not_believed() {
    let h = encode(&own(), ID, "payments.prod.svc.cluster.local").expect("valid header");
    let two = services(&[REVIEWS, "b.ns.svc.cluster.local"]);
    assert_eq!(
        &*resolve(Some(&h), Some(ID), &two).destination_service.host,
        "unknown"
    );
    let one = services(&[REVIEWS]);
    assert_eq!(
        &*resolve(Some(&h), Some(ID), &one).destination_service.host,
        REVIEWS
    );
}

/// Regression bytes: none of these may panic, and none may be believed.
#[test]
fn hostile_headers_are_ignored_without_panicking() {
    let long = format!("1;{ID};{}", "a;".repeat(MAX_LEN));
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b";".to_vec(),
        b"1".to_vec(),
        b"2;spiffe://cluster.local/ns/default/sa/productpage;a;b;c;d;e;f;g".to_vec(),
        b"1;spiffe://cluster.local/ns/default/sa/productpage;a;b".to_vec(),
        b"1;spiffe://cluster.local/ns/default/sa/productpage;a;b;c;d;e;f;g;extra".to_vec(),
        b"1;spiffe://cluster.local/ns/default/sa/productpage;\xff\xfe;b;c;d;e;f;g".to_vec(),
        b"\xc3\x28;;;;;;;;".to_vec(),
        long.into_bytes(),
    ];
    for bytes in cases {
        let Ok(h) = HeaderValue::from_bytes(&bytes) else {
            continue;
        };
        let src = resolve(Some(&h), Some(ID), &services(&[]));
        assert_eq!(src.workload, Workload::unknown(), "{bytes:?}");
        assert_eq!(&*src.principal, ID);
    }
}

#[test]
fn a_field_with_hostile_characters_reads_unknown() {
    let h = HeaderValue::from_bytes(
        format!("1;{ID};default;web\"}} 1\\n;app;v1;cs;cr;{REVIEWS}").as_bytes(),
    )
    .expect("visible ASCII");
    let claim = parse(&h).expect("well-formed");
    assert_eq!(&*claim.workload.name, "unknown");
    assert_eq!(&*claim.workload.app, "app");
}

#[test]
fn the_header_is_stable_per_destination() {
    let a = encode(&own(), ID, REVIEWS).expect("valid");
    let b = encode(&own(), ID, REVIEWS).expect("valid");
    assert_eq!(a, b);
    assert_eq!(
        a.to_str().expect("ascii"),
        format!("1;{ID};default;productpage-v1;productpage;v1;productpage;v1;{REVIEWS}")
    );
}

/// Fuzz-ish: random bytes built from the header's own alphabet (separators, the version, a real
/// identity, hostile characters), a fixed seed so a failure reproduces. None may panic, and only a
/// value naming the verified identity in the right place may be believed.
#[test]
fn random_header_values_never_panic_and_are_believed_only_when_well_formed() {
    let pieces: [&[u8]; 10] = [
        b"1",
        b";",
        ID.as_bytes(),
        b"default",
        b"\"",
        b"\n",
        b"\xff",
        b"}",
        b"a",
        b"",
    ];
    let mut rng = fastrand::Rng::with_seed(12);
    for _ in 0..20_000 {
        let mut bytes = Vec::new();
        for _ in 0..rng.usize(0..24) {
            bytes.extend_from_slice(pieces[rng.usize(0..pieces.len())]);
        }
        let Ok(h) = HeaderValue::from_bytes(&bytes) else {
            continue;
        };
        let src = resolve(Some(&h), Some(ID), &services(&[REVIEWS]));
        if src.workload != Workload::unknown() {
            let claim = parse(&h).expect("believed, so it parsed");
            assert_eq!(claim.identity.as_deref(), Some(ID), "{bytes:?}");
        }
    }
}
