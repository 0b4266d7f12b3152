use super::*;
use crate::testing::{TempDir, TestCa};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const ID: &str = "spiffe://cluster.local/ns/shop/sa/web";

/// A CA stand-in: signs with a test CA (swappable, as a root rotation swaps it), counts calls,
/// and can be told to fail.
struct FakeCa {
    ca: Mutex<Arc<TestCa>>,
    ttl: Duration,
    calls: AtomicUsize,
    failing: AtomicBool,
}

impl CaClient for Arc<FakeCa> {
    fn create(
        &self,
        token: String,
        req: pb::CreateCertificateRequest,
    ) -> futures_util::future::BoxFuture<
        'static,
        Result<pb::CreateCertificateResponse, tonic::Status>,
    > {
        let this = self.clone();
        Box::pin(async move {
            this.calls.fetch_add(1, Ordering::SeqCst);
            assert_eq!(token, "the-token");
            if this.failing.load(Ordering::SeqCst) {
                return Err(tonic::Status::unavailable("CA is down"));
            }
            let ca = this.ca.lock().unwrap().clone();
            Ok(pb::CreateCertificateResponse {
                cert_chain: vec![ca.sign_csr(&req.csr, ID, this.ttl)],
                trust_bundle: vec![ca.root_pem()],
                identity: ID.into(),
                signing_root_sha256: root_sha256(&ca),
            })
        })
    }
}

fn root_sha256(ca: &TestCa) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(ca.root_pem().as_bytes()).unwrap();
    tls::sha256_hex(&der)
}

fn fake_ca(ca: TestCa) -> Arc<FakeCa> {
    Arc::new(FakeCa {
        ca: Mutex::new(Arc::new(ca)),
        ttl: Duration::from_secs(24 * 3600),
        calls: AtomicUsize::new(0),
        failing: AtomicBool::new(false),
    })
}

fn certifier(fake: &Arc<FakeCa>, dir: &TempDir) -> (Certifier, tls::Store, watch::Receiver<bool>) {
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "the-token\n").unwrap();
    let config = crate::config::Config::from_proto(sinew_proto::config::v1::ProxyConfig {
        control_plane: Some(sinew_proto::config::v1::ControlPlane {
            address: "127.0.0.1:1".into(),
            root_cert_file: "/unused".into(),
            token_file: token_file.display().to_string(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap()
    .control_plane
    .unwrap();
    let store = tls::Store::empty();
    let (has_cert, rx) = watch::channel(false);
    let c = Certifier {
        ca: Arc::new(fake.clone()),
        config,
        store: store.clone(),
        material: TlsMaterial::default(),
        has_cert,
    };
    (c, store, rx)
}

#[tokio::test(start_paused = true)]
async fn renews_at_about_half_life_and_keeps_the_certificate_when_the_ca_is_down() {
    let dir = TempDir::new("certify");
    let fake = fake_ca(TestCa::new("mesh"));
    let (c, store, mut has_cert) = certifier(&fake, &dir);
    tokio::spawn(c.run());
    has_cert.wait_for(|v| *v).await.unwrap();
    let first = store.current().expect("a certificate is installed");
    assert_eq!(first.creds.identity.as_str(), ID);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);

    // Half-life is 12 h ± 10 % of 24 h: nothing before 9.6 h, a renewal by 14.4 h.
    tokio::time::sleep(Duration::from_secs(9 * 3600)).await;
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "renewed too early");
    tokio::time::sleep(Duration::from_secs(6 * 3600)).await;
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        2,
        "not renewed at half-life"
    );
    let second = store.current().unwrap();
    assert!(
        !Arc::ptr_eq(&first, &second),
        "new connections get the new certificate"
    );

    // The CA goes away: retries back off, and the current certificate stays in force.
    fake.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(15 * 3600)).await;
    let retries = fake.calls.load(Ordering::SeqCst);
    assert!(retries > 3, "retried after failures ({retries} calls)");
    // Backoff caps at 60 s: at most a few hundred attempts over hours, not a busy loop.
    assert!(retries < 2000, "{retries} calls: backoff is not working");
    assert!(
        Arc::ptr_eq(&second, &store.current().unwrap()),
        "a failed renewal never drops the certificate"
    );

    fake.failing.store(false, Ordering::SeqCst);
    // Wait (in paused time) for the next retry; the backoff caps at 60 s.
    for _ in 0..120 {
        if !Arc::ptr_eq(&second, &store.current().unwrap()) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        !Arc::ptr_eq(&second, &store.current().unwrap()),
        "recovered after the CA came back"
    );
}

#[test]
fn renewal_is_at_half_life_within_the_jitter() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let end = start + Duration::from_secs(24 * 3600);
    assert_eq!(
        renew_after(start, end, 0.1, 0.5),
        start + Duration::from_secs(12 * 3600)
    );
    let early = renew_after(start, end, 0.1, 0.0);
    let late = renew_after(start, end, 0.1, 0.999_999);
    assert!(
        early >= start + Duration::from_secs(9 * 3600)
            && early < start + Duration::from_secs(12 * 3600)
    );
    assert!(
        late > start + Duration::from_secs(12 * 3600)
            && late <= start + Duration::from_secs(15 * 3600)
    );
}

#[tokio::test(start_paused = true)]
async fn renews_at_once_when_a_pushed_bundle_names_another_signing_root() {
    let dir = TempDir::new("certify");
    let (old, new) = (TestCa::new("old root"), TestCa::new("new root"));
    let (old_sha, new_sha) = (root_sha256(&old), root_sha256(&new));
    let both = format!("{}\n{}", old.root_pem(), new.root_pem());
    let fake = fake_ca(old);
    let (c, store, mut has_cert) = certifier(&fake, &dir);
    let material = c.material.clone();
    tokio::spawn(c.run());
    has_cert.wait_for(|v| *v).await.unwrap();
    assert_eq!(
        store.current().unwrap().creds.chain_root_sha256.as_deref(),
        Some(old_sha.as_str())
    );

    // Phase "trust": both roots, still signing under the old one: nothing to renew.
    material
        .set_bundle(both.clone(), old_sha.clone(), &store)
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        1,
        "renewed without a new root"
    );
    assert_eq!(store.current().unwrap().creds.roots_sha256.len(), 2);

    // Phase "issue": the CA signs under the new root and the bundle says so: renewed within the
    // jitter, not at half-life, and under the new root.
    *fake.ca.lock().unwrap() = Arc::new(new);
    material.set_bundle(both, new_sha.clone(), &store).unwrap();
    tokio::time::sleep(ROOT_CHANGE_JITTER + Duration::from_millis(100)).await;
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        2,
        "not renewed on the new root"
    );
    let tls = store.current().unwrap();
    assert_eq!(
        tls.creds.chain_root_sha256.as_deref(),
        Some(new_sha.as_str())
    );
    assert!(!material.signed_under_another_root());

    // Phase "drop": the old root leaves the bundle; the certificate stays, and no renewal loop.
    let only_new = fake.ca.lock().unwrap().root_pem();
    material
        .set_bundle(only_new, new_sha.clone(), &store)
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    let tls = store.current().unwrap();
    assert_eq!(tls.creds.roots_sha256, [new_sha.as_str()]);
    assert_eq!(
        tls.creds.chain_root_sha256.as_deref(),
        Some(new_sha.as_str())
    );
}
