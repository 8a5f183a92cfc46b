//! An event's body parsed for validation only, in the form the validator reads
//! ([`jsonschema::json::Json`]): one flat list of entries in document order, where a container
//! says where it ends, strings borrow from the body unless they hold escapes, and numbers are
//! `serde_json`'s own. Building a `serde_json::Value` instead costs an allocation for every
//! string and member name and an ordered map for every object, which was most of what
//! validating an event cost; this parse allocates one list.
//!
//! Judged exactly as the `Value` of the same body would be, with one exception the JSON
//! standard leaves open: a member name that occurs twice is looked up as its last occurrence
//! (what `Value` keeps), but every occurrence is validated where members are walked.

use std::{borrow::Cow, cell::Cell, fmt};

use jsonschema::{
    JsonType,
    json::{Array, Json, Node, NodeIdentity, Object, cmp},
};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A parsed body; [`Document::root`] is what the validator reads.
#[derive(Debug)]
pub struct Document<'a> {
    entries: Vec<Entry<'a>>,
}

/// One value of the document; an object's members are a name (a `String`) followed by the
/// value's entries.
#[derive(Debug, Clone, PartialEq)]
enum Entry<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    /// `size`: the container's entries, this one included; `len`: its elements or members.
    Array {
        size: u32,
        len: u32,
    },
    Object {
        size: u32,
        len: u32,
    },
}

impl<'a> Document<'a> {
    /// Parses `body` as JSON, with the limits and errors of `serde_json::from_slice` (nesting
    /// deeper than 128 is refused, as it is for a `Value`).
    pub fn parse(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        let mut document = Self {
            entries: SPARE.take(),
        };
        // About one entry per 10 bytes of typical event JSON: one allocation for most bodies.
        document.entries.reserve(body.len() / 8 + 4);
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        Append(&mut document.entries).deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(document)
    }

    /// The whole document.
    pub fn root(&self) -> Place<'_> {
        Place(&self.entries)
    }
}

thread_local! {
    /// The entries of the last document parsed on this thread, emptied: the next one fills
    /// them, so a dispatcher parses into memory that is already allocated and warm.
    static SPARE: Cell<Vec<Entry<'static>>> = const { Cell::new(Vec::new()) };
}

/// The most entries a spare list keeps room for (about 1 MiB): one huge body must not hold
/// its memory for good.
const SPARE_ENTRIES: usize = 1 << 15;

impl Drop for Document<'_> {
    fn drop(&mut self) {
        let mut entries = std::mem::take(&mut self.entries);
        if entries.capacity() > SPARE_ENTRIES {
            return;
        }
        entries.clear();
        // Reuses the allocation (an empty list holds no borrowed strings), in safe code:
        // collecting a list's own iterator into a list of the same layout keeps its buffer.
        let spare: Vec<Entry<'static>> = entries.into_iter().map(|_| unreachable!()).collect();
        SPARE.set(spare);
    }
}

/// Appends the entries of one value.
struct Append<'t, 'de>(&'t mut Vec<Entry<'de>>);

