//! CA behaviour with real crypto: certificates are checked by parsing them and by rustls/webpki.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::UNIX_EPOCH;

use rcgen::{CertifiedIssuer, PKCS_ECDSA_P384_SHA384};
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateSigningRequestDer, ServerName, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::*;

// --- helpers ---

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sinew-ca-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Keeps the root in memory, so most tests touch no files.
#[derive(Default)]
struct MemStore(std::sync::Mutex<Option<RootMaterial>>);

impl RootStore for MemStore {
    fn load(&self) -> Result<Option<RootMaterial>, CaError> {
        Ok(self.0.lock().unwrap().clone())
    }
    fn store(&self, m: &RootMaterial) -> Result<(), CaError> {
        *self.0.lock().unwrap() = Some(m.clone());
        Ok(())
    }
}

fn ca() -> Ca {
    Ca::self_signed(&MemStore::default(), CaConfig::default()).unwrap()
}

fn unlimited() -> CaConfig {
    CaConfig {
        rate: RateLimit {
            burst: 100_000,
            per_minute: 100_000,
        },
        ..CaConfig::default()
    }
}

fn cart() -> WorkloadId {
    WorkloadId::new("shop", "cart")
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

/// A CSR for `key` that asks for `sans` (which the CA must ignore).
fn csr(key: &KeyPair, sans: &[&str]) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "victim");
    params.subject_alt_names = sans
        .iter()
        .map(|s| SanType::URI((*s).try_into().unwrap()))
        .collect();
    params.serialize_request(key).unwrap().pem().unwrap()
}

fn der_of(pem: &str) -> CertificateDer<'static> {
    chain::parse_one_pem_cert(pem, "test certificate").unwrap()
}

fn uri_sans(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject_alternative_name()
        .unwrap()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .map(|n| match n {
                    GeneralName::URI(u) => format!("uri:{u}"),
                    GeneralName::DNSName(d) => format!("dns:{d}"),
                    GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
                    other => format!("other:{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(roots: &[String]) -> Arc<rustls::RootCertStore> {
    let mut store = rustls::RootCertStore::empty();
    for pem in roots {
        store.add(der_of(pem)).unwrap();
    }
    Arc::new(store)
}

/// What a peer proxy does with a client certificate: webpki path building to the bundle.
fn verify_as_client_cert(chain_pem: &[String], roots: &[String]) -> Result<(), rustls::Error> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(root_store(roots), provider())
            .build()
            .unwrap();
    let ders: Vec<_> = chain_pem.iter().map(|p| der_of(p)).collect();
    verifier
        .verify_client_cert(&ders[0], &ders[1..], UnixTime::now())
        .map(|_| ())
}

/// A root and an intermediate under it, as an operator would bring them.
pub(super) struct PlugIn {
    pub(super) root_pem: String,
    pub(super) int_pem: String,
    pub(super) int_key_pem: String,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "example corp");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
    params
}

pub(super) fn plug_in_material() -> PlugIn {
    let root = CertifiedIssuer::self_signed(ca_params("corp root"), p256()).unwrap();
    let int_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let int_key_pem = int_key.serialize_pem();
    let int = ca_params("corp mesh intermediate")
        .signed_by(&int_key, &root)
        .unwrap();
    PlugIn {
        root_pem: root.pem(),
        int_pem: int.pem(),
        int_key_pem,
    }
}

// --- root lifecycle ---

#[test]
fn root_survives_restart_through_file_store() {
    let tmp = TempDir::new();
    let dir = tmp.0.join("ca");
    let first = Ca::self_signed(&FileRootStore::new(&dir), CaConfig::default()).unwrap();

    let store = FileRootStore::new(&dir);
    let key_mode = std::fs::metadata(store.key_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);

    let issued = first.issue(&csr(&p256(), &[]), &cart(), None).unwrap();
    drop(first);

    let second = Ca::self_signed(&store, CaConfig::default()).unwrap();
    assert_eq!(second.trust_bundle().len(), 1);
    // Certificates from before the restart still verify under the reloaded root.
    verify_as_client_cert(&issued.chain_pem, &second.trust_bundle()).unwrap();
    let loaded = store.load().unwrap().unwrap();
    assert_eq!(second.trust_bundle()[0], loaded.cert_pem);
}

#[test]
fn new_root_has_the_documented_profile() {
    let ca = ca();
    let der = der_of(&ca.trust_bundle()[0]);
    let root = X509Certificate::from_der(&der).unwrap().1;
    assert_eq!(
        root.subject().to_string(),
        "CN=sinew mesh root, O=cluster.local"
    );
    let bc = root.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca);
    let ku = root.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    let lifetime = root.validity().not_after.timestamp() - root.validity().not_before.timestamp();
    assert_eq!(lifetime, (ROOT_TTL.as_secs() + 3600) as i64);
    assert_eq!(
        root.public_key()
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap(),
        x509_parser::oid_registry::OID_EC_P256
    );
}

