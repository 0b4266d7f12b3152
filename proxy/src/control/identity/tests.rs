use super::*;
use crate::testing::{TempDir, TestCa};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const ID: &str = "spiffe://cluster.local/ns/shop/sa/web";

/// A CA stand-in: signs with a test CA, counts calls, and can be told to fail.
struct FakeCa {
    ca: TestCa,
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
            Ok(pb::CreateCertificateResponse {
                cert_chain: vec![this.ca.sign_csr(&req.csr, ID, this.ttl)],
                trust_bundle: vec![this.ca.root_pem()],
                identity: ID.into(),
            })
        })
    }
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
    let fake = Arc::new(FakeCa {
        ca: TestCa::new("mesh"),
        ttl: Duration::from_secs(24 * 3600),
        calls: AtomicUsize::new(0),
        failing: AtomicBool::new(false),
    });
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
