use std::future::Future;

use super::*;
use crate::registry::testutil::{DEMO_APP, DEMO_NS, TempDir, key};

// === the watcher, on real files ===
//
// Real files need real time: these use short intervals and wait for outcomes with a bound,
// never for a fixed time.

/// Fast enough that a test takes milliseconds, slow enough to be a debounce.
const FAST: Debounce = Debounce {
    poll_interval: Duration::from_millis(10),
    quiet: Duration::from_millis(20),
    max_delay: Duration::from_millis(200),
};

const BOUND: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(BOUND, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {BOUND:?} waiting for {what}"),
    }
}

async fn generation(rx: &mut watch::Receiver<Arc<Snapshot>>, at_least: u64) -> Arc<Snapshot> {
    within(&format!("generation {at_least}"), async {
        loop {
            let snap = rx.borrow_and_update().clone();
            if snap.generation() >= at_least {
                return snap;
            }
            rx.changed().await.expect("registry task alive");
        }
    })
    .await
}

/// Polls a condition that has no notification (an error recorded without publishing).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

fn demo_dir(name: &str) -> TempDir {
    let dir = TempDir::new(name);
    dir.write("namespaces.yaml", DEMO_NS);
    dir.write("app.yaml", DEMO_APP);
    dir
}

const EXTRA_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: extra, namespace: shop}\nspec: {containers: [{name: app}]}\n";

#[tokio::test]
async fn spawn_fails_loudly_on_invalid_first_load() {
    let dir = TempDir::new("watch-first-load");
    dir.write("bad.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {}\n");
    let err = FileRegistry::spawn(dir.path().to_path_buf(), None, FAST)
        .await
        .expect_err("invalid manifests must not start");
    assert_eq!(
        err.problems()[0].to_string(),
        format!(
            "{}: document 1 (line 1): Pod: metadata.name is required",
            dir.path().join("bad.yaml").display()
        )
    );

    let missing = dir.path().join("no-such-dir");
    let err = FileRegistry::spawn(missing, None, FAST)
        .await
        .expect_err("missing directory must not start");
    assert!(matches!(err, RegistryError::ReadDir { .. }), "{err}");
}

#[tokio::test]
async fn file_change_publishes_new_generation() {
    let dir = demo_dir("watch-change");
    let (mut rx, handle) = FileRegistry::spawn(dir.path().to_path_buf(), None, FAST)
        .await
        .expect("valid");
    assert_eq!(rx.borrow().generation(), 1);
    assert_eq!(handle.generation(), 1);
    assert!(rx.borrow().pod("shop", "extra").is_none());

    dir.write("extra.yaml", EXTRA_POD);
    let snap = generation(&mut rx, 2).await;
    assert_eq!(snap.generation(), 2);
    assert!(snap.pod("shop", "extra").expect("new pod").meshed);
    assert_eq!(handle.generation(), 2);
    assert_eq!(handle.last_error(), None);

    // A rewrite of the same size within the same second is still seen (content hash).
    dir.write("extra.yaml", &EXTRA_POD.replace("extra", "extr2"));
    let snap = generation(&mut rx, 3).await;
    assert!(snap.pod("shop", "extr2").is_some());
    assert!(snap.pod("shop", "extra").is_none());

    std::fs::remove_file(dir.path().join("extra.yaml")).expect("remove");
    let snap = generation(&mut rx, 4).await;
    assert!(
        snap.pod("shop", "extr2").is_none(),
        "deleting a file removes its objects"
    );
}

#[tokio::test]
async fn invalid_edit_keeps_last_good_snapshot_then_recovers() {
    let dir = demo_dir("watch-invalid");
    let (mut rx, handle) = FileRegistry::spawn(dir.path().to_path_buf(), None, FAST)
        .await
        .expect("valid");
    let good = rx.borrow().clone();
    // The monitoring server sees the same status (server::SourceMonitor wraps the handle).
    let status = handle.clone();

    let path = dir.write(
        "extra.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: extra, namespace: shop\n",
    );
    eventually("the error to be recorded", || handle.last_error().is_some()).await;
    let error = handle.last_error().unwrap_or_default();
    assert!(
        error.starts_with(&format!("{}: document 1 (line ", path.display())),
        "{error}"
    );
    assert!(error.contains("invalid YAML"), "{error}");
    assert_eq!(status.last_error(), Some(error));
    assert_eq!(handle.generation(), 1, "nothing published");
    assert_eq!(status.generation(), 1);
    assert!(
        Arc::ptr_eq(&rx.borrow(), &good),
        "the last good snapshot stays"
    );

    dir.write("extra.yaml", EXTRA_POD);
    let snap = generation(&mut rx, 2).await;
    assert!(snap.pod("shop", "extra").is_some());
    assert_eq!(handle.last_error(), None, "recovered");
    assert_eq!((status.last_error(), status.generation()), (None, 2));
}

