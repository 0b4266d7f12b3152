use super::*;
use crate::http::client::Reuse;
use crate::testing::TempDir;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const FIELD: &str = "services[0].trafficPolicy.tls";
const HOST: &str = "api.example.test";

/// A CA for servers outside the mesh: leaves carry DNS names, not SPIFFE IDs.
struct WebCa(CertifiedIssuer<'static, KeyPair>);

/// PEM (cert, key).
type Leaf = (String, String);

impl WebCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} root"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write_root(&self, dir: &TempDir, name: &str) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, self.0.pem()).unwrap();
        path.display().to_string()
    }
}

fn write_leaf(dir: &TempDir, name: &str, (cert, key): &Leaf) -> (String, String) {
    let c = dir.path().join(format!("{name}.crt"));
    let k = dir.path().join(format!("{name}.key"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    (c.display().to_string(), k.display().to_string())
}

fn der_chain(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A TLS server on loopback answering one connection's `ping` with `pong`; yields whether the
/// client presented a certificate. `client_ca`: require a client certificate from this CA.
async fn server(
    leaf: &Leaf,
    client_ca: Option<&WebCa>,
) -> (SocketAddr, tokio::task::JoinHandle<Option<bool>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.0.der().clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key = PrivateKeyDer::from_pem_slice(leaf.1.as_bytes()).unwrap();
    let config = builder.with_single_cert(der_chain(&leaf.0), key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.ok()?;
        let mut tls = acceptor.accept(tcp).await.ok()?;
        let presented = tls.get_ref().1.peer_certificates().is_some();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.ok()?;
        tls.write_all(b"pong").await.ok()?;
        tls.flush().await.ok()?;
        Some(presented)
    });
    (addr, task)
}

fn originate(tls: pb::ClientTls) -> Originate {
    match ClientTls::from_proto(FIELD, &tls).unwrap() {
        ClientTls::Originate(o) => o,
        other => panic!("expected origination, got {other:?}"),
    }
}

fn simple(ca: &str) -> pb::ClientTls {
    pb::ClientTls {
        mode: pb::client_tls::Mode::Simple as i32,
        ca_certificates: ca.to_string(),
        ..Default::default()
    }
}

async fn ping(addr: SocketAddr, host: &str, tls: &Originate) -> Result<(), ProxyError> {
    let mut stream = connect(addr, host, tls, Duration::from_secs(5), None).await?;
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
    Ok(())
}

fn tls_reason(r: Result<(), ProxyError>) -> String {
    match r {
        Err(ProxyError::Tls { reason, .. }) => reason,
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

// --- validation ---

fn field_of(r: Result<ClientTls, ConfigError>) -> String {
    match r {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn modes_without_files_need_no_files() {
    use pb::client_tls::Mode;
    let of = |mode: Mode| {
        ClientTls::from_proto(
            FIELD,
            &pb::ClientTls {
                mode: mode as i32,
                ..Default::default()
            },
        )
        .unwrap()
    };
    assert!(matches!(of(Mode::Auto), ClientTls::Auto));
    assert!(matches!(of(Mode::Disable), ClientTls::Disable));
    assert!(matches!(of(Mode::IstioMutual), ClientTls::IstioMutual));
}

#[test]
fn mutual_needs_a_certificate_and_a_key() {
    let dir = TempDir::new("originate");
    let ca = WebCa::new("ext").write_root(&dir, "ca.pem");
    let mut tls = pb::ClientTls {
        mode: pb::client_tls::Mode::Mutual as i32,
        ca_certificates: ca,
        ..Default::default()
    };
    assert_eq!(
        field_of(ClientTls::from_proto(FIELD, &tls)),
        format!("{FIELD}.clientCertificate")
    );
    tls.client_certificate = "/dev/null".into();
    assert_eq!(
        field_of(ClientTls::from_proto(FIELD, &tls)),
        format!("{FIELD}.privateKey")
    );
}

#[test]
fn insecure_skip_verify_excludes_ca_and_sans() {
    let mut tls = pb::ClientTls {
        mode: pb::client_tls::Mode::Simple as i32,
        insecure_skip_verify: true,
        ca_certificates: "/etc/ssl/ca.pem".into(),
        ..Default::default()
    };
    assert_eq!(
        field_of(ClientTls::from_proto(FIELD, &tls)),
        format!("{FIELD}.insecureSkipVerify")
    );
    tls.ca_certificates.clear();
    tls.subject_alt_names = vec![HOST.into()];
    assert_eq!(
        field_of(ClientTls::from_proto(FIELD, &tls)),
        format!("{FIELD}.insecureSkipVerify")
    );
}

#[test]
fn istio_mutual_refuses_files() {
    for (name, tls) in [
        (
            "clientCertificate",
            pb::ClientTls {
                client_certificate: "/c.pem".into(),
                ..Default::default()
            },
        ),
        (
            "privateKey",
            pb::ClientTls {
                private_key: "/k.pem".into(),
                ..Default::default()
            },
        ),
        (
            "caCertificates",
            pb::ClientTls {
                ca_certificates: "/ca.pem".into(),
                ..Default::default()
            },
        ),
    ] {
        let tls = pb::ClientTls {
            mode: pb::client_tls::Mode::IstioMutual as i32,
            ..tls
        };
        assert_eq!(
            field_of(ClientTls::from_proto(FIELD, &tls)),
            format!("{FIELD}.{name}")
        );
    }
}

#[test]
fn a_missing_file_is_a_config_error_naming_the_field() {
    let dir = TempDir::new("originate");
    let missing = dir.path().join("nope.pem").display().to_string();
    let err = ClientTls::from_proto(FIELD, &simple(&missing)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{FIELD}.caCertificates:")) && msg.contains("nope.pem"),
        "{msg}"
    );
}

#[test]
fn the_sni_field_overrides_the_authority() {
    let dir = TempDir::new("originate");
    let ca = WebCa::new("ext").write_root(&dir, "ca.pem");
    let plain = originate(simple(&ca));
    assert_eq!(
        plain.server_name("shop.example.test").unwrap(),
        ServerName::try_from("shop.example.test").unwrap()
    );
    assert!(matches!(
        plain.server_name("[::1]").unwrap(),
        ServerName::IpAddress(_)
    ));
    let with_sni = originate(pb::ClientTls {
        sni: "edge.example.test".into(),
        ..simple(&ca)
    });
    assert_eq!(
        with_sni.server_name("shop.example.test").unwrap(),
        ServerName::try_from("edge.example.test").unwrap()
    );
}

// --- real handshakes on loopback ---

#[tokio::test]
async fn simple_tls_to_a_server_with_the_configured_ca_works() {
    let dir = TempDir::new("originate");
    let ca = WebCa::new("ext");
    let (addr, srv) = server(&ca.leaf(&[HOST], ExtendedKeyUsagePurpose::ServerAuth), None).await;
    let tls = originate(simple(&ca.write_root(&dir, "ca.pem")));
    ping(addr, HOST, &tls).await.unwrap();
    assert_eq!(
        srv.await.unwrap(),
        Some(false),
        "SIMPLE presents no client certificate"
    );
}

#[tokio::test]
async fn a_server_from_another_ca_is_refused() {
    let dir = TempDir::new("originate");
    let theirs = WebCa::new("theirs");
    let ours = WebCa::new("ours");
    let (addr, _srv) = server(
        &theirs.leaf(&[HOST], ExtendedKeyUsagePurpose::ServerAuth),
        None,
    )
    .await;
    let tls = originate(simple(&ours.write_root(&dir, "ca.pem")));
    let reason = tls_reason(ping(addr, HOST, &tls).await);
    assert!(reason.contains("UnknownIssuer"), "{reason}");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let dir = TempDir::new("originate");
    let ca = WebCa::new("ext");
    let (addr, _srv) = server(&ca.leaf(&[HOST], ExtendedKeyUsagePurpose::ServerAuth), None).await;
    let tls = originate(simple(&ca.write_root(&dir, "ca.pem")));
    let reason = tls_reason(ping(addr, "other.example.test", &tls).await);
    assert!(
        reason.contains("not valid for name \"other.example.test\""),
        "{reason}"
    );
}

#[tokio::test]
async fn subject_alt_names_replace_the_name_check() {
    let dir = TempDir::new("originate");
    let ca = WebCa::new("ext");
    let root = ca.write_root(&dir, "ca.pem");
    let leaf = ca.leaf(&[HOST], ExtendedKeyUsagePurpose::ServerAuth);

    // The authority names something else; the listed SAN is what the certificate has.
    let (addr, _srv) = server(&leaf, None).await;
    let matching = originate(pb::ClientTls {
        subject_alt_names: vec!["spiffe://x/y".into(), HOST.into()],
        ..simple(&root)
    });
    ping(addr, "10.1.2.3", &matching).await.unwrap();

    let (addr, _srv) = server(&leaf, None).await;
    let mismatching = originate(pb::ClientTls {
        subject_alt_names: vec!["billing.example.test".into()],
        ..simple(&root)
    });
    let reason = tls_reason(ping(addr, HOST, &mismatching).await);
    assert!(
        reason.contains("SAN mismatch")
            && reason.contains("billing.example.test")
            && reason.contains(HOST),
        "{reason}"
    );
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_server() {
    let theirs = WebCa::new("theirs");
    let (addr, _srv) = server(
        &theirs.leaf(&[HOST], ExtendedKeyUsagePurpose::ServerAuth),
        None,
    )
    .await;
    let tls = originate(pb::ClientTls {
        mode: pb::client_tls::Mode::Simple as i32,
        insecure_skip_verify: true,
        ..Default::default()
    });
    ping(addr, "anything.test", &tls).await.unwrap();
}

#[tokio::test]
async fn mutual_presents_the_client_certificate() {
    let dir = TempDir::new("originate");
    let ca = WebCa::new("ext");
    let (addr, srv) = server(
        &ca.leaf(&[HOST], ExtendedKeyUsagePurpose::ServerAuth),
        Some(&ca),
    )
    .await;
    let (cert, key) = write_leaf(
        &dir,
        "client",
        &ca.leaf(
            &["client.example.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    );
    let tls = originate(pb::ClientTls {
        mode: pb::client_tls::Mode::Mutual as i32,
        client_certificate: cert,
        private_key: key,
        ..simple(&ca.write_root(&dir, "ca.pem"))
    });
    assert!(tls.is_mutual());
    ping(addr, HOST, &tls).await.unwrap();
    assert_eq!(
        srv.await.unwrap(),
        Some(true),
        "the server saw a client certificate"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let tls = originate(pb::ClientTls {
        mode: pb::client_tls::Mode::Simple as i32,
        insecure_skip_verify: true,
        ..Default::default()
    });
    let r = connect(addr, HOST, &tls, Duration::from_secs(5), None).await;
    assert!(
        matches!(r, Err(ProxyError::Connect { .. })),
        "{:?}",
        r.map(|_| ())
    );
}

#[tokio::test]
async fn originated_connections_carry_the_destination_keepalive() {
    let dir = TempDir::new("originate");
    let ca = WebCa::new("ext");
    let leaf = ca.leaf(&[HOST], ExtendedKeyUsagePurpose::ServerAuth);
    let tls = originate(simple(&ca.write_root(&dir, "ca.pem")));
    let ka = crate::io::TcpKeepalive {
        time: Some(Duration::from_secs(33)),
        interval: Some(Duration::from_secs(3)),
        probes: std::num::NonZeroU32::new(2),
    };
    let (addr, _srv) = server(&leaf, None).await;
    let stream = connect(addr, HOST, &tls, Duration::from_secs(5), Some(&ka))
        .await
        .unwrap();
    let sock = socket2::SockRef::from(stream.get_ref().0);
    assert!(sock.keepalive().unwrap());
    assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(33));
    assert_eq!(
        sock.tcp_keepalive_interval().unwrap(),
        Duration::from_secs(3)
    );
    assert_eq!(sock.tcp_keepalive_retries().unwrap(), 2);

    let (addr, _srv) = server(&leaf, None).await;
    let stream = connect(addr, HOST, &tls, Duration::from_secs(5), None)
        .await
        .unwrap();
    assert!(
        !socket2::SockRef::from(stream.get_ref().0)
            .keepalive()
            .unwrap()
    );
}

// --- pooled origination ---

/// An HTTPS server on loopback answering every request `200 ok` over keep-alive connections;
/// counts the connections it accepted.
async fn https_server(leaf: &Leaf) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::from_pem_slice(leaf.1.as_bytes()).unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(der_chain(&leaf.0), key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, accepted)
}

fn get() -> Request<http_body_util::Empty<bytes::Bytes>> {
    Request::builder()
        .uri("/")
        .header(http::header::HOST, HOST)
        .body(http_body_util::Empty::new())
        .unwrap()
}

async fn send_all(
    pool: &OriginPool<http_body_util::Empty<bytes::Bytes>>,
    addr: SocketAddr,
    tls: &Originate,
    policy: ConnPolicy,
    n: usize,
) {
    use http_body_util::BodyExt;
    for _ in 0..n {
        let rsp = pool
            .send(addr, HOST, tls, Duration::from_secs(5), policy, get())
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
        // Reading the body to its end lets the connection go back to the pool.
        assert_eq!(rsp.into_body().collect().await.unwrap().to_bytes(), "ok");
        // Wait (bounded) for the connection to be back before the next request, so the count
        // below is about reuse and not about timing.
        for _ in 0..500 {
            if pool.idle(addr, HOST, tls, policy) > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test]
async fn originated_requests_share_a_pooled_tls_connection() {
    let dir = TempDir::new("originate");
    let ca = WebCa::new("ext");
    let (addr, accepted) =
        https_server(&ca.leaf(&[HOST], ExtendedKeyUsagePurpose::ServerAuth)).await;
    let tls = originate(simple(&ca.write_root(&dir, "ca.pem")));
    let pool = OriginPool::new(Duration::from_secs(300));
    send_all(&pool, addr, &tls, ConnPolicy::default(), 3).await;
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn max_requests_per_connection_and_new_tls_settings_open_new_connections() {
    let dir = TempDir::new("originate");
    let ca = WebCa::new("ext");
    let (addr, accepted) =
        https_server(&ca.leaf(&[HOST], ExtendedKeyUsagePurpose::ServerAuth)).await;
    let root = ca.write_root(&dir, "ca.pem");
    let tls = originate(simple(&root));
    let pool = OriginPool::new(Duration::from_secs(300));
    let one = ConnPolicy {
        reuse: Reuse {
            max_requests: std::num::NonZeroU32::new(1),
            ..Reuse::default()
        },
        keepalive: None,
    };
    // maxRequestsPerConnection 1: a connection (and a handshake) per request.
    for _ in 0..3 {
        let rsp = pool
            .send(addr, HOST, &tls, Duration::from_secs(5), one, get())
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    // The same settings built again (a config push) never reuse the old connections.
    send_all(&pool, addr, &tls, ConnPolicy::default(), 1).await;
    let pushed = originate(simple(&root));
    send_all(&pool, addr, &pushed, ConnPolicy::default(), 1).await;
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5);
}
