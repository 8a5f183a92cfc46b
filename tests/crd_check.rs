//! The start-up check of the served CRDs against the real API server. The CRDs are shared by
//! every test, so they are never changed here: the expectation is changed instead (a modified
//! copy of the embedded CRDs), which is the same comparison seen from the other side.

mod common;

use common::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, ResourceExt};
use switchyard::{
    crdgen,
    runtime::crd_check::{CrdCheckError, CrdProblem, verify},
};

fn embedded(name: &str) -> CustomResourceDefinition {
    crdgen::all()
        .into_iter()
        .find(|c| c.name_any() == name)
        .unwrap_or_else(|| panic!("embedded CRD {name}"))
}

#[tokio::test]
async fn the_served_crds_are_the_embedded_ones() {
    let client = kube_client().await;
    install_crds(&client).await;
    verify(&client, &crdgen::all())
        .await
        .expect("the CRDs this build installs pass its own check");
}

/// The expectation is a modified copy of what is served now, so the outcome does not depend
/// on which checkout installed the shared CRDs last.
#[tokio::test]
async fn a_served_crd_that_differs_is_named_with_its_fields_and_how_to_upgrade() {
    let client = kube_client().await;
    install_crds(&client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let served = |name: &'static str| {
        let crds = crds.clone();
        async move {
            let mut crd = crds.get(name).await.expect("served CRD");
            crd.metadata = kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            };
            crd
        }
    };
    // An operator built with a newer Topic schema (one description changed) and a Subscription
    // that has one more printer column, meeting today's served CRDs.
    let mut topics = served("topics.switchyard.dev").await;
    let schema = topics.spec.versions[0].schema.as_mut().unwrap();
    let mut value = serde_json::to_value(&schema.open_api_v3_schema).unwrap();
    value["properties"]["spec"]["properties"]["maxAge"]["description"] = "a newer text".into();
    schema.open_api_v3_schema = serde_json::from_value(value).unwrap();
    let mut subscriptions = served("subscriptions.switchyard.dev").await;
    let mut column = subscriptions.spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .unwrap()[0]
        .clone();
    column.name = "Extra".into();
    subscriptions.spec.versions[0]
        .additional_printer_columns
        .as_mut()
        .unwrap()
        .push(column);
    let expected = vec![
        served("deadletterpolicies.switchyard.dev").await,
        subscriptions,
        topics,
    ];

    let err = verify(&client, &expected)
        .await
        .expect_err("the served CRDs are older than expected");
    let CrdCheckError::Mismatch(problems) = &err else {
        panic!("{err}");
    };
    assert_eq!(
        problems,
        &[
            CrdProblem::Differs {
                crd: "subscriptions.switchyard.dev".into(),
                version: "v1alpha1".into(),
                fields: vec!["/additionalPrinterColumns".into()],
            },
            CrdProblem::Differs {
                crd: "topics.switchyard.dev".into(),
                version: "v1alpha1".into(),
                fields: vec![
                    "/schema/openAPIV3Schema/properties/spec/properties/maxAge/description".into()
                ],
            },
        ]
    );
    let text = err.to_string();
    for expected in [
        "the served CRDs are not those of switchyard",
        "CRD topics.switchyard.dev version v1alpha1 differs from this operator's at /schema/openAPIV3Schema/properties/spec/properties/maxAge/description",
        "kubectl apply --server-side --force-conflicts -f crds/",
        "helm upgrade",
        "crds.install=true",
    ] {
        assert!(text.contains(expected), "{expected:?} not in: {text}");
    }
}

#[tokio::test]
async fn a_crd_that_is_not_installed_is_reported_as_such() {
    let client = kube_client().await;
    let mut absent = embedded("topics.switchyard.dev");
    absent.metadata.name = Some(format!("{}.switchyard.dev", unique("absent")));
    let err = verify(&client, &[absent.clone()])
        .await
        .expect_err("no such CRD");
    assert!(
        err.to_string()
            .contains(&format!("CRD {} is not installed", absent.name_any())),
        "{err}"
    );
}
