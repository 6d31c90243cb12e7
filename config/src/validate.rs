//! One pass over a parsed config that reports every mistake with its field
//! path. Nothing may be applied unless this returns Ok.

use crate::error::{ConfigError, Errors};
use crate::types::*;
use crate::values::{to_bits, IfName, Prefix};
use std::collections::HashSet;
use std::hash::Hash;
use std::net::IpAddr;

/// Longest router name: it prefixes host-side names like `vr1-in0-t` that
/// must still fit in IFNAMSIZ.
pub const NAME_MAX: usize = 8;
const TIMEOUT_MAX_MS: u64 = 600_000;
/// Most `[[route_range]]` tables in one config: a bound on the work one
/// config can ask for (each range may hold up to 2^32 - 1 routes).
pub const ROUTE_RANGES_MAX: usize = 1 << 16;

/// The router-name rule, shared by the config's `name` and the host tools'
/// instance names (`--name`), which become paths and device-name prefixes:
/// the rule itself as the error.
pub fn router_name(n: &str) -> Result<(), String> {
    let ok_chars = n
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
    if n.is_empty()
        || n.len() > NAME_MAX
        || !ok_chars
        || !n.starts_with(|ch: char| ch.is_ascii_alphabetic())
    {
        Err(format!("expected 1 to {NAME_MAX} characters of letters, digits, '-' or '_', starting with a letter"))
    } else {
        Ok(())
    }
}

struct Check {
    errors: Vec<ConfigError>,
}

/// The connected subnets of each interface, by name, in file order.
type Subnets<'a> = Vec<(&'a str, Vec<Prefix>)>;

/// Keys seen so far, for duplicate checks. A config's usual handful is
/// scanned: the router init validates on every boot, and on a TCG guest
/// hashing code is translation the boot pays for. Past `SCAN_MAX` keys
/// (bulk route tables) they are hashed.
struct Seen<K> {
    scanned: Vec<K>,
    hashed: HashSet<K>,
}

const SCAN_MAX: usize = 64;

impl<K: Eq + Hash + Clone> Seen<K> {
    fn new() -> Self {
        Seen {
            scanned: Vec::new(),
            hashed: HashSet::new(),
        }
    }

    /// True when `k` is new.
    fn insert(&mut self, k: K) -> bool {
        if self.scanned.len() < SCAN_MAX {
            if self.scanned.contains(&k) {
                return false;
            }
            self.scanned.push(k);
            return true;
        }
        if self.hashed.is_empty() {
            self.hashed.extend(self.scanned.iter().cloned());
        }
        self.hashed.insert(k)
    }
}

impl Check {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(ConfigError::new(path, msg));
    }
}

impl RouterConfig {
    pub fn validate(&self) -> Result<(), Errors> {
        let mut c = Check { errors: Vec::new() };
        self.check_name(&mut c);
        if self.init.interface_timeout_ms == 0 || self.init.interface_timeout_ms > TIMEOUT_MAX_MS {
            c.err(
                "init.interface_timeout_ms",
                format!(
                    "{} is out of range: expected 1 to {TIMEOUT_MAX_MS}",
                    self.init.interface_timeout_ms
                ),
            );
        }
        let ifaces = self.check_interfaces(&mut c);
        self.check_routes(&mut c, &ifaces);
        self.check_route_ranges(&mut c, &ifaces);
        self.check_rules(&mut c, &ifaces);
        self.check_neighbors(&mut c, &ifaces);
        self.check_sysctls(&mut c);
        self.check_services(&mut c);
        if c.errors.is_empty() {
            Ok(())
        } else {
            Err(Errors(c.errors))
        }
    }

    fn check_name(&self, c: &mut Check) {
        let n = &self.name;
        if let Err(rule) = router_name(n) {
            c.err("name", format!("{n:?} is not a router name: {rule}"));
        }
    }

