//! The worker Deployment a Subscription with `spec.worker` asks for. Pure: the Subscription, the
//! consumer it reads and the dispatcher settings in, a Deployment to server-side apply out.
//!
//! Each pod runs the user's container (`handler`) and the Switchyard dispatcher sidecar
//! (`dispatcher`, `switchyard dispatch` from the operator's image), which pulls from the durable
//! consumer and POSTs each event to the handler on loopback. The dispatcher's contract, fixed
//! here: `switchyard dispatch --stream S --consumer C --endpoint URL --concurrency N
//! --subject-prefix NS.TOPIC --source SOURCE [--schema-key KEY] [--partition-type-tokens K]
//! [--timeout D] [--hold-rejections]` (Broadcast:
//! `--consumer C_$(POD_NAME)`), NATS settings from the same environment variables as `switchyard run`
//! (credentials from the Secret mounted at [`CREDENTIALS_MOUNT_PATH`], when the operator names
//! one), health on `:9090` (`/healthz`, `/readyz`).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{
            Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
            ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
            SecretVolumeSource, SecurityContext, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use kube::{Resource, ResourceExt};

use super::consumer_config::TopicView;
use crate::{
    api::{
        Subscription,
        subscription::{SubscriptionMode, WorkerSpec},
    },
    broker::credentials::CREDENTIALS_DIR_ENV,
    naming,
};

/// Label selecting a Subscription's worker pods.
pub const SUBSCRIPTION_LABEL: &str = "switchyard.dev/subscription";
/// Label on the pods of Broadcast Subscriptions, each of which reads its own consumer.
pub const MODE_LABEL: &str = "switchyard.dev/mode";
/// Environment variable holding the pod's name in the dispatcher (downward API).
pub const POD_NAME_ENV: &str = "POD_NAME";
/// Port of the dispatcher's health endpoints.
pub const DISPATCHER_HEALTH_PORT: i32 = 9090;
/// Where the dispatcher finds its NATS credentials Secret.
pub const CREDENTIALS_MOUNT_PATH: &str = "/etc/switchyard/nats";
/// The pod volume holding that Secret.
const CREDENTIALS_VOLUME: &str = "nats-credentials";

/// How the operator runs dispatchers: its own image and the NATS settings it passes on.
#[derive(Clone, Debug, PartialEq)]
pub struct DispatcherSettings {
    /// Image of the dispatcher (the operator's own image).
    pub image: String,
    /// NATS server URLs for the dispatcher.
    pub nats_url: String,
    /// Environment the dispatcher gets besides NATS_URL (credential file paths and the like).
    pub env: Vec<EnvVar>,
    /// Secret in the Subscription's namespace holding the dispatcher's NATS credentials, in the
    /// file layout of a credentials directory.
    pub credentials_secret: Option<String>,
}

/// What a Subscription's dispatcher reads, and how it names the events of plain publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchTarget {
    pub stream: String,
    /// The Subscription's consumer (Broadcast: the prefix of the per-pod ones).
    pub consumer: String,
    /// `<namespace>.<topic>`: a plain event's type is its subject after this.
    pub subject_prefix: String,
    pub partition_type_tokens: Option<usize>,
    /// CloudEvents `source` of events that carry none.
    pub source: String,
    /// `ordering: PerKey`: deliver one event of a key at a time.
    pub per_key: bool,
    /// `ordering: PerKey` in WorkerGroup mode: the per-partition consumers to read (instead of
    /// `consumer`).
    pub partition_consumers: Vec<String>,
    /// The Topic keeps no copy of events its consumers are done with (WorkQueue or Interest
    /// retention), so refused events must be held for the dead-letter relay, not terminated.
    pub hold_rejections: bool,
    /// The schema registry key whose record every event's data must satisfy (see
    /// [`crate::registry::keys::bound_key`]); `None`: no schema is bound.
    pub schema_key: Option<String>,
}

impl DispatchTarget {
    pub fn of(namespace: &str, subscription: &str, topic: &TopicView) -> Self {
        Self {
            stream: naming::stream_name(namespace, &topic.name),
            consumer: naming::subscription_consumer_name(namespace, subscription),
            subject_prefix: format!("{namespace}.{}", topic.name),
            partition_type_tokens: topic.partition_type_tokens,
            source: format!("/namespaces/{namespace}/topics/{}", topic.name),
            per_key: false,
            partition_consumers: Vec::new(),
            hold_rejections: false,
            schema_key: None,
        }
    }
}

