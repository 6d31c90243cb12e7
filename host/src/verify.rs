//! What a router's kernel holds, read back over netlink in its own
//! namespace once `up` has put everything in place, and compared with what
//! its READY line claims. A router whose table does not match its config
//! fails `up` naming what is missing, and the bench can recount per trial.
//!
//! Counts only what tinyvr-init installs: routes of protocol `static`,
//! addresses of global scope off loopback, permanent neighbours, and rules
//! other than the kernel's defaults.

use crate::HostError;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage as M};
use serde::Serialize;
use tinyvr_init::netlink::{flags, Netlink};

/// Offsets in a raw reply: nlmsghdr (16 bytes), then the family header.
const HDR: usize = 16;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const NUD_PERMANENT: u16 = 0x80;
const FRA_PRIORITY: u16 = 6;
/// The rules every namespace starts with (local, main, default).
const DEFAULT_RULE_PRIORITIES: [u32; 3] = [0, 32766, 32767];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Held {
    pub routes: u64,
    pub addresses: u64,
    pub neighbors: u64,
    pub rules: u64,
}

fn dump(
    nl: &mut dyn Netlink,
    what: &str,
    msg: M,
    keep: &dyn Fn(&[u8]) -> bool,
) -> Result<u64, HostError> {
    let mut n = 0;
    nl.request_raw(
        &|| format!("reading back {what}"),
        msg,
        flags::DUMP,
        &mut |b| {
            if keep(b) {
                n += 1;
            }
        },
    )?;
    Ok(n)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A rule's FRA_PRIORITY, from its attributes after the 12-byte fib_rule_hdr.
fn rule_priority(b: &[u8]) -> Option<u32> {
    let mut at = HDR + 12;
    while at + 4 <= b.len() {
        let len = u16_at(b, at)? as usize;
        let kind = u16_at(b, at + 2)?;
        if len < 4 {
            return None;
        }
        if kind == FRA_PRIORITY {
            return u32_at(b, at + 4);
        }
        at += len.next_multiple_of(4);
    }
    Some(0) // no attribute: priority 0
}

/// Counts what the kernel holds in the socket's namespace.
pub fn held(nl: &mut dyn Netlink) -> Result<Held, HostError> {
    let mut h = Held::default();
    for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut r = RouteMessage::default();
        r.header.address_family = fam;
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type.
        h.routes += dump(nl, "routes", M::GetRoute(r), &|b| {
            b.get(HDR + 5) == Some(&RTPROT_STATIC)
        })?;
        let mut a = AddressMessage::default();
        a.header.family = fam;
        // ifaddrmsg: family, prefixlen, flags, scope, index (u32).
        h.addresses += dump(nl, "addresses", M::GetAddress(a), &|b| {
            b.get(HDR + 3) == Some(&RT_SCOPE_UNIVERSE) && u32_at(b, HDR + 4) != Some(1)
        })?;
        let mut n = NeighbourMessage::default();
        n.header.family = fam;
        // ndmsg: family, pad, pad (u16), ifindex (i32), state (u16), ...
        h.neighbors += dump(nl, "neighbours", M::GetNeighbour(n), &|b| {
            u16_at(b, HDR + 8).is_some_and(|s| s & NUD_PERMANENT != 0)
        })?;
        let mut ru = RuleMessage::default();
        ru.header.family = fam;
        h.rules += dump(nl, "rules", M::GetRule(ru), &|b| {
            rule_priority(b).is_some_and(|p| !DEFAULT_RULE_PRIORITIES.contains(&p))
        })?;
    }
    Ok(h)
}

/// Reads back the router in namespace `ns` (an open namespace file) and
/// compares it with `ready`; returns the counts for the record.
pub fn check(ns: std::fs::File, ready: &serde_json::Value) -> Result<Held, HostError> {
    let h =
        crate::netns::run_in_file(
            Some(ns),
            || held(&mut tinyvr_init::netlink::Socket::open()?),
        )?;
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

    #[test]
    fn rule_priority_from_attributes() {
        let mut b = vec![0u8; HDR + 12];
        assert_eq!(rule_priority(&b), Some(0));
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&FRA_PRIORITY.to_ne_bytes());
        b.extend_from_slice(&32766u32.to_ne_bytes());
        assert_eq!(rule_priority(&b), Some(32766));
    }
}