    /// Checks interfaces and returns their connected subnets by name.
    fn check_interfaces<'a>(&'a self, c: &mut Check) -> Subnets<'a> {
        let mut subnets: Subnets = Vec::new();
        let mut macs = Seen::new();
        let mut addrs = Seen::new();
        for (i, ifc) in self.interfaces.iter().enumerate() {
            let p = format!("interface[{i}]");
            if subnets.iter().any(|(n, _)| *n == ifc.name.as_str()) {
                c.err(
                    format!("{p}.name"),
                    format!("{:?} is used by an earlier interface", ifc.name.as_str()),
                );
            }
            if ifc.name.as_str() == "lo" {
                c.err(
                    format!("{p}.name"),
                    "\"lo\" is the loopback device, not a router interface",
                );
            }
            if let Some(mac) = ifc.mac {
                if mac.is_multicast() {
                    c.err(
                        format!("{p}.mac"),
                        format!("{mac} is a multicast address: expected a unicast MAC"),
                    );
                }
                if !macs.insert(mac) {
                    c.err(
                        format!("{p}.mac"),
                        format!("{mac} is used by an earlier interface"),
                    );
                }
            }
            if let Some(d) = &ifc.driver {
                if d.is_empty() || d.contains('/') {
                    c.err(
                        format!("{p}.driver"),
                        format!("{d:?} is not a driver name (like \"virtio_net\")"),
                    );
                }
            }
            if ifc.index.is_some() && ifc.driver.is_none() {
                c.err(
                    format!("{p}.index"),
                    "index picks among devices with the same driver: set driver too",
                );
            }
            if let Some(mtu) = ifc.mtu {
                if !(68..=65535).contains(&mtu) {
                    c.err(
                        format!("{p}.mtu"),
                        format!("{mtu} is out of range: expected 68 to 65535"),
                    );
                } else if mtu < 1280 && ifc.addresses.iter().any(|a| !a.is_ipv4()) {
                    c.err(format!("{p}.mtu"), format!("{mtu} is below 1280, the IPv6 minimum, and the interface has IPv6 addresses"));
                }
            }
            if let Some(q) = ifc.txqueuelen {
                if q > 1_000_000 {
                    c.err(
                        format!("{p}.txqueuelen"),
                        format!("{q} is out of range: expected 0 to 1000000"),
                    );
                }
            }
            self.check_host(c, &p, ifc);
            let mut nets = Vec::new();
            for (j, a) in ifc.addresses.iter().enumerate() {
                let ap = format!("{p}.addresses[{j}]");
                if a.len == 0 {
                    c.err(
                        &ap,
                        format!("{a} has prefix length 0: expected the subnet length, like /24"),
                    );
                }
                if a.addr.is_unspecified() || a.addr.is_multicast() || a.addr.is_loopback() {
                    c.err(&ap, format!("{a} is not a unicast host address"));
                }
                if !addrs.insert(a.addr) {
                    c.err(&ap, format!("{} is assigned twice", a.addr));
                }
                nets.push(*a);
            }
            subnets.push((ifc.name.as_str(), nets));
        }
        subnets
    }

    fn check_host(&self, c: &mut Check, p: &str, ifc: &Interface) {
        let host = ifc.host_name(&self.name);
        if host.len() > crate::values::IFNAME_MAX {
            c.err(
                format!("{p}.host.peer"),
                format!(
                    "the host-side name {host:?} is {} bytes, over 15: set a shorter peer",
                    host.len()
                ),
            );
        }
        let (netns, bridge, nic) = match &ifc.host {
            Some(HostLink::Veth { netns, bridge, .. }) => (netns.as_ref(), bridge.as_ref(), None),
            Some(HostLink::Tap {
                netns, bridge, nic, ..
            }) => (netns.as_ref(), bridge.as_ref(), Some(nic)),
            Some(HostLink::Macvtap { nic, .. } | HostLink::Bridge { nic, .. }) => {
                (None, None, Some(nic))
            }
            _ => (None, None, None),
        };
        if let Some(ns) = netns {
            // It becomes a path under /run/netns and a word of LXC's hook command.
            let ok_chars = ns
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
            if ns.is_empty() || ns.len() > 64 || !ok_chars || ns.starts_with('.') {
                c.err(format!("{p}.host.netns"), format!("{ns:?} is not a namespace name: 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"));
            }
            if bridge.is_some() {
                c.err(format!("{p}.host.bridge"), "a host end moved into a namespace cannot also be on a host bridge: give netns or bridge");
            }
        }
        if let Some(n) = nic {
            if let Some(q) = n.queues {
                if !(1..=16).contains(&q) {
                    c.err(
                        format!("{p}.host.queues"),
                        format!("{q} is out of range: expected 1 to 16"),
                    );
                }
            }
            if let Some(v) = n.rx_queue_size {
                if ![256, 512, 1024].contains(&v) {
                    c.err(
                        format!("{p}.host.rx_queue_size"),
                        format!("{v}: expected 256, 512 or 1024 (what virtio-net-pci accepts)"),
                    );
                }
            }
            // qemu honours a larger tx virtqueue only for vhost-user and
            // vDPA backends; for tap and macvtap it silently caps it at 256.
            if let Some(v) = n.tx_queue_size.filter(|&v| v != 256) {
                c.err(
                    format!("{p}.host.tx_queue_size"),
                    format!("{v}: expected 256 — qemu caps the tx virtqueue at 256 for tap and macvtap backends (larger sizes only take with vhost-user or vDPA), so a larger value would be reported but not applied"),
                );
            }
            if n.txqueuelen.is_some_and(|q| q > 1_000_000) {
                c.err(
                    format!("{p}.host.txqueuelen"),
                    "out of range: expected 0 to 1000000",
                );
            }
        }
    }

    fn check_routes(&self, c: &mut Check, ifaces: &Subnets) {
        let mut seen = Seen::new();
        for (i, r) in self.routes.iter().enumerate() {
            let p = format!("route[{i}]");
            let dest = r.dest_prefix();
            if let Dest::Prefix(d) = r.dest {
                if d.has_host_bits() {
                    c.err(
                        format!("{p}.dest"),
                        format!(
                            "{d} has host bits set: expected the network address {}/{}",
                            d.network(),
                            d.len
                        ),
                    );
                }
            }
            check_table(c, &format!("{p}.table"), r.table);
            let fam = dest.is_ipv4();
            let metric = kernel_metric(r.metric, fam);
            if !seen.insert((r.table(), dest, metric)) {
                c.err(
                    format!("{p}.dest"),
                    format!(
                        "{} in table {} with metric {metric} is given twice",
                        r.dest,
                        r.table(),
                    ),
                );
            }
            // One kernel route for both, which READY would count twice.
            if let Some((j, _)) = self
                .route_ranges
                .iter()
                .enumerate()
                .find(|(_, g)| g.index_of(r.table(), &dest, metric).is_some())
            {
                c.err(
                    format!("{p}.dest"),
                    format!(
                        "{} in table {} with metric {metric} is also generated by route_range[{j}]",
                        r.dest,
                        r.table(),
                    ),
                );
            }
            check_dev(c, &format!("{p}.dev"), r.dev.as_ref(), ifaces);
            if let Some(src) = r.src {
                if src.is_ipv4() != fam {
                    c.err(
                        format!("{p}.src"),
                        format!("{src} is not in the family of {dest}"),
                    );
                } else if !ifaces.iter().flat_map(|(_, n)| n).any(|a| a.addr == src) {
                    c.err(
                        format!("{p}.src"),
                        format!("{src} is not an address of any interface"),
                    );
                }
            }
            match r.kind {
                RouteKind::Unicast => {
                    if r.via.is_some() && !r.nexthops.is_empty() {
                        c.err(
                            format!("{p}.nexthops"),
                            "give either via or nexthops, not both",
                        );
                    }
                    if r.via.is_none() && r.nexthops.is_empty() && r.dev.is_none() {
                        c.err(
                            &p,
                            format!("unicast route to {} needs via, nexthops or dev", r.dest),
                        );
                    }
                    if let Some(via) = r.via {
                        check_gateway(
                            c,
                            &format!("{p}.via"),
                            via,
                            fam,
                            r.dev.as_ref(),
                            r.onlink,
                            ifaces,
                        );
                    }
                    for (j, nh) in r.nexthops.iter().enumerate() {
                        let np = format!("{p}.nexthops[{j}]");
                        check_dev(c, &format!("{np}.dev"), nh.dev.as_ref(), ifaces);
                        check_gateway(
                            c,
                            &format!("{np}.via"),
                            nh.via,
                            fam,
                            nh.dev.as_ref().or(r.dev.as_ref()),
                            nh.onlink || r.onlink,
                            ifaces,
                        );
                        if !(1..=256).contains(&nh.weight) {
                            c.err(
                                format!("{np}.weight"),
                                format!("{} is out of range: expected 1 to 256", nh.weight),
                            );
                        }
                    }
                }
                kind => {
                    if r.via.is_some() || !r.nexthops.is_empty() || r.dev.is_some() || r.onlink {
                        c.err(
                            &p,
                            format!("a {kind:?} route takes no via, nexthops, dev or onlink")
                                .to_lowercase(),
                        );
                    }
                }
            }
        }
    }

    fn check_route_ranges(&self, c: &mut Check, ifaces: &Subnets) {
        if self.route_ranges.len() > ROUTE_RANGES_MAX {
            c.err(
                "route_range",
                format!(
                    "{} ranges: expected at most {ROUTE_RANGES_MAX}",
                    self.route_ranges.len()
                ),
            );
        }
        self.check_range_overlaps(c);
        for (i, r) in self.route_ranges.iter().enumerate() {
            let p = format!("route_range[{i}]");
            if r.first.has_host_bits() {
                c.err(
                    format!("{p}.first"),
                    format!(
                        "{} has host bits set: expected the network address {}/{}",
                        r.first,
                        r.first.network(),
                        r.first.len
                    ),
                );
            }
            if r.count == 0 {
                c.err(format!("{p}.count"), "0 routes: expected at least 1");
            } else if let Err(e) = r.check_fits() {
                c.err(format!("{p}.count"), e);
            }
            check_table(c, &format!("{p}.table"), r.table);
            check_dev(c, &format!("{p}.dev"), r.dev.as_ref(), ifaces);
            match (r.kind, r.via) {
                (RouteKind::Unicast, Some(via)) => check_gateway(
                    c,
                    &format!("{p}.via"),
                    via,
                    r.first.is_ipv4(),
                    r.dev.as_ref(),
                    r.onlink,
                    ifaces,
                ),
                (RouteKind::Unicast, None) if r.dev.is_none() => {
                    c.err(&p, "a unicast route_range needs via or dev")
                }
                (RouteKind::Unicast, None) => {}
                (kind, _) => {
                    if r.via.is_some() || r.dev.is_some() {
                        c.err(
                            &p,
                            format!("a {kind:?} route_range takes no via or dev").to_lowercase(),
                        );
                    }
                }
            }
        }
    }

    /// Two ranges that generate the same route would be one kernel route
    /// counted twice. Sorted by start within each (table, metric, length,
    /// family), so 65536 ranges are not compared pairwise: a range overlaps
    /// an earlier-starting one exactly when it starts before the furthest
    /// end seen so far in its group.
    fn check_range_overlaps(&self, c: &mut Check) {
        let mut order: Vec<usize> = (0..self.route_ranges.len())
            .filter(|&i| {
                let r = &self.route_ranges[i];
                r.count > 0 && r.check_fits().is_ok()
            })
            .collect();
        let group = |r: &RouteRange| (r.table(), r.kernel_metric(), r.first.len, r.first.is_ipv4());
        order.sort_by_key(|&i| {
            let r = &self.route_ranges[i];
            (group(r), to_bits(r.first.addr), i)
        });
        // (group, index of the range reaching furthest, its last address)
        let mut reach: Option<(_, usize, u128)> = None;
        for i in order {
            let r = &self.route_ranges[i];
            let last = to_bits(r.prefix(r.count - 1).addr);
            match reach {
                Some((g, j, end)) if g == group(r) && to_bits(r.first.addr) <= end => {
                    let (early, late) = (i.min(j), i.max(j));
                    c.err(
                        format!("route_range[{late}].first"),
                        format!("its routes overlap route_range[{early}]'s (same table, length and metric): expected disjoint ranges"),
                    );
                    if last > end {
                        reach = Some((g, i, last));
                    }
                }
                _ => reach = Some((group(r), i, last)),
            }
        }
    }

    fn check_rules(&self, c: &mut Check, ifaces: &Subnets) {
        for (i, r) in self.rules.iter().enumerate() {
            let p = format!("rule[{i}]");
            // The kernel keeps one of two equal rules; READY would count both.
            if let Some(j) = self.rules[..i].iter().position(|o| o == r) {
                c.err(&p, format!("is the same rule as rule[{j}]"));
            }
            if let (Some(f), Some(t)) = (r.from, r.to) {
                if f.is_ipv4() != t.is_ipv4() {
                    c.err(
                        format!("{p}.to"),
                        format!("{t} is not in the family of from = {f}"),
                    );
                }
            }
            for (field, pre) in [("from", r.from), ("to", r.to)] {
                if let Some(pre) = pre {
                    if pre.has_host_bits() {
                        c.err(
                            format!("{p}.{field}"),
                            format!(
                                "{pre} has host bits set: expected {}/{}",
                                pre.network(),
                                pre.len
                            ),
                        );
                    }
                }
            }
            for (field, dev) in [("iif", &r.iif), ("oif", &r.oif)] {
                if dev.as_ref().is_some_and(|d| d.as_str() != "lo") {
                    check_dev(c, &format!("{p}.{field}"), dev.as_ref(), ifaces);
                }
            }
            check_table(c, &format!("{p}.table"), Some(r.table));
            if let Some(prio) = r.priority {
                if prio == 0 || prio >= 32766 {
                    c.err(format!("{p}.priority"), format!("{prio} collides with the kernel's own rules (0, 32766, 32767): expected 1 to 32765"));
                }
            }
        }
    }

    fn check_neighbors(&self, c: &mut Check, ifaces: &Subnets) {
        let mut seen = Seen::new();
        for (i, n) in self.neighbors.iter().enumerate() {
            let p = format!("neighbor[{i}]");
            check_dev(c, &format!("{p}.dev"), Some(&n.dev), ifaces);
            if n.ip.is_unspecified() || n.ip.is_multicast() {
                c.err(
                    format!("{p}.ip"),
                    format!("{} is not a unicast address", n.ip),
                );
            }
            if n.mac.is_multicast() {
                c.err(
                    format!("{p}.mac"),
                    format!("{} is a multicast address: expected a unicast MAC", n.mac),
                );
            }
            if !seen.insert((n.dev.clone(), n.ip)) {
                c.err(
                    format!("{p}.ip"),
                    format!("{} on {} is given twice", n.ip, n.dev),
                );
            }
        }
    }

    fn check_sysctls(&self, c: &mut Check) {
        for (key, value) in &self.sysctl {
            let p = format!("sysctl.{key:?}");
            let parts: Vec<&str> = key.split('.').collect();
            let ok_root = matches!(parts[0], "net" | "kernel");
            let ok_parts = parts.len() >= 2
                && parts.iter().all(|s| {
                    !s.is_empty()
                        && s.chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || "_-".contains(ch))
                });
            if !ok_root || !ok_parts {
                c.err(&p, "expected a key under net. or kernel. like \"net.core.netdev_max_backlog\", with no empty parts, '..' or '/'");
            }
            let v = value.to_string();
            if v.is_empty() || v.contains('\n') {
                c.err(&p, format!("value {v:?} must be one non-empty line"));
            }
        }
    }

    fn check_services(&self, c: &mut Check) {
        let mut names = Seen::new();
        for (i, s) in self.services.iter().enumerate() {
            let p = format!("service[{i}]");
            if s.name.is_empty() || !names.insert(&s.name) {
                c.err(
                    format!("{p}.name"),
                    format!("{:?} is empty or used by an earlier service", s.name),
                );
            }
            match s.exec.first() {
                None => c.err(
                    format!("{p}.exec"),
                    "expected the program and its arguments, got an empty list",
                ),
                Some(prog) if !prog.starts_with('/') => c.err(
                    format!("{p}.exec[0]"),
                    format!(
                        "{prog:?} is not an absolute path (there is no PATH search in the init)"
                    ),
                ),
                _ => {}
            }
        }
    }
}