/// The Deployment's name: the Subscription's, so `kubectl get deploy` reads naturally.
pub fn deployment_name(sub: &Subscription) -> String {
    format!("{}-worker", sub.name_any())
}

/// The worker Deployment, or `None` when the Subscription declares no worker.
pub fn desired_deployment(
    sub: &Subscription,
    target: &DispatchTarget,
    replicas: i32,
    dispatcher: &DispatcherSettings,
) -> Option<Deployment> {
    let worker = sub.spec.worker.as_ref()?;
    let name = sub.name_any();
    let selector = BTreeMap::from([(SUBSCRIPTION_LABEL.to_string(), name.clone())]);
    let mut labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "switchyard-worker".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), name.clone()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "switchyard".to_string(),
        ),
    ]);
    labels.extend(selector.clone());
    // The user's pod labels first, so Switchyard's own win on a clash.
    let mut pod_labels = worker.pod_labels.clone().unwrap_or_default();
    pod_labels.extend(labels.clone());
    if sub.spec.mode == SubscriptionMode::Broadcast {
        pod_labels.insert(MODE_LABEL.into(), "Broadcast".into());
    }
    Some(Deployment {
        metadata: ObjectMeta {
            name: Some(deployment_name(sub)),
            namespace: sub.namespace(),
            labels: Some(labels),
            owner_references: owner(sub).map(|o| vec![o]),
            ..Default::default()
        },
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: worker.pod_annotations.clone(),
                    ..Default::default()
                }),
                spec: Some(pod_spec(sub.spec.mode, worker, target, dispatcher)),
            },
            ..Default::default()
        },
        ..Default::default()
    })
}

/// The Subscription as controlling owner: the Deployment goes when it goes.
fn owner(sub: &Subscription) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: Subscription::api_version(&()).into_owned(),
        kind: Subscription::kind(&()).into_owned(),
        name: sub.name_any(),
        uid: sub.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

fn pod_spec(
    mode: SubscriptionMode,
    worker: &WorkerSpec,
    target: &DispatchTarget,
    dispatcher: &DispatcherSettings,
) -> PodSpec {
    let handler = Container {
        name: "handler".into(),
        image: Some(worker.image.clone()),
        image_pull_policy: worker.image_pull_policy.map(|p| format!("{p:?}")),
        command: worker.command.clone(),
        args: worker.args.clone(),
        env: worker.env.clone(),
        env_from: worker.env_from.clone(),
        resources: worker.resources.clone(),
        ports: Some(vec![ContainerPort {
            name: Some("events".into()),
            container_port: worker.endpoint.port,
            ..Default::default()
        }]),
        ..Default::default()
    };
    PodSpec {
        containers: vec![
            handler,
            dispatcher_container(mode, worker, target, dispatcher),
        ],
        service_account_name: worker.service_account_name.clone(),
        image_pull_secrets: worker.image_pull_secrets.clone(),
        node_selector: worker.node_selector.clone(),
        tolerations: worker.tolerations.clone(),
        priority_class_name: worker.priority_class_name.clone(),
        termination_grace_period_seconds: worker.termination_grace_period_seconds,
        volumes: credentials_volume(dispatcher).map(|v| vec![v]),
        ..Default::default()
    }
}

