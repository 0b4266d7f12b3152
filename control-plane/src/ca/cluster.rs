//! The mesh CA in a cluster: its root in a Secret, so every replica serves the same CA.
//!
//! What it promises:
//! - **Istio's plug-in CA wins.** When the `cacerts` Secret exists (Istio's layout: `ca-cert.pem`,
//!   `ca-key.pem`, `root-cert.pem`, and `cert-chain.pem`), the CA signs with that intermediate and
//!   the self-signed Secret is not even read.
//! - **Otherwise one self-signed root for all replicas.** The root and its key live in
//!   `<namespace>/sinew-ca` (`ca-cert.pem`, `ca-key.pem`; type `sinew.dev/ca-root`). The first
//!   replica to start creates it; when two start at once, exactly one create succeeds and the
//!   other gets 409, reads the winner's root and drops its own (never used, never stored).
//! - **Never a silent new root.** Only a 404 leads to creating one; any other failure to read
//!   (RBAC, API server down, a Secret with a missing or unusable key) is an error naming the
//!   Secret, because a second root would split the mesh.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;

use super::{Ca, CaConfig, CaError, RootMaterial, generate_root};
use crate::cluster::{ApiFailure, classify};

/// The Secret holding the self-signed root, unless configured otherwise.
pub const DEFAULT_ROOT_SECRET: &str = "sinew-ca";
/// Istio's plug-in CA Secret.
pub const PLUG_IN_SECRET: &str = "cacerts";
/// `type` of the Secret we create.
pub const ROOT_SECRET_TYPE: &str = "sinew.dev/ca-root";
/// Keys, as Istio names them (`security/pkg/pki/ca/ca.go`).
pub const CA_CERT_KEY: &str = "ca-cert.pem";
pub const CA_KEY_KEY: &str = "ca-key.pem";
pub const ROOT_CERT_KEY: &str = "root-cert.pem";
pub const CERT_CHAIN_KEY: &str = "cert-chain.pem";
/// Label on the Secret we create.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "sinew-control-plane");
/// Rounds of create → 409 → read: more than one only when the winner's Secret is deleted between
/// our 409 and our read.
const CREATE_ROUNDS: usize = 3;

/// Where the CA's Secrets are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaSecrets {
    pub namespace: String,
    /// The self-signed root ([`DEFAULT_ROOT_SECRET`]).
    pub root: String,
    /// The plug-in CA ([`PLUG_IN_SECRET`]).
    pub plug_in: String,
}

/// Where the CA came from, for the start-up log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaSource {
    /// Istio's `cacerts`.
    PlugIn,
    /// The root Secret another start (or replica) created.
    Loaded,
    /// We created the root Secret just now.
    Created,
}

/// Why the CA could not be loaded from the cluster.
#[derive(Debug, thiserror::Error)]
pub enum CaSecretError {
    #[error("could not {action} Secret {secret}: {source}")]
    Api {
        action: &'static str,
        secret: String,
        #[source]
        source: kube::Error,
    },

    #[error("Secret {secret} has no {key:?} (or it is not UTF-8 PEM); {hint}")]
    MissingKey {
        secret: String,
        key: &'static str,
        hint: &'static str,
    },

    #[error(
        "the root in Secret {secret} is unusable: {reason}; restore it, or delete the Secret to \
         create a new root (every workload then needs a new certificate)"
    )]
    BadRoot { secret: String, reason: String },

    #[error("Secret {secret}: {source}")]
    Ca {
        secret: String,
        #[source]
        source: CaError,
    },

    #[error(
        "Secret {secret} was created by another replica but is gone again each time it is read; \
         is something deleting it?"
    )]
    Vanished { secret: String },
}

// === impl CaSecrets ===

impl CaSecrets {
    /// The default names in `namespace`.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            root: DEFAULT_ROOT_SECRET.to_string(),
            plug_in: PLUG_IN_SECRET.to_string(),
        }
    }

    fn describe(&self, name: &str) -> String {
        format!("{}/{name}", self.namespace)
    }
}

