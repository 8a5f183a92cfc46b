//! What a validation run found: the objects it checked, each problem with where it is, and
//! which source each compatibility check was judged against. Plain data, rendered by
//! [`super::render`]; its JSON form is the documented `--output json` shape.

use std::fmt;

use serde::Serialize;

/// Whether a problem fails the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Which check found a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// The file or document could not be read as a Kubernetes object.
    Manifest,
    /// The CRD's OpenAPI schema: types, bounds, patterns, required and unknown fields.
    CrdSchema,
    /// The CRD's CEL rules (`x-kubernetes-validations`).
    Cel,
    /// A reference to another object of the set.
    Reference,
    /// An EventSchema's `spec.schema` is not a usable JSON Schema.
    JsonSchema,
    /// Versions of one event type: downgrades, changed content, duplicates.
    Version,
    /// A new version breaks the compatibility its mode asks for.
    Compatibility,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Manifest => "manifest",
            Check::CrdSchema => "crd-schema",
            Check::Cel => "cel",
            Check::Reference => "reference",
            Check::JsonSchema => "json-schema",
            Check::Version => "version",
            Check::Compatibility => "compatibility",
        }
    }
}

/// Where a document came from: a file (or `-` for standard input) and the document's place in
/// it, counted from 1.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Origin {
    pub file: String,
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.file, self.document)
    }
}

/// Which object: kind, namespace (defaulted) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectId {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub check: Check,
    pub file: String,
    /// The document in the file, from 1; absent for a file that could not be split into documents.
    pub document: Option<usize>,
    /// Absent where the document is not (yet) a recognisable object.
    pub object: Option<ObjectId>,
    /// The field, as `spec.retry.maxDeliveries` or `spec.subjects[0]`; inside an EventSchema's
    /// document, the field followed by a JSON pointer (`spec.schema#/properties/total`).
    pub path: Option<String>,
    pub message: String,
}

impl Problem {
    /// A problem of one object, at `path` when given.
    pub fn of(
        severity: Severity,
        check: Check,
        origin: &Origin,
        object: &ObjectId,
        path: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity,
            check,
            file: origin.file.clone(),
            document: Some(origin.document),
            object: Some(object.clone()),
            path,
            message: message.into(),
        }
    }
}

/// What the versions of an EventSchema were compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Against {
    /// The schema registry's records.
    Registry,
    /// The same file in a git revision.
    Git,
    /// Nothing: no registry, and no earlier version in git (or no git at all); `detail` says why.
    None,
}

/// Which source one EventSchema's version and compatibility check used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceUsed {
    pub object: ObjectId,
    pub file: String,
    pub document: usize,
    pub version: i64,
    pub source: Against,
    pub detail: String,
}

/// A switchyard.dev object that was checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Checked {
    pub file: String,
    pub document: usize,
    #[serde(flatten)]
    pub object: ObjectId,
}

/// Everything a run found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Files read (standard input counts as one).
    pub files: usize,
    pub objects: Vec<Checked>,
    /// Objects of other API groups, left alone.
    pub ignored: usize,
    pub problems: Vec<Problem>,
    pub sources: Vec<SourceUsed>,
    /// Things said once about the whole run (what was not checked, and why).
    pub notes: Vec<String>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == severity)
            .count()
    }

    /// Problems in file and document order; the checks' own order within a document.
    pub fn sort(&mut self) {
        self.problems
            .sort_by(|a, b| (&a.file, a.document).cmp(&(&b.file, b.document)));
        self.objects
            .sort_by(|a, b| (&a.file, a.document).cmp(&(&b.file, b.document)));
        self.sources
            .sort_by(|a, b| (&a.file, a.document).cmp(&(&b.file, b.document)));
    }
}
