//! What the router's kernel holds of its config, read back over netlink
//! (no capability needed to read) and matched object by object: routes
//! per table (static protocol), addresses, permanent neighbours, rules
//! (all but the kernel's own). The host tools read a netns or container
//! router this way in its namespace; a VM's init reads itself back and
//! prints a TINYVR-HELD line on the console after READY, after every
//! link, address, route or rule change, and on SIGHUP (the host's channel
//! into the guest's kernel, see [`Watch`]).

mod expect;
pub mod follow;
mod raw;

use crate::netlink::{flags, Netlink, NlError};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage as M};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tinyvr_config::RouterConfig;

pub use expect::NAMED_MAX;

/// What the kernel holds of a router's config. Counts are of the config's
/// own objects found (so READY's counts are what a whole table gives);
/// what the config asked for and the kernel lacks is `missing`, what the
/// kernel holds of the kinds tinyvr configures and the config did not ask
/// for is `unexpected` — the first few named, all counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Config interfaces present, up, with their MTU and queue length.
    #[serde(default)]
    pub interfaces: u64,
    pub routes: u64,
    /// Per routing table (by number).
    #[serde(default)]
    pub routes_by_table: BTreeMap<u32, u64>,
    pub addresses: u64,
    pub neighbors: u64,
    pub rules: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missing_total: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unexpected: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unexpected_total: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Held {
    /// Everything the config asks for is there, and nothing else of its kinds.
    pub fn as_configured(&self) -> bool {
        self.missing_total == 0 && self.unexpected_total == 0
    }
}

fn dump(
    nl: &mut dyn Netlink,
    what: &str,
    msg: M,
    each: &mut dyn FnMut(&[u8]),
) -> Result<(), NlError> {
    nl.request_raw(&|| format!("reading back {what}"), msg, flags::DUMP, each)
}

/// Reads back, in the socket's namespace, what the kernel holds of `cfg`.
pub fn held(nl: &mut dyn Netlink, cfg: &RouterConfig) -> Result<Held, NlError> {
    let mut x = expect::Expect::new(cfg);
    dump(nl, "links", M::GetLink(LinkMessage::default()), &mut |b| {
        x.link(b)
    })?;
    for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut r = RouteMessage::default();
        r.header.address_family = fam;
        dump(nl, "routes", M::GetRoute(r), &mut |b| x.route(b))?;
        let mut a = AddressMessage::default();
        a.header.family = fam;
        dump(nl, "addresses", M::GetAddress(a), &mut |b| x.address(b))?;
        let mut n = NeighbourMessage::default();
        n.header.family = fam;
        dump(nl, "neighbours", M::GetNeighbour(n), &mut |b| x.neighbor(b))?;
        let mut ru = RuleMessage::default();
        ru.header.family = fam;
        dump(nl, "rules", M::GetRule(ru), &mut |b| x.rule(b))?;
    }
    Ok(x.finish())
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
    pub since_ready_ms: u64,
    pub link_events: u64,
    /// Read-backs since READY (this one included) that found the table not
    /// as configured: nonzero means the router ran without part of its
    /// config for a while, whatever the kernel holds now.
    pub departures: u64,
    #[serde(flatten)]
    pub held: Held,
}

/// The init's running record after READY, one TINYVR-HELD line per read-back.
pub struct Log<'a> {
    cfg: &'a RouterConfig,
    ready: std::time::Instant,
    departures: u64,
}

impl<'a> Log<'a> {
    pub fn new(cfg: &'a RouterConfig) -> Self {
        Log {
            cfg,
            ready: std::time::Instant::now(),
            departures: 0,
        }
    }

    /// Reads the kernel back; the line to print, or why it could not.
    pub fn read_back(&mut self, when: &'static str, link_events: u64) -> Result<Report, NlError> {
        let held = count(self.cfg)?;
        if !held.as_configured() {
            self.departures += 1;
        }
        Ok(Report {
            when,
            since_ready_ms: self.ready.elapsed().as_millis() as u64,
            link_events,
            departures: self.departures,
            held,
        })
    }
}

/// Reads back on a fresh socket (the init closes its configuring one after READY).
pub fn count(cfg: &RouterConfig) -> Result<Held, NlError> {
    held(&mut crate::netlink::Socket::open()?, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_line_is_flat() {
        let r = Report {
            when: "ready",
            since_ready_ms: 0,
            link_events: 0,
            departures: 0,
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
