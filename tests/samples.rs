//! The sample topology in config/samples: every manifest is accepted by the real API server as
//! written, and the whole topology, applied as `make demo` applies it, becomes Ready.

mod common;

use std::fs;

use common::*;
use switchyard::registry::Registry;

/// A sample manifest moved from namespace `shop` into the test's namespace.
fn into_namespace(text: &str, namespace: &str) -> String {
    text.replace("namespace: shop", &format!("namespace: {namespace}"))
}

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
            if text.contains("kind: Namespace") || text.contains("kind: Kustomization") {
                continue;
            }
            let manifest = into_namespace(&text, &ns.name);
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
        checked >= 7,
        "expected the Topic, Subscription, DeadLetterPolicy and EventSchema samples, checked {checked} files"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sample_topology_becomes_ready() {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "samples-ready").await;
    let _operator = Operator::start(&client, &ns.name, &nats_url());
    let samples = repo_root().join("config/samples");

    // order.placed v1 first, as `make demo` does, so the registry shows the step to v2.
    let v1 = fs::read_to_string(samples.join("schemas/order-placed-v1.yaml")).unwrap();
    let (ok, out) = kubectl(
        &["apply", "--server-side", "-f", "-"],
        Some(&into_namespace(&v1, &ns.name)),
    );
    assert!(ok, "{out}");
    let (ok, out) = kubectl(
        &[
            "wait",
            "-n",
            &ns.name,
            "--for=jsonpath={.status.latestVersion}=1",
            "eventschema/order-placed",
            "--timeout=60s",
        ],
        None,
    );
    assert!(ok, "order.placed v1 was not registered: {out}");

    // The kustomization, minus its Namespace, in the test's namespace.
    let (ok, rendered) = kubectl(&["kustomize", samples.to_str().unwrap()], None);
    assert!(ok, "kubectl kustomize config/samples: {rendered}");
    let topology: Vec<&str> = rendered
        .split("\n---\n")
        .filter(|doc| !doc.contains("kind: Namespace"))
        .collect();
    assert_eq!(
        topology.len(),
        10,
        "1 DeadLetterPolicy, 3 EventSchemas, 3 Topics, 3 Subscriptions"
    );
    let (ok, out) = kubectl(
        &["apply", "--server-side", "-f", "-"],
        Some(&into_namespace(&topology.join("\n---\n"), &ns.name)),
    );
    assert!(ok, "{out}");

    let (ok, out) = kubectl(
        &[
            "wait",
            "-n",
            &ns.name,
            "--for=condition=Ready",
            "topic,subscription,deadletterpolicy,eventschema",
            "--all",
            "--timeout=90s",
        ],
        None,
    );
    let (_, state) = kubectl(&["get", "switchyard", "-n", &ns.name, "-o", "wide"], None);
    assert!(ok, "not every sample became Ready: {out}\n{state}");

    // `kubectl get switchyard` lists all ten, each Ready.
    let listed: Vec<&str> = state.lines().filter(|l| l.contains("/")).collect();
    for name in [
        "topic.switchyard.dev/users",
        "topic.switchyard.dev/orders",
        "topic.switchyard.dev/payments",
        "subscription.switchyard.dev/billing",
        "subscription.switchyard.dev/payment-settlement",
        "subscription.switchyard.dev/welcome-mail",
        "deadletterpolicy.switchyard.dev/shop-failures",
        "eventschema.switchyard.dev/user-created",
        "eventschema.switchyard.dev/order-placed",
        "eventschema.switchyard.dev/payment-received",
    ] {
        assert!(
            listed
                .iter()
                .any(|l| l.starts_with(&format!("{name} ")) && l.contains("True")),
            "{name} is not listed as Ready:\n{state}"
        );
    }

    // The registry holds both versions of order.placed; the Subscriptions are bound to the
    // schemas their Topics name.
    let registry = Registry::open(&broker(&nats_url()).await).await.unwrap();
    let holding = registry
        .holding(&ns.name, "order.placed", false)
        .await
        .unwrap();
    let (latest, _) = holding.latest.expect("order.placed is registered");
    assert_eq!((latest.record.version, latest.versions), (2, vec![1, 2]));
    let (ok, bound) = kubectl(
        &[
            "get",
            "subscription",
            "-n",
            &ns.name,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.schema.eventType} v{.status.schema.version};{end}",
        ],
        None,
    );
    assert!(ok, "{bound}");
    for expected in [
        "billing=order.placed v2;",
        "payment-settlement=payment.received v1;",
        "welcome-mail=user.created v1;",
    ] {
        assert!(bound.contains(expected), "{expected} not in {bound}");
    }
}
