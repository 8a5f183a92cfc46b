//! The Helm chart and the kustomize bases, rendered without a cluster: versions, CRD copies,
//! equivalence of `config/default` with the chart's defaults, the values schema, RBAC modes, the
//! operator pod, its arguments, alerts and the Argo CD health checks.

mod chart_support;

use std::{collections::BTreeSet, fs, path::Path};

use chart_support::*;
use clap::Parser;
use serde_json::{Value, json};
use switchyard::{cli::Cli, crdgen, metrics};

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn chart_version_and_app_version_are_the_crates() {
    let chart: serde_yaml::Value =
        serde_yaml::from_str(&fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap()).unwrap();
    let crate_version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        chart["version"].as_str(),
        Some(crate_version),
        "Chart.yaml version must be the crate's (Cargo.toml)"
    );
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(crate_version),
        "Chart.yaml appVersion must be the crate's (Cargo.toml)"
    );
}

/// The chart and `config/crd` carry byte-for-byte copies of `crds/` (`make crds` writes them).
#[test]
fn chart_and_kustomize_crds_are_copies_of_the_generated_ones() {
    let files = |dir: &Path| -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let source = repo("crds");
    let expected = files(&source);
    assert_eq!(expected.len(), crdgen::all().len());
    for copy in ["charts/switchyard/files/crds", "config/crd/bases"] {
        let dir = repo(copy);
        assert_eq!(
            files(&dir),
            expected,
            "{copy} has other files than crds/; run `make crds`"
        );
        for name in &expected {
            assert!(
                fs::read(dir.join(name)).unwrap() == fs::read(source.join(name)).unwrap(),
                "{copy}/{name} differs from crds/{name}; run `make crds`"
            );
        }
    }
}

#[test]
fn the_chart_renders_the_generated_crds_kept_on_uninstall() {
    let rendered = render(&[]).expect("renders");
    let crds: Vec<&Value> = of_kind(&rendered, "CustomResourceDefinition").collect();
    assert_eq!(crds.len(), crdgen::all().len());
    for generated in crdgen::all() {
        let name = generated.metadata.name.clone().unwrap();
        let crd = find(&rendered, "CustomResourceDefinition", &name);
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{name}: uninstalling must never delete a CRD (and every object of its kind)"
        );
        assert_eq!(
            crd["metadata"]["labels"]["app.kubernetes.io/name"],
            "switchyard"
        );
        let mut content = crd.clone();
        content["metadata"] = json!({"name": name});
        let want = serde_json::to_value(&generated).unwrap();
        let diff = differences(&content, &want);
        assert!(diff.is_empty(), "{name} rendered differently: {diff:?}");
    }

    let without = render(&["--set", "crds.install=false"]).expect("renders");
    assert_eq!(of_kind(&without, "CustomResourceDefinition").count(), 0);
}

/// `kubectl apply -k config/default` installs what `helm install` does with default values,
/// apart from Helm's own labels and the Namespace (Helm's `--create-namespace` makes that).
#[test]
fn kustomize_default_renders_the_charts_default_objects() {
    let helm = by_identity(
        render(&[])
            .expect("renders")
            .into_iter()
            .map(without_helm_metadata)
            .collect(),
    );
    let mut kustomize = by_identity(kustomize("config/default"));
    let namespace = kustomize
        .remove("Namespace /switchyard-system")
        .expect("config/default creates its namespace");
    assert_eq!(namespace["metadata"]["name"], "switchyard-system");

    let helm_ids: BTreeSet<&String> = helm.keys().collect();
    let kustomize_ids: BTreeSet<&String> = kustomize.keys().collect();
    assert_eq!(
        helm_ids, kustomize_ids,
        "objects of the chart vs of config/default"
    );
    for (id, from_helm) in &helm {
        let diff = differences(from_helm, &kustomize[id]);
        assert!(
            diff.is_empty(),
            "{id} differs (chart vs config/default): {diff:#?}"
        );
    }
}

#[test]
fn bad_values_fail_with_the_schema_error() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--set", "replicas=-1"],
            "at '/replicas': minimum: got -1, want 0",
        ),
        (
            &["--set-string", "replicas=two"],
            "at '/replicas': got string, want integer",
        ),
        (
            &["--set", "replica=2"],
            "additional properties 'replica' not allowed",
        ),
        (
            &["--set", "nats.urls=nats://a:4222"],
            "at '/nats': additional properties 'urls' not allowed",
        ),
        (
            &["--set", "watchNamespaces={Team_A}"],
            "at '/watchNamespaces/0': 'Team_A' does not match pattern",
        ),
        (
            &["--set", "operator.crdCheck=sometimes"],
            "at '/operator/crdCheck'",
        ),
    ];
    for (args, expected) in cases {
        let err = render(args).expect_err(&format!("{args:?} must be refused"));
        assert!(
            err.contains("values don't meet the specifications of the schema"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {err}"
        );
    }
}

