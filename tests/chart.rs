//! The Helm chart against the real cluster: install, CRD upgrades, and that its RBAC lets the
//! operator do its work and nothing more. Every release has a name unique to the run and lives
//! in a throwaway namespace; it is uninstalled, and the cluster-scoped objects it made deleted,
//! also when a test fails.
//!
//! The chart's CRDs are those every other test installs: installing them changes only their
//! labels and annotations, and uninstalling keeps them. The upgrade test works on a copy of the
//! chart whose CRD is renamed into a throwaway group, so the shared CRDs are never changed.

mod chart_support;
mod common;

use std::{path::Path, time::Duration};

use chart_support::*;
use common::*;
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        authentication::v1::TokenRequest,
        authorization::v1::{ResourceAttributes, SelfSubjectAccessReview},
        core::v1::{Service, ServiceAccount},
        policy::v1::PodDisruptionBudget,
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{Api, Client, ResourceExt, api::PostParams};
use serde_json::json;
use switchyard::{
    api::{Subscription, Topic},
    crdgen,
    runtime::{crd_check, lease::LeaseConfig},
};

/// A Helm release for one test: uninstalled when dropped, and the ClusterRoles and
/// ClusterRoleBindings labelled with its name deleted, even if the uninstall failed.
struct Release {
    name: String,
    namespace: String,
}

impl Release {
    /// A release name unique to this run; it contains "switchyard", so the chart names its
    /// objects after the release alone.
    fn new(label: &str, namespace: &str) -> Self {
        Self {
            name: unique(&format!("switchyard-{label}")),
            namespace: namespace.to_string(),
        }
    }

    fn install(&self, chart: &Path, extra: &[&str]) -> String {
        self.helm_run("install", chart, extra)
    }

    fn upgrade(&self, chart: &Path, extra: &[&str]) -> String {
        self.helm_run("upgrade", chart, extra)
    }

    fn helm_run(&self, verb: &str, chart: &Path, extra: &[&str]) -> String {
        let chart = chart.to_str().unwrap();
        let mut args = vec![verb, &self.name, chart, "--namespace", &self.namespace];
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) = helm(&args);
        assert!(ok, "helm {verb} {}: {stderr}", self.name);
        stdout
    }

    /// Uninstalls; returns helm's output.
    fn uninstall(&self) -> Result<String, String> {
        let (ok, stdout, stderr) = helm(&["uninstall", &self.name, "--namespace", &self.namespace]);
        if ok {
            Ok(format!("{stdout}{stderr}"))
        } else {
            Err(stderr)
        }
    }

    /// Whether uninstalling could delete a CRD: one in the stored manifest lacks the keep policy.
    /// Then the release record is dropped instead, so shared CRDs survive a broken chart.
    fn uninstall_would_delete_a_crd(&self) -> bool {
        let (ok, manifest, _) = helm(&[
            "get",
            "manifest",
            &self.name,
            "--namespace",
            &self.namespace,
        ]);
        ok && documents(&manifest).iter().any(|o| {
            o["kind"] == "CustomResourceDefinition"
                && o["metadata"]["annotations"]["helm.sh/resource-policy"] != "keep"
        })
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.uninstall_would_delete_a_crd() {
            eprintln!(
                "release {}: a CRD lacks the keep policy; forgetting the release instead of uninstalling it",
                self.name
            );
            let _ = kubectl(
                &[
                    "delete",
                    "secret",
                    "--namespace",
                    &self.namespace,
                    "-l",
                    &format!("owner=helm,name={}", self.name),
                ],
                None,
            );
        } else {
            let _ = self.uninstall();
        }
        let selector = format!("app.kubernetes.io/instance={}", self.name);
        let (ok, out) = kubectl(
            &[
                "delete",
                "clusterrole,clusterrolebinding",
                "-l",
                &selector,
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
        if !ok {
            eprintln!("release {}: deleting its cluster roles: {out}", self.name);
        }
    }
}

/// Deletes a CRD when dropped.
struct CrdGuard(String);

impl Drop for CrdGuard {
    fn drop(&mut self) {
        let (ok, out) = kubectl(&["delete", "crd", &self.0, "--ignore-not-found"], None);
        if !ok {
            eprintln!("deleting CRD {}: {out}", self.0);
        }
    }
}

async fn exists<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.expect("get").is_some()
}