#[tokio::test]
async fn unchanged_content_publishes_nothing() {
    let dir = demo_dir("watch-touch");
    let (rx, handle) = FileRegistry::spawn(dir.path().to_path_buf(), None, FAST)
        .await
        .expect("valid");
    // Reordering documents across files changes origins, so rewrite byte-identical content: the
    // mtime changes, a reload runs, and nothing is published.
    let before = handle.reloads();
    dir.write("app.yaml", DEMO_APP);
    eventually("a reload", || handle.reloads() > before).await;
    assert_eq!(handle.generation(), 1);
    assert_eq!(rx.borrow().generation(), 1);
}

#[tokio::test]
async fn assignments_file_change_publishes_new_generation() {
    let dir = demo_dir("watch-assignments");
    // Inside the manifest directory, on purpose: it must not be read as a manifest.
    let file = dir.path().join("assignments.yaml");
    let (mut rx, handle) = FileRegistry::spawn(dir.path().to_path_buf(), Some(file.clone()), FAST)
        .await
        .expect("a missing assignments file is fine");
    assert_eq!(
        rx.borrow().pod("shop", "reviews-0").and_then(|p| p.ip),
        None
    );

    let mut a = Assignments::default();
    a.pod_ips
        .insert(key("shop", "reviews-0"), "198.18.0.10".parse().expect("ip"));
    a.service_vips
        .insert(key("shop", "reviews"), "198.19.0.1".parse().expect("ip"));
    a.write_file(&file).expect("write assignments");
    let snap = generation(&mut rx, 2).await;
    assert_eq!(
        snap.pod("shop", "reviews-0").and_then(|p| p.ip),
        Some("198.18.0.10".parse().expect("ip"))
    );
    assert_eq!(
        snap.service_resources("cluster.local")
            .iter()
            .find(|r| r.name == "reviews" && r.port == 9080)
            .map(|r| r.service.addresses.clone()),
        Some(vec!["198.19.0.1:9080".to_string()])
    );

    // A broken assignments file keeps the last good addresses and says why.
    std::fs::write(&file, "pods: [{namespace: shop}]\n").expect("write");
    eventually("the error to be recorded", || handle.last_error().is_some()).await;
    let error = handle.last_error().unwrap_or_default();
    assert!(error.contains("invalid assignments file"), "{error}");
    assert_eq!(handle.generation(), 2);
}

#[tokio::test]
async fn set_assignments_overrides_the_file_per_entry() {
    let dir = demo_dir("watch-set");
    let file = dir.path().join("assignments.yaml");
    let mut from_file = Assignments::default();
    from_file
        .pod_ips
        .insert(key("shop", "reviews-0"), "198.18.0.10".parse().expect("ip"));
    from_file
        .pod_ips
        .insert(key("shop", "reviews-1"), "198.18.0.11".parse().expect("ip"));
    from_file.write_file(&file).expect("write");
    let (mut rx, handle) = FileRegistry::spawn(dir.path().to_path_buf(), Some(file), FAST)
        .await
        .expect("valid");
    assert_eq!(
        rx.borrow().pod("shop", "reviews-1").and_then(|p| p.ip),
        Some("198.18.0.11".parse().expect("ip")),
        "the file is read at start"
    );

    let mut in_process = Assignments::default();
    in_process
        .pod_ips
        .insert(key("shop", "reviews-1"), "198.18.0.21".parse().expect("ip"));
    handle.set_assignments(in_process);
    let snap = generation(&mut rx, 2).await;
    assert_eq!(
        snap.pod("shop", "reviews-0").and_then(|p| p.ip),
        Some("198.18.0.10".parse().expect("ip"))
    );
    assert_eq!(
        snap.pod("shop", "reviews-1").and_then(|p| p.ip),
        Some("198.18.0.21".parse().expect("ip"))
    );
}

#[tokio::test]
async fn task_stops_when_every_receiver_is_dropped() {
    let dir = demo_dir("watch-stop");
    let (rx, handle) = FileRegistry::spawn(dir.path().to_path_buf(), None, FAST)
        .await
        .expect("valid");
    assert_eq!(
        Arc::strong_count(&handle.shared),
        2,
        "the task holds the status"
    );
    drop(rx);
    eventually("the task to end", || Arc::strong_count(&handle.shared) == 1).await;
}
