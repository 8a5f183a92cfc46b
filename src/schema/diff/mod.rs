//! The differences between two schema versions, computed the way Confluent Schema Registry's
//! `SchemaDiff` does: walk both schemas side by side, one family at a time, and record every
//! change with its kind and place.
//!
//! Every pair of nodes is compared once (memoized), which bounds the work on schemas whose
//! definitions refer to one another, and a pair met again while it is still being compared is
//! a recursive cycle, assumed compatible for the moment. Because that assumption can be wrong,
//! the comparison is repeated with the pairs found incompatible fed back in until nothing
//! changes; a schema without recursion takes a single pass.

mod array;
mod combined;
mod context;
mod matching;
mod number;
mod object;
mod scalar;

use std::{
    collections::{HashMap, HashSet},
    rc::Rc,
};

use self::context::{Ctx, Found, flatten};
use super::{
    change::{ChangeKind, Difference},
    document::Schema,
    model::{Kind, Model, NodeId},
};

/// Passes of the fixpoint before the last result is taken as it is. Each pass only adds
/// incompatible pairs, so real schemas settle in two or three.
const MAX_PASSES: usize = 16;
/// At most this many differences are listed per pair of versions; the verdict always counts
/// all of them, and a breaking one is listed whenever there is one.
pub const MAX_LISTED: usize = 10_000;
/// Stack left before [`stacker`] moves the comparison to a fresh segment, and that
/// segment's size: recursion through long `$ref` chains then costs heap, not a stack overflow.
const RED_ZONE: usize = 128 * 1024;
const STACK_SEGMENT: usize = 2 * 1024 * 1024;

/// Every difference from `old` to `new`, each marked compatible when data written with `old`
/// stays readable with `new` despite it.
pub fn diff(old: &Schema, new: &Schema) -> Vec<Difference> {
    let mut seed: HashMap<Key, Rc<Found>> = HashMap::new();
    let mut passes = 0;
    loop {
        passes += 1;
        let mut engine = Engine::new(&old.model, &new.model, seed);
        let mut ctx = Ctx::default();
        engine.compare(&mut ctx, Some(old.model.root), Some(new.model.root));
        if !engine.truncated || passes == MAX_PASSES {
            return finish(ctx);
        }
        let known = engine.seed.len();
        seed = engine.incompatible_pairs();
        if seed.len() == known {
            return finish(ctx);
        }
    }
}

/// Turns the shared results into pointers.
fn finish(ctx: Ctx) -> Vec<Difference> {
    flatten(&ctx.into_found(), MAX_LISTED)
        .into_iter()
        .map(|(kind, path)| {
            let pointer = if path.is_empty() {
                String::from("#")
            } else {
                format!("#/{path}")
            };
            Difference::new(kind, pointer)
        })
        .collect()
}

/// A compared pair: old node, new node, and whether the two schemas swapped roles (under
/// `not`, where the comparison runs backwards).
type Key = (bool, NodeId, NodeId);

pub(crate) struct Engine<'a> {
    models: [&'a Model; 2],
    /// Under an odd number of `not`s, the new schema plays the old one's part.
    flipped: bool,
    memo: HashMap<Key, Rc<Found>>,
    in_progress: HashSet<Key>,
    /// Pairs a previous pass found incompatible, used when a cycle meets them again.
    seed: HashMap<Key, Rc<Found>>,
    /// Whether a cycle was assumed compatible without knowing.
    truncated: bool,
}

impl<'a> Engine<'a> {
    fn new(old: &'a Model, new: &'a Model, seed: HashMap<Key, Rc<Found>>) -> Self {
        Engine {
            models: [old, new],
            flipped: false,
            memo: HashMap::new(),
            in_progress: HashSet::new(),
            seed,
            truncated: false,
        }
    }

