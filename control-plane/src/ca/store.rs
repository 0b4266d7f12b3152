//! Where the mesh root lives between restarts.
//!
//! [`RootStore`] is the seam: [`FileRootStore`] serves local mode, and a Kubernetes Secret store
//! will implement the same trait. A store only persists PEM text; [`Ca`](super::Ca) validates
//! whatever it loads.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::CaError;

pub const ROOT_CERT_FILE: &str = "root-cert.pem";
pub const ROOT_KEY_FILE: &str = "root-key.pem";

/// Persistence for the self-signed root.
pub trait RootStore: Send + Sync {
    /// The stored root, or `None` when nothing has been stored yet.
    fn load(&self) -> Result<Option<RootMaterial>, CaError>;
    /// Saves the root so the next start finds it.
    fn store(&self, material: &RootMaterial) -> Result<(), CaError>;
    /// Where the root lives, for log lines and errors.
    fn describe(&self) -> String {
        "the root store".to_string()
    }
}

/// A root certificate and its PKCS#8 private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct RootMaterial {
    pub cert_pem: String,
    pub key_pem: String,
}

/// `root-cert.pem` and `root-key.pem` in one directory; the key is written `0600` in a `0700`
/// directory, each file by write-then-rename so a crash never leaves half a PEM.
#[derive(Clone, Debug)]
pub struct FileRootStore {
    dir: PathBuf,
    cert_name: &'static str,
    key_name: &'static str,
}

// === impl RootMaterial ===

impl std::fmt::Debug for RootMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootMaterial")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

// === impl FileRootStore ===

impl FileRootStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_names(dir, ROOT_CERT_FILE, ROOT_KEY_FILE)
    }

    /// The same store under other file names (a root rotation's next root).
    pub fn with_names(
        dir: impl Into<PathBuf>,
        cert_name: &'static str,
        key_name: &'static str,
    ) -> Self {
        Self {
            dir: dir.into(),
            cert_name,
            key_name,
        }
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(self.cert_name)
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join(self.key_name)
    }
}

impl RootStore for FileRootStore {
    fn load(&self) -> Result<Option<RootMaterial>, CaError> {
        let (cert_path, key_path) = (self.cert_path(), self.key_path());
        let cert = read_if_exists(&cert_path)?;
        let key = read_if_exists(&key_path)?;
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert_pem), Some(key_pem)) => {
                warn_if_key_readable_by_others(&key_path);
                Ok(Some(RootMaterial { cert_pem, key_pem }))
            }
            // Creating a fresh root here would silently split the mesh in two trust domains, so
            // half a root is an operator decision.
            (Some(_), None) => Err(CaError::Store(format!(
                "found {} but not {}; restore the key, or remove the certificate to create a new \
                 root",
                cert_path.display(),
                key_path.display()
            ))),
            (None, Some(_)) => Err(CaError::Store(format!(
                "found {} but not {}; restore the certificate, or remove the key to create a new \
                 root",
                key_path.display(),
                cert_path.display()
            ))),
        }
    }

    fn store(&self, material: &RootMaterial) -> Result<(), CaError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| CaError::StoreIo {
                action: "create directory",
                path: self.dir.clone(),
                source,
            })?;
        // Key first: a crash between the two leaves "key without cert", which `load` reports
        // instead of silently minting a second root.
        write_atomically(&self.key_path(), material.key_pem.as_bytes(), 0o600)?;
        write_atomically(&self.cert_path(), material.cert_pem.as_bytes(), 0o644)
    }

    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }
}

pub(super) fn read_if_exists(path: &Path) -> Result<Option<String>, CaError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CaError::StoreIo {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

pub(super) fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp = path.with_extension("pem.tmp");
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| CaError::StoreIo {
            action,
            path,
            source,
        }
    };
    // A leftover temp file from a crash may have looser permissions; start from nothing.
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    file.write_all(contents).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("sync", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))
}

fn warn_if_key_readable_by_others(path: &Path) {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
            "the mesh root key is readable by other users; run chmod 600 on it"
        );
    }
}
