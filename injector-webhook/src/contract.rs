//! The names, paths and ports the injected pod shares with the proxy and the control plane. The
//! proxy reads these files and env variables, the control plane recognises a meshed pod by the
//! container name and publishes the root-certificate ConfigMap under this name: change one side,
//! change the other (docs/injection.md lists them for users).

/// The proxy container: a native sidecar (init container with `restartPolicy: Always`) or, in
/// the fallback, the first regular container. The control plane's "meshed" rule looks for it.
pub const PROXY_CONTAINER: &str = "sinew-proxy";
/// The init container that installs the interception rules (`sinew-proxy init`).
pub const INIT_CONTAINER: &str = "sinew-init";

/// The proxy's UID and GID: `sinew-proxy init` exempts its traffic from interception.
pub const PROXY_UID: i64 = 1337;

/// Namespace label that turns injection on.
pub const INJECTION_LABEL: (&str, &str) = ("sinew-injection", "enabled");
/// Pod label or annotation that opts a pod out with the value `"false"`.
pub const INJECT_KEY: &str = "sinew.dev/inject";
/// Pod label saying the pod is meshed (what peers' auto-mTLS decides on).
pub const MESHED_LABEL: (&str, &str) = ("security.sinew.dev/tlsMode", "sinew");
/// Pod annotation recording what was injected (JSON); its presence makes injection idempotent.
pub const STATUS_ANNOTATION: &str = "sinew.dev/status";

/// The projected service-account token the proxy presents to the CA.
pub const TOKEN_VOLUME: &str = "sinew-token";
pub const TOKEN_DIR: &str = "/var/run/sinew/token";
pub const TOKEN_PATH: &str = "token";
pub const TOKEN_FILE: &str = "/var/run/sinew/token/token";
pub const TOKEN_AUDIENCE: &str = "sinew-ca";
/// Short-lived: the kubelet rotates it at 80 % of its life, and the proxy re-reads the file on
/// every use.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// The mesh's roots, published by the control plane in every namespace.
pub const ROOT_CERT_VOLUME: &str = "sinew-root-cert";
pub const ROOT_CERT_CONFIG_MAP: &str = "sinew-root-cert";
pub const ROOT_CERT_KEY: &str = "root-cert.pem";
pub const ROOT_CERT_DIR: &str = "/var/run/sinew/root-cert";
pub const ROOT_CERT_FILE: &str = "/var/run/sinew/root-cert/root-cert.pem";

/// Where the proxy may write (its root filesystem is read-only).
pub const DATA_VOLUME: &str = "sinew-data";
pub const DATA_DIR: &str = "/var/lib/sinew";

/// The proxy's listeners (Istio's numbers).
pub const OUTBOUND_PORT: u16 = 15001;
pub const INBOUND_PORT: u16 = 15006;
/// Prometheus `/metrics` and the app-health prober `/app-health/<container>/<probe>`.
pub const METRICS_PORT: u16 = 15020;
/// `GET /healthz/ready`: the proxy has its certificate and first config.
pub const HEALTH_PORT: u16 = 15021;
pub const HEALTH_PATH: &str = "/healthz/ready";
pub const METRICS_PATH: &str = "/metrics";
/// Ports the proxy serves itself: a probe aimed at one is not rewritten.
pub const PROXY_PORTS: [u16; 6] = [
    15000,
    OUTBOUND_PORT,
    INBOUND_PORT,
    METRICS_PORT,
    HEALTH_PORT,
    15090,
];

/// How long the fallback's `postStart` hold (`sinew-proxy wait`) waits for the proxy to be
/// ready before the hook fails (the kubelet then kills the proxy container and restarts it). Written into the pod, so
/// the hold does not depend on the proxy image's own default.
pub const WAIT_TIMEOUT_SECONDS: u32 = 60;

/// Env of the proxy container.
pub const ENV_POD_NAME: &str = "SINEW_POD_NAME";
pub const ENV_POD_NAMESPACE: &str = "SINEW_POD_NAMESPACE";
pub const ENV_POD_IP: &str = "SINEW_POD_IP";
pub const ENV_SERVICE_ACCOUNT: &str = "SINEW_SERVICE_ACCOUNT";
pub const ENV_LOG: &str = "SINEW_LOG";
pub const ENV_OTLP_ENDPOINT: &str = "SINEW_OTLP_ENDPOINT";
pub const ENV_TRACE_SAMPLING: &str = "SINEW_TRACE_SAMPLING";
/// The bootstrap `ProxyConfig` as protobuf JSON.
pub const ENV_PROXY_CONFIG: &str = "SINEW_PROXY_CONFIG";
/// The app's original probes, keyed by their `/app-health/...` path.
pub const ENV_APP_PROBERS: &str = "SINEW_APP_PROBERS";
