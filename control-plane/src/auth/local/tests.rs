use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn tokens() -> LocalTokens {
    LocalTokens::new(b"0123456789abcdef0123456789abcdef".to_vec(), LOCAL_AUDIENCE)
}

fn caller() -> Caller {
    Caller {
        namespace: "shop".to_string(),
        service_account: "cart".to_string(),
        pod: Some("cart-7d9f".to_string()),
    }
}

/// Re-signs arbitrary claims JSON with `t`'s key, to test what happens after the MAC passes.
fn signed_with(t: &LocalTokens, json: &str) -> String {
    let mut token = format!("{TOKEN_PREFIX}.{}", URL_SAFE_NO_PAD.encode(json));
    let tag = hmac::sign(&t.key, token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
    token
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sinew-auth-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn minted_token_round_trips_to_the_same_caller() {
    let t = tokens();
    let token = t.mint(&caller(), Duration::from_secs(600));
    assert!(token.starts_with("sinew1."));
    assert_eq!(t.verify(&token).unwrap(), caller());

    let no_pod = Caller {
        pod: None,
        ..caller()
    };
    let token = t.mint(&no_pod, Duration::from_secs(600));
    assert_eq!(t.verify(&token).unwrap(), no_pod);
}

#[test]
fn token_claims_have_the_documented_shape() {
    let t = tokens();
    let token = t.mint(&caller(), Duration::from_secs(600));
    let claims_b64 = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims_b64).unwrap()).unwrap();
    assert_eq!(claims["ns"], "shop");
    assert_eq!(claims["sa"], "cart");
    assert_eq!(claims["pod"], "cart-7d9f");
    assert_eq!(claims["aud"], "sinew-ca");
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 600);
}

#[test]
fn token_with_a_flipped_claims_byte_is_refused() {
    let t = tokens();
    let token = t.mint(&caller(), Duration::from_secs(600));
    // Flip one character inside the claims segment, keeping it valid base64url.
    let mut bytes = token.into_bytes();
    let i = TOKEN_PREFIX.len() + 5;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(bytes).unwrap();
    assert!(matches!(t.verify(&forged), Err(AuthError::BadSignature)));
}

#[test]
fn token_minted_with_another_key_is_refused() {
    let other = LocalTokens::new(
        b"another key, another runner......".to_vec(),
        LOCAL_AUDIENCE,
    );
    let token = other.mint(&caller(), Duration::from_secs(600));
    let err = tokens().verify(&token).unwrap_err();
    assert!(matches!(err, AuthError::BadSignature));
    assert_eq!(
        err.to_string(),
        "token signature does not verify: forged, or minted with another key"
    );
}

#[test]
fn claims_swapped_between_tokens_are_refused() {
    // A valid MAC from one token does not vouch for another token's claims.
    let t = tokens();
    let a = t.mint(&caller(), Duration::from_secs(600));
    let admin = Caller {
        namespace: "kube-system".to_string(),
        ..caller()
    };
    let b = t.mint(&admin, Duration::from_secs(600));
    let (a_claims, b_mac) = (a.split('.').nth(1).unwrap(), b.split('.').nth(2).unwrap());
    let spliced = format!("{TOKEN_PREFIX}.{a_claims}.{b_mac}");
    assert!(matches!(t.verify(&spliced), Err(AuthError::BadSignature)));
}

