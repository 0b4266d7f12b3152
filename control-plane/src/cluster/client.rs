//! Building the `kube::Client`: the one place that knows how a kubeconfig file or the in-cluster
//! service account becomes a client.

use std::path::PathBuf;

use kube::config::{Config, KubeConfigOptions, Kubeconfig, KubeconfigError};

use super::DEFAULT_NAMESPACE;

/// Where the API server and our credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterAccess {
    /// `--kubeconfig PATH`: its current context (local runs, tests against a fake API server).
    Kubeconfig(PathBuf),
    /// Running in a pod: `KUBERNETES_SERVICE_HOST`/`_PORT`, the mounted service-account token
    /// and CA.
    InCluster,
}

/// Validated Kubernetes flags of `sinew-control-plane serve`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeOptions {
    pub access: ClusterAccess,
    /// Where the CA Secret and the leader Lease live ([`DEFAULT_NAMESPACE`] unless set).
    pub namespace: String,
}

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "--kubeconfig {}: {source}; pass a readable kubeconfig whose current context names a \
         cluster and a user",
        path.display()
    )]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: KubeconfigError,
    },

    #[error(
        "in-cluster config: {0}; run inside a pod with a mounted service-account token, or pass \
         --kubeconfig"
    )]
    InCluster(#[source] kube::config::InClusterError),

    #[error("could not build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),

    #[error(
        "invalid namespace {0:?}: a namespace is a DNS-1123 label (lowercase letters, digits and \
         '-', at most 63)"
    )]
    Namespace(String),
}

// === impl KubeOptions ===

impl KubeOptions {
    /// `kubeconfig` from `--kubeconfig` (None: in-cluster), `namespace` from its flag (None:
    /// [`DEFAULT_NAMESPACE`]).
    pub fn new(
        kubeconfig: Option<PathBuf>,
        namespace: Option<String>,
    ) -> Result<Self, ConnectError> {
        let namespace = namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        if !sinew_proto::names::is_dns1123_label(&namespace) {
            return Err(ConnectError::Namespace(namespace));
        }
        Ok(Self {
            access: kubeconfig.map_or(ClusterAccess::InCluster, ClusterAccess::Kubeconfig),
            namespace,
        })
    }
}

/// A client for `access`. Does not contact the API server: the first request does.
pub async fn connect(access: &ClusterAccess) -> Result<kube::Client, ConnectError> {
    let config = match access {
        ClusterAccess::Kubeconfig(path) => {
            let err = |source| ConnectError::Kubeconfig {
                path: path.clone(),
                source,
            };
            let kubeconfig = Kubeconfig::read_from(path).map_err(err)?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(err)?
        }
        ClusterAccess::InCluster => Config::incluster().map_err(ConnectError::InCluster)?,
    };
    kube::Client::try_from(config).map_err(ConnectError::Client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_flags_the_options_are_in_cluster_in_sinew_system() {
        let o = KubeOptions::new(None, None).unwrap();
        assert_eq!(o.access, ClusterAccess::InCluster);
        assert_eq!(o.namespace, "sinew-system");
    }

    #[test]
    fn a_namespace_that_is_not_a_dns_label_is_refused() {
        let err = KubeOptions::new(None, Some("Sinew_System".into())).unwrap_err();
        assert!(
            matches!(err, ConnectError::Namespace(ref n) if n == "Sinew_System"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_kubeconfig_is_read_from_the_path_given() {
        let dir = std::env::temp_dir().join(format!("sinew-kubeconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{name: fake, cluster: {server: 'http://127.0.0.1:1'}}]\n\
             users: [{name: fake, user: {token: t0ken}}]\n\
             contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: shop}}]\n",
        )
        .unwrap();
        let client = connect(&ClusterAccess::Kubeconfig(path.clone())).await;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(client.unwrap().default_namespace(), "shop");
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_names_the_path() {
        let path = PathBuf::from("/nonexistent/sinew/kubeconfig");
        let Err(err) = connect(&ClusterAccess::Kubeconfig(path)).await else {
            panic!("a missing kubeconfig gave a client");
        };
        assert!(matches!(err, ConnectError::Kubeconfig { .. }), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/sinew/kubeconfig"),
            "{err}"
        );
    }
}