impl<'de> DeserializeSeed<'de> for Append<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// How many entries a container whose header is at `header` has, for its header.
fn size_from<E: de::Error>(entries: &[Entry<'_>], header: usize) -> Result<u32, E> {
    u32::try_from(entries.len() - header).map_err(|_| E::custom("the document has too many values"))
}

impl<'de> Visitor<'de> for Append<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.push(Entry::Null);
        Ok(())
    }

    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.0.push(Entry::Bool(b));
        Ok(())
    }

    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        self.0.push(Entry::Number(n.into()));
        Ok(())
    }

    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        self.0.push(Entry::Number(n.into()));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<(), E> {
        // The parser never yields a non-finite number; refuse one rather than invent a value.
        let n = Number::from_f64(n).ok_or_else(|| E::custom("a number that is not finite"))?;
        self.0.push(Entry::Number(n));
        Ok(())
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<(), E> {
        self.0.push(Entry::String(Cow::Borrowed(s)));
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.0.push(Entry::String(Cow::Owned(s.to_owned())));
        Ok(())
    }

    fn visit_string<E>(self, s: String) -> Result<(), E> {
        self.0.push(Entry::String(Cow::Owned(s)));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let header = self.0.len();
        self.0.push(Entry::Array { size: 0, len: 0 });
        let mut len = 0u32;
        while seq.next_element_seed(Append(&mut *self.0))?.is_some() {
            len += 1;
        }
        let size = size_from(self.0, header)?;
        self.0[header] = Entry::Array { size, len };
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let header = self.0.len();
        self.0.push(Entry::Object { size: 0, len: 0 });
        let mut len = 0u32;
        while map.next_key_seed(Append(&mut *self.0))?.is_some() {
            map.next_value_seed(Append(&mut *self.0))?;
            len += 1;
        }
        let size = size_from(self.0, header)?;
        self.0[header] = Entry::Object { size, len };
        Ok(())
    }
}

