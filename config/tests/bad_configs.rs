//! A table of mistakes, one per validation rule, each against the exact field
//! path it must name and a piece of the message.

use tinyvr_config::load;
use tinyvr_tests::bad_cases::{text, BASE, CASES};

#[test]
fn every_bad_config_names_its_field() {
    let mut failures = Vec::new();
    for (extra, path, msg) in CASES {
        match load(&text(extra)) {
            Ok(_) => failures.push(format!("accepted: {extra:?}")),
            Err(errs) => {
                let hit = errs
                    .0
                    .iter()
                    .any(|e| e.path == *path && e.message.contains(msg));
                if !hit {
                    failures.push(format!(
                        "{extra:?}\n   want {path}: ...{msg}...\n   got  {errs}"
                    ));
                }
            }
        }
    }
    assert!(CASES.len() >= 30);
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn unknown_top_level_key_is_named() {
    let errs = load(&format!("colour = \"red\"\n{BASE}")).unwrap_err();
    assert_eq!(errs.first().path, "colour");
    assert!(
        errs.first().message.contains("unknown field `colour`"),
        "{errs}"
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = format!("{BASE}\n[[route]]\ndest = \"10.9.0.1/16\"\nvia = \"10.7.0.2\"\n");
    let errs = load(&text).unwrap_err();
    let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["route[0].dest", "route[0].via"]);
}
