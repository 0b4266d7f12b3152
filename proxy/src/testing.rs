//! Test support: a throwaway mesh CA issuing SPIFFE workload certificates.
//!
//! Compiled only for tests (`cfg(test)` or the `test-util` feature), never into the proxy binary.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

/// A self-signed root that signs leaf certificates.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// PEM files of one workload, as the proxy's config names them.
#[derive(Clone, Debug)]
pub struct WorkloadFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub bundle: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("invariant: no SANs");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test root"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("invariant: P-256 key generation");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("invariant: self-sign");
        Self { issuer }
    }

    pub fn root_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `identity` (a SPIFFE URI) valid now: (cert PEM, key PEM).
    pub fn leaf(&self, identity: &str) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("invariant: no SANs");
        params.subject_alt_names = vec![SanType::URI(
            identity.try_into().expect("test identity is IA5"),
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("invariant: P-256 key generation");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("invariant: sign");
        (cert.pem(), key.serialize_pem())
    }

    /// Signs a CSR (PEM) for `identity`, valid from now for `ttl`: what a CA does. Returns PEM.
    pub fn sign_csr(&self, csr_pem: &str, identity: &str, ttl: std::time::Duration) -> String {
        let mut csr =
            rcgen::CertificateSigningRequestParams::from_pem(csr_pem).expect("test CSR parses");
        csr.params.subject_alt_names = vec![SanType::URI(
            identity.try_into().expect("test identity is IA5"),
        )];
        let now = time_now();
        csr.params.not_before = now - time::Duration::minutes(1);
        csr.params.not_after = now + time::Duration::seconds(ttl.as_secs() as i64);
        csr.params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        csr.signed_by(&self.issuer).expect("invariant: sign").pem()
    }

    /// Writes `<dir>/<name>.crt`, `<name>.key` and `ca.crt` for `identity`.
    pub fn write_workload(&self, dir: &Path, name: &str, identity: &str) -> WorkloadFiles {
        let (cert, key) = self.leaf(identity);
        let files = WorkloadFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            bundle: dir.join("ca.crt"),
        };
        std::fs::write(&files.cert, cert).expect("write test cert");
        std::fs::write(&files.key, key).expect("write test key");
        std::fs::write(&files.bundle, self.root_pem()).expect("write test bundle");
        files
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// A fresh temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "sinew-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
