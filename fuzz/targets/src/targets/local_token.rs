//! Local mode's bearer tokens (`auth::LocalTokens::verify`): what any process on the host may
//! send the control plane's CA and discovery servers.
//!
//! The input is read three ways:
//! - as a token as it arrives (the unauthenticated surface: prefix, segments, base64, MAC);
//! - as the claims of a token signed with the right key (the JSON the MAC protects, reachable
//!   only by the key's holder, checked anyway);
//! - as a caller (`namespace;service account;pod`) that is minted and verified again.
//!
//! Contract checked: never panics; a token minted for a caller with a namespace and a service
//! account verifies as that caller (an empty pod reads as none); a token that is not signed
//! with the key is never accepted.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use sinew_control_plane::auth::{Caller, LOCAL_AUDIENCE, LocalTokens, TOKEN_PREFIX};
use std::sync::OnceLock;
use std::time::Duration;

const KEY: &[u8] = b"sinew-fuzz-local-token-key-32byt";

/// Checks one input; returns its outcome.
pub fn check(data: &[u8]) -> String {
    static TOKENS: OnceLock<LocalTokens> = OnceLock::new();
    let tokens = TOKENS.get_or_init(|| LocalTokens::new(KEY.to_vec(), LOCAL_AUDIENCE));

    // As it arrives.
    let text = String::from_utf8_lossy(data);
    let raw = tokens.verify(&text);
    if raw.is_ok() {
        // Only a MAC made with KEY gets here: the seeds hold tokens signed with it.
        let body = text.strip_prefix(TOKEN_PREFIX).unwrap_or_default();
        assert!(body.starts_with('.'), "accepted a token without the prefix");
    }

    // Signed claims.
    let mut token = format!("{TOKEN_PREFIX}.");
    URL_SAFE_NO_PAD.encode_string(data, &mut token);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, KEY), token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
    let signed = tokens.verify(&token);

    // Minted for a caller.
    let mut parts = text.splitn(3, ';').map(String::from);
    let caller = Caller {
        namespace: parts.next().unwrap_or_default(),
        service_account: parts.next().unwrap_or_default(),
        pod: parts.next(),
    };
    let token = tokens.mint(&caller, Duration::from_secs(3600));
    let minted = tokens.verify(&token);
    if !caller.namespace.is_empty() && !caller.service_account.is_empty() {
        let want = Caller {
            pod: caller.pod.clone().filter(|p| !p.is_empty()),
            ..caller
        };
        match &minted {
            Ok(got) => assert_eq!(got, &want, "a minted token verifies as another caller"),
            // Tokens for callers far longer than Kubernetes names are refused by their length
            // (8 KiB; JSON escapes can make one six times its names).
            Err(_) if token.len() > 8 * 1024 => {}
            Err(e) => panic!("a minted token is refused: {e}"),
        }
    }
    format!(
        "{} / {} / {}",
        super::outcome("raw", &raw),
        super::outcome("signed", &signed),
        super::outcome("minted", &minted)
    )
}
