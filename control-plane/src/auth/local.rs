//! Local-mode credentials: HMAC-SHA256 tokens the local runner mints for each pod.
//!
//! Format: `sinew1.<claims>.<mac>`, where `<claims>` is base64url (no padding) of the JSON object
//! `{"ns","sa","pod","aud","exp","iat"}` (`exp`/`iat` in unix seconds) and `<mac>` is base64url
//! of HMAC-SHA256(key, `"sinew1." + <claims>`).
//!
//! The MAC is checked in constant time before the claims are decoded, so nothing an unauthenticated
//! sender writes reaches the JSON parser. Expiry uses the wall clock: the runner and the control
//! plane share a host, and tokens must die across restarts too.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use super::{AuthError, AuthFuture, Authenticator, Caller};

/// Version tag and first segment of every token.
pub const TOKEN_PREFIX: &str = "sinew1";
/// The audience the CA expects on local tokens.
pub const LOCAL_AUDIENCE: &str = "sinew-ca";
/// Bytes of a freshly created key.
const KEY_LEN: usize = 32;
/// Real tokens are a few hundred bytes; refusing huge ones early bounds the work a stranger can
/// cause.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Mints and verifies local-mode tokens for one audience.
pub struct LocalTokens {
    key: hmac::Key,
    audience: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    ns: &'a str,
    sa: &'a str,
    pod: Option<&'a str>,
    aud: &'a str,
    exp: u64,
    iat: u64,
}

/// Every field optional, so a token that is well-formed JSON but lacks a claim is reported as
/// such rather than as garbage.
#[derive(Deserialize)]
struct ReceivedClaims {
    ns: Option<String>,
    sa: Option<String>,
    pod: Option<String>,
    aud: Option<String>,
    exp: Option<u64>,
    // `iat` is part of the format but nothing depends on it yet; serde skips unknown fields.
}

// === impl LocalTokens ===

impl LocalTokens {
    pub fn new(secret: Vec<u8>, audience: impl Into<String>) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            audience: audience.into(),
        }
    }

    /// Reads the key at `path`, or creates one of 32 random bytes (file `0600`, parent directory
    /// created `0700`). Two processes racing to create it end up with the same key.
    pub fn load_or_create(path: &Path, audience: impl Into<String>) -> Result<Self, AuthError> {
        let secret = match read_key(path)? {
            Some(secret) => secret,
            None => create_key(path)?,
        };
        Ok(Self::new(secret, audience))
    }

    /// A token for `caller`, valid for `ttl` from now.
    pub fn mint(&self, caller: &Caller, ttl: Duration) -> String {
        let iat = unix_now();
        let claims = Claims {
            ns: &caller.namespace,
            sa: &caller.service_account,
            pod: caller.pod.as_deref(),
            aud: &self.audience,
            exp: iat.saturating_add(ttl.as_secs()),
            iat,
        };
        let json = serde_json::to_vec(&claims)
            .expect("invariant: a struct of strings and integers always serializes");
        let mut token = String::with_capacity(TOKEN_PREFIX.len() + json.len() * 4 / 3 + 50);
        token.push_str(TOKEN_PREFIX);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut token);
        let tag = hmac::sign(&self.key, token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
        token
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }
}

impl Authenticator for LocalTokens {
    fn authenticate<'a>(&'a self, bearer_token: &'a str) -> AuthFuture<'a> {
        Box::pin(std::future::ready(self.verify(bearer_token)))
    }
}

