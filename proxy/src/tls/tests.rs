use super::*;
use crate::testing::{TempDir, TestCa};

const CLIENT: &str = "spiffe://cluster.local/ns/default/sa/client";
const SERVER: &str = "spiffe://cluster.local/ns/default/sa/server";

fn state(ca: &TestCa, dir: &TempDir, name: &str, id: &str) -> TlsState {
    let f = ca.write_workload(dir.path(), name, id);
    TlsState::new(Credentials::load(&f.cert, &f.key, &f.bundle).unwrap()).unwrap()
}

/// Runs one handshake over an in-memory pipe; returns (client result, server result).
async fn handshake(
    client: &TlsState,
    server: &TlsState,
    expect: &str,
) -> (
    Result<(), std::io::Error>,
    Result<Option<PeerInfo>, std::io::Error>,
) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let connector = tokio_rustls::TlsConnector::from(
        client
            .client_config(&Identity::parse(expect).unwrap(), OFFER_H2)
            .unwrap(),
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(server.server_config());
    let name = rustls::pki_types::ServerName::try_from("mesh.sinew").unwrap();
    let (c, s) = tokio::join!(connector.connect(name, a), acceptor.accept(b));
    let s = s.map(|s| PeerInfo::from_connection(s.get_ref().1));
    (c.map(|_| ()), s)
}

#[tokio::test]
async fn mutual_tls_with_expected_identity_succeeds() {
    let ca = TestCa::new("mesh");
    let dir = TempDir::new("tls");
    let client = state(&ca, &dir, "client", CLIENT);
    let server = state(&ca, &dir, "server", SERVER);
    assert_eq!(client.creds.identity.as_str(), CLIENT);
    let (c, s) = handshake(&client, &server, SERVER).await;
    c.unwrap();
    let peer = s.unwrap().expect("server sees the client identity");
    assert_eq!(peer.identity.as_str(), CLIENT);
    assert_eq!(peer.cert_sha256.len(), 64);
}

#[tokio::test]
async fn wrong_server_identity_is_refused_naming_both() {
    let ca = TestCa::new("mesh");
    let dir = TempDir::new("tls");
    let client = state(&ca, &dir, "client", CLIENT);
    let server = state(&ca, &dir, "server", SERVER);
    let want = "spiffe://cluster.local/ns/default/sa/reviews";
    let (c, _) = handshake(&client, &server, want).await;
    let msg = c.unwrap_err().to_string();
    assert!(msg.contains(want) && msg.contains(SERVER), "{msg}");
}

#[tokio::test]
async fn untrusted_chain_is_refused_both_ways() {
    let dir = TempDir::new("tls");
    let client = state(&TestCa::new("a"), &dir, "client", CLIENT);
    let dir2 = TempDir::new("tls");
    let server = state(&TestCa::new("b"), &dir2, "server", SERVER);
    let (c, s) = handshake(&client, &server, SERVER).await;
    assert!(c.is_err() && s.is_err());
}

#[test]
fn missing_cert_file_names_the_file() {
    let dir = TempDir::new("tls");
    let missing = dir.path().join("nope.crt");
    let err = Credentials::load(&missing, &missing, &missing)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("nope.crt") && err.contains("certificate"),
        "{err}"
    );
}

#[test]
fn key_that_does_not_match_the_cert_is_refused() {
    let ca = TestCa::new("mesh");
    let (cert, _) = ca.leaf(CLIENT);
    let (_, other_key) = ca.leaf(SERVER);
    let p = Path::new("x.pem");
    let err = Credentials::from_pem(
        cert.as_bytes(),
        other_key.as_bytes(),
        ca.root_pem().as_bytes(),
        [p, p, p],
    )
    .err()
    .unwrap();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
}

#[test]
fn identities_must_be_spiffe_uris() {
    assert!(Identity::parse("spiffe://cluster.local/ns/a/sa/b").is_ok());
    for bad in ["", "http://x/y", "spiffe://", "spiffe://td", "spiffe:///x"] {
        assert!(Identity::parse(bad).is_err(), "{bad}");
    }
}

/// One handshake of the control-plane channel's config against a server presenting `server`.
async fn control_handshake(roots: &ControlRoots, server: &TlsState) -> Result<(), std::io::Error> {
    let config = control_client_config(roots.clone(), Identity::parse(SERVER).unwrap()).unwrap();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let connector = tokio_rustls::TlsConnector::from(config);
    // The control plane's server: its certificate, h2, no client certificate.
    let mut served = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(verify::FixedCert(server.creds.key.clone())));
    served.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(served));
    let name = rustls::pki_types::ServerName::try_from("control-plane.sinew").unwrap();
    let (c, _) = tokio::join!(connector.connect(name, a), acceptor.accept(b));
    c.map(|_| ())
}

#[tokio::test]
async fn the_control_channel_verifies_with_the_latest_pushed_roots_instead_of_the_bootstrap() {
    let (old, new) = (TestCa::new("old root"), TestCa::new("new root"));
    let dir = TempDir::new("tls");
    let under_old = state(&old, &dir, "old", SERVER);
    let under_new = state(&new, &dir, "new", SERVER);
    let roots = ControlRoots::new(roots_from_pem(old.root_pem().as_bytes()).unwrap());
    control_handshake(&roots, &under_old).await.unwrap();
    assert!(
        control_handshake(&roots, &under_new).await.is_err(),
        "the bootstrap root alone does not verify a certificate under the new root"
    );

    // A rotation's bundle (old and new): both serving certificates verify, on the same config.
    let both = format!("{}\n{}", old.root_pem(), new.root_pem());
    roots.replace(Arc::new(roots_from_pem(both.as_bytes()).unwrap()));
    control_handshake(&roots, &under_old).await.unwrap();
    control_handshake(&roots, &under_new).await.unwrap();

    // The old root dropped: it no longer authenticates the control plane, bootstrap or not.
    roots.replace(Arc::new(roots_from_pem(new.root_pem().as_bytes()).unwrap()));
    control_handshake(&roots, &under_new).await.unwrap();
    assert!(control_handshake(&roots, &under_old).await.is_err());
}

#[test]
fn credentials_name_the_root_their_chain_verifies_to() {
    let (old, new) = (TestCa::new("old root"), TestCa::new("new root"));
    let (cert, key) = new.leaf(CLIENT);
    let p = Path::new("test");
    let sha = |pem: String| sha256_hex(&CertificateDer::from_pem_slice(pem.as_bytes()).unwrap());
    let both = format!("{}\n{}", old.root_pem(), new.root_pem());
    let creds =
        Credentials::from_pem(cert.as_bytes(), key.as_bytes(), both.as_bytes(), [p, p, p]).unwrap();
    assert_eq!(
        creds.roots_sha256,
        [sha(old.root_pem()), sha(new.root_pem())]
    );
    assert_eq!(creds.chain_root_sha256, Some(sha(new.root_pem())));
    let only_old = Credentials::from_pem(
        cert.as_bytes(),
        key.as_bytes(),
        old.root_pem().as_bytes(),
        [p, p, p],
    )
    .unwrap();
    assert_eq!(only_old.chain_root_sha256, None);
}