/// The mesh CA from the cluster: the plug-in `cacerts` if present, else the self-signed root from
/// the root Secret, created if absent (safe when replicas race).
pub async fn load_ca(
    client: kube::Client,
    names: &CaSecrets,
    config: CaConfig,
) -> Result<(Ca, CaSource), CaSecretError> {
    let secrets: Api<Secret> = Api::namespaced(client, &names.namespace);

    let plug_in_name = names.describe(&names.plug_in);
    if let Some(secret) = get(&secrets, &names.plug_in, &plug_in_name).await? {
        let ca = plug_in(&secret, &plug_in_name, config)?;
        tracing::info!(secret = %plug_in_name, "the mesh CA is the plug-in intermediate");
        return Ok((ca, CaSource::PlugIn));
    }

    let root_name = names.describe(&names.root);
    for _ in 0..CREATE_ROUNDS {
        if let Some(secret) = get(&secrets, &names.root, &root_name).await? {
            let material = root_material(&secret, &root_name)?;
            let ca = from_root(&material, &root_name, config)?;
            tracing::info!(secret = %root_name, "loaded the mesh root");
            return Ok((ca, CaSource::Loaded));
        }
        let material = generate_root(&config.trust_domain).map_err(|source| CaSecretError::Ca {
            secret: root_name.clone(),
            source,
        })?;
        match secrets
            .create(&PostParams::default(), &root_secret(names, &material))
            .await
        {
            Ok(_) => {
                let ca = from_root(&material, &root_name, config)?;
                tracing::info!(secret = %root_name, "created the mesh root");
                return Ok((ca, CaSource::Created));
            }
            // Another replica created it first (by code: reasons differ between servers):
            // read theirs on the next round.
            Err(e) if classify(&e) == ApiFailure::Conflict => {
                tracing::info!(secret = %root_name, "another replica created the mesh root first");
            }
            Err(source) => {
                return Err(CaSecretError::Api {
                    action: "create",
                    secret: root_name,
                    source,
                });
            }
        }
    }
    Err(CaSecretError::Vanished { secret: root_name })
}

/// GET, with 404 as `None` and anything else but success an error.
async fn get(
    secrets: &Api<Secret>,
    name: &str,
    described: &str,
) -> Result<Option<Secret>, CaSecretError> {
    match secrets.get(name).await {
        Ok(secret) => Ok(Some(secret)),
        Err(e) if classify(&e) == ApiFailure::NotFound => Ok(None),
        Err(source) => Err(CaSecretError::Api {
            action: "read",
            secret: described.to_string(),
            source,
        }),
    }
}

fn plug_in(secret: &Secret, described: &str, config: CaConfig) -> Result<Ca, CaSecretError> {
    const HINT: &str =
        "Istio's plug-in layout has ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem";
    let key = |k| {
        value(secret, k).ok_or_else(|| CaSecretError::MissingKey {
            secret: described.to_string(),
            key: k,
            hint: HINT,
        })
    };
    let cert = key(CA_CERT_KEY)?;
    let private = key(CA_KEY_KEY)?;
    let root = key(ROOT_CERT_KEY)?;
    // Without a chain the intermediate must be signed by the root directly.
    let chain = value(secret, CERT_CHAIN_KEY).unwrap_or_default();
    Ca::plug_in(&cert, &private, &chain, &root, config).map_err(|source| CaSecretError::Ca {
        secret: described.to_string(),
        source,
    })
}

fn root_material(secret: &Secret, described: &str) -> Result<RootMaterial, CaSecretError> {
    const HINT: &str = "the root Secret holds ca-cert.pem and ca-key.pem";
    let key = |k| {
        value(secret, k).ok_or_else(|| CaSecretError::MissingKey {
            secret: described.to_string(),
            key: k,
            hint: HINT,
        })
    };
    Ok(RootMaterial {
        cert_pem: key(CA_CERT_KEY)?,
        key_pem: key(CA_KEY_KEY)?,
    })
}

fn from_root(
    material: &RootMaterial,
    described: &str,
    config: CaConfig,
) -> Result<Ca, CaSecretError> {
    Ca::from_root_material(material, config).map_err(|e| match e {
        CaError::BadRoot { reason } => CaSecretError::BadRoot {
            secret: described.to_string(),
            reason,
        },
        source => CaSecretError::Ca {
            secret: described.to_string(),
            source,
        },
    })
}

/// A key's text from `data`, or from `stringData` (which a real API server folds into `data`,
/// but a fake one may keep as written).
fn value(secret: &Secret, key: &str) -> Option<String> {
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok());
    from_data
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
        })
        .filter(|v| !v.trim().is_empty())
}

fn root_secret(names: &CaSecrets, material: &RootMaterial) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(names.root.clone()),
            namespace: Some(names.namespace.clone()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY.0.to_string(),
                MANAGED_BY.1.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some(ROOT_SECRET_TYPE.to_string()),
        data: Some(BTreeMap::from([
            (
                CA_CERT_KEY.to_string(),
                ByteString(material.cert_pem.clone().into_bytes()),
            ),
            (
                CA_KEY_KEY.to_string(),
                ByteString(material.key_pem.clone().into_bytes()),
            ),
        ])),
        ..Secret::default()
    }
}