#[test]
fn expired_token_is_refused() {
    let t = tokens();
    let now = unix_now();
    let json = format!(
        r#"{{"ns":"shop","sa":"cart","pod":null,"aud":"sinew-ca","exp":{},"iat":{}}}"#,
        now - 10,
        now - 610
    );
    match t.verify(&signed_with(&t, &json)) {
        Err(AuthError::Expired { expired_at }) => {
            assert_eq!(expired_at, UNIX_EPOCH + Duration::from_secs(now - 10));
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    // A zero lifetime expires at once.
    let token = t.mint(&caller(), Duration::ZERO);
    assert!(matches!(t.verify(&token), Err(AuthError::Expired { .. })));
}

#[test]
fn token_for_another_audience_is_refused() {
    let key = b"0123456789abcdef0123456789abcdef".to_vec();
    let minter = LocalTokens::new(key.clone(), "sinew-discovery");
    let token = minter.mint(&caller(), Duration::from_secs(600));
    match LocalTokens::new(key, LOCAL_AUDIENCE).verify(&token) {
        Err(AuthError::WrongAudience { got, want }) => {
            assert_eq!(got, "sinew-discovery");
            assert_eq!(want, "sinew-ca");
        }
        other => panic!("expected WrongAudience, got {other:?}"),
    }
}

#[test]
fn authentic_token_without_identity_claims_is_refused() {
    let t = tokens();
    let json = format!(r#"{{"aud":"sinew-ca","exp":{}}}"#, unix_now() + 600);
    match t.verify(&signed_with(&t, &json)) {
        Err(AuthError::MissingClaims { missing }) => assert_eq!(missing, "ns, sa"),
        other => panic!("expected MissingClaims, got {other:?}"),
    }
    let json = r#"{"ns":"","sa":"cart","aud":"sinew-ca"}"#;
    match t.verify(&signed_with(&t, json)) {
        Err(AuthError::MissingClaims { missing }) => assert_eq!(missing, "ns, exp"),
        other => panic!("expected MissingClaims, got {other:?}"),
    }
}

#[test]
fn garbage_is_malformed() {
    let t = tokens();
    let long = "a".repeat(MAX_TOKEN_LEN + 1);
    let garbage = [
        "",
        "Bearer sinew1.x.y",
        "sinew1",
        "sinew1.",
        "sinew1.abc",
        "sinew2.abc.def",
        "sinew1.abc.not*base64",
        "eyJhbGciOiJIUzI1NiJ9.e30.abc",
        long.as_str(),
    ];
    for token in garbage {
        assert!(
            matches!(t.verify(token), Err(AuthError::Malformed(_))),
            "{token:?} should be malformed"
        );
    }
    // Well-formed and authentic, but the claims are not JSON.
    let not_json = signed_with(&t, "not json");
    assert!(matches!(t.verify(&not_json), Err(AuthError::Malformed(_))));
}

#[test]
fn key_file_is_created_private_and_reloaded() {
    let tmp = TempDir::new();
    let path = tmp.0.join("secrets").join("token.key");
    let first = LocalTokens::load_or_create(&path, LOCAL_AUDIENCE).unwrap();

    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), KEY_LEN as u64);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir_mode = fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);

    // A restarted control plane accepts what the runner minted before.
    let token = first.mint(&caller(), Duration::from_secs(600));
    let second = LocalTokens::load_or_create(&path, LOCAL_AUDIENCE).unwrap();
    assert_eq!(second.verify(&token).unwrap(), caller());

    // No temp file is left behind.
    let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn truncated_key_file_is_refused() {
    let tmp = TempDir::new();
    fs::create_dir_all(&tmp.0).unwrap();
    let path = tmp.0.join("token.key");
    fs::write(&path, b"short").unwrap();
    let err = LocalTokens::load_or_create(&path, LOCAL_AUDIENCE).unwrap_err();
    assert!(matches!(err, AuthError::BadKeyFile { .. }), "{err}");
}

#[tokio::test]
async fn through_the_trait_a_token_verifies_as_it_does_directly() {
    let t = tokens();
    let auth: &dyn Authenticator = &t;
    let token = t.mint(&caller(), Duration::from_secs(60));
    assert_eq!(auth.authenticate(&token).await.unwrap(), caller());
    let forged = format!("{token}x");
    assert!(matches!(
        auth.authenticate(&forged).await,
        Err(AuthError::Malformed(_) | AuthError::BadSignature)
    ));
}
