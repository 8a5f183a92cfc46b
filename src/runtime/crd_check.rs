//! The start-up check that the API server serves the CRDs this operator was built with.
//!
//! Helm never upgrades a chart's `crds/` directory and `kubectl apply -k` may have been run with
//! an older checkout, so an operator can meet CRDs of another version. Running against them
//! would lose data quietly: the API server prunes status fields the stored schema does not
//! know, and rejects (or never validates) spec fields the operator relies on. So the operator
//! compares, for every kind, the served version's definition (schema, subresources, printer
//! columns, selectable fields) with its embedded copy before it starts any controller.

use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

/// What to do when the served CRDs differ from the embedded ones (`--crd-check`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CrdCheckMode {
    /// Stop with an error naming the differences and how to upgrade the CRDs.
    #[default]
    Enforce,
    /// Log the same error and run anyway.
    Warn,
    /// Do not read the CRDs (for installations not allowed to read cluster-scoped objects).
    Off,
}

/// How many differing fields a report names per CRD; the rest are counted.
const NAMED_DIFFERENCES: usize = 5;

/// What the remedy says, so an operator log line is enough to fix the installation.
pub const UPGRADE_HINT: &str = "upgrade the CRDs to this operator's version: \
`kubectl apply --server-side --force-conflicts -f crds/` from the release's source, \
or `helm upgrade` the chart with crds.install=true (the default)";

/// One CRD that is not as this build expects it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrdProblem {
    /// The CRD does not exist.
    Missing { crd: String },
    /// The CRD exists but does not serve the version this operator uses.
    VersionNotServed { crd: String, version: String },
    /// The served version's definition differs at these fields (JSON pointers).
    Differs {
        crd: String,
        version: String,
        fields: Vec<String>,
    },
}

impl fmt::Display for CrdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { crd } => write!(f, "CRD {crd} is not installed"),
            Self::VersionNotServed { crd, version } => {
                write!(f, "CRD {crd} does not serve version {version}")
            }
            Self::Differs {
                crd,
                version,
                fields,
            } => {
                let named: Vec<&str> = fields
                    .iter()
                    .take(NAMED_DIFFERENCES)
                    .map(String::as_str)
                    .collect();
                write!(
                    f,
                    "CRD {crd} version {version} differs from this operator's at {}",
                    named.join(", ")
                )?;
                if fields.len() > NAMED_DIFFERENCES {
                    write!(f, " and {} more", fields.len() - NAMED_DIFFERENCES)?;
                }
                Ok(())
            }
        }
    }
}

/// Why the check failed.
#[derive(Debug, thiserror::Error)]
pub enum CrdCheckError {
    #[error(
        "the served CRDs are not those of switchyard {}: {}; {UPGRADE_HINT}",
        env!("CARGO_PKG_VERSION"),
        join(.0)
    )]
    Mismatch(Vec<CrdProblem>),
    #[error(
        "not allowed to read CRD {crd}: the operator's ServiceAccount needs get on \
         customresourcedefinitions.apiextensions.k8s.io (the Helm chart grants it by name), \
         or run with --crd-check off"
    )]
    Forbidden { crd: String },
    #[error("cannot read CRD {crd}: {source}")]
    Unreadable {
        crd: String,
        #[source]
        source: kube::Error,
    },
}

impl CrdCheckError {
    fn reading(crd: String, source: kube::Error) -> Self {
        match &source {
            kube::Error::Api(status) if status.code == 403 => Self::Forbidden { crd },
            _ => Self::Unreadable { crd, source },
        }
    }
}