#[tokio::test]
async fn helm_install_creates_the_operator_and_uninstall_keeps_the_crds() {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "chart-install").await;
    let release = Release::new("install", &ns.name);
    // Before touching the shared CRDs: the release must never be able to delete them.
    let rendered = render_chart(&chart_dir(), &release.name, &ns.name, &[]).expect("renders");
    for crd in of_kind(&rendered, "CustomResourceDefinition") {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }

    // The CRDs exist already (applied by the tests, as `kubectl apply -f crds/` would):
    // --take-ownership adopts them, changing nothing but their labels and annotations.
    let notes = release.install(&chart_dir(), &["--take-ownership"]);
    assert!(
        notes.contains("rollout status deployment/"),
        "NOTES: {notes}"
    );
    assert!(notes.contains("kubectl get switchyard"), "NOTES: {notes}");

    let name = release.name.as_str();
    let namespaced = |c: &Client| (c.clone(), ns.name.clone());
    let (c, n) = namespaced(&client);
    assert!(exists(&Api::<ServiceAccount>::namespaced(c.clone(), &n), name).await);
    assert!(
        exists(
            &Api::<Service>::namespaced(c.clone(), &n),
            &format!("{name}-metrics")
        )
        .await
    );
    assert!(exists(&Api::<PodDisruptionBudget>::namespaced(c.clone(), &n), name).await);
    assert!(
        exists(
            &Api::<Role>::namespaced(c.clone(), &n),
            &format!("{name}-leader-election")
        )
        .await
    );
    assert!(
        exists(
            &Api::<RoleBinding>::namespaced(c.clone(), &n),
            &format!("{name}-leader-election")
        )
        .await
    );
    assert!(exists(&Api::<ClusterRole>::all(c.clone()), name).await);
    assert!(exists(&Api::<ClusterRoleBinding>::all(c.clone()), name).await);
    let deployment = Api::<Deployment>::namespaced(c.clone(), &n)
        .get(name)
        .await
        .expect("the operator's Deployment");
    let deployment = serde_json::to_value(&deployment).unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], name);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"],
        json!({
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}
        })
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut uids = Vec::new();
    for crd in crdgen::all() {
        let served = crds.get(&crd.name_any()).await.expect("CRD");
        uids.push((crd.name_any(), served.uid()));
        assert_eq!(
            served
                .annotations()
                .get("meta.helm.sh/release-name")
                .map(String::as_str),
            Some(name),
            "{} belongs to the release",
            crd.name_any()
        );
    }

    let out = release.uninstall().expect("helm uninstall");
    assert!(out.contains("kept due to the resource policy"), "{out}");
    // The same objects (a deleted CRD re-created by another test would have a new uid).
    for (name, uid) in uids {
        let kept = crds.get_opt(&name).await.expect("get CRD");
        assert_eq!(kept.and_then(|c| c.uid()), uid, "{name} was deleted");
    }
    assert!(!exists(&Api::<ClusterRole>::all(client.clone()), name).await);
    assert!(
        !exists(
            &Api::<Deployment>::namespaced(client.clone(), &ns.name),
            name
        )
        .await
    );
}

