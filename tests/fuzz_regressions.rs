//! Every input a fuzz target ever crashed on (`fuzz/regressions/TARGET/`), and the fuzzers' seeds
//! (`fuzz/seeds/TARGET/`), run through the same checks as the fuzz targets, so a fixed finding stays fixed.
#![cfg(feature = "fuzzing")]
#![allow(clippy::unwrap_used)]

use std::path::Path;

fn run(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut seen = 0;
    for dir in ["regressions", "seeds"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            check(&std::fs::read(&path).unwrap());
            seen += 1;
        }
    }
    assert!(seen > 0, "no inputs for {target}");
}

#[test]
fn callback_query() {
    run("callback_query", hubspot_connect::fuzzing::callback_query);
}

#[test]
fn token_answer() {
    run("token_answer", hubspot_connect::fuzzing::token_answer);
}

#[test]
fn error_body() {
    run("error_body", hubspot_connect::fuzzing::error_body);
}

#[test]
fn scrubber() {
    run("scrubber", hubspot_connect::fuzzing::scrubber);
}

#[test]
fn retry_after() {
    run("retry_after", hubspot_connect::fuzzing::retry_after);
}

#[test]
fn return_path() {
    run("return_path", hubspot_connect::fuzzing::return_path);
}

#[test]
fn envelope() {
    run("envelope", hubspot_connect::fuzzing::envelope);
}

#[cfg(feature = "redis")]
#[test]
fn store_record() {
    run("store_record", hubspot_connect::fuzzing::store_record);
}
