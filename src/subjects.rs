//! NATS subject patterns: syntax, overlap and containment. Pure; shared by every kind that
//! declares subjects or filters.

/// Checks NATS subject syntax: non-empty tokens without whitespace, `*` as a whole token,
/// `>` only as the last token.
pub fn check_subject(subject: &str) -> Result<(), &'static str> {
    if subject.is_empty() {
        return Err("is empty");
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err("has an empty token (two dots in a row, or a dot at either end)");
        }
        if token.chars().any(char::is_whitespace) {
            return Err("contains whitespace");
        }
        if *token == ">" && i != tokens.len() - 1 {
            return Err("uses '>' before the last token");
        }
        if token.len() > 1 && (token.contains('*') || token.contains('>')) {
            return Err("uses '*' or '>' inside a token; wildcards must be whole tokens");
        }
    }
    Ok(())
}

/// Whether some concrete subject matches both patterns.
pub fn subjects_overlap(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (Some(&">"), Some(_)) | (Some(_), Some(&">")) => return true,
            (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(x), Some(y)) if *x == "*" || *y == "*" || x == y => i += 1,
            _ => return false,
        }
    }
}

/// Whether every concrete subject matching `inner` also matches `outer`.
pub fn subject_contains(outer: &str, inner: &str) -> bool {
    let (outer, inner): (Vec<&str>, Vec<&str>) =
        (outer.split('.').collect(), inner.split('.').collect());
    for (i, token) in outer.iter().enumerate() {
        match (*token, inner.get(i)) {
            (">", Some(_)) => return true,
            (_, None) | (_, Some(&">")) => return false,
            ("*", Some(_)) => {}
            (literal, Some(other)) if literal == *other => {}
            _ => return false,
        }
    }
    outer.len() == inner.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_follows_wildcard_rules() {
        assert!(subjects_overlap("a.b.>", "a.b.c"));
        assert!(subjects_overlap("a.*.c", "a.b.*"));
        assert!(subjects_overlap("a.b", "a.b"));
        assert!(!subjects_overlap("a.b", "a.b.c"));
        assert!(!subjects_overlap("a.*", "a.b.c"));
        assert!(!subjects_overlap("a.b.>", "a.c.>"));
        assert!(subjects_overlap(">", "x.y"));
    }

    #[test]
    fn containment_follows_wildcard_rules() {
        assert!(subject_contains("a.b.>", "a.b.c"));
        assert!(subject_contains("a.b.>", "a.b.*.d"));
        assert!(subject_contains("a.b.>", "a.b.c.>"));
        assert!(subject_contains("a.*.c", "a.b.c"));
        assert!(subject_contains("a.*.c", "a.*.c"));
        assert!(subject_contains("a.b", "a.b"));
        assert!(
            !subject_contains("a.b.>", "a.b"),
            "'>' needs at least one more token"
        );
        assert!(!subject_contains("a.b.c", "a.b.*"));
        assert!(!subject_contains("a.*", "a.>"));
        assert!(!subject_contains("a.b", "a.b.c"));
        assert!(!subject_contains("a.b.c", "a.b"));
        assert!(!subject_contains("x.>", "a.b"));
    }
}
