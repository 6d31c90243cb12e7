//! The config as the set of kernel objects it should produce, matched
//! against what a namespace's dumps hold: each held object is either one
//! the config asked for (counted, per table for routes) or unexpected, and
//! whatever the config asked for that was never seen is missing — named,
//! so a failed `up` says which route, not just how many.

use super::raw::{self, attrs, u16_at, u32_at, HDR};
use super::Held;
use std::collections::HashMap;
use std::net::IpAddr;
use tinyvr_config::values::from_bits;
use tinyvr_config::{kernel_metric, Prefix, RouterConfig};

/// How many missing or unexpected objects are named; the rest are counted.
pub const NAMED_MAX: usize = 8;

const RTPROT_KERNEL: u8 = 2;
const RTPROT_STATIC: u8 = 4;
const NUD_PERMANENT: u16 = 0x80;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_MULTIPATH: u16 = 9;
const RTA_PRIORITY: u16 = 6;
const RTA_TABLE: u16 = 15;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const FRA_DST: u16 = 1;
const FRA_SRC: u16 = 2;
const FRA_IIFNAME: u16 = 3;
const FRA_PRIORITY: u16 = 6;
const FRA_TABLE: u16 = 15;
const FRA_OIFNAME: u16 = 17;
const FRA_PROTOCOL: u16 = 21;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_TXQLEN: u16 = 13;
const IFF_UP: u32 = 1;
const AF_INET: u8 = 2;

/// A rule as the kernel keys it (per family).
#[derive(Debug, PartialEq)]
struct RuleKey {
    v4: bool,
    table: u32,
    from: Option<Prefix>,
    to: Option<Prefix>,
    iif: Option<String>,
    oif: Option<String>,
}

/// (table, family, length, metric): the routes a range can generate.
type Group = (u32, bool, u8, u32);

/// How a route forwards: its type (RTN_*), gateway, output device, and
/// whether it has several next hops.
struct Way {
    kind: u8,
    via: Option<IpAddr>,
    dev: Option<String>,
    multipath: bool,
}

impl Way {
    /// Why `held` is not this route (the config's `self`); None if it is.
    /// A gateway or device the config leaves out is the kernel's choice.
    fn differs(&self, held: &Way) -> Option<String> {
        if held.kind != self.kind {
            return Some(format!(
                "(the kernel holds it as type {}, not {})",
                held.kind, self.kind
            ));
        }
        if self.multipath != held.multipath {
            return Some("(the kernel holds it with other next hops)".into());
        }
        if self.via.is_some() && held.via != self.via {
            return Some(format!(
                "via {} (the kernel holds it via {})",
                self.via.map_or(String::new(), |v| v.to_string()),
                held.via.map_or("no gateway".into(), |v| v.to_string())
            ));
        }
        if self.dev.is_some() && held.dev != self.dev {
            return Some(format!(
                "dev {} (the kernel holds it on {})",
                self.dev.as_deref().unwrap_or(""),
                held.dev.as_deref().unwrap_or("no device")
            ));
        }
        None
    }
}

/// The kernel's route type for a config kind (RTN_UNICAST, ...).
fn rtn(k: tinyvr_config::RouteKind) -> u8 {
    use tinyvr_config::RouteKind::*;
    match k {
        Unicast => 1,
        Blackhole => 6,
        Unreachable => 7,
        Prohibit => 8,
    }
}

