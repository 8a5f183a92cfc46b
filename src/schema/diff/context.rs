//! Where the comparison stands: the place being compared, and what was found so far.
//!
//! Results are shared, not copied: the differences of a memoized pair of nodes appear under
//! every place that reaches the pair as one [`Item::Nested`] pointing at the same [`Found`].
//! Copying them instead would cost as much as there are paths through shared definitions,
//! which grows exponentially with nesting; flattening with a limit happens once, at the end.

use std::{collections::HashSet, rc::Rc};

use crate::schema::{build::escape, change::ChangeKind};

/// The differences found comparing one pair of nodes, with paths relative to that pair.
#[derive(Debug)]
pub(crate) struct Found {
    items: Vec<Item>,
    /// Whether every difference in `items`, nested ones included, is compatible.
    compatible: bool,
}

impl Found {
    pub fn empty() -> Found {
        Found {
            items: Vec::new(),
            compatible: true,
        }
    }

    pub fn is_compatible(&self) -> bool {
        self.compatible
    }
}

#[derive(Debug)]
enum Item {
    /// A difference at `at`: escaped pointer segments joined by `/`, empty for the pair itself.
    Change { kind: ChangeKind, at: Rc<str> },
    /// The differences of a nested pair, placed at `at`.
    Nested { at: Rc<str>, found: Rc<Found> },
}

/// The state of one comparison scope (Confluent's `Context`, without the shared memo).
pub(crate) struct Ctx {
    path: Vec<String>,
    items: Vec<Item>,
    compatible: bool,
}

impl Default for Ctx {
    fn default() -> Self {
        Ctx {
            path: Vec::new(),
            items: Vec::new(),
            compatible: true,
        }
    }
}

impl Ctx {
    /// A scope at the same place with nothing found yet, to try a comparison before keeping it.
    pub fn sub(&self) -> Ctx {
        Ctx {
            path: self.path.clone(),
            ..Ctx::default()
        }
    }

    pub fn enter(&mut self, segment: &str) {
        self.path.push(escape(segment));
    }

    pub fn enter_index(&mut self, index: usize) {
        self.path.push(index.to_string());
    }

    pub fn leave(&mut self) {
        self.path.pop();
    }

    fn here(&self) -> Rc<str> {
        self.path.join("/").into()
    }

    pub fn add(&mut self, kind: ChangeKind) {
        self.compatible &= kind.is_compatible();
        let at = self.here();
        self.items.push(Item::Change { kind, at });
    }

    /// Adds a difference one segment below the current place, such as `maxLength`.
    pub fn add_at(&mut self, segment: &str, kind: ChangeKind) {
        self.enter(segment);
        self.add(kind);
        self.leave();
    }

    /// Places what a nested pair of nodes found at the current path.
    pub fn add_nested(&mut self, found: Rc<Found>) {
        if found.items.is_empty() {
            return;
        }
        self.compatible &= found.compatible;
        let at = self.here();
        self.items.push(Item::Nested { at, found });
    }

    /// Keeps what a scope made by [`Ctx::sub`] found.
    pub fn absorb(&mut self, other: Ctx) {
        self.compatible &= other.compatible;
        self.items.extend(other.items);
    }

    pub fn is_compatible(&self) -> bool {
        self.compatible
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn into_found(self) -> Found {
        Found {
            items: self.items,
            compatible: self.compatible,
        }
    }
}

/// Every difference in `found` as (kind, pointer), without repeats, in the order found, at
/// most `limit` of them. When the list is cut, one breaking difference is still listed if
/// there is any, so that the list never looks more compatible than the verdict.
pub(crate) fn flatten(found: &Found, limit: usize) -> Vec<(ChangeKind, String)> {
    // Shared results can make the same (kind, pointer) reachable many times over; visits are
    // capped so that listing them stays bounded too.
    let mut visits = limit.saturating_mul(100);
    let mut seen = HashSet::new();
    let mut listed = Vec::new();
    let mut stack = vec![(found, 0usize, String::new())];
    while let Some((current, next, prefix)) = stack.last_mut() {
        let Some(item) = current.items.get(*next) else {
            stack.pop();
            continue;
        };
        *next += 1;
        visits = visits.saturating_sub(1);
        if listed.len() == limit || visits == 0 {
            break;
        }
        match item {
            Item::Change { kind, at } => {
                let pointer = join(prefix, at);
                if seen.insert((*kind, pointer.clone())) {
                    listed.push((*kind, pointer));
                }
            }
            Item::Nested { at, found } => {
                let prefix = join(prefix, at);
                stack.push((found, 0, prefix));
            }
        }
    }
    if !found.compatible && listed.iter().all(|(kind, _)| kind.is_compatible()) {
        listed.extend(first_breaking(found));
    }
    listed
}

/// A breaking difference, found by following the results marked incompatible.
fn first_breaking(found: &Found) -> Option<(ChangeKind, String)> {
    let mut prefix = String::new();
    let mut current = found;
    loop {
        let mut deeper = None;
        for item in &current.items {
            match item {
                Item::Change { kind, at } if !kind.is_compatible() => {
                    return Some((*kind, join(&prefix, at)));
                }
                Item::Nested { at, found } if !found.compatible && deeper.is_none() => {
                    deeper = Some((at, found));
                }
                _ => {}
            }
        }
        let (at, found) = deeper?;
        prefix = join(&prefix, at);
        current = found;
    }
}

fn join(prefix: &str, at: &str) -> String {
    match (prefix.is_empty(), at.is_empty()) {
        (_, true) => prefix.to_string(),
        (true, false) => at.to_string(),
        (false, false) => format!("{prefix}/{at}"),
    }
}