fn join(problems: &[CrdProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads every expected CRD from the API server and compares it with `expected`.
pub async fn verify(
    client: &Client,
    expected: &[CustomResourceDefinition],
) -> Result<(), CrdCheckError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut problems = Vec::new();
    for want in expected {
        let name = want.name_any();
        let served = api
            .get_opt(&name)
            .await
            .map_err(|source| CrdCheckError::reading(name.clone(), source))?;
        problems.extend(compare(want, served.as_ref()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CrdCheckError::Mismatch(problems))
    }
}

/// The problems of one served CRD (`None`: absent) against the expected one: every version the
/// expected CRD serves must be served with the same definition.
pub fn compare(
    expected: &CustomResourceDefinition,
    served: Option<&CustomResourceDefinition>,
) -> Vec<CrdProblem> {
    let crd = expected.name_any();
    let Some(served) = served else {
        return vec![CrdProblem::Missing { crd }];
    };
    let mut problems = Vec::new();
    for want in expected.spec.versions.iter().filter(|v| v.served) {
        let have = served
            .spec
            .versions
            .iter()
            .find(|v| v.name == want.name && v.served);
        let Some(have) = have else {
            problems.push(CrdProblem::VersionNotServed {
                crd: crd.clone(),
                version: want.name.clone(),
            });
            continue;
        };
        let mut fields = Vec::new();
        differences(&definition(want), &definition(have), "", &mut fields);
        if !fields.is_empty() {
            problems.push(CrdProblem::Differs {
                crd: crd.clone(),
                version: want.name.clone(),
                fields,
            });
        }
    }
    problems
}

/// The parts of a version that decide what the API server stores and shows. Whether it is the
/// storage version is left out: a newer CRD may store a later version and still serve ours.
fn definition(version: &CustomResourceDefinitionVersion) -> Value {
    serde_json::json!({
        "schema": version.schema,
        "subresources": version.subresources,
        "additionalPrinterColumns": version.additional_printer_columns,
        "selectableFields": version.selectable_fields,
    })
}

/// Collects the JSON pointers at which `want` and `have` differ, as deep as both are objects.
fn differences(want: &Value, have: &Value, at: &str, out: &mut Vec<String>) {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => {
            let mut keys: Vec<&String> = w.keys().chain(h.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let path = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (w.get(key), h.get(key)) {
                    (Some(w), Some(h)) => differences(w, h, &path, out),
                    (w, h) if is_empty(w) && is_empty(h) => {}
                    _ => out.push(path),
                }
            }
        }
        (Value::Array(w), Value::Array(h)) if w.len() == h.len() => {
            for (i, (w, h)) in w.iter().zip(h).enumerate() {
                differences(w, h, &format!("{at}/{i}"), out);
            }
        }
        (w, h) if w == h => {}
        _ => out.push(if at.is_empty() { "/".into() } else { at.into() }),
    }
}

/// An absent field and a null one mean the same to the API server.
fn is_empty(value: Option<&Value>) -> bool {
    value.is_none_or(Value::is_null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdgen;

    fn topic_crd() -> CustomResourceDefinition {
        crdgen::all()
            .into_iter()
            .find(|c| c.name_any() == "topics.switchyard.dev")
            .expect("the Topic CRD")
    }

    /// The Topic CRD with its schema edited as JSON.
    fn with_schema(
        mut crd: CustomResourceDefinition,
        edit: impl FnOnce(&mut Value),
    ) -> CustomResourceDefinition {
        let schema = crd.spec.versions[0].schema.as_mut().expect("schema");
        let mut value = serde_json::to_value(&schema.open_api_v3_schema).unwrap();
        edit(&mut value);
        schema.open_api_v3_schema = serde_json::from_value(value).unwrap();
        crd
    }

    #[test]
    fn the_same_crd_has_no_problems() {
        let crd = topic_crd();
        assert_eq!(compare(&crd, Some(&crd.clone())), vec![]);
    }

    #[test]
    fn a_missing_crd_is_named() {
        let problems = compare(&topic_crd(), None);
        assert_eq!(
            problems,
            vec![CrdProblem::Missing {
                crd: "topics.switchyard.dev".into()
            }]
        );
        assert_eq!(
            problems[0].to_string(),
            "CRD topics.switchyard.dev is not installed"
        );
    }

    #[test]
    fn a_changed_description_is_reported_with_its_path() {
        let expected = topic_crd();
        let served = with_schema(topic_crd(), |s| {
            s["properties"]["spec"]["properties"]["maxAge"]["description"] = "older text".into();
        });
        let problems = compare(&expected, Some(&served));
        assert_eq!(
            problems,
            vec![CrdProblem::Differs {
                crd: "topics.switchyard.dev".into(),
                version: "v1alpha1".into(),
                fields: vec![
                    "/schema/openAPIV3Schema/properties/spec/properties/maxAge/description".into()
                ],
            }]
        );
    }

    #[test]
    fn a_field_the_served_crd_lacks_is_reported() {
        let expected = topic_crd();
        let served = with_schema(topic_crd(), |s| {
            s["properties"]["spec"]["properties"]
                .as_object_mut()
                .unwrap()
                .remove("maxAge");
        });
        let problems = compare(&expected, Some(&served));
        let CrdProblem::Differs { fields, .. } = &problems[0] else {
            panic!("{problems:?}");
        };
        assert_eq!(
            fields,
            &["/schema/openAPIV3Schema/properties/spec/properties/maxAge"]
        );
    }

    #[test]
    fn a_version_not_served_is_reported() {
        let expected = topic_crd();
        let mut served = topic_crd();
        served.spec.versions[0].served = false;
        assert_eq!(
            compare(&expected, Some(&served)),
            vec![CrdProblem::VersionNotServed {
                crd: "topics.switchyard.dev".into(),
                version: "v1alpha1".into()
            }]
        );
    }

    #[test]
    fn the_storage_flag_and_other_versions_do_not_matter() {
        let expected = topic_crd();
        let mut served = topic_crd();
        let mut later = served.spec.versions[0].clone();
        later.name = "v1beta1".into();
        served.spec.versions[0].storage = false;
        served.spec.versions.push(later);
        assert_eq!(compare(&expected, Some(&served)), vec![]);
    }

    #[test]
    fn a_missing_status_subresource_is_reported() {
        let expected = topic_crd();
        let mut served = topic_crd();
        served.spec.versions[0].subresources = None;
        let problems = compare(&expected, Some(&served));
        let CrdProblem::Differs { fields, .. } = &problems[0] else {
            panic!("{problems:?}");
        };
        assert_eq!(fields, &["/subresources"]);
    }

    #[test]
    fn the_error_names_at_most_five_fields_and_says_how_to_upgrade() {
        let problem = CrdProblem::Differs {
            crd: "topics.switchyard.dev".into(),
            version: "v1alpha1".into(),
            fields: (0..7).map(|i| format!("/f{i}")).collect(),
        };
        let text = CrdCheckError::Mismatch(vec![problem]).to_string();
        assert!(
            text.contains("at /f0, /f1, /f2, /f3, /f4 and 2 more"),
            "{text}"
        );
        assert!(text.contains("kubectl apply --server-side"), "{text}");
        assert!(text.contains("crds.install=true"), "{text}");
        assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    }

    #[test]
    fn a_refusal_to_read_says_which_permission_is_missing() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "code": 403, "message": "forbidden", "reason": "Forbidden", "status": "Failure"
        }))
        .unwrap();
        let err = CrdCheckError::reading(
            "topics.switchyard.dev".into(),
            kube::Error::Api(Box::new(status)),
        );
        let text = err.to_string();
        assert!(
            text.contains("not allowed to read CRD topics.switchyard.dev"),
            "{text}"
        );
        assert!(
            text.contains("needs get on customresourcedefinitions"),
            "{text}"
        );
        assert!(text.contains("--crd-check off"), "{text}");
    }

    #[test]
    fn json_pointer_segments_are_escaped() {
        let mut out = Vec::new();
        differences(
            &serde_json::json!({"a/b": 1, "c~d": 1}),
            &serde_json::json!({"a/b": 2, "c~d": 2}),
            "",
            &mut out,
        );
        assert_eq!(out, vec!["/a~1b", "/c~0d"]);
    }
}