/// `helm upgrade` changes the served CRD when the chart's copy changed. On a copy of the chart
/// with one CRD renamed into a throwaway group.
#[tokio::test]
async fn helm_upgrade_upgrades_a_changed_crd_and_uninstall_keeps_it() {
    let client = kube_client().await;
    let ns = TestNamespace::new(&client, "chart-upgrade").await;
    let chart = ChartCopy::new("upgrade");
    for entry in std::fs::read_dir(chart.path("templates")).unwrap() {
        let path = entry.unwrap().path();
        let keep = ["crds.yaml", "_helpers.tpl"];
        if !keep.iter().any(|k| path.ends_with(k)) {
            std::fs::remove_file(path).unwrap();
        }
    }
    for entry in std::fs::read_dir(chart.path("files/crds")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let group = format!("{}.test.switchyard.dev", unique("g"));
    let crd_name = format!("charttests.{group}");
    let write_crd = |description: &str| {
        let topic = crdgen::all()
            .into_iter()
            .find(|c| c.name_any() == "topics.switchyard.dev")
            .unwrap();
        let mut crd = serde_json::to_value(&topic).unwrap();
        crd["metadata"]["name"] = crd_name.clone().into();
        crd["spec"]["group"] = group.clone().into();
        // No short names or categories: `kubectl get topic` in other tests must stay unambiguous.
        crd["spec"]["names"] = json!({
            "kind": "ChartTest", "listKind": "ChartTestList",
            "plural": "charttests", "singular": "charttest"
        });
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["maxAge"]["description"] = description.into();
        let yaml = format!("---\n{}", serde_yaml::to_string(&crd).unwrap());
        std::fs::write(chart.path(&format!("files/crds/{crd_name}.yaml")), yaml).unwrap();
    };
    let served_description = || async {
        let crd = Api::<CustomResourceDefinition>::all(client.clone())
            .get(&crd_name)
            .await
            .expect("the CRD is served");
        let crd = serde_json::to_value(&crd).unwrap();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["maxAge"]["description"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let _crd = CrdGuard(crd_name.clone());
    let release = Release::new("upgrade", &ns.name);
    write_crd("as first installed");
    release.install(&chart.dir, &[]);
    assert_eq!(served_description().await, "as first installed");

    write_crd("as upgraded");
    release.upgrade(&chart.dir, &[]);
    assert_eq!(
        served_description().await,
        "as upgraded",
        "helm upgrade must upgrade the CRD"
    );

    let out = release.uninstall().expect("helm uninstall");
    assert!(out.contains("kept due to the resource policy"), "{out}");
    assert_eq!(
        served_description().await,
        "as upgraded",
        "kept on uninstall"
    );
}

/// A client that authenticates as a ServiceAccount, with a token from the TokenRequest API.
async fn client_as(admin: &Client, namespace: &str, account: &str) -> Client {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": {"audiences": [], "expirationSeconds": 3600}
    }))
    .unwrap();
    let token = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .expect("token request")
        .status
        .expect("token")
        .token;
    let mut config = kube::Config::infer().await.expect("kubeconfig");
    config.auth_info = serde_json::from_value(json!({ "token": token })).unwrap();
    Client::try_from(config).expect("client with the token")
}

/// Whether the client's identity may do `verb` on the resource (a SelfSubjectAccessReview).
async fn may(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, subresource)) => (resource, Some(subresource.to_string())),
        None => (resource, None),
    };
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "spec": {"resourceAttributes": ResourceAttributes {
            verb: Some(verb.into()),
            group: Some(group.into()),
            resource: Some(resource.into()),
            subresource,
            namespace: namespace.map(Into::into),
            name: name.map(Into::into),
            ..Default::default()
        }}
    }))
    .unwrap();
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("access review")
        .status
        .expect("review status")
        .allowed
}

/// Asserts each (verb, group, resource, namespace) is allowed or denied as listed.
async fn assert_access(
    client: &Client,
    expected: bool,
    cases: &[(&str, &str, &str, Option<&str>)],
) {
    for (verb, group, resource, namespace) in cases {
        assert_eq!(
            may(client, verb, group, resource, *namespace, None).await,
            expected,
            "{verb} {resource}.{group} in {namespace:?} should be {}",
            if expected { "allowed" } else { "denied" }
        );
    }
}

