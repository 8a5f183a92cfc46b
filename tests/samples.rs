//! The sample topology in config/samples is accepted by the real API server as it is written.

mod common;

use std::fs;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn every_sample_manifest_passes_server_side_validation() {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "samples").await;
    let mut checked = 0;
    let mut dirs = vec![repo_root().join("config/samples")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = fs::read_to_string(&path).unwrap();
            if text.contains("kind: Namespace") {
                continue;
            }
            // Samples live in namespace shop; each test run validates them in its own namespace.
            let manifest = text.replace("namespace: shop", &format!("namespace: {}", ns.name));
            let (ok, out) = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&manifest));
            assert!(
                ok,
                "{} is refused by the API server:\n{out}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 4,
        "expected the Topic, Subscription and EventSchema samples, checked {checked} files"
    );
}