/// One value in a [`Document`], the node type the validator walks: the document's entries
/// from the value's own on (never empty).
#[derive(Clone, Copy, Debug)]
pub struct Place<'a>(&'a [Entry<'a>]);

impl<'a> Place<'a> {
    fn entry(&self) -> &'a Entry<'a> {
        &self.0[0]
    }

    /// The entries of this value's elements or members.
    fn inside(&self) -> &'a [Entry<'a>] {
        &self.0[1..self.size()]
    }

    /// How many entries this value has.
    fn size(&self) -> usize {
        match self.entry() {
            Entry::Array { size, .. } | Entry::Object { size, .. } => *size as usize,
            _ => 1,
        }
    }

    /// The same value as a `serde_json::Value`: for error messages, which quote the instance.
    pub fn to_value(&self) -> Value {
        match self.entry() {
            Entry::Null => Value::Null,
            Entry::Bool(b) => Value::Bool(*b),
            Entry::Number(n) => Value::Number(n.clone()),
            Entry::String(s) => Value::String(s.clone().into_owned()),
            Entry::Array { .. } => {
                Value::Array(Elements(self.inside()).map(|e| e.to_value()).collect())
            }
            Entry::Object { .. } => Value::Object(
                Members(self.inside())
                    .map(|(name, value)| (name.to_owned(), value.to_value()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

/// The representation [`Document`]s are validated in.
pub struct DocumentJson;

impl Json for DocumentJson {
    type Node<'a> = Place<'a>;
    type PreparedKey = String;
    type StringBuffer = ();

    /// A lookup scans the members, so one pass over them always beats several lookups.
    const KEYS_PER_LOOKUP: usize = 1 << 16;
    /// A document is a tree.
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> String {
        key.to_owned()
    }

    fn with_string_node<T>((): &mut (), string: &str, f: impl FnOnce(Self::Node<'_>) -> T) -> T {
        let entries = [Entry::String(Cow::Borrowed(string))];
        f(Place(&entries))
    }
}

impl<'a> Node<'a, DocumentJson> for Place<'a> {
    type Object = Place<'a>;
    type Array = Place<'a>;
    type Number = &'a Number;

    fn as_object(&self) -> Option<Self::Object> {
        matches!(self.entry(), Entry::Object { .. }).then_some(*self)
    }

    fn as_array(&self) -> Option<Self::Array> {
        matches!(self.entry(), Entry::Array { .. }).then_some(*self)
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self.entry() {
            Entry::String(s) => Some(Cow::Borrowed(s)),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<Self::Number> {
        match self.entry() {
            Entry::Number(n) => Some(n),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.entry() {
            Entry::Bool(b) => Some(*b),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.entry(), Entry::Null)
    }

    fn json_type(&self) -> JsonType {
        match self.entry() {
            Entry::Null => JsonType::Null,
            Entry::Bool(_) => JsonType::Boolean,
            Entry::Number(_) => JsonType::Number,
            Entry::String(_) => JsonType::String,
            Entry::Array { .. } => JsonType::Array,
            Entry::Object { .. } => JsonType::Object,
        }
    }

    /// `minLength`/`maxLength` count code points; the byte length decides most bounds alone, as
    /// a code point takes one to four bytes.
    fn string_length_within(&self, min: u64, max: u64) -> Option<bool> {
        let Entry::String(s) = self.entry() else {
            return None;
        };
        let bytes = s.len() as u64;
        if bytes < min || bytes.div_ceil(4) > max {
            return Some(false);
        }
        if bytes <= max && bytes.div_ceil(4) >= min {
            return Some(true);
        }
        Some((min..=max).contains(&(s.chars().count() as u64)))
    }

    /// `enum` and `const` compare every candidate: scalars without building a `Value`.
    fn equals_value(&self, expected: &Value) -> bool {
        match (self.entry(), expected) {
            (Entry::String(s), Value::String(e)) => s == e,
            (Entry::Number(n), Value::Number(e)) => cmp::equal_numbers(n, e),
            (Entry::Bool(b), Value::Bool(e)) => b == e,
            (Entry::Null, Value::Null) => true,
            (Entry::Array { .. } | Entry::Object { .. }, Value::Array(_) | Value::Object(_)) => {
                cmp::equal(&Place::to_value(self), expected)
            }
            _ => false,
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(Place::to_value(self))
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::new(self.0.as_ptr() as usize))
    }
}

impl<'a> Object<'a, DocumentJson> for Place<'a> {
    type Node = Place<'a>;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        match self.entry() {
            Entry::Object { len, .. } => *len as usize,
            _ => 0,
        }
    }

    fn get(&self, key: &String) -> Option<Self::Node> {
        // The last occurrence, as a `Value` keeps it.
        let mut found = None;
        for (name, value) in self.members() {
            if name == key {
                found = Some(value);
            }
        }
        found
    }

    fn members(&self) -> Members<'a> {
        Members(self.inside())
    }
}

/// The members of an object not yet visited, in the order the body writes them: each a name
/// entry followed by the value's entries.
pub struct Members<'a>(&'a [Entry<'a>]);

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, Place<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (Entry::String(name), rest) = self.0.split_first()? else {
            unreachable!("an object's members start with their names")
        };
        let value = Place(rest);
        self.0 = &rest[value.size()..];
        Some((name, value))
    }
}

impl<'a> Array<'a, DocumentJson> for Place<'a> {
    type Node = Place<'a>;
    type ElementsIter = Elements<'a>;

    fn len(&self) -> usize {
        match self.entry() {
            Entry::Array { len, .. } => *len as usize,
            _ => 0,
        }
    }

    fn elements(&self) -> Elements<'a> {
        Elements(self.inside())
    }
}

/// The elements of an array not yet visited.
pub struct Elements<'a>(&'a [Entry<'a>]);

impl<'a> Iterator for Elements<'a> {
    type Item = Place<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let element = Place(self.0);
        self.0 = &self.0[element.size()..];
        Some(element)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn place_of<'a>(document: &'a Document<'a>, pointer: &str) -> Place<'a> {
        let mut place = document.root();
        for token in pointer.split('/').skip(1) {
            place = match place.entry() {
                Entry::Object { .. } => Object::get(&place, &token.to_owned()).expect("a member"),
                _ => place
                    .elements()
                    .nth(token.parse().expect("an index"))
                    .expect("an element"),
            };
        }
        place
    }

    #[test]
    fn a_document_reads_back_as_the_value_of_the_same_body() {
        for body in [
            &br#"{"b": [1, -2, 3.5, 1e2, 18446744073709551615, true, null], "a": {"x": "y\n\u00e9", "e": {}, "f": []}, "": ""}"#[..],
            br#"[[], [[1], {}], {"a": [{"b": null}]}, "x"]"#,
            b"17",
            b" \"just a string\" ",
        ] {
            let document = Document::parse(body).unwrap();
            let value: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(document.root().to_value(), value, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn containers_know_their_size_and_members_their_places() {
        let document =
            Document::parse(br#"{"a": [1, [2, 3], {"b": 4}], "c": {"d": true}}"#).unwrap();
        assert_eq!(Object::len(&document.root()), 2);
        assert_eq!(Array::len(&place_of(&document, "/a")), 3);
        assert_eq!(Array::len(&place_of(&document, "/a/1")), 2);
        assert_eq!(place_of(&document, "/a/2/b").to_value(), json!(4));
        assert_eq!(place_of(&document, "/c/d").as_boolean(), Some(true));
        let names: Vec<&str> = document.root().members().map(|(name, _)| name).collect();
        assert_eq!(names, ["a", "c"]);
        assert_ne!(
            place_of(&document, "/a").identity(),
            place_of(&document, "/a/0").identity()
        );
    }

    #[test]
    fn strings_without_escapes_are_borrowed_from_the_body() {
        let document = Document::parse(br#"{"plain": "text", "esc\"aped": "li\ne"}"#).unwrap();
        assert!(matches!(
            document.entries[1],
            Entry::String(Cow::Borrowed("plain"))
        ));
        assert!(matches!(
            document.entries[2],
            Entry::String(Cow::Borrowed("text"))
        ));
        assert_eq!(document.entries[3], Entry::String("esc\"aped".into()));
        assert!(matches!(document.entries[4], Entry::String(Cow::Owned(_))));
    }

    #[test]
    fn a_document_parses_into_the_entries_the_last_one_left() {
        let body = br#"{"a": [1, 2, 3], "b": "text"}"#;
        let first = Document::parse(body).unwrap();
        let buffer = first.entries.as_ptr();
        let entries = first.entries.len();
        drop(first);
        let second = Document::parse(body).unwrap();
        assert_eq!(second.entries.as_ptr(), buffer);
        assert_eq!(second.entries.len(), entries);
        // A failed parse hands its entries back too, emptied.
        drop(second);
        assert!(Document::parse(b"[1, 2,").is_err());
        assert_eq!(Document::parse(b"[]").unwrap().entries.len(), 1);
    }

    #[test]
    fn what_a_value_refuses_a_document_refuses() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for body in [
            &b"{\"a\":"[..],
            b"",
            b"nul",
            b"1e400",
            b"{\"a\" 1}",
            b"{} {}",
            b"[1,]",
            deep.as_bytes(),
        ] {
            assert!(
                Document::parse(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(serde_json::from_slice::<Value>(body).is_err());
        }
    }

    #[test]
    fn the_last_of_a_repeated_member_is_the_one_looked_up() {
        let document = Document::parse(br#"{"a": 1, "a": "two"}"#).unwrap();
        let found = Object::get(&document.root(), &DocumentJson::prepare_key("a")).unwrap();
        assert_eq!(found.as_string().as_deref(), Some("two"));
        assert!(Object::get(&document.root(), &DocumentJson::prepare_key("b")).is_none());
    }

    #[test]
    fn values_equal_as_json_schema_compares_them() {
        let equal = |body: &[u8], expected: Value| {
            Document::parse(body)
                .unwrap()
                .root()
                .equals_value(&expected)
        };
        assert!(equal(b"1", json!(1.0)));
        assert!(equal(b"2.0", json!(2)));
        assert!(!equal(b"1", json!(true)));
        assert!(equal(br#""gold""#, json!("gold")));
        assert!(!equal(br#""gold""#, json!("silver")));
        assert!(equal(b"null", json!(null)));
        assert!(equal(br#"{"a": [1, 2.0]}"#, json!({"a": [1.0, 2]})));
        assert!(!equal(br#"{"a": [1]}"#, json!([1])));
    }
}