/// The operator runs as the chart's ServiceAccount: a Topic and a Subscription with workers.
async fn reconcile_as(
    admin: &Client,
    operator: &Client,
    namespace: &str,
    lease_namespace: &str,
    release: &str,
    watched: &[&str],
) {
    assert_reads_crds(operator).await;
    let lease = LeaseConfig::new(format!("{release}-leader"), lease_namespace, unique("pod"));
    let watched: Vec<String> = watched.iter().map(ToString::to_string).collect();
    let running = Operator::start_with(operator, namespace, &nats_url(), move |c| {
        c.namespaces = watched;
        c.election = Some(lease);
    });
    let topics: Api<Topic> = Api::namespaced(admin.clone(), namespace);
    apply(&topics, &topic_yaml(namespace, "orders", "  maxAge: 1h\n"))
        .await
        .expect("Topic");
    wait_for_ready(&topics, "orders", "True", "StreamReady").await;
    let subscriptions: Api<Subscription> = Api::namespaced(admin.clone(), namespace);
    apply(
        &subscriptions,
        &manifest(
            "Subscription",
            namespace,
            "fulfil",
            "  topicRef: {name: orders}\n  worker: {image: acme/handler:1.0, replicas: 1}\n",
        ),
    )
    .await
    .expect("Subscription");
    wait_for_ready(&subscriptions, "fulfil", "True", "ConsumerInSync").await;
    let events = events_for(admin, namespace, "orders").await;
    assert!(!events.is_empty(), "the operator records Events");
    running.assert_alive();
    running.stop().await;
}