/// The credentials Secret as a pod volume. The default file mode (0644) is kept on purpose: the
/// dispatcher runs as an arbitrary non-root user without an fsGroup, and must read the files.
/// Only the dispatcher mounts it, so the user's container never sees the credentials.
fn credentials_volume(dispatcher: &DispatcherSettings) -> Option<Volume> {
    let secret = dispatcher.credentials_secret.as_ref()?;
    Some(Volume {
        name: CREDENTIALS_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.clone()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn dispatcher_container(
    mode: SubscriptionMode,
    worker: &WorkerSpec,
    target: &DispatchTarget,
    dispatcher: &DispatcherSettings,
) -> Container {
    let endpoint = format!(
        "http://127.0.0.1:{}{}",
        worker.endpoint.port, worker.endpoint.path
    );
    // Broadcast: each pod reads the consumer named after it; the kubelet expands `$(POD_NAME)`
    // from the container's environment.
    let consumer = match mode {
        SubscriptionMode::WorkerGroup => target.consumer.clone(),
        SubscriptionMode::Broadcast => {
            naming::per_pod_consumer_name(&target.consumer, &format!("$({POD_NAME_ENV})"))
        }
    };
    let mut args = vec![
        "dispatch".to_string(),
        "--stream".into(),
        target.stream.clone(),
    ];
    if target.partition_consumers.is_empty() {
        args.extend(["--consumer".into(), consumer]);
    }
    for partition in &target.partition_consumers {
        args.extend(["--consumer".into(), partition.clone()]);
    }
    args.extend([
        "--endpoint".into(),
        endpoint,
        "--concurrency".into(),
        worker.concurrency.to_string(),
        "--subject-prefix".into(),
        target.subject_prefix.clone(),
        "--source".into(),
        target.source.clone(),
    ]);
    if let Some(key) = &target.schema_key {
        args.extend(["--schema-key".into(), key.clone()]);
    }
    if target.per_key {
        args.extend(["--ordering".into(), "per-key".into()]);
    }
    if let Some(tokens) = target.partition_type_tokens {
        args.extend(["--partition-type-tokens".into(), tokens.to_string()]);
    }
    if let Some(timeout) = &worker.timeout {
        args.extend(["--timeout".into(), timeout.to_string()]);
    }
    if target.hold_rejections {
        args.push("--hold-rejections".into());
    }
    let mut env = vec![EnvVar {
        name: "NATS_URL".into(),
        value: Some(dispatcher.nats_url.clone()),
        ..Default::default()
    }];
    if mode == SubscriptionMode::Broadcast {
        env.push(EnvVar {
            name: POD_NAME_ENV.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    env.extend(dispatcher.env.iter().cloned());
    let mut volume_mounts = None;
    if dispatcher.credentials_secret.is_some() {
        env.push(EnvVar {
            name: CREDENTIALS_DIR_ENV.into(),
            value: Some(CREDENTIALS_MOUNT_PATH.into()),
            ..Default::default()
        });
        volume_mounts = Some(vec![VolumeMount {
            name: CREDENTIALS_VOLUME.into(),
            mount_path: CREDENTIALS_MOUNT_PATH.into(),
            read_only: Some(true),
            ..Default::default()
        }]);
    }
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(DISPATCHER_HEALTH_PORT),
            ..Default::default()
        }),
        period_seconds: Some(10),
        ..Default::default()
    };
    let quantity = |q: &str| Quantity(q.into());
    Container {
        name: "dispatcher".into(),
        image: Some(dispatcher.image.clone()),
        args: Some(args),
        env: Some(env),
        volume_mounts,
        ports: Some(vec![ContainerPort {
            name: Some("health".into()),
            container_port: DISPATCHER_HEALTH_PORT,
            ..Default::default()
        }]),
        liveness_probe: Some(probe("/healthz")),
        readiness_probe: Some(probe("/readyz")),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), quantity("50m")),
                ("memory".into(), quantity("32Mi")),
            ])),
            limits: Some(BTreeMap::from([("memory".into(), quantity("128Mi"))])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(worker: &str) -> Subscription {
        let mut sub: Subscription = serde_yaml::from_str(&format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: Subscription\nmetadata: {{name: billing, namespace: shop, uid: u-1}}\nspec:\n  topicRef: {{name: orders}}\n{worker}"
        ))
        .expect("subscription");
        sub.metadata.generation = Some(1);
        sub
    }

    fn settings() -> DispatcherSettings {
        DispatcherSettings {
            image: "ghcr.io/switchyard/switchyard:0.1.0".into(),
            nats_url: "nats://nats:4222".into(),
            env: vec![],
            credentials_secret: None,
        }
    }

    fn target() -> DispatchTarget {
        DispatchTarget::of(
            "shop",
            "billing",
            &TopicView {
                name: "orders".into(),
                subjects: vec!["shop.orders.>".into()],
                partition_type_tokens: None,
                work_queue: false,
                partitions: None,
            },
        )
    }

    fn containers(d: &Deployment) -> Vec<Container> {
        d.spec.template.spec.as_ref().unwrap().containers.clone()
    }

    #[test]
    fn no_worker_no_deployment() {
        assert!(desired_deployment(&subscription(""), &target(), 1, &settings()).is_none());
    }

    #[test]
    fn the_handler_runs_next_to_a_locked_down_dispatcher_that_reads_the_consumer() {
        let sub = subscription(
            "  worker:\n    image: acme/handler:1.4\n    concurrency: 4\n    timeout: 10s\n    endpoint: {port: 9000, path: /events}\n    env: [{name: MODE, value: live}]\n    serviceAccountName: billing\n    podLabels: {team: payments, switchyard.dev/subscription: spoofed}\n",
        );
        let d = desired_deployment(&sub, &target(), 3, &settings()).unwrap();
        assert_eq!(d.metadata.name.as_deref(), Some("billing-worker"));
        let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Subscription", "u-1", Some(true))
        );
        let spec = &d.spec;
        assert_eq!(spec.replicas, Some(3));
        let pod_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(pod_labels["team"], "payments");
        assert_eq!(
            pod_labels[SUBSCRIPTION_LABEL], "billing",
            "Switchyard's own label wins"
        );
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("billing"));

        let [handler, dispatcher] = containers(&d).try_into().unwrap();
        assert_eq!(handler.image.as_deref(), Some("acme/handler:1.4"));
        assert_eq!(handler.env.as_ref().unwrap()[0].name, "MODE");
        assert_eq!(handler.ports.as_ref().unwrap()[0].container_port, 9000);
        let args = dispatcher.args.unwrap().join(" ");
        assert_eq!(
            args,
            "dispatch --stream shop_orders --consumer sub_shop_billing --endpoint http://127.0.0.1:9000/events --concurrency 4 --subject-prefix shop.orders --source /namespaces/shop/topics/orders --timeout 10s"
        );
        let security = dispatcher.security_context.unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert!(dispatcher.readiness_probe.is_some() && dispatcher.liveness_probe.is_some());
    }

    #[test]
    fn per_key_dispatchers_read_every_partition_consumer_in_key_order() {
        let sub = subscription("  worker: {image: acme/ledger:1, ordering: PerKey, replicas: 2}\n");
        let target = DispatchTarget {
            per_key: true,
            partition_consumers: vec!["sub_shop_billing_p0".into(), "sub_shop_billing_p1".into()],
            partition_type_tokens: Some(2),
            ..target()
        };
        let d = desired_deployment(&sub, &target, 2, &settings()).unwrap();
        let [_, dispatcher] = containers(&d).try_into().unwrap();
        let args = dispatcher.args.unwrap().join(" ");
        assert!(
            args.contains(
                "--consumer sub_shop_billing_p0 --consumer sub_shop_billing_p1 --endpoint"
            ),
            "{args}"
        );
        assert!(
            args.contains("--ordering per-key --partition-type-tokens 2"),
            "{args}"
        );
    }

    #[test]
    fn dispatchers_of_topics_that_keep_no_copy_hold_rejections_for_the_relay() {
        let sub = subscription("  worker: {image: acme/jobs:1}\n");
        let args = |target: &DispatchTarget| {
            let d = desired_deployment(&sub, target, 1, &settings()).unwrap();
            let [_, dispatcher] = containers(&d).try_into().unwrap();
            dispatcher.args.unwrap()
        };
        assert!(!args(&target()).contains(&"--hold-rejections".to_string()));
        let holding = DispatchTarget {
            hold_rejections: true,
            ..target()
        };
        assert_eq!(
            args(&holding).last().map(String::as_str),
            Some("--hold-rejections")
        );
    }

    #[test]
    fn dispatchers_of_a_bound_subscription_follow_its_schema_key() {
        let sub = subscription("  worker: {image: acme/billing:3}\n");
        let bound = DispatchTarget {
            schema_key: Some("shop.order.placed.latest".into()),
            hold_rejections: true,
            ..target()
        };
        let d = desired_deployment(&sub, &bound, 1, &settings()).unwrap();
        let [_, dispatcher] = containers(&d).try_into().unwrap();
        let args = dispatcher.args.unwrap().join(" ");
        assert!(
            args.ends_with(
                "--source /namespaces/shop/topics/orders --schema-key shop.order.placed.latest --hold-rejections"
            ),
            "{args}"
        );
        let unbound = desired_deployment(&sub, &target(), 1, &settings()).unwrap();
        let [_, dispatcher] = containers(&unbound).try_into().unwrap();
        assert!(
            !dispatcher
                .args
                .unwrap()
                .contains(&"--schema-key".to_string()),
            "no schema, no flag"
        );
    }

    #[test]
    fn broadcast_pods_read_the_consumer_named_after_them() {
        let sub = subscription("  mode: Broadcast\n  worker: {image: acme/cache:2, replicas: 3}\n");
        let d = desired_deployment(&sub, &target(), 3, &settings()).unwrap();
        let labels = d
            .spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        assert_eq!(labels[MODE_LABEL], "Broadcast");
        let [_, dispatcher] = containers(&d).try_into().unwrap();
        let args = dispatcher.args.unwrap().join(" ");
        assert!(
            args.contains("--consumer sub_shop_billing_$(POD_NAME) "),
            "{args}"
        );
        let env = dispatcher.env.unwrap();
        let pod_name = env.iter().find(|e| e.name == POD_NAME_ENV).unwrap();
        assert_eq!(
            pod_name
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.name"
        );
        let group = desired_deployment(
            &subscription("  worker: {image: acme/cache:2}\n"),
            &target(),
            1,
            &settings(),
        )
        .unwrap();
        let labels = group.spec.template.metadata.unwrap().labels.unwrap();
        assert!(
            !labels.contains_key(MODE_LABEL),
            "WorkerGroup pods are not watched"
        );
    }

    #[test]
    fn without_a_credentials_secret_the_pod_mounts_nothing() {
        let sub = subscription("  worker: {image: acme/handler:1.4}\n");
        let d = desired_deployment(&sub, &target(), 1, &settings()).unwrap();
        assert!(d.spec.template.spec.as_ref().unwrap().volumes.is_none());
        let [_, dispatcher] = containers(&d).try_into().unwrap();
        assert!(dispatcher.volume_mounts.is_none());
        let env = dispatcher.env.unwrap();
        assert!(env.iter().all(|e| e.name != CREDENTIALS_DIR_ENV), "{env:?}");
    }

    #[test]
    fn the_credentials_secret_is_mounted_read_only_into_the_dispatcher_only() {
        let sub = subscription("  worker: {image: acme/handler:1.4}\n");
        let settings = DispatcherSettings {
            credentials_secret: Some("nats-worker-credentials".into()),
            ..settings()
        };
        let d = desired_deployment(&sub, &target(), 1, &settings).unwrap();
        let volumes = d.spec.template.spec.as_ref().unwrap().volumes.clone();
        let [volume] = volumes.unwrap().try_into().unwrap();
        assert_eq!(
            volume.secret.unwrap().secret_name.as_deref(),
            Some("nats-worker-credentials")
        );

        let [handler, dispatcher] = containers(&d).try_into().unwrap();
        assert!(handler.volume_mounts.is_none(), "the handler never sees it");
        assert!(
            handler
                .env
                .unwrap_or_default()
                .iter()
                .all(|e| e.name != CREDENTIALS_DIR_ENV)
        );
        let [mount] = dispatcher.volume_mounts.unwrap().try_into().unwrap();
        assert_eq!(
            (mount.name, mount.mount_path.as_str(), mount.read_only),
            (volume.name, "/etc/switchyard/nats", Some(true))
        );
        let env = dispatcher.env.unwrap();
        let dir = env.iter().find(|e| e.name == "NATS_CREDENTIALS_DIR");
        assert_eq!(
            dir.and_then(|e| e.value.as_deref()),
            Some("/etc/switchyard/nats")
        );
        assert_eq!(env[0].name, "NATS_URL", "the URL still comes first");
    }

    #[test]
    fn a_subscription_not_yet_stored_has_no_owner_to_reference() {
        let mut sub = subscription("  worker: {image: acme/handler:1.4}\n");
        sub.metadata.uid = None;
        let d = desired_deployment(&sub, &target(), 1, &settings()).unwrap();
        assert!(d.metadata.owner_references.is_none());
    }
}