#[test]
fn half_a_root_in_the_file_store_is_refused() {
    let tmp = TempDir::new();
    let store = FileRootStore::new(&tmp.0);
    Ca::self_signed(&store, CaConfig::default()).unwrap();
    std::fs::remove_file(store.key_path()).unwrap();

    let err = Ca::self_signed(&store, CaConfig::default()).unwrap_err();
    assert!(matches!(err, CaError::Store(_)), "{err}");
    // The certificate is left alone for the operator.
    assert!(store.cert_path().exists());
}

#[test]
fn stored_root_with_a_foreign_key_is_refused() {
    let store = MemStore::default();
    Ca::self_signed(&store, CaConfig::default()).unwrap();
    let mut material = store.load().unwrap().unwrap();
    material.key_pem = p256().serialize_pem();
    store.store(&material).unwrap();

    let err = Ca::self_signed(&store, CaConfig::default()).unwrap_err();
    assert!(
        matches!(&err, CaError::BadRoot { reason } if reason.contains("does not belong")),
        "{err}"
    );
}

#[test]
fn invalid_config_is_refused() {
    let configs = [
        CaConfig {
            trust_domain: "Cluster Local".to_string(),
            ..CaConfig::default()
        },
        CaConfig {
            default_ttl: DEFAULT_MAX_TTL * 2,
            ..CaConfig::default()
        },
        CaConfig {
            rate: RateLimit {
                burst: 0,
                per_minute: 30,
            },
            ..CaConfig::default()
        },
    ];
    for config in configs {
        let err = Ca::self_signed(&MemStore::default(), config).unwrap_err();
        assert!(matches!(err, CaError::InvalidConfig(_)), "{err}");
    }
}

// --- issuance ---

#[test]
fn identity_comes_from_the_credential_not_the_csr() {
    let ca = ca();
    let evil = csr(&p256(), &["spiffe://evil/ns/kube-system/sa/admin"]);
    let issued = ca.issue(&evil, &cart(), None).unwrap();
    assert_eq!(issued.identity, "spiffe://cluster.local/ns/shop/sa/cart");

    let leaf_der = der_of(&issued.chain_pem[0]);
    let leaf = X509Certificate::from_der(&leaf_der).unwrap().1;
    assert_eq!(
        uri_sans(&leaf),
        vec!["uri:spiffe://cluster.local/ns/shop/sa/cart"]
    );
    // Nothing of the CSR's subject either.
    assert_eq!(leaf.subject().as_raw(), &[0x30, 0x00]);
}

#[test]
fn leaf_has_the_workload_profile() {
    let ca = ca();
    let key = p256();
    let before = SystemTime::now();
    let issued = ca.issue(&csr(&key, &[]), &cart(), None).unwrap();
    assert_eq!(
        issued.chain_pem.len(),
        1,
        "the root signs directly, no intermediates"
    );

    let leaf_der = der_of(&issued.chain_pem[0]);
    let leaf = X509Certificate::from_der(&leaf_der).unwrap().1;
    assert_eq!(
        leaf.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    assert!(!leaf.is_ca());
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign() && !ku.key_encipherment());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth && !eku.any);
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical, "an empty subject requires a critical SAN");

    let not_before = leaf.validity().not_before.timestamp();
    let before_secs = before.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((before_secs - 61..=before_secs - 59).contains(&not_before));
    let not_after = leaf.validity().not_after.timestamp() as u64;
    assert_eq!(
        issued
            .not_after
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        not_after
    );

    // Random serials: two issuances for the same key differ.
    let again = ca.issue(&csr(&key, &[]), &cart(), None).unwrap();
    let again_der = der_of(&again.chain_pem[0]);
    let again = X509Certificate::from_der(&again_der).unwrap().1;
    assert_ne!(leaf.raw_serial(), again.raw_serial());
    assert_eq!(leaf.raw_serial().len(), 16);

    verify_as_client_cert(&issued.chain_pem, &ca.trust_bundle()).unwrap();
}

#[test]
fn csr_with_tampered_subject_is_refused() {
    let pem = csr(&p256(), &[]);
    let mut der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    let at = der.windows(6).position(|w| w == b"victim").unwrap();
    der[at] = b'V';
    let tampered = chain::pem_encode_block("CERTIFICATE REQUEST", &der);

    let err = ca().issue(&tampered, &cart(), None).unwrap_err();
    assert!(matches!(err, CaError::CsrSignature), "{err}");
}