/// The start-up check can read the CRDs (whether they match depends on which checkout
/// installed the shared CRDs last, so only access is asserted; the harness only warns).
async fn assert_reads_crds(operator: &Client) {
    match crd_check::verify(operator, &crdgen::all()).await {
        Ok(()) | Err(crd_check::CrdCheckError::Mismatch(_)) => {}
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn cluster_wide_rbac_lets_the_operator_reconcile_and_nothing_more() {
    let admin = kube_client().await;
    install_crds(&admin).await;
    let ns = TestNamespace::new(&admin, "chart-rbac").await;
    let release = Release::new("rbac", &ns.name);
    release.install(&chart_dir(), &["--set", "crds.install=false,replicas=0"]);
    let operator = client_as(&admin, &ns.name, &release.name).await;

    reconcile_as(
        &admin,
        &operator,
        &ns.name,
        &ns.name,
        &release.name,
        &[&ns.name],
    )
    .await;

    let here = Some(ns.name.as_str());
    assert_access(
        &operator,
        true,
        &[
            ("watch", "switchyard.dev", "topics", None),
            ("patch", "switchyard.dev", "subscriptions/status", here),
            ("create", "apps", "deployments", here),
            ("delete", "apps", "deployments", here),
            ("create", "events.k8s.io", "events", here),
            ("create", "coordination.k8s.io", "leases", here),
        ],
    )
    .await;
    assert_access(
        &operator,
        false,
        &[
            ("delete", "", "namespaces", None),
            ("create", "", "secrets", here),
            ("get", "", "secrets", here),
            ("list", "", "secrets", None),
            (
                "update",
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                None,
            ),
            (
                "delete",
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                None,
            ),
            ("create", "", "pods", Some("kube-system")),
            ("delete", "", "pods", here),
            ("get", "", "pods", here),
            ("delete", "switchyard.dev", "topics", here),
            ("create", "switchyard.dev", "topics", here),
            ("update", "apps", "deployments", here),
            (
                "create",
                "coordination.k8s.io",
                "leases",
                Some("kube-system"),
            ),
            ("create", "", "events", here),
            (
                "create",
                "rbac.authorization.k8s.io",
                "clusterrolebindings",
                None,
            ),
            ("create", "", "serviceaccounts/token", here),
        ],
    )
    .await;
}

/// watchNamespaces: a Role in each watched namespace, and an operator watching both of them
/// (several namespaces in one process) with exactly those rights.
#[tokio::test]
async fn namespaced_rbac_lets_the_operator_watch_exactly_its_namespaces() {
    let admin = kube_client().await;
    install_crds(&admin).await;
    let home = TestNamespace::new(&admin, "chart-home").await;
    let team_a = TestNamespace::new(&admin, "chart-a").await;
    let team_b = TestNamespace::new(&admin, "chart-b").await;
    let other = TestNamespace::new(&admin, "chart-other").await;
    let release = Release::new("ns", &home.name);
    release.install(
        &chart_dir(),
        &[
            "--set",
            "crds.install=false,replicas=0",
            "--set",
            &format!("watchNamespaces={{{},{}}}", team_a.name, team_b.name),
        ],
    );
    let operator = client_as(&admin, &home.name, &release.name).await;
    assert_reads_crds(&operator).await;
    let lease = LeaseConfig::new(
        format!("{}-leader", release.name),
        &home.name,
        unique("pod"),
    );
    let watched = vec![team_a.name.clone(), team_b.name.clone()];
    let running = Operator::start_with(&operator, &team_a.name, &nats_url(), move |c| {
        c.namespaces = watched;
        c.election = Some(lease);
    });

    for ns in [&team_a.name, &team_b.name, &other.name] {
        let topics: Api<Topic> = Api::namespaced(admin.clone(), ns);
        apply(&topics, &topic_yaml(ns, "orders", "  maxAge: 1h\n"))
            .await
            .expect("Topic");
    }
    for ns in [&team_a.name, &team_b.name] {
        let topics: Api<Topic> = Api::namespaced(admin.clone(), ns);
        wait_for_ready(&topics, "orders", "True", "StreamReady").await;
    }
    let subscriptions: Api<Subscription> = Api::namespaced(admin.clone(), &team_b.name);
    apply(
        &subscriptions,
        &manifest(
            "Subscription",
            &team_b.name,
            "fulfil",
            "  topicRef: {name: orders}\n  worker: {image: acme/handler:1.0, replicas: 1}\n",
        ),
    )
    .await
    .expect("Subscription");
    wait_for_ready(&subscriptions, "fulfil", "True", "ConsumerInSync").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let unwatched = Api::<Topic>::namespaced(admin.clone(), &other.name)
        .get("orders")
        .await
        .unwrap();
    // The API server defaults status.observedGeneration to 0; the operator would have set
    // conditions and the stream name.
    assert!(
        unwatched
            .status
            .as_ref()
            .is_none_or(|s| s.conditions.is_empty() && s.stream_name.is_none()),
        "a namespace not listed is not reconciled: {:?}",
        unwatched.status
    );
    running.assert_alive();
    running.stop().await;

    let (a, other_ns) = (Some(team_a.name.as_str()), Some(other.name.as_str()));
    assert_access(
        &operator,
        true,
        &[
            ("list", "switchyard.dev", "topics", a),
            ("create", "apps", "deployments", Some(team_b.name.as_str())),
        ],
    )
    .await;
    let crds = "customresourcedefinitions";
    for (crd, allowed) in [
        ("topics.switchyard.dev", true),
        ("eventschemas.switchyard.dev", true),
        ("leases.coordination.k8s.io", false),
    ] {
        let may_get = may(
            &operator,
            "get",
            "apiextensions.k8s.io",
            crds,
            None,
            Some(crd),
        )
        .await;
        assert_eq!(may_get, allowed, "get CRD {crd}");
    }
    assert_access(
        &operator,
        false,
        &[
            ("list", "switchyard.dev", "topics", None),
            ("list", "switchyard.dev", "topics", other_ns),
            ("create", "apps", "deployments", other_ns),
            ("list", "", "pods", Some(home.name.as_str())),
            ("update", "apiextensions.k8s.io", crds, None),
            ("list", "apiextensions.k8s.io", crds, None),
        ],
    )
    .await;
    let crd_reader = format!("{}-crds", release.name);
    assert!(exists(&Api::<ClusterRole>::all(admin.clone()), &crd_reader).await);
    drop(release);
    assert!(
        !exists(&Api::<ClusterRole>::all(admin.clone()), &crd_reader).await,
        "the release's cluster-scoped objects are gone with it"
    );
}

/// Without the chart's RBAC (the namespace's default ServiceAccount), the start-up check names
/// the permission it lacks.
#[tokio::test]
async fn the_crd_check_without_rights_names_the_missing_permission() {
    let admin = kube_client().await;
    let ns = TestNamespace::new(&admin, "chart-norbac").await;
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns.name);
    wait_until("the default ServiceAccount", || async {
        accounts.get_opt("default").await.ok().flatten()
    })
    .await;
    let nobody = client_as(&admin, &ns.name, "default").await;
    let err = crd_check::verify(&nobody, &crdgen::all())
        .await
        .expect_err("the default ServiceAccount may not read CRDs");
    let text = err.to_string();
    assert!(
        text.starts_with("not allowed to read CRD ") && text.contains("--crd-check off"),
        "{text}"
    );
}