#[test]
fn the_operator_pod_runs_locked_down_with_probes_on_its_http_port() {
    let rendered = render(&[]).expect("renders");
    let deployment = find(&rendered, "Deployment", "switchyard");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        container["ports"][0],
        json!({"name": "http", "containerPort": 8080, "protocol": "TCP"})
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "http"})
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "http"})
    );
    let args = strings(&container["args"]);
    assert!(
        args.contains(&"--http-addr=0.0.0.0:8080".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--leader-election=on".to_string()),
        "{args:?}"
    );
    assert_eq!(container["image"], "switchyard:0.1.0");
    assert!(
        args.contains(&"--dispatcher-image=switchyard:0.1.0".to_string()),
        "{args:?}"
    );

    let pdb = find(&rendered, "PodDisruptionBudget", "switchyard");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let single = render(&["--set", "replicas=1"]).expect("renders");
    assert_eq!(
        of_kind(&single, "PodDisruptionBudget").count(),
        0,
        "a budget for one replica would block every drain"
    );
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect()
}

/// Every argument the chart passes parses as `switchyard run` (so no value renders a flag the
/// binary does not have), with every optional setting on.
#[test]
fn rendered_operator_arguments_are_accepted_by_switchyard_run() {
    let rendered = render(&[
        "--set",
        "watchNamespaces={team-a,team-b}",
        "--set",
        "nats.credentialsSecret=nats-auth,nats.tls.caSecret=nats-ca,nats.tls.clientSecret=nats-client",
        "--set",
        "workers.natsSecret=worker-nats,operator.crdCheck=warn,operator.deadLetterRelay=false",
    ])
    .expect("renders");
    let deployment = find(&rendered, "Deployment", "switchyard");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&container["args"]);
    let cli = Cli::try_parse_from(std::iter::once("switchyard".to_string()).chain(args.clone()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let rendered_args = format!("{:?}", cli.command);
    for expected in [
        r#"namespace: ["team-a", "team-b"]"#,
        "crd_check: Warn",
        "dead_letter_relay: false",
        r#"worker_nats_secret: Some("worker-nats")"#,
        r#"credentials_dir: Some("/etc/switchyard/nats")"#,
        r#"tls_ca: Some("/etc/switchyard/nats-ca/ca.crt")"#,
        r#"tls_cert: Some("/etc/switchyard/nats-tls/tls.crt")"#,
        r#"tls_key: Some("/etc/switchyard/nats-tls/tls.key")"#,
        r#"lease_name: "switchyard-leader""#,
    ] {
        assert!(
            rendered_args.contains(expected),
            "{expected} not in {rendered_args}"
        );
    }
    let volumes = &deployment["spec"]["template"]["spec"]["volumes"];
    assert_eq!(volumes[0]["secret"]["secretName"], "nats-auth");
    assert_eq!(
        volumes[1]["secret"],
        json!({"secretName": "nats-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]})
    );
    assert_eq!(volumes[2]["secret"]["secretName"], "nats-client");
    let mounts = &container["volumeMounts"];
    assert!(
        mounts
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["readOnly"] == true),
        "{mounts}"
    );
}

#[test]
fn namespaced_mode_grants_each_namespace_a_role_and_only_crd_reads_cluster_wide() {
    let rendered = render(&["--set", "watchNamespaces={team-a,team-b}"]).expect("renders");
    for namespace in ["team-a", "team-b"] {
        let role = rendered
            .iter()
            .find(|o| o["kind"] == "Role" && o["metadata"]["namespace"] == namespace)
            .unwrap_or_else(|| panic!("a Role in {namespace}"));
        let resources = role["rules"].to_string();
        assert!(
            resources.contains("topics") && resources.contains("deployments"),
            "{role}"
        );
        let binding = rendered
            .iter()
            .find(|o| o["kind"] == "RoleBinding" && o["metadata"]["namespace"] == namespace)
            .unwrap_or_else(|| panic!("a RoleBinding in {namespace}"));
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "switchyard", "namespace": "switchyard-system"}])
        );
    }
    let cluster_roles: Vec<&Value> = of_kind(&rendered, "ClusterRole").collect();
    assert_eq!(cluster_roles.len(), 1, "{cluster_roles:?}");
    assert_eq!(
        cluster_roles[0]["rules"],
        json!([{
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": [
                "deadletterpolicies.switchyard.dev",
                "eventschemas.switchyard.dev",
                "subscriptions.switchyard.dev",
                "topics.switchyard.dev"
            ],
            "verbs": ["get"]
        }])
    );
    // The Lease stays in the operator's own namespace.
    let election = find(&rendered, "Role", "switchyard-leader-election");
    assert_eq!(election["metadata"]["namespace"], "switchyard-system");
}

