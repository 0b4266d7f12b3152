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