pub struct Expect<'a> {
    cfg: &'a RouterConfig,
    /// (kernel name, ifindex) of every link in the namespace.
    links: Vec<(String, u32)>,
    /// Whether each config interface was seen in the link dump.
    iface_seen: Vec<bool>,
    routes: HashMap<(u32, Prefix, u32), usize>,
    route_seen: Vec<bool>,
    /// Ranges sorted by (group, first address), for a binary search per route.
    ranges: Vec<(Group, u128, usize)>,
    range_seen: Vec<Vec<u64>>,
    /// (device, address, seen); the device's index is looked up as needed.
    addrs: Vec<(&'a str, Prefix, bool)>,
    neighbors: Vec<(&'a str, IpAddr, bool, [u8; 6])>,
    rules: Vec<(RuleKey, Option<u32>, bool)>,
    held: Held,
}

fn prefix(v4: bool, bits: u128, len: u8) -> Prefix {
    let like = if v4 {
        IpAddr::V4(0u32.into())
    } else {
        IpAddr::V6(0u128.into())
    };
    Prefix {
        addr: from_bits(like, bits),
        len,
    }
}

fn group(table: u32, p: &Prefix, metric: u32) -> Group {
    (table, p.is_ipv4(), p.len, metric)
}

fn note(list: &mut Vec<String>, total: &mut u64, what: impl FnOnce() -> String) {
    if list.len() < NAMED_MAX {
        list.push(what());
    }
    *total += 1;
}

impl<'a> Expect<'a> {
    pub fn new(cfg: &'a RouterConfig) -> Self {
        let routes = cfg
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let d = r.dest_prefix();
                ((r.table(), d, kernel_metric(r.metric, d.is_ipv4())), i)
            })
            .collect();
        let mut ranges: Vec<_> = cfg
            .route_ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let first = r.prefix(0);
                (
                    group(r.table(), &first, r.kernel_metric()),
                    tinyvr_config::values::to_bits(first.addr),
                    i,
                )
            })
            .collect();
        ranges.sort_unstable();
        Expect {
            cfg,
            links: Vec::new(),
            iface_seen: vec![false; cfg.interfaces.len()],
            routes,
            route_seen: vec![false; cfg.routes.len()],
            ranges,
            range_seen: cfg
                .route_ranges
                .iter()
                .map(|r| vec![0; (r.count as usize).div_ceil(64)])
                .collect(),
            addrs: cfg
                .interfaces
                .iter()
                .flat_map(|i| {
                    i.addresses
                        .iter()
                        .map(move |a| (i.name.as_str(), *a, false))
                })
                .collect(),
            neighbors: cfg
                .neighbors
                .iter()
                .map(|n| (n.dev.as_str(), n.ip, false, n.mac.0))
                .collect(),
            rules: cfg
                .rules
                .iter()
                .flat_map(|r| {
                    let (v4, v6) = r.families();
                    [(true, v4), (false, v6)]
                        .into_iter()
                        .filter(|f| f.1)
                        .map(|(v4, _)| {
                            let key = RuleKey {
                                v4,
                                table: r.table,
                                from: r.from.map(|p| Prefix {
                                    addr: p.network(),
                                    len: p.len,
                                }),
                                to: r.to.map(|p| Prefix {
                                    addr: p.network(),
                                    len: p.len,
                                }),
                                iif: r.iif.as_ref().map(|n| n.to_string()),
                                oif: r.oif.as_ref().map(|n| n.to_string()),
                            };
                            (key, r.priority, false)
                        })
                })
                .collect(),
            held: Held::default(),
        }
    }

    /// One RTM_NEWLINK of the link dump: names resolve to indexes before
    /// addresses and neighbours are matched.
    pub fn link(&mut self, b: &[u8]) {
        // ifinfomsg: family, pad, type (u16), index (i32), flags (u32), change.
        let (Some(index), Some(flags)) = (u32_at(b, HDR + 4), u32_at(b, HDR + 8)) else {
            return;
        };
        let (mut name, mut mtu, mut txqlen) = (None, None, None);
        for (k, v) in attrs(b, 16) {
            match k {
                IFLA_IFNAME => name = Some(raw::str_of(v)),
                IFLA_MTU => mtu = raw::u32_of(v),
                IFLA_TXQLEN => txqlen = raw::u32_of(v),
                _ => {}
            }
        }
        let Some(name) = name else { return };
        self.links.push((name.to_string(), index));
        let Some(i) = self
            .cfg
            .interfaces
            .iter()
            .position(|c| c.name.as_str() == name)
        else {
            return;
        };
        self.iface_seen[i] = true;
        // An interface counts when it is up with the MTU and queue length
        // the config gives it; anything else is named as missing.
        let ifc = &self.cfg.interfaces[i];
        let mut wrong = Vec::new();
        if flags & IFF_UP == 0 {
            wrong.push("up (the kernel holds it down)".to_string());
        }
        for (what, want, got) in [
            ("mtu", ifc.mtu, mtu),
            ("txqueuelen", ifc.txqueuelen, txqlen),
        ] {
            if want.is_some() && want != got {
                wrong.push(format!(
                    "{what} {} (the kernel holds {})",
                    want.unwrap_or_default(),
                    got.map_or("none".into(), |g| g.to_string())
                ));
            }
        }
        if wrong.is_empty() {
            self.held.interfaces += 1;
        }
        for w in wrong {
            note(&mut self.held.missing, &mut self.held.missing_total, || {
                format!("interface {name} {w}")
            });
        }
    }

    fn name_of(&self, index: u32) -> String {
        self.links
            .iter()
            .find(|l| l.1 == index)
            .map_or_else(|| format!("ifindex {index}"), |l| l.0.clone())
    }

    /// One route of a dump. Only routes tinyvr could have made (protocol
    /// static) are considered: connected and local routes are the kernel's.
    pub fn route(&mut self, b: &[u8]) {
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type.
        let (Some(&fam), Some(&len), Some(&table8), Some(&proto)) =
            (b.get(HDR), b.get(HDR + 1), b.get(HDR + 4), b.get(HDR + 5))
        else {
            return;
        };
        if proto != RTPROT_STATIC {
            return;
        }
        let kind = b.get(HDR + 7).copied().unwrap_or(0);
        let (mut dst, mut metric, mut table) = (0, 0, u32::from(table8));
        let (mut gw, mut oif, mut multipath) = (None, None, false);
        for (k, v) in attrs(b, 12) {
            match k {
                RTA_DST => dst = raw::bits(v).unwrap_or(0),
                RTA_PRIORITY => metric = raw::u32_of(v).unwrap_or(0),
                RTA_TABLE => table = raw::u32_of(v).unwrap_or(table),
                RTA_GATEWAY => gw = raw::bits(v),
                RTA_OIF => oif = raw::u32_of(v),
                RTA_MULTIPATH => multipath = true,
                _ => {}
            }
        }
        let v4 = fam == AF_INET;
        let p = prefix(v4, dst, len);
        if let Some(want) = self.mark_route(table, &p, metric) {
            // The config's route by its key: it counts only if it goes
            // where the config sends it (type, gateway, device).
            let held = Way {
                kind,
                via: gw.map(|g| prefix(v4, g, 0).addr),
                dev: oif.map(|i| self.name_of(i)),
                multipath,
            };
            match want.differs(&held) {
                None => {
                    self.held.routes += 1;
                    *self.held.routes_by_table.entry(table).or_default() += 1;
                }
                Some(why) => note(&mut self.held.missing, &mut self.held.missing_total, || {
                    format!("route {p} table {table} {why}")
                }),
            }
        } else {
            note(
                &mut self.held.unexpected,
                &mut self.held.unexpected_total,
                || format!("route {p} table {table} metric {metric}"),
            );
        }
    }

    /// Where the config sends the route by this key, when it is one the
    /// config asked for (and not seen yet).
    fn mark_route(&mut self, table: u32, p: &Prefix, metric: u32) -> Option<Way> {
        if let Some(&i) = self.routes.get(&(table, *p, metric)) {
            let r = &self.cfg.routes[i];
            let want = Way {
                kind: rtn(r.kind),
                via: r.via,
                dev: r.dev.as_ref().map(|d| d.to_string()),
                multipath: !r.nexthops.is_empty(),
            };
            return (!std::mem::replace(&mut self.route_seen[i], true)).then_some(want);
        }
        // The range starting last at or before p in its group: ranges are
        // disjoint (validated), so it is the only one that can hold p.
        let g = group(table, p, metric);
        let key = (g, tinyvr_config::values::to_bits(p.addr));
        let at = self.ranges.partition_point(|r| (r.0, r.1) <= key);
        let &(rg, _, k) = at.checked_sub(1).map(|at| &self.ranges[at])?;
        if rg != g {
            return None;
        }
        let r = &self.cfg.route_ranges[k];
        let i = r.index_of(table, p, metric)?;
        let (word, bit) = (i as usize / 64, 1u64 << (i % 64));
        let new = self.range_seen[k][word] & bit == 0;
        self.range_seen[k][word] |= bit;
        new.then(|| Way {
            kind: rtn(r.kind),
            via: r.via,
            dev: r.dev.as_ref().map(|d| d.to_string()),
            multipath: false,
        })
    }

    /// One address of a dump; anything of universe scope off loopback that
    /// the config did not ask for is unexpected.
    pub fn address(&mut self, b: &[u8]) {
        // ifaddrmsg: family, prefixlen, flags, scope, index (u32).
        let (Some(&fam), Some(&len), Some(&scope), Some(index)) = (
            b.get(HDR),
            b.get(HDR + 1),
            b.get(HDR + 3),
            u32_at(b, HDR + 4),
        ) else {
            return;
        };
        let (mut local, mut address) = (None, None);
        for (k, v) in attrs(b, 8) {
            match k {
                IFA_LOCAL => local = raw::bits(v),
                IFA_ADDRESS => address = raw::bits(v),
                _ => {}
            }
        }
        let Some(bits) = local.or(address) else {
            return;
        };
        let p = prefix(fam == AF_INET, bits, len);
        let dev = self.name_of(index);
        if let Some(e) = self
            .addrs
            .iter_mut()
            .find(|e| !e.2 && e.0 == dev && e.1 == p)
        {
            e.2 = true;
            self.held.addresses += 1;
        } else if scope == 0 && dev != "lo" {
            note(
                &mut self.held.unexpected,
                &mut self.held.unexpected_total,
                || format!("address {p} on {dev}"),
            );
        }
    }

    /// One neighbour of a dump: only permanent entries are configuration.
    pub fn neighbor(&mut self, b: &[u8]) {
        // ndmsg: family, pad, pad (u16), ifindex (i32), state (u16), flags, type.
        let (Some(&fam), Some(index), Some(state)) =
            (b.get(HDR), u32_at(b, HDR + 4), u16_at(b, HDR + 8))
        else {
            return;
        };
        if state & NUD_PERMANENT == 0 {
            return;
        }
        let (mut dst, mut lladdr) = (None, None);
        for (k, v) in attrs(b, 12) {
            match k {
                NDA_DST => dst = raw::bits(v),
                NDA_LLADDR => lladdr = <[u8; 6]>::try_from(v).ok(),
                _ => {}
            }
        }
        let Some(bits) = dst else {
            return;
        };
        let ip = prefix(fam == AF_INET, bits, 0).addr;
        let dev = self.name_of(index);
        if let Some(e) = self
            .neighbors
            .iter_mut()
            .find(|e| !e.2 && e.0 == dev && e.1 == ip)
        {
            e.2 = true;
            // Counted only with the MAC the config gives it.
            if lladdr == Some(e.3) {
                self.held.neighbors += 1;
            } else {
                let held = lladdr.map_or("none".into(), |m| tinyvr_config::MacAddr(m).to_string());
                let want = tinyvr_config::MacAddr(e.3);
                note(&mut self.held.missing, &mut self.held.missing_total, || {
                    format!("neighbour {ip} on {dev} lladdr {want} (the kernel holds {held})")
                });
            }
        } else {
            note(
                &mut self.held.unexpected,
                &mut self.held.unexpected_total,
                || format!("neighbour {ip} on {dev}"),
            );
        }
    }

    /// One rule of a dump; the kernel's own (protocol kernel: local, main,
    /// default) are neither counted nor unexpected.
    pub fn rule(&mut self, b: &[u8]) {
        // fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2,
        // action, flags (u32).
        let (Some(&fam), Some(&dst_len), Some(&src_len), Some(&table8)) =
            (b.get(HDR), b.get(HDR + 1), b.get(HDR + 2), b.get(HDR + 4))
        else {
            return;
        };
        let v4 = fam == AF_INET;
        let mut key = RuleKey {
            v4,
            table: u32::from(table8),
            from: None,
            to: None,
            iif: None,
            oif: None,
        };
        let (mut priority, mut proto) = (0, 0);
        for (k, v) in attrs(b, 12) {
            match k {
                FRA_SRC => key.from = raw::bits(v).map(|b| prefix(v4, b, src_len)),
                FRA_DST => key.to = raw::bits(v).map(|b| prefix(v4, b, dst_len)),
                FRA_IIFNAME => key.iif = Some(raw::str_of(v).to_string()),
                FRA_OIFNAME => key.oif = Some(raw::str_of(v).to_string()),
                FRA_PRIORITY => priority = raw::u32_of(v).unwrap_or(0),
                FRA_TABLE => key.table = raw::u32_of(v).unwrap_or(key.table),
                FRA_PROTOCOL => proto = v.first().copied().unwrap_or(0),
                _ => {}
            }
        }
        if let Some(e) = self
            .rules
            .iter_mut()
            .find(|e| !e.2 && e.0 == key && e.1.is_none_or(|p| p == priority))
        {
            e.2 = true;
            self.held.rules += 1;
        } else if proto != RTPROT_KERNEL {
            note(
                &mut self.held.unexpected,
                &mut self.held.unexpected_total,
                || format!("rule {key:?} priority {priority}"),
            );
        }
    }

    /// What was held, with everything asked for and not seen named as missing.
    pub fn finish(mut self) -> Held {
        // The link dump may already have named some (an interface down).
        let mut missing = std::mem::take(&mut self.held.missing);
        let mut total = self.held.missing_total;
        let cfg = self.cfg;
        for (ifc, _) in cfg.interfaces.iter().zip(&self.iface_seen).filter(|x| !x.1) {
            note(&mut missing, &mut total, || {
                format!("interface {}", ifc.name)
            });
        }
        for (r, _) in cfg.routes.iter().zip(&self.route_seen).filter(|x| !x.1) {
            note(&mut missing, &mut total, || {
                format!("route {} table {}", r.dest, r.table())
            });
        }
        for (k, (r, seen)) in cfg.route_ranges.iter().zip(&self.range_seen).enumerate() {
            let held: u64 = seen.iter().map(|w| u64::from(w.count_ones())).sum();
            total += u64::from(r.count) - held;
            let absent = (0..r.count).filter(|&i| seen[i as usize / 64] & (1 << (i % 64)) == 0);
            for i in absent.take(NAMED_MAX.saturating_sub(missing.len())) {
                missing.push(format!(
                    "route {} table {} (route_range[{k}] #{i})",
                    r.prefix(i),
                    r.table()
                ));
            }
        }
        for (dev, p, _) in self.addrs.iter().filter(|a| !a.2) {
            note(&mut missing, &mut total, || format!("address {p} on {dev}"));
        }
        for (dev, ip, _, _) in self.neighbors.iter().filter(|n| !n.2) {
            note(&mut missing, &mut total, || {
                format!("neighbour {ip} on {dev}")
            });
        }
        for (key, prio, _) in self.rules.iter().filter(|r| !r.2) {
            note(&mut missing, &mut total, || {
                format!("rule {key:?} priority {prio:?}")
            });
        }
        self.held.missing = missing;
        self.held.missing_total = total;
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::NAMED_MAX;
    use crate::held::held;
    use crate::netlink::{msg, Netlink, NlError};
    use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
    use netlink_packet_route::route::{RouteAttribute, RouteProtocol};
    use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
    use netlink_packet_route::{AddressFamily, RouteNetlinkMessage as M};
    use tinyvr_config::{IfName, RouterConfig};

    const CONFIG: &str = r#"
name = "vr1"
[[interface]]
name = "in0"
addresses = ["10.1.0.1/24", "fd00:1::1/64", "fe80::1/64"]
[[interface]]
name = "out0"
addresses = ["10.2.0.1/24"]
[[route]]
dest = "10.9.0.0/16"
via = "10.2.0.2"
table = 100
[[route]]
dest = "fd00:9::/48"
via = "fd00:1::2"
[[route_range]]
first = "16.0.0.0/24"
count = 100
via = "10.2.0.2"
[[rule]]
from = "10.1.0.0/24"
table = 100
[[neighbor]]
ip = "10.2.0.2"
mac = "02:00:00:00:02:02"
dev = "out0"
"#;

    /// A kernel that holds exactly the messages the init would have sent,
    /// plus the three rules every namespace starts with.
    struct Kernel(Vec<M>);

    fn family(m: &M) -> Option<AddressFamily> {
        Some(match m {
            M::NewRoute(r) => r.header.address_family,
            M::NewAddress(a) => a.header.family,
            M::NewNeighbour(n) => n.header.family,
            M::NewRule(r) => r.header.family,
            _ => return None,
        })
    }

    impl Netlink for Kernel {
        fn request(&mut self, _: &dyn Fn() -> String, m: M, _: u16) -> Result<Vec<M>, NlError> {
            let (kind, fam) = match &m {
                M::GetLink(_) => (0, None),
                M::GetRoute(r) => (1, Some(r.header.address_family)),
                M::GetAddress(a) => (2, Some(a.header.family)),
                M::GetNeighbour(n) => (3, Some(n.header.family)),
                M::GetRule(r) => (4, Some(r.header.family)),
                other => panic!("not a dump: {other:?}"),
            };
            Ok(self
                .0
                .iter()
                .filter(|h| {
                    let k = match h {
                        M::NewLink(_) => 0,
                        M::NewRoute(_) => 1,
                        M::NewAddress(_) => 2,
                        M::NewNeighbour(_) => 3,
                        M::NewRule(_) => 4,
                        _ => 9,
                    };
                    k == kind && family(h) == fam
                })
                .cloned()
                .collect())
        }
        fn bulk(
            &mut self,
            _: usize,
            _: &mut dyn FnMut(usize, u32, &mut Vec<u8>),
        ) -> Result<Vec<(usize, i32, Option<String>)>, NlError> {
            unreachable!("a read-back sends no bulk requests")
        }
    }

    fn link(name: &str, index: u32) -> M {
        let mut l = LinkMessage::default();
        l.header.index = index;
        l.header.flags = LinkFlags::Up;
        l.attributes.push(LinkAttribute::IfName(name.into()));
        l.attributes.push(LinkAttribute::Mtu(1500));
        l.attributes.push(LinkAttribute::TxQueueLen(1000));
        M::NewLink(l)
    }

    fn kernel_rule(v4: bool, priority: u32, table: u32) -> M {
        let mut r = RuleMessage::default();
        r.header.family = if v4 {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        r.attributes.push(RuleAttribute::Table(table));
        r.attributes.push(RuleAttribute::Priority(priority));
        r.attributes
            .push(RuleAttribute::Protocol(RouteProtocol::Kernel));
        M::NewRule(r)
    }

    /// Everything `cfg` asks for, as the apply step sends it.
    fn whole(cfg: &RouterConfig) -> Kernel {
        let idx = |n: &IfName| match n.as_str() {
            "in0" => 2,
            _ => 3,
        };
        let mut k = vec![link("lo", 1), link("in0", 2), link("out0", 3)];
        for v4 in [true, false] {
            for (p, t) in [(0, 255), (32766, 254), (32767, 253)] {
                k.push(kernel_rule(v4, p, t));
            }
        }
        for i in &cfg.interfaces {
            for a in &i.addresses {
                k.push(M::NewAddress(msg::address(idx(&i.name), a)));
            }
        }
        for n in &cfg.neighbors {
            k.push(M::NewNeighbour(msg::neighbor(idx(&n.dev), n)));
        }
        for r in &cfg.routes {
            let mut m = msg::route(r, &idx);
            // As the kernel reports it: IPv6 without a metric is at 1024.
            if m.header.address_family == AddressFamily::Inet6 && r.metric.is_none() {
                m.attributes.push(RouteAttribute::Priority(1024));
            }
            k.push(M::NewRoute(m));
        }
        for r in &cfg.route_ranges {
            for i in 0..r.count {
                k.push(M::NewRoute(msg::range_route(r, i, Some(3))));
            }
        }
        for r in &cfg.rules {
            k.push(M::NewRule(msg::rule(r, true)));
        }
        Kernel(k)
    }

    #[test]
    fn a_whole_table_is_held_as_configured_per_table() {
        let cfg = tinyvr_config::load(CONFIG).unwrap();
        let h = held(&mut whole(&cfg), &cfg).unwrap();
        assert!(h.as_configured(), "{h:?}");
        assert_eq!(
            (h.routes, h.addresses, h.neighbors, h.rules),
            (102, 4, 1, 1),
            "the fe80 address is the config's and counts; the kernel's rules do not"
        );
        assert_eq!(h.routes_by_table, [(100, 1), (254, 101)].into());
        assert_eq!(h.interfaces, 2);
    }

    #[test]
    fn an_interface_down_or_with_other_settings_is_named() {
        let text = CONFIG.replacen(
            "name = \"out0\"\n",
            "name = \"out0\"\nmtu = 9000\ntxqueuelen = 1000\n",
            1,
        );
        let cfg = tinyvr_config::load(&text).unwrap();
        let mut k = whole(&cfg);
        for m in &mut k.0 {
            if let M::NewLink(l) = m {
                if l.header.index == 2 {
                    l.header.flags = LinkFlags::empty();
                }
            }
        }
        let h = held(&mut k, &cfg).unwrap();
        assert_eq!(h.interfaces, 0);
        assert_eq!(
            h.missing,
            [
                "interface in0 up (the kernel holds it down)",
                "interface out0 mtu 9000 (the kernel holds 1500)",
            ],
            "txqueuelen 1000 is held"
        );
        k.0.retain(|m| !matches!(m, M::NewLink(l) if l.header.index == 3));
        let h = held(&mut k, &cfg).unwrap();
        assert!(h.missing.contains(&"interface out0".to_string()), "{h:?}");
    }

    #[test]
    fn what_is_missing_and_unexpected_is_named() {
        let cfg = tinyvr_config::load(CONFIG).unwrap();
        let mut k = whole(&cfg);
        // Drop range route #7, the table-100 route and the neighbour; add a
        // stray route and a stray rule.
        let range7 = M::NewRoute(msg::range_route(&cfg.route_ranges[0], 7, Some(3)));
        let t100 = M::NewRoute(msg::route(&cfg.routes[0], &|_| 3));
        k.0.retain(|m| *m != range7 && *m != t100 && !matches!(m, M::NewNeighbour(_)));
        let mut stray = cfg.routes[0].clone();
        stray.dest = "10.77.0.0/16".parse().unwrap();
        k.0.push(M::NewRoute(msg::route(&stray, &|_| 3)));
        let mut rule = cfg.rules[0].clone();
        rule.table = 200;
        k.0.push(M::NewRule(msg::rule(&rule, true)));

        let h = held(&mut k, &cfg).unwrap();
        assert_eq!((h.routes, h.neighbors, h.rules), (100, 0, 1));
        assert_eq!(h.routes_by_table, [(254, 100)].into());
        assert_eq!(h.missing_total, 3);
        assert_eq!(
            h.missing,
            [
                "route 10.9.0.0/16 table 100",
                "route 16.0.7.0/24 table 254 (route_range[0] #7)",
                "neighbour 10.2.0.2 on out0",
            ]
        );
        assert_eq!(h.unexpected_total, 2);
        assert_eq!(h.unexpected[0], "route 10.77.0.0/16 table 100 metric 0");
        assert!(h.unexpected[1].starts_with("rule "), "{:?}", h.unexpected);
    }

    #[test]
    fn a_route_or_neighbour_by_its_key_that_goes_elsewhere_is_not_the_configs() {
        let cfg = tinyvr_config::load(CONFIG).unwrap();
        let mut k = whole(&cfg);
        // Range route #3 with another gateway; the table-100 route as a
        // blackhole.
        let r3 = M::NewRoute(msg::range_route(&cfg.route_ranges[0], 3, Some(3)));
        let t100 = M::NewRoute(msg::route(&cfg.routes[0], &|_| 3));
        let mut moved = cfg.route_ranges[0].clone();
        moved.via = Some("10.2.0.9".parse().unwrap());
        let mut hole = cfg.routes[0].clone();
        hole.kind = tinyvr_config::RouteKind::Blackhole;
        hole.via = None;
        let mut stale = cfg.neighbors[0].clone();
        stale.mac = "02:00:00:00:09:09".parse().unwrap();
        for m in &mut k.0 {
            if matches!(m, M::NewNeighbour(_)) {
                *m = M::NewNeighbour(msg::neighbor(3, &stale));
            } else if *m == r3 {
                *m = M::NewRoute(msg::range_route(&moved, 3, Some(3)));
            } else if *m == t100 {
                *m = M::NewRoute(msg::route(&hole, &|_| 3));
            }
        }
        let h = held(&mut k, &cfg).unwrap();
        assert_eq!((h.routes, h.neighbors), (100, 0));
        assert_eq!(h.missing_total, 3, "{h:?}");
        assert!(
            h.missing.contains(&"neighbour 10.2.0.2 on out0 lladdr 02:00:00:00:02:02 (the kernel holds 02:00:00:00:09:09)".to_string()),
            "{:?}",
            h.missing
        );
        assert!(
            h.missing.contains(
                &"route 16.0.3.0/24 table 254 via 10.2.0.2 (the kernel holds it via 10.2.0.9)"
                    .to_string()
            ),
            "{:?}",
            h.missing
        );
        assert!(
            h.missing.contains(
                &"route 10.9.0.0/16 table 100 (the kernel holds it as type 6, not 1)".to_string()
            ),
            "{:?}",
            h.missing
        );
    }

    #[test]
    fn a_big_loss_names_a_few_and_counts_all() {
        let cfg = tinyvr_config::load(CONFIG).unwrap();
        let mut k = whole(&cfg);
        k.0.retain(|m| !matches!(m, M::NewRoute(_)));
        let h = held(&mut k, &cfg).unwrap();
        assert_eq!(h.missing_total, 102);
        assert_eq!(h.missing.len(), NAMED_MAX);
        assert_eq!(h.routes_by_table.len(), 0);
    }
}
