//! What a router's kernel holds, read back over netlink in its own
//! namespace once `up` has put everything in place, and compared with what
//! its READY line claims. A router whose table does not match its config
//! fails `up` naming what is missing, and the bench can recount per trial.
//!
//! The counting itself ([`tinyvr_init::held`]) is shared with the init,
//! which reports a VM's own kernel the same way on its console.

use crate::HostError;
pub use tinyvr_init::held::{held, Held};

/// Reads back the router in namespace `ns` (an open namespace file) and
/// compares it with `ready`; returns the counts for the record.
pub fn check(ns: std::fs::File, ready: &serde_json::Value) -> Result<Held, HostError> {
    let h = crate::netns::run_in_file(Some(ns), || Ok(tinyvr_init::held::count()?))?;
    compare(ready, &h).map_err(HostError::Other)?;
    Ok(h)
}

/// Compares the kernel's counts with READY's; the error names every
/// difference.
pub fn compare(ready: &serde_json::Value, held: &Held) -> Result<(), String> {
    let mut diffs = Vec::new();
    for (what, got) in [
        ("routes", held.routes),
        ("addresses", held.addresses),
        ("neighbors", held.neighbors),
        ("rules", held.rules),
    ] {
        let claimed = ready[what].as_u64().unwrap_or(0);
        if claimed != got {
            diffs.push(format!(
                "{what}: READY says {claimed}, the kernel holds {got}"
            ));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the router's kernel state does not match its READY line: {}",
            diffs.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_all_named() {
        let ready =
            serde_json::json!({"routes": 20003, "addresses": 2, "neighbors": 2, "rules": 0});
        let ok = Held {
            routes: 20003,
            addresses: 2,
            neighbors: 2,
            rules: 0,
        };
        compare(&ready, &ok).unwrap();
        let e = compare(
            &ready,
            &Held {
                routes: 3,
                neighbors: 1,
                ..ok
            },
        )
        .unwrap_err();
        assert!(
            e.contains("routes: READY says 20003, the kernel holds 3"),
            "{e}"
        );
        assert!(
            e.contains("neighbors: READY says 2, the kernel holds 1"),
            "{e}"
        );
        assert!(!e.contains("addresses"), "{e}");
    }
}