#[test]
fn csr_with_broken_signature_is_refused() {
    let pem = csr(&p256(), &[]);
    let mut der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    // The last byte belongs to the signature's `s` integer.
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let broken = chain::pem_encode_block("CERTIFICATE REQUEST", &der);

    let err = ca().issue(&broken, &cart(), None).unwrap_err();
    assert!(matches!(err, CaError::CsrSignature), "{err}");
}

#[test]
fn garbage_csr_is_refused() {
    let ca = ca();
    for garbage in [
        "",
        "hello",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ] {
        let err = ca.issue(garbage, &cart(), None).unwrap_err();
        assert!(matches!(err, CaError::BadCsr { .. }), "{garbage:?}: {err}");
    }
    // A certificate is not a CSR.
    let err = ca.issue(&ca.trust_bundle()[0], &cart(), None).unwrap_err();
    assert!(matches!(err, CaError::BadCsr { .. }), "{err}");
}

#[test]
fn csr_with_a_non_p256_key_is_refused() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let err = ca().issue(&csr(&key, &[]), &cart(), None).unwrap_err();
    assert!(matches!(err, CaError::UnsupportedKey { .. }), "{err}");
}

#[test]
fn identity_that_could_forge_a_spiffe_path_is_refused() {
    let ca = ca();
    let pem = csr(&p256(), &[]);
    for id in [
        WorkloadId::new("shop/sa/admin", "x"),
        WorkloadId::new("shop", ""),
        WorkloadId::new("Shop", "cart"),
        WorkloadId::new("shop", "cart?x"),
    ] {
        let err = ca.issue(&pem, &id, None).unwrap_err();
        assert!(
            matches!(err, CaError::InvalidIdentity { .. }),
            "{id:?}: {err}"
        );
    }
    // Dots are fine in service accounts (DNS subdomains), not in namespaces (DNS labels).
    assert!(
        ca.issue(&pem, &WorkloadId::new("shop", "cart.v2"), None)
            .is_ok()
    );
    assert!(
        ca.issue(&pem, &WorkloadId::new("shop.v2", "cart"), None)
            .is_err()
    );
}

