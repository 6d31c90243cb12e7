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
/// compares it with `ready`; returns what was held, for the record.
pub fn check(
    ns: std::fs::File,
    cfg: &tinyvr_config::RouterConfig,
    ready: &serde_json::Value,
) -> Result<Held, HostError> {
    let h = read_back(ns, cfg)?;
    compare(ready, &h).map_err(HostError::Other)?;
    Ok(h)
}

/// What the kernel in namespace `ns` holds of `cfg`.
pub fn read_back(ns: std::fs::File, cfg: &tinyvr_config::RouterConfig) -> Result<Held, HostError> {
    crate::netns::run_in_file(Some(ns), || Ok(tinyvr_init::held::count(cfg)?))
}

/// Compares what the kernel holds with what READY claims; the error names
/// every difference: counts, tables, and the objects missing or unexpected.
pub fn compare(ready: &serde_json::Value, held: &Held) -> Result<(), String> {
    let mut diffs = Vec::new();
    let interfaces = ready["interfaces"].as_array().map_or(0, |a| a.len() as u64);
    if interfaces != held.interfaces {
        diffs.push(format!(
            "interfaces up as configured: READY lists {interfaces}, the kernel holds {}",
            held.interfaces
        ));
    }
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
    if let Some(tables) = ready["routes_by_table"].as_object() {
        let claimed = tables
            .iter()
            .map(|(t, n)| (t.parse::<u32>().ok(), n.as_u64().unwrap_or(0)));
        let held_in = |t: Option<u32>| t.and_then(|t| held.routes_by_table.get(&t)).copied();
        for (t, n) in claimed {
            let got = held_in(t).unwrap_or(0);
            if got != n {
                diffs.push(format!(
                    "routes in table {}: READY says {n}, the kernel holds {got}",
                    t.map_or("?".into(), |t| t.to_string())
                ));
            }
        }
    }
    for (what, names, total) in [
        ("missing", &held.missing, held.missing_total),
        ("not in the config", &held.unexpected, held.unexpected_total),
    ] {
        if total > 0 {
            let more = total.saturating_sub(names.len() as u64);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            diffs.push(format!("{what}: {}{more}", names.join(", ")));
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
        let ready = serde_json::json!({"routes": 20003, "routes_by_table": {"254": 20002, "100": 1},
            "addresses": 2, "neighbors": 2, "rules": 0, "interfaces": [{"name": "in0"}, {"name": "out0"}]});
        let ok = Held {
            interfaces: 2,
            routes: 20003,
            routes_by_table: [(254, 20002), (100, 1)].into(),
            addresses: 2,
            neighbors: 2,
            ..Held::default()
        };
        compare(&ready, &ok).unwrap();
        let e = compare(
            &ready,
            &Held {
                interfaces: 1,
                routes: 3,
                routes_by_table: [(254, 2), (100, 1)].into(),
                neighbors: 1,
                missing: vec!["route 16.0.0.0/24 table 254 (route_range[0] #0)".into()],
                missing_total: 20001,
                unexpected: vec!["neighbour 10.2.0.9 on out0".into()],
                unexpected_total: 1,
                ..ok.clone()
            },
        )
        .unwrap_err();
        for want in [
            "interfaces up as configured: READY lists 2, the kernel holds 1",
            "routes: READY says 20003, the kernel holds 3",
            "routes in table 254: READY says 20002, the kernel holds 2",
            "neighbors: READY says 2, the kernel holds 1",
            "missing: route 16.0.0.0/24 table 254 (route_range[0] #0) and 20000 more",
            "not in the config: neighbour 10.2.0.9 on out0",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
        assert!(!e.contains("addresses") && !e.contains("table 100"), "{e}");
    }
}
