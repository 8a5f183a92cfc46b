//! Undoing a stream's subject transform: a partitioned Topic's stream stores `<base>.<event>`
//! as `<base>.<partition>.<event>`, and publishing a stored subject again would be refused (or
//! partitioned twice). Knows the transform syntax JetStream uses, which nothing above the
//! adapter should.

use super::{Broker, BrokerError};

/// How a stream rewrites the subjects of the messages it stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectMapping {
    /// The subjects the transform applies to, with `*` wildcards.
    pub source: String,
    /// What they become: literal tokens, `{{wildcard(n)}}` and `{{partition(...)}}`.
    pub destination: String,
}

impl SubjectMapping {
    /// The subject a message was published on, given the subject the stream stored it under.
    /// `None` when the stored subject does not fit the destination (stored before the
    /// transform existed), or the transform uses a function that cannot be undone.
    pub fn published_subject(&self, stored: &str) -> Option<String> {
        let destination: Vec<&str> = self.destination.split('.').collect();
        let stored: Vec<&str> = stored.split('.').collect();
        if destination.len() != stored.len() {
            return None;
        }
        let wildcards = self.source.split('.').filter(|t| *t == "*").count();
        let mut values: Vec<Option<&str>> = vec![None; wildcards];
        for (pattern, token) in destination.iter().zip(&stored) {
            match mapping_function(pattern) {
                None if pattern == token => {}
                None => return None,
                Some(("partition", _)) => {}
                Some(("wildcard", argument)) => {
                    let index: usize = argument.trim().parse().ok()?;
                    *values.get_mut(index.checked_sub(1)?)? = Some(token);
                }
                Some(_) => return None,
            }
        }
        let mut values = values.into_iter();
        self.source
            .split('.')
            .map(|token| match token {
                "*" => values.next().flatten(),
                ">" => None,
                literal => Some(literal),
            })
            .collect::<Option<Vec<&str>>>()
            .map(|tokens| tokens.join("."))
    }
}

/// `{{name(argument)}}` → (name, argument), the name in lowercase ASCII; `None` for a literal.
fn mapping_function(token: &str) -> Option<(&'static str, &str)> {
    let inner = token.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let (name, rest) = inner.split_once('(')?;
    let argument = rest.strip_suffix(')')?;
    let name = name.trim();
    ["wildcard", "partition"]
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(name))
        .map(|known| (known, argument))
        .or(Some(("unknown", argument)))
}

impl Broker {
    /// How `stream` rewrites subjects, or `None` if it does not (or does not exist).
    pub async fn subject_mapping(
        &self,
        stream: &str,
    ) -> Result<Option<SubjectMapping>, BrokerError> {
        Ok(self
            .stream_info(stream)
            .await?
            .and_then(|info| info.config.subject_transform)
            .map(|transform| SubjectMapping {
                source: transform.source,
                destination: transform.destination,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitioned() -> SubjectMapping {
        SubjectMapping {
            source: "shop.orders.*.*.*".into(),
            destination:
                "shop.orders.{{partition(8,3)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}"
                    .into(),
        }
    }

    #[test]
    fn a_partition_token_is_taken_out_again() {
        assert_eq!(
            partitioned().published_subject("shop.orders.5.order.placed.k1"),
            Some("shop.orders.order.placed.k1".into())
        );
    }

    #[test]
    fn wildcards_go_back_to_their_places() {
        let swapped = SubjectMapping {
            source: "a.*.b.*".into(),
            destination: "x.{{ Wildcard(2) }}.{{wildcard(1)}}".into(),
        };
        assert_eq!(
            swapped.published_subject("x.two.one"),
            Some("a.one.b.two".into())
        );
    }

    #[test]
    fn subjects_that_do_not_fit_are_left_alone() {
        let mapping = partitioned();
        assert_eq!(
            mapping.published_subject("shop.orders.order.placed.k1"),
            None
        );
        assert_eq!(mapping.published_subject("shop.payments.5.a.b.c"), None);
        let unknown = SubjectMapping {
            source: "a.*".into(),
            destination: "a.{{split(1,-)}}".into(),
        };
        assert_eq!(unknown.published_subject("a.x"), None);
        let rest = SubjectMapping {
            source: "a.>".into(),
            destination: "b.>".into(),
        };
        assert_eq!(rest.published_subject("b.c"), None);
        let out_of_range = SubjectMapping {
            source: "a.*".into(),
            destination: "a.{{wildcard(2)}}".into(),
        };
        assert_eq!(out_of_range.published_subject("a.x"), None);
    }
}