    /// The schema playing the old part here.
    pub(crate) fn old(&self) -> &'a Model {
        self.models[usize::from(self.flipped)]
    }

    /// The schema playing the new part here.
    pub(crate) fn new_side(&self) -> &'a Model {
        self.models[usize::from(!self.flipped)]
    }

    /// The seed for the next pass: this pass's incompatible pairs, plus the earlier ones.
    fn incompatible_pairs(self) -> HashMap<Key, Rc<Found>> {
        let mut seed = self.seed;
        for (key, found) in self.memo {
            if !found.is_compatible() {
                seed.insert(key, found);
            }
        }
        seed
    }

    /// Confluent's `SchemaDiff.compare`: a subschema appearing or disappearing, or both
    /// present and compared, with the result placed at the current path.
    pub(crate) fn compare(&mut self, ctx: &mut Ctx, old: Option<NodeId>, new: Option<NodeId>) {
        match (old, new) {
            (None, None) => {}
            (None, Some(_)) => ctx.add(ChangeKind::SchemaAdded),
            (Some(_), None) => ctx.add(ChangeKind::SchemaRemoved),
            (Some(old), Some(new)) => {
                let key = (
                    self.flipped,
                    self.old().resolve(old),
                    self.new_side().resolve(new),
                );
                let found = self.compare_pair(key);
                ctx.add_nested(found);
            }
        }
    }

    /// Like [`Engine::compare`] for the two schemas in reverse roles, as `not` needs.
    pub(crate) fn compare_reversed(&mut self, ctx: &mut Ctx, old: NodeId, new: NodeId) {
        self.flipped = !self.flipped;
        self.compare(ctx, Some(new), Some(old));
        self.flipped = !self.flipped;
    }

    fn compare_pair(&mut self, key: Key) -> Rc<Found> {
        if let Some(done) = self.memo.get(&key) {
            return Rc::clone(done);
        }
        if self.in_progress.contains(&key) {
            if let Some(known) = self.seed.get(&key) {
                return Rc::clone(known);
            }
            self.truncated = true;
            return Rc::new(Found::empty());
        }
        self.in_progress.insert(key);
        let mut ctx = Ctx::default();
        stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || {
            self.compare_nodes(&mut ctx, key.1, key.2);
        });
        self.in_progress.remove(&key);
        let found = Rc::new(ctx.into_found());
        self.memo.insert(key, Rc::clone(&found));
        found
    }

    /// Confluent's `SchemaDiff.compareTypes` for two resolved nodes.
    fn compare_nodes(&mut self, ctx: &mut Ctx, old: NodeId, new: NodeId) {
        let (old_node, new_node) = (&self.old().nodes[old], &self.new_side().nodes[new]);
        if self.compare_across_combination(ctx, old, new) {
            return;
        }
        if !old_node.kind.same_class(&new_node.kind) {
            // `false` accepts nothing, so anything reads it; a schema accepting everything reads
            // anything.
            if !matches!(old_node.kind, Kind::False) && !matches!(new_node.kind, Kind::True) {
                ctx.add(ChangeKind::TypeChanged);
            }
            return;
        }
        let (a, b) = (&old_node.annotations, &new_node.annotations);
        for (changed, kind) in [
            (a.id != b.id, ChangeKind::IdChanged),
            (a.title != b.title, ChangeKind::TitleChanged),
            (
                a.description != b.description,
                ChangeKind::DescriptionChanged,
            ),
            (a.default != b.default, ChangeKind::DefaultChanged),
        ] {
            if changed {
                ctx.add(kind);
            }
        }
        match (&old_node.kind, &new_node.kind) {
            (Kind::String(a), Kind::String(b)) => scalar::compare_strings(ctx, a, b),
            (Kind::Number(a), Kind::Number(b)) => number::compare(ctx, a, b),
            (Kind::Enum(a), Kind::Enum(b)) => scalar::compare_enums(ctx, a, b),
            (Kind::Const(a), Kind::Const(b)) if a != b => {
                ctx.add_at("const", ChangeKind::EnumArrayChanged);
            }
            (Kind::Conditional(a), Kind::Conditional(b)) if a != b => {
                ctx.add(ChangeKind::ConditionalChanged);
            }
            (Kind::Combined(a), Kind::Combined(b)) => self.compare_combined(ctx, a, b),
            (Kind::Not(a), Kind::Not(b)) => self.compare_not(ctx, *a, *b),
            (Kind::Object(a), Kind::Object(b)) => self.compare_objects(ctx, a, b),
            (Kind::Array(a), Kind::Array(b)) => self.compare_arrays(ctx, a, b),
            _ => {}
        }
    }

    /// The kind of an old-side node, through `$ref`.
    pub(crate) fn old_kind(&self, id: NodeId) -> &'a Kind {
        &self.old().node(id).kind
    }

    /// The kind of a new-side node, through `$ref`.
    pub(crate) fn new_kind(&self, id: NodeId) -> &'a Kind {
        &self.new_side().node(id).kind
    }
}
