//! What the router's kernel holds, counted over netlink (no capability
//! needed to read): static routes, global addresses off loopback,
//! permanent neighbours, rules other than the kernel's defaults. The host
//! tools count a netns or container router this way in its namespace; a
//! VM's init counts itself and prints a TINYVR-HELD line on the console
//! after READY and again after every link change (the host's channel into
//! the guest's kernel, see [`Watch`]).

use crate::netlink::{flags, Netlink, NlError};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage as M};
use serde::Serialize;

/// Offsets in a raw reply: nlmsghdr (16 bytes), then the family header.
const HDR: usize = 16;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const NUD_PERMANENT: u16 = 0x80;
const FRA_PRIORITY: u16 = 6;
/// The rules every namespace starts with (local, main, default).
const DEFAULT_RULE_PRIORITIES: [u32; 3] = [0, 32766, 32767];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
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
) -> Result<u64, NlError> {
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
pub fn held(nl: &mut dyn Netlink) -> Result<Held, NlError> {
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

pub const HELD: &str = "TINYVR-HELD";

/// After READY: the kernel's announcements of link, address, route and
/// rule changes (rtnetlink multicast, no capability needed) wake the init,
/// which counts what its kernel holds a moment later and prints it, so a
/// flap — or anything else that changed the table — shows on the console.
/// (A flush caused by a link change is not announced route by route; the
/// link change itself is.) Neighbour events are left out: non-permanent
/// neighbours churn with traffic, and a recount must not load a router
/// under test.
pub struct Watch {
    sock: netlink_sys::Socket,
    /// Link events seen; a report is due this long after the last one.
    pub events: u64,
    pub due: Option<std::time::Instant>,
    buf: Vec<u8>,
}

/// How long after the last link event the table is counted: long enough
/// for a carrier change to settle, well inside the one second the host
/// gives the table to be whole again.
pub const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

impl Watch {
    pub fn open() -> std::io::Result<Watch> {
        use netlink_sys::{protocols::NETLINK_ROUTE, SocketAddr};
        let mut sock = netlink_sys::Socket::new(NETLINK_ROUTE)?;
        // RTMGRP_LINK | IPV4_IFADDR | IPV4_ROUTE | IPV4_RULE | IPV6_IFADDR | IPV6_ROUTE
        sock.bind(&SocketAddr::new(
            0,
            0x1 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400,
        ))?;
        // No legacy bit for IPv6 rules: RTNLGRP_IPV6_RULE (19) by membership.
        let _ = sock.add_membership(19);
        sock.set_non_blocking(true)?;
        Ok(Watch {
            sock,
            events: 0,
            due: None,
            buf: vec![0; 16 << 10],
        })
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.sock)
    }

    /// Reads what arrived; the first event since the last report schedules
    /// the next one (not pushed back by more: at most one count per SETTLE).
    pub fn drain(&mut self) {
        while let Ok(n) = self.sock.recv(&mut &mut self.buf[..], 0) {
            if n == 0 {
                break;
            }
            self.events += 1;
            if self.due.is_none() {
                self.due = Some(std::time::Instant::now() + SETTLE);
            }
        }
    }
}

/// One TINYVR-HELD line: why it was counted and what was held.
#[derive(Debug, Serialize)]
pub struct Report {
    pub when: &'static str,
    pub link_events: u64,
    #[serde(flatten)]
    pub held: Held,
}

/// Counts on a fresh socket (the init closes its configuring one after READY).
pub fn count() -> Result<Held, NlError> {
    held(&mut crate::netlink::Socket::open()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_priority_from_attributes() {
        let mut b = vec![0u8; HDR + 12];
        assert_eq!(rule_priority(&b), Some(0));
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&FRA_PRIORITY.to_ne_bytes());
        b.extend_from_slice(&32766u32.to_ne_bytes());
        assert_eq!(rule_priority(&b), Some(32766));
    }

    #[test]
    fn a_report_line_is_flat() {
        let r = Report {
            when: "ready",
            link_events: 0,
            held: Held {
                routes: 3,
                ..Default::default()
            },
        };
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["routes"], 3);
        assert_eq!(j["when"], "ready");
    }
}
