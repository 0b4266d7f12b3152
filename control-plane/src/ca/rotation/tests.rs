use super::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use sinew_proxy::testing::TempDir;

/// What a fake proxy holds: the bundle version and the root of its certificate.
type Held = (Option<String>, Option<String>);

/// Connected proxies by name.
#[derive(Default)]
struct FakeMesh(Mutex<BTreeMap<String, Held>>);

impl FakeMesh {
    fn connect(&self, name: &str) {
        self.0
            .lock()
            .unwrap()
            .insert(name.to_string(), (None, None));
    }
    fn ack(&self, name: &str, version: String) {
        self.0.lock().unwrap().get_mut(name).unwrap().0 = Some(version);
    }
    fn renewed(&self, name: &str, root: &str) {
        self.0.lock().unwrap().get_mut(name).unwrap().1 = Some(root.to_string());
    }
}

impl Mesh for FakeMesh {
    fn without_bundle(&self, version: &str) -> Vec<String> {
        let m = self.0.lock().unwrap();
        m.iter()
            .filter(|(_, (v, _))| v.as_deref() != Some(version))
            .map(|(n, _)| n.clone())
            .collect()
    }
    fn not_issued_under(&self, root: &str) -> Vec<String> {
        let m = self.0.lock().unwrap();
        m.iter()
            .filter(|(_, (_, r))| r.as_deref() != Some(root))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

struct Setup {
    dir: TempDir,
    ca: Arc<SharedCa>,
    bundle: watch::Receiver<Arc<TrustBundle>>,
    bundle_tx: watch::Sender<Arc<TrustBundle>>,
    mesh: Arc<FakeMesh>,
    reissued: Arc<AtomicUsize>,
}

impl Setup {
    /// A control plane's state directory with a self-signed root, and a rotation requested.
    fn new(timeout: Duration) -> Setup {
        let dir = TempDir::new("rotation");
        let store = FileRootStore::new(dir.path());
        let ca = SharedCa::new(Ca::self_signed(&store, CaConfig::default()).unwrap());
        let first = TrustBundle::of(&ca.current());
        std::fs::write(dir.path().join(crate::app::TRUST_BUNDLE_FILE), first.pem()).unwrap();
        request(dir.path(), None, CaConfig::default(), timeout, false).unwrap();
        let (bundle_tx, bundle) = watch::channel(Arc::new(first));
        Setup {
            dir,
            ca,
            bundle,
            bundle_tx,
            mesh: Arc::default(),
            reissued: Arc::default(),
        }
    }

    /// A rotation as a (re)started control plane builds it: the CA loaded from the store.
    fn rotation(&mut self, restarted: bool) -> Rotation {
        if restarted {
            let store = FileRootStore::new(self.dir.path());
            self.ca = SharedCa::new(Ca::self_signed(&store, CaConfig::default()).unwrap());
        }
        let reissued = self.reissued.clone();
        Rotation::new(
            self.dir.path().to_path_buf(),
            ActiveCa::SelfSigned,
            self.ca.clone(),
            self.bundle_tx.clone(),
            self.mesh.clone(),
            Box::new(move || {
                reissued.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }),
        )
    }

    fn request(&self) -> Request {
        let text =
            std::fs::read_to_string(self.dir.path().join(ROTATION_DIR).join(REQUEST_FILE)).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn bundle(&self) -> Arc<TrustBundle> {
        self.bundle.borrow().clone()
    }

    fn bundle_file_sha256s(&self) -> Vec<String> {
        let pem =
            std::fs::read_to_string(self.dir.path().join(crate::app::TRUST_BUNDLE_FILE)).unwrap();
        crate::ca::pem_sha256s(&pem)
    }

    /// The hex SHA-256 of the next root that `request` generated.
    fn next_root_sha256(&self) -> String {
        let pem = std::fs::read_to_string(self.dir.path().join(ROTATION_DIR).join(NEXT_ROOT_CERT))
            .unwrap();
        crate::ca::pem_sha256s(&pem).remove(0)
    }
}

fn phase(status: &Arc<Mutex<RotationStatus>>) -> Phase {
    status.lock().unwrap().phase
}

#[tokio::test(start_paused = true)]
async fn phases_advance_only_when_every_connected_proxy_has_the_bundle_and_then_the_new_root() {
    let mut s = Setup::new(Duration::from_secs(600));
    let old = s.ca.current().signing_root_sha256().to_string();
    let new = s.next_root_sha256();
    assert_ne!(old, new);
    s.mesh.connect("shop/a");
    s.mesh.connect("shop/b");
    let rotation = s.rotation(false);
    let status = rotation.status();
    let request = s.request();
    let run = tokio::spawn(async move { rotation.run(&request).await });

    // Trust: both roots, still signing under the old one, waiting for both proxies.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(phase(&status), Phase::Trust);
    let both = s.bundle();
    assert_eq!(both.root_sha256s(), [old.clone(), new.clone()]);
    assert_eq!(both.signing_root_sha256, old);
    assert_eq!(s.bundle_file_sha256s(), [old.clone(), new.clone()]);
    assert_eq!(s.ca.current().signing_root_sha256(), old);
    assert_eq!(status.lock().unwrap().pending, ["shop/a", "shop/b"]);

    s.mesh.ack("shop/a", both.version());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        phase(&status),
        Phase::Trust,
        "b does not hold the bundle yet"
    );
    assert_eq!(status.lock().unwrap().pending, ["shop/b"]);
    assert_eq!(s.reissued.load(Ordering::SeqCst), 0);

    // Issue: signing under the new root, the serving certificate re-issued, the bundle names
    // the new signing root and still trusts the old.
    s.mesh.ack("shop/b", both.version());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(phase(&status), Phase::Issue);
    assert_eq!(s.ca.current().signing_root_sha256(), new);
    assert_eq!(s.reissued.load(Ordering::SeqCst), 1);
    let issuing = s.bundle();
    assert_eq!(issuing.root_sha256s(), [old.clone(), new.clone()]);
    assert_eq!(issuing.signing_root_sha256, new);
    assert_ne!(issuing.version(), both.version(), "pushed again");

    s.mesh.renewed("shop/a", &new);
    s.mesh.renewed("shop/b", &old);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        phase(&status),
        Phase::Issue,
        "b's certificate is under the old root"
    );
    assert_eq!(status.lock().unwrap().pending, ["shop/b"]);
    assert!(s.bundle().root_sha256s().contains(&old));

    // Drop: the new root alone, stored; the old one archived.
    s.mesh.renewed("shop/b", &new);
    run.await.unwrap().unwrap();
    assert_eq!(phase(&status), Phase::Done);
    assert_eq!(s.bundle().root_sha256s(), [new.as_str()]);
    assert_eq!(s.bundle_file_sha256s(), [new.as_str()]);
    let stored = FileRootStore::new(s.dir.path()).load().unwrap().unwrap();
    assert_eq!(crate::ca::pem_sha256s(&stored.cert_pem), [new.as_str()]);
    let archived: Vec<_> = std::fs::read_dir(s.dir.path().join(ARCHIVE_DIR))
        .unwrap()
        .map(|e| {
            FileRootStore::new(e.unwrap().path())
                .load()
                .unwrap()
                .unwrap()
        })
        .collect();
    assert_eq!(archived.len(), 1);
    assert_eq!(crate::ca::pem_sha256s(&archived[0].cert_pem), [old]);
    assert!(!s.dir.path().join(ROTATION_DIR).exists());
}

#[tokio::test(start_paused = true)]
async fn a_proxy_that_never_takes_the_bundle_stops_the_rotation_in_the_trust_phase() {
    let mut s = Setup::new(Duration::from_secs(30));
    let old = s.ca.current().signing_root_sha256().to_string();
    s.mesh.connect("shop/stuck");
    let rotation = s.rotation(false);
    let err = rotation.run(&s.request()).await.unwrap_err();
    match &err {
        RotationError::Timeout { phase, pending, .. } => {
            assert_eq!(*phase, Phase::Trust);
            assert_eq!(pending, &["shop/stuck"]);
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("--resume"), "{err}");
    // Safe: still signing under the old root, both trusted, the old root still stored.
    assert_eq!(s.ca.current().signing_root_sha256(), old);
    assert_eq!(s.bundle().root_sha256s().len(), 2);
    let stored = FileRootStore::new(s.dir.path()).load().unwrap().unwrap();
    assert_eq!(crate::ca::pem_sha256s(&stored.cert_pem), [old]);
}

#[tokio::test(start_paused = true)]
async fn a_stop_in_the_issue_phase_keeps_the_old_root_trusted_and_a_restart_resumes_there() {
    let mut s = Setup::new(Duration::from_secs(30));
    let old = s.ca.current().signing_root_sha256().to_string();
    let new = s.next_root_sha256();
    s.mesh.connect("shop/a");
    let rotation = s.rotation(false);
    let request = s.request();
    let status = rotation.status();
    // `a` takes the bundle when it is pushed, but never renews.
    let mesh = s.mesh.clone();
    let mut bundles = s.bundle.clone();
    let acker = tokio::spawn(async move {
        while bundles.changed().await.is_ok() {
            let version = bundles.borrow().version();
            mesh.ack("shop/a", version);
        }
    });
    let err = rotation.run(&request).await.unwrap_err();
    acker.abort();
    assert!(
        matches!(
            err,
            RotationError::Timeout {
                phase: Phase::Issue,
                ..
            }
        ),
        "{err}"
    );
    assert!(status.lock().unwrap().pending == ["shop/a"]);
    assert_eq!(s.bundle().root_sha256s(), [old.clone(), new.clone()]);
    assert_eq!(s.bundle_file_sha256s(), [old.clone(), new.clone()]);

    // The control plane restarts: the old root is what is stored, so that is what it loads;
    // the rotation resumes in the issue phase (nobody has acked anything on the new streams, so
    // a resume in the trust phase would time out again).
    drop(rotation);
    let restarted = s.rotation(true);
    assert_eq!(s.ca.current().signing_root_sha256(), old);
    s.mesh.connect("shop/a");
    s.mesh.renewed("shop/a", &new);
    restarted.run(&request).await.unwrap();
    assert_eq!(s.ca.current().signing_root_sha256(), new);
    assert_eq!(s.bundle().root_sha256s(), [new.as_str()]);
    let stored = FileRootStore::new(s.dir.path()).load().unwrap().unwrap();
    assert_eq!(crate::ca::pem_sha256s(&stored.cert_pem), [new]);
}

#[tokio::test(start_paused = true)]
async fn a_second_request_is_refused_while_one_is_under_way_and_resume_needs_one() {
    let s = Setup::new(Duration::from_secs(30));
    let again = request(
        s.dir.path(),
        None,
        CaConfig::default(),
        Duration::from_secs(30),
        false,
    )
    .unwrap_err();
    assert!(again.to_string().contains("already under way"), "{again}");
    let first = s.request();
    request(
        s.dir.path(),
        None,
        CaConfig::default(),
        Duration::from_secs(30),
        true,
    )
    .unwrap();
    assert_ne!(s.request().nonce, first.nonce, "a resume is a new request");

    let idle = TempDir::new("rotation-idle");
    let err = request(
        idle.path(),
        None,
        CaConfig::default(),
        Duration::from_secs(30),
        true,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("no root rotation under way"),
        "{err}"
    );
}

/// Writes plug-in material in Istio's layout (the chain up to and including the root).
fn write_plug_in(dir: &Path, m: &crate::ca::tests::PlugIn) {
    std::fs::create_dir_all(dir).unwrap();
    let chain = format!("{}{}", m.int_pem, m.root_pem);
    for (name, text) in PLUGIN_FILES
        .iter()
        .zip([&m.int_pem, &m.int_key_pem, &chain, &m.root_pem])
    {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_plug_in_ca_rotates_to_the_next_plug_in_and_its_directory_ends_holding_it() {
    let tmp = TempDir::new("rotation-plug-in");
    let (a, b) = (
        crate::ca::tests::plug_in_material(),
        crate::ca::tests::plug_in_material(),
    );
    let active = tmp.path().join("plugin-ca");
    let next_src = tmp.path().join("next");
    let state = tmp.path().join("state");
    write_plug_in(&active, &a);
    write_plug_in(&next_src, &b);
    std::fs::create_dir_all(&state).unwrap();
    let load = |dir: &Path| {
        let f = |name: &str| read(&dir.join(name));
        Ca::plug_in(
            &f("ca-cert.pem"),
            &f("ca-key.pem"),
            &f("cert-chain.pem"),
            &f("root-cert.pem"),
            CaConfig::default(),
        )
        .unwrap()
    };
    let ca = SharedCa::new(load(&active));
    let first = TrustBundle::of(&ca.current());
    std::fs::write(state.join(crate::app::TRUST_BUNDLE_FILE), first.pem()).unwrap();
    request(
        &state,
        Some(&next_src),
        CaConfig::default(),
        Duration::from_secs(600),
        false,
    )
    .unwrap();
    let (old, new) = (
        crate::ca::pem_sha256s(&a.root_pem).remove(0),
        crate::ca::pem_sha256s(&b.root_pem).remove(0),
    );
    assert_eq!(ca.current().signing_root_sha256(), old);
    let (bundle_tx, bundle) = watch::channel(Arc::new(first));
    let mesh = Arc::new(FakeMesh::default());
    mesh.connect("shop/a");
    let rotation = Rotation::new(
        state.clone(),
        ActiveCa::PlugIn(active.clone()),
        ca.clone(),
        bundle_tx,
        mesh.clone(),
        Box::new(|| Ok(())),
    );
    let req: Request =
        serde_json::from_str(&read(&state.join(ROTATION_DIR).join(REQUEST_FILE))).unwrap();
    let run = tokio::spawn(async move { rotation.run(&req).await });

    tokio::time::sleep(Duration::from_secs(2)).await;
    let both = bundle.borrow().clone();
    assert_eq!(both.root_sha256s(), [old.clone(), new.clone()]);
    mesh.ack("shop/a", both.version());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ca.current().signing_root_sha256(),
        new,
        "issuing under the next plug-in"
    );
    mesh.renewed("shop/a", &new);
    run.await.unwrap().unwrap();

    assert_eq!(bundle.borrow().root_sha256s(), [new.as_str()]);
    // The --plugin-ca directory now holds the next material (a restart loads it), the old is
    // archived.
    assert_eq!(read(&active.join("root-cert.pem")), b.root_pem);
    assert_eq!(read(&active.join("ca-cert.pem")), b.int_pem);
    assert_eq!(load(&active).signing_root_sha256(), new);
    let archived: Vec<String> = std::fs::read_dir(state.join(ARCHIVE_DIR))
        .unwrap()
        .map(|e| read(&e.unwrap().path().join("root-cert.pem")))
        .collect();
    assert_eq!(archived, [a.root_pem.as_str()]);
}