fn check_table(c: &mut Check, path: &str, table: Option<u32>) {
    if let Some(t) = table {
        if t == 0 || t == 255 || t == 253 {
            c.err(path, format!("{t} is reserved (0 unspec, 253 default, 255 local): expected 1 to 252, 254 (main) or above 255"));
        }
    }
}

fn check_dev(c: &mut Check, path: &str, dev: Option<&IfName>, ifaces: &Subnets) {
    if let Some(d) = dev {
        if !ifaces.iter().any(|(n, _)| *n == d.as_str()) {
            let mut known: Vec<&str> = ifaces.iter().map(|(n, _)| *n).collect();
            known.sort_unstable();
            c.err(
                path,
                format!("{d:?} names no [[interface]] (known: {})", known.join(", ")),
            );
        }
    }
}

/// A gateway must be reachable: inside a connected subnet (of `dev` when
/// given), link-local with a dev, or explicitly `onlink`.
fn check_gateway(
    c: &mut Check,
    path: &str,
    via: IpAddr,
    v4: bool,
    dev: Option<&IfName>,
    onlink: bool,
    ifaces: &Subnets,
) {
    if via.is_ipv4() != v4 {
        c.err(
            path,
            format!("{via} is not in the family of the destination"),
        );
        return;
    }
    if via.is_unspecified() || via.is_multicast() {
        c.err(path, format!("{via} is not a unicast gateway address"));
        return;
    }
    let link_local = matches!(via, IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80);
    if onlink || (link_local && dev.is_some()) {
        if dev.is_none() {
            c.err(path, format!("onlink gateway {via} needs a dev"));
        }
        return;
    }
    if link_local {
        c.err(path, format!("link-local gateway {via} needs a dev"));
        return;
    }
    let mut nets = ifaces
        .iter()
        .filter(|(name, _)| dev.is_none_or(|d| d.as_str() == *name))
        .flat_map(|(_, nets)| nets.iter());
    if !nets.any(|n| n.contains(via)) {
        let scope = dev.map(|d| format!(" of {d}")).unwrap_or_default();
        c.err(path, format!("gateway {via} is outside every connected subnet{scope}: add an address in its subnet or set onlink = true"));
    }
}

#[cfg(test)]
mod tests {
    use super::{Seen, SCAN_MAX};

    #[test]
    fn seen_finds_repeats_before_and_after_it_starts_hashing() {
        let mut s = Seen::new();
        for k in 0..SCAN_MAX * 3 {
            assert!(s.insert(k), "{k} is new");
        }
        for k in [0, SCAN_MAX - 1, SCAN_MAX, SCAN_MAX * 3 - 1] {
            assert!(!s.insert(k), "{k} was seen");
        }
        assert!(s.insert(SCAN_MAX * 3));
    }
}