#[test]
fn requested_ttl_is_clamped() {
    let ca = Ca::self_signed(&MemStore::default(), unlimited()).unwrap();
    let pem = csr(&p256(), &[]);
    let hour = Duration::from_secs(3600);
    let cases = [
        (None, DEFAULT_TTL),
        (Some(Duration::ZERO), DEFAULT_TTL),
        (Some(Duration::from_secs(10)), MIN_TTL),
        (Some(2 * hour), 2 * hour),
        (Some(30 * 24 * hour), DEFAULT_MAX_TTL),
        (Some(Duration::MAX), DEFAULT_MAX_TTL),
    ];
    for (requested, want) in cases {
        let start = SystemTime::now();
        let issued = ca.issue(&pem, &cart(), requested).unwrap();
        let lifetime = issued.not_after.duration_since(start).unwrap();
        // Whole seconds in the certificate: up to one second short of the request.
        assert!(
            lifetime <= want && lifetime + Duration::from_secs(2) >= want,
            "{requested:?}: lifetime {lifetime:?}, want {want:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn rate_limits_each_identity() {
    let config = CaConfig {
        rate: RateLimit {
            burst: 2,
            per_minute: 30,
        },
        ..CaConfig::default()
    };
    let ca = Ca::self_signed(&MemStore::default(), config).unwrap();
    let pem = csr(&p256(), &[]);

    ca.issue(&pem, &cart(), None).unwrap();
    ca.issue(&pem, &cart(), None).unwrap();
    match ca.issue(&pem, &cart(), None) {
        Err(CaError::RateLimited {
            identity,
            retry_after,
        }) => {
            assert_eq!(identity, "spiffe://cluster.local/ns/shop/sa/cart");
            assert_eq!(retry_after, Duration::from_secs(2));
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    // Another identity has its own bucket.
    ca.issue(&pem, &WorkloadId::new("shop", "checkout"), None)
        .unwrap();

    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(matches!(
        ca.issue(&pem, &cart(), None),
        Err(CaError::RateLimited { .. })
    ));
    tokio::time::advance(Duration::from_secs(1)).await;
    ca.issue(&pem, &cart(), None).unwrap();
}

#[test]
fn issues_many_certificates_correctly() {
    let ca = Ca::self_signed(&MemStore::default(), unlimited()).unwrap();
    let root_der = der_of(&ca.trust_bundle()[0]);
    let root = X509Certificate::from_der(&root_der).unwrap().1;
    let keys: Vec<_> = (0..8).map(|_| p256()).collect();
    let csrs: Vec<_> = keys.iter().map(|k| csr(k, &[])).collect();

    let mut serials = std::collections::HashSet::new();
    for i in 0..200 {
        let id = WorkloadId::new(format!("ns-{}", i % 7), format!("sa-{i}"));
        let issued = ca.issue(&csrs[i % csrs.len()], &id, None).unwrap();
        assert_eq!(issued.identity, id.spiffe_id("cluster.local"));

        let der = der_of(&issued.chain_pem[0]);
        let leaf = X509Certificate::from_der(&der).unwrap().1;
        leaf.verify_signature(Some(root.public_key())).unwrap();
        assert_eq!(uri_sans(&leaf), vec![format!("uri:{}", issued.identity)]);
        assert_eq!(
            leaf.public_key().subject_public_key.data.as_ref(),
            keys[i % keys.len()].public_key_raw()
        );
        assert!(serials.insert(leaf.raw_serial().to_vec()), "serial reused");
    }
}

#[test]
fn serving_cert_verifies_for_its_names() {
    let ca = ca();
    let id = WorkloadId::new("sinew-system", "sinew-control-plane");
    let dns = vec!["sinew-control-plane.sinew-system.svc".to_string()];
    let ips = vec![std::net::IpAddr::from([127, 0, 0, 1])];
    let (chain_pem, key_pem) = ca.serving_cert(&id, &dns, &ips).unwrap();

    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        root_store(&ca.trust_bundle()),
        provider(),
    )
    .build()
    .unwrap();
    let leaf = der_of(&chain_pem[0]);
    for name in ["sinew-control-plane.sinew-system.svc", "127.0.0.1"] {
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from(name).unwrap(),
                &[],
                UnixTime::now(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let wrong = ServerName::try_from("evil.example").unwrap();
    assert!(
        verifier
            .verify_server_cert(&leaf, &[], &wrong, &[], UnixTime::now())
            .is_err()
    );

    let parsed = X509Certificate::from_der(&leaf).unwrap().1;
    assert_eq!(
        uri_sans(&parsed),
        vec![
            "uri:spiffe://cluster.local/ns/sinew-system/sa/sinew-control-plane".to_string(),
            "dns:sinew-control-plane.sinew-system.svc".to_string(),
            "ip:[127, 0, 0, 1]".to_string(),
        ]
    );
    let key = KeyPair::from_pem(&key_pem).unwrap();
    assert_eq!(
        parsed.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );

    let err = ca
        .serving_cert(&id, &["bad name".to_string()], &[])
        .unwrap_err();
    assert!(matches!(err, CaError::InvalidName { .. }), "{err}");
}

// --- plug-in CA ---

#[test]
fn plug_in_leaf_chains_to_the_supplied_root() {
    let m = plug_in_material();
    let ca = Ca::plug_in(
        &m.int_pem,
        &m.int_key_pem,
        &m.root_pem,
        &m.root_pem,
        CaConfig::default(),
    )
    .unwrap();
    assert_eq!(ca.trust_bundle(), vec![m.root_pem.clone()]);

    let issued = ca.issue(&csr(&p256(), &[]), &cart(), None).unwrap();
    assert_eq!(issued.chain_pem.len(), 2);
    assert_eq!(der_of(&issued.chain_pem[1]), der_of(&m.int_pem));
    verify_as_client_cert(&issued.chain_pem, &ca.trust_bundle()).unwrap();
    // Without the intermediate, the leaf does not reach the root: the chain is needed.
    assert!(verify_as_client_cert(&issued.chain_pem[..1], &ca.trust_bundle()).is_err());
}

#[test]
fn plug_in_accepts_chain_files_that_repeat_the_intermediate_and_root() {
    let m = plug_in_material();
    let chain = format!("{}{}", m.int_pem, m.root_pem);
    let ca = Ca::plug_in(
        &m.int_pem,
        &m.int_key_pem,
        &chain,
        &m.root_pem,
        CaConfig::default(),
    )
    .unwrap();
    let issued = ca.issue(&csr(&p256(), &[]), &cart(), None).unwrap();
    assert_eq!(
        issued.chain_pem.len(),
        2,
        "neither repeated certificate is sent twice"
    );
    verify_as_client_cert(&issued.chain_pem, &ca.trust_bundle()).unwrap();
}

#[test]
fn plug_in_with_two_intermediates_sends_both() {
    let root = CertifiedIssuer::self_signed(ca_params("corp root"), p256()).unwrap();
    let mid = CertifiedIssuer::signed_by(ca_params("corp policy ca"), p256(), &root).unwrap();
    let issuing_key = p256();
    let issuing_key_pem = issuing_key.serialize_pem();
    let issuing = ca_params("corp mesh ca")
        .signed_by(&issuing_key, &mid)
        .unwrap();

    let chain = format!("{}{}", mid.pem(), root.pem());
    let ca = Ca::plug_in(
        &issuing.pem(),
        &issuing_key_pem,
        &chain,
        &root.pem(),
        CaConfig::default(),
    )
    .unwrap();
    let issued = ca.issue(&csr(&p256(), &[]), &cart(), None).unwrap();
    assert_eq!(issued.chain_pem.len(), 3);
    assert_eq!(der_of(&issued.chain_pem[1]), *issuing.der());
    assert_eq!(der_of(&issued.chain_pem[2]), *mid.der());
    verify_as_client_cert(&issued.chain_pem, &ca.trust_bundle()).unwrap();

    // Leaving the middle certificate out breaks the link, and says so.
    let err = Ca::plug_in(
        &issuing.pem(),
        &issuing_key_pem,
        "",
        &root.pem(),
        CaConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, CaError::BadPlugIn { .. }), "{err}");
}

#[test]
fn plug_in_with_a_mismatched_key_is_refused() {
    let m = plug_in_material();
    let other_key = p256().serialize_pem();
    let err = Ca::plug_in(
        &m.int_pem,
        &other_key,
        &m.root_pem,
        &m.root_pem,
        CaConfig::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, CaError::BadPlugIn { reason } if reason.contains("does not belong")),
        "{err}"
    );
}

#[test]
fn plug_in_under_another_root_is_refused() {
    let m = plug_in_material();
    let stranger = plug_in_material();
    let err = Ca::plug_in(
        &m.int_pem,
        &m.int_key_pem,
        "",
        &stranger.root_pem,
        CaConfig::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, CaError::BadPlugIn { reason } if reason.contains("does not lead to the supplied root")),
        "{err}"
    );
}

#[test]
fn plug_in_leaf_certificate_is_refused() {
    let m = plug_in_material();
    let root = CertifiedIssuer::self_signed(ca_params("corp root"), p256()).unwrap();
    let leaf_key = p256();
    let mut params = ca_params("not a ca");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf = params.signed_by(&leaf_key, &root).unwrap();
    let err = Ca::plug_in(
        &leaf.pem(),
        &leaf_key.serialize_pem(),
        "",
        &root.pem(),
        CaConfig::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, CaError::BadPlugIn { reason } if reason.contains("not a CA")),
        "{err}"
    );
    // And garbage key material says what is wrong with it.
    let err = Ca::plug_in(&m.int_pem, "nope", "", &m.root_pem, CaConfig::default()).unwrap_err();
    assert!(
        matches!(&err, CaError::BadPlugIn { reason } if reason.contains("PKCS#8")),
        "{err}"
    );
}

#[test]
fn plug_in_whose_leaves_peers_would_reject_is_refused() {
    // An intermediate restricted to serverAuth cannot vouch for workload client certificates;
    // webpki rejects such leaves, so the CA must refuse to start rather than hand them out.
    let root = CertifiedIssuer::self_signed(ca_params("corp root"), p256()).unwrap();
    let int_key = p256();
    let mut params = ca_params("web-only intermediate");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let int = params.signed_by(&int_key, &root).unwrap();
    let err = Ca::plug_in(
        &int.pem(),
        &int_key.serialize_pem(),
        "",
        &root.pem(),
        CaConfig::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, CaError::BadPlugIn { reason } if reason.contains("probe leaf does not verify")),
        "{err}"
    );
}

#[test]
fn leaf_never_outlives_its_issuer() {
    let root = CertifiedIssuer::self_signed(ca_params("corp root"), p256()).unwrap();
    let int_key = p256();
    let mut params = ca_params("short-lived intermediate");
    params.not_after = OffsetDateTime::now_utc() + time::Duration::hours(2);
    let int = params.signed_by(&int_key, &root).unwrap();
    let int_not_after = SystemTime::from(
        params.not_after - time::Duration::nanoseconds(i64::from(params.not_after.nanosecond())),
    );

    let ca = Ca::plug_in(
        &int.pem(),
        &int_key.serialize_pem(),
        "",
        &root.pem(),
        CaConfig::default(),
    )
    .unwrap();
    let issued = ca.issue(&csr(&p256(), &[]), &cart(), None).unwrap();
    assert_eq!(issued.not_after, int_not_after);
}

#[test]
fn ca_is_shareable_across_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Ca>();
    assert_send_sync::<FileRootStore>();
}