impl LocalTokens {
    /// Checks a token: no I/O, so callers that hold a `LocalTokens` need not await.
    pub fn verify(&self, bearer_token: &str) -> Result<Caller, AuthError> {
        if bearer_token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed(
                "longer than any token the runner mints",
            ));
        }
        let body = bearer_token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.strip_prefix('.'))
            .ok_or(AuthError::Malformed("it does not start with \"sinew1.\""))?;
        let (claims_b64, mac_b64) = body
            .split_once('.')
            .ok_or(AuthError::Malformed("it has no signature segment"))?;
        let signed = bearer_token
            .get(..TOKEN_PREFIX.len() + 1 + claims_b64.len())
            .ok_or(AuthError::Malformed("it does not split into segments"))?;

        let mac = URL_SAFE_NO_PAD
            .decode(mac_b64)
            .map_err(|_| AuthError::Malformed("the signature is not base64url"))?;
        hmac::verify(&self.key, signed.as_bytes(), &mac).map_err(|_| AuthError::BadSignature)?;

        // Authentic from here on: the key holder wrote these bytes.
        let json = URL_SAFE_NO_PAD
            .decode(claims_b64)
            .map_err(|_| AuthError::Malformed("the claims are not base64url"))?;
        let claims: ReceivedClaims = serde_json::from_slice(&json)
            .map_err(|_| AuthError::Malformed("the claims are not a JSON object"))?;
        self.check(claims)
    }

    fn check(&self, claims: ReceivedClaims) -> Result<Caller, AuthError> {
        let ReceivedClaims {
            ns,
            sa,
            pod,
            aud,
            exp,
        } = claims;
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        let (ns, sa, aud) = (non_empty(ns), non_empty(sa), non_empty(aud));
        let missing: Vec<&str> = [
            ("ns", ns.is_none()),
            ("sa", sa.is_none()),
            ("aud", aud.is_none()),
            ("exp", exp.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, absent)| absent.then_some(name))
        .collect();
        let (Some(namespace), Some(service_account), Some(aud), Some(exp)) = (ns, sa, aud, exp)
        else {
            return Err(AuthError::MissingClaims {
                missing: missing.join(", "),
            });
        };

        if aud != self.audience {
            return Err(AuthError::WrongAudience {
                got: aud,
                want: self.audience.clone(),
            });
        }
        if unix_now() >= exp {
            return Err(AuthError::Expired {
                expired_at: UNIX_EPOCH + Duration::from_secs(exp),
            });
        }
        Ok(Caller {
            namespace,
            service_account,
            pod: pod.filter(|p| !p.is_empty()),
        })
    }
}

impl std::fmt::Debug for LocalTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTokens")
            .field("audience", &self.audience)
            .field("key", &"[elided]")
            .finish()
    }
}

fn unix_now() -> u64 {
    // A clock before 1970 is broken beyond what we can fix; treating it as the epoch only makes
    // tokens look less expired, and minting and checking happen on the same clock.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn read_key(path: &Path) -> Result<Option<Vec<u8>>, AuthError> {
    let secret = match fs::read(path) {
        Ok(secret) => secret,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AuthError::KeyFileIo {
                action: "read",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if secret.len() < KEY_LEN {
        return Err(AuthError::BadKeyFile {
            path: path.to_path_buf(),
            reason: format!("it holds {} bytes, fewer than {KEY_LEN}", secret.len()),
        });
    }
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the local token key is readable by other users; run chmod 600 on it"
        );
    }
    Ok(Some(secret))
}

/// Writes a new key to a private temp file, then hard-links it into place: the link fails if
/// another process got there first, in which case its key wins and we read that one. Nobody ever
/// sees a partly written key.
fn create_key(path: &Path) -> Result<Vec<u8>, AuthError> {
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| AuthError::KeyFileIo {
            action,
            path,
            source,
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create directory", dir))?;
    }

    let mut secret = vec![0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| AuthError::BadKeyFile {
            path: path.to_path_buf(),
            reason: "the system random generator failed".to_string(),
        })?;

    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = Path::new(&tmp_name);
    let _ = fs::remove_file(tmp);
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .map_err(io_err("create", tmp))?;
        file.write_all(&secret).map_err(io_err("write", tmp))?;
        file.sync_all().map_err(io_err("sync", tmp))?;
        fs::hard_link(tmp, path)
            .map(|()| true)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(false),
                _ => Err(io_err("link into place", path)(e)),
            })
    })();
    let _ = fs::remove_file(tmp);

    if written? {
        Ok(secret)
    } else {
        read_key(path)?.ok_or_else(|| AuthError::BadKeyFile {
            path: path.to_path_buf(),
            reason: "it vanished while being created".to_string(),
        })
    }
}

#[cfg(test)]
mod tests;
