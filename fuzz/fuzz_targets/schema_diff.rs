//! Fuzzes the schema compatibility engine: two documents, split at the first NUL byte (the
//! candidate is the history's only version when there is none), are parsed and compared
//! under every mode. Nothing may panic, overflow or hang, and the verdicts must keep the
//! properties the unit tests check on generated schemas.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::schema::{Compatibility, Schema, check, diff};

const MODES: [Compatibility; 7] = [
    Compatibility::None,
    Compatibility::Backward,
    Compatibility::BackwardTransitive,
    Compatibility::Forward,
    Compatibility::ForwardTransitive,
    Compatibility::Full,
    Compatibility::FullTransitive,
];

fuzz_target!(|data: &[u8]| {
    let (old, new) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    let (Ok(old), Ok(new)) = (parse(old), parse(new)) else {
        return;
    };
    assert!(diff(&old, &old).is_empty(), "a schema differs from itself");
    let history = [old.clone()];
    for mode in MODES {
        let report = check(mode, &history, &new);
        assert_eq!(report.compatible, report.breaking().next().is_none());
    }
    let verdict = |mode| check(mode, &history, &new).compatible;
    assert_eq!(
        verdict(Compatibility::Full),
        verdict(Compatibility::Backward) && verdict(Compatibility::Forward)
    );
    let reversed = check(Compatibility::Forward, &[new.clone()], &old);
    assert_eq!(reversed.compatible, verdict(Compatibility::Backward));
});

fn parse(bytes: &[u8]) -> Result<Schema, ()> {
    let text = std::str::from_utf8(bytes).map_err(|_| ())?;
    Schema::from_json_str(text).map_err(|_| ())
}