/// The alerts query only metrics the operator exports, with labels it sets.
#[test]
fn alerts_use_the_metrics_the_operator_exports() {
    let rendered = render(&[
        "--set",
        "prometheusRule.enabled=true,serviceMonitor.enabled=true",
    ])
    .expect("renders");
    let rule = find(&rendered, "PrometheusRule", "switchyard");
    let alerts: Vec<&Value> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let names: BTreeSet<&str> = alerts
        .iter()
        .map(|a| a["alert"].as_str().unwrap())
        .collect();
    for required in [
        "SwitchyardDeadLettersAccumulating",
        "SwitchyardReconcileErrors",
        "SwitchyardBrokerUnavailable",
    ] {
        assert!(names.contains(required), "{names:?}");
    }

    let exported = exported_metrics();
    let used = regex_like_metric_names(&rule["spec"].to_string());
    assert!(!used.is_empty());
    for metric in &used {
        assert!(
            exported.contains(metric),
            "{metric} is not exported; the operator has {exported:?}"
        );
    }
    for (label, metric) in [
        ("outcome=\\\"copied\\\"", "dead_letters"),
        ("category!=\\\"not_leader\\\"", "reconcile_errors"),
    ] {
        assert!(rule.to_string().contains(label), "{metric}: {label}");
    }
    let monitor = find(&rendered, "ServiceMonitor", "switchyard");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
}

/// Metric names (with `_total` for counters) in the operator's /metrics text, every family
/// given a sample so it shows.
fn exported_metrics() -> BTreeSet<String> {
    let metrics = metrics::Metrics::default();
    metrics
        .dead_letters
        .get_or_create(&metrics::DeadLetterLabels {
            policy: "ns/p".into(),
            reason: "MaxDeliveries",
            outcome: "copied",
        })
        .inc();
    metrics
        .reconcile_errors
        .get_or_create(&metrics::ErrorLabels {
            kind: "Topic",
            category: "broker",
        })
        .inc();
    metrics
        .render()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

fn regex_like_metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("switchyard_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        // Names of objects (the ServiceMonitor's job) are not metrics; metric names contain no '-'.
        if !tail[end..].starts_with('-') {
            names.insert(name.to_string());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn argocd_health_checks_render_from_the_lua_files_and_nothing_without_them() {
    let chart = ChartCopy::new("argocd");
    let lua_dir = chart.path("files/argocd");
    let _ = fs::remove_dir_all(&lua_dir);
    let render_copy = |args: &[&str]| {
        render_chart(&chart.dir, "switchyard", "switchyard-system", args).expect("renders")
    };
    let enabled = ["--set", "argocd.healthChecks.enabled=true"];
    assert_eq!(
        of_kind(&render_copy(&enabled), "ConfigMap").count(),
        0,
        "no Lua files: nothing to render"
    );

    fs::create_dir_all(&lua_dir).unwrap();
    let topic_check = "hs = {status = \"Healthy\"}\nreturn hs\n";
    fs::write(lua_dir.join("health-Topic.lua"), topic_check).unwrap();
    fs::write(
        lua_dir.join("health-Subscription.lua"),
        "return {status = \"Progressing\"}\n",
    )
    .unwrap();
    assert_eq!(
        of_kind(&render_copy(&[]), "ConfigMap").count(),
        0,
        "off by default"
    );
    let rendered = render_copy(&enabled);
    let config_map = find(&rendered, "ConfigMap", "switchyard-argocd-health");
    let data = config_map["data"].as_object().unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        [
            "resource.customizations.health.switchyard.dev_Subscription",
            "resource.customizations.health.switchyard.dev_Topic"
        ]
    );
    assert_eq!(
        data["resource.customizations.health.switchyard.dev_Topic"],
        topic_check
    );
}
