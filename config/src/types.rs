//! The router config as written in TOML. Field names are the contract shared
//! by the image, the platforms, the tester and users' files: keep them.

use crate::error::ConfigError;
use crate::values::{from_bits, to_bits, CpuList, IfName, MacAddr, PciAddr, Prefix};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Hostname; also the prefix of every host-side resource tinyvr creates.
    pub name: String,
    #[serde(default)]
    pub init: InitOptions,
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<Interface>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    #[serde(default, rename = "route_range")]
    pub route_ranges: Vec<RouteRange>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
    #[serde(default, rename = "neighbor")]
    pub neighbors: Vec<Neighbor>,
    /// Applied after the router defaults ([`ROUTER_SYSCTLS`]), so they win.
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlValue>,
    #[serde(default, rename = "service")]
    pub services: Vec<Service>,
}

/// How the init itself behaves.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InitOptions {
    /// How long to wait for all interfaces to appear.
    #[serde(default = "default_interface_timeout_ms")]
    pub interface_timeout_ms: u64,
}

fn default_interface_timeout_ms() -> u64 {
    10_000
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            interface_timeout_ms: default_interface_timeout_ms(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// The final kernel name; the matched device is renamed to it.
    pub name: IfName,
    pub mac: Option<MacAddr>,
    pub pci: Option<PciAddr>,
    pub driver: Option<String>,
    /// With several devices matching, take the n-th in PCI order.
    pub index: Option<u32>,
    pub mtu: Option<u32>,
    pub txqueuelen: Option<u32>,
    #[serde(default)]
    pub addresses: Vec<Prefix>,
    pub rps_cpus: Option<CpuList>,
    pub xps_cpus: Option<CpuList>,
    /// How the host side of this interface is made when tinyvr runs the
    /// router (netns, lxc; the VM backends come with the VM platform).
    /// Ignored by the init itself.
    pub host: Option<HostLink>,
}

/// The host side of a router interface.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum HostLink {
    /// A veth pair: the router gets one end, the host keeps the peer (named
    /// `peer`, default `<router>-<interface>`), optionally moved into the
    /// namespace `netns` or attached to the bridge `bridge`.
    Veth {
        peer: Option<IfName>,
        /// MAC of the host-side end (default: random).
        peer_mac: Option<MacAddr>,
        netns: Option<String>,
        bridge: Option<IfName>,
    },
    /// A macvlan on the host device `parent`.
    Macvlan {
        parent: IfName,
        #[serde(default)]
        mode: MacvlanMode,
    },
    /// An existing host device (an SR-IOV VF, a veth end) moved into the router.
    Phys { device: IfName },
    /// VM: a tap device (named `name`, default `<router>-<interface>`),
    /// optionally moved into namespace `netns` or attached to `bridge`.
    Tap {
        name: Option<IfName>,
        netns: Option<String>,
        bridge: Option<IfName>,
        #[serde(flatten)]
        nic: VirtioNic,
    },
    /// VM: a macvtap on host device `parent`, opened through /dev/tapN.
    Macvtap {
        parent: IfName,
        #[serde(default)]
        mode: MacvlanMode,
        #[serde(flatten)]
        nic: VirtioNic,
    },
    /// VM: a tap on a bridge tinyvr creates (`bridge`, default `<router>-br<n>`).
    Bridge {
        bridge: Option<IfName>,
        #[serde(flatten)]
        nic: VirtioNic,
    },
    /// VM: an SR-IOV VF passed through with vfio-pci (needs an IOMMU and KVM).
    Vfio { pci: PciAddr },
}

/// How a VM's virtio-net NIC and its host queue are set up.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct VirtioNic {
    /// vhost-net: "on", "off" or "auto" (on when /dev/vhost-net exists).
    #[serde(default)]
    pub vhost: Vhost,
    /// Queue pairs (multi-queue when > 1).
    pub queues: Option<u32>,
    /// Virtqueue sizes (256, 512 or 1024).
    pub rx_queue_size: Option<u32>,
    pub tx_queue_size: Option<u32>,
    /// The host tap's/macvtap's transmit queue length: where overload drops happen.
    pub txqueuelen: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vhost {
    On,
    Off,
    #[default]
    Auto,
}

impl HostLink {
    /// The platform this backend belongs to: "vm" or "netns/lxc".
    pub fn is_vm(&self) -> bool {
        matches!(
            self,
            HostLink::Tap { .. }
                | HostLink::Macvtap { .. }
                | HostLink::Bridge { .. }
                | HostLink::Vfio { .. }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MacvlanMode {
    #[default]
    Bridge,
    Vepa,
    Private,
    Passthru,
}

impl Interface {
    /// The host-side device name: the configured peer, the phys device, or
    /// `<router>-<interface>`.
    pub fn host_name(&self, router: &str) -> String {
        match &self.host {
            Some(HostLink::Veth { peer: Some(p), .. }) => p.to_string(),
            Some(HostLink::Tap { name: Some(p), .. }) => p.to_string(),
            Some(HostLink::Phys { device }) => device.to_string(),
            _ => format!("{router}-{}", self.name),
        }
    }

    /// True when the device is found by its current kernel name.
    pub fn matched_by_name(&self) -> bool {
        self.mac.is_none() && self.pci.is_none() && self.driver.is_none()
    }
}

/// A route destination: a prefix, or `default` (0.0.0.0/0, or ::/0 when the
/// gateway is IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Default,
    Prefix(Prefix),
}

impl std::str::FromStr for Dest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "default" {
            Ok(Dest::Default)
        } else {
            s.parse()
                .map(Dest::Prefix)
                .map_err(|e: String| format!("{e} (or \"default\")"))
        }
    }
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dest::Default => f.write_str("default"),
            Dest::Prefix(p) => p.fmt(f),
        }
    }
}

impl<'de> Deserialize<'de> for Dest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Dest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    #[default]
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
}

pub const TABLE_MAIN: u32 = 254;

/// The metric the kernel stores for a route: IPv6 turns "none" and 0 into
/// 1024 (IP6_RT_PRIO_USER), IPv4 keeps 0.
pub fn kernel_metric(metric: Option<u32>, v4: bool) -> u32 {
    match metric {
        Some(m) if v4 || m != 0 => m,
        _ if v4 => 0,
        _ => 1024,
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub dest: Dest,
    pub via: Option<IpAddr>,
    #[serde(default)]
    pub nexthops: Vec<NextHop>,
    pub dev: Option<IfName>,
    pub table: Option<u32>,
    pub metric: Option<u32>,
    #[serde(default)]
    pub kind: RouteKind,
    #[serde(default)]
    pub onlink: bool,
    /// Preferred source address for traffic the router itself sends.
    pub src: Option<IpAddr>,
}

impl Route {
    pub fn table(&self) -> u32 {
        self.table.unwrap_or(TABLE_MAIN)
    }

    /// The destination as a prefix, with `default` resolved to the family of
    /// the gateway(s) (IPv4 when there is none).
    pub fn dest_prefix(&self) -> Prefix {
        match self.dest {
            Dest::Prefix(p) => p,
            Dest::Default => {
                let v6 = self
                    .via
                    .or(self.nexthops.first().map(|n| n.via))
                    .or(self.src)
                    .is_some_and(|a| a.is_ipv6());
                let addr = if v6 {
                    IpAddr::V6(0u128.into())
                } else {
                    IpAddr::V4(0u32.into())
                };
                Prefix { addr, len: 0 }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NextHop {
    pub via: IpAddr,
    pub dev: Option<IfName>,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub onlink: bool,
}

fn default_weight() -> u32 {
    1
}

/// Routes generated for scalability experiments: `count` successive
/// prefixes of `first`'s length, starting at `first`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRange {
    pub first: Prefix,
    pub count: u32,
    pub via: Option<IpAddr>,
    pub dev: Option<IfName>,
    pub table: Option<u32>,
    pub metric: Option<u32>,
    #[serde(default)]
    pub kind: RouteKind,
    #[serde(default)]
    pub onlink: bool,
}

impl RouteRange {
    pub fn table(&self) -> u32 {
        self.table.unwrap_or(TABLE_MAIN)
    }

    /// log2 of the distance between two successive prefixes: 0 (/32, /128)
    /// up to the address width (/0), where the distance, 2^32 or 2^128, is
    /// itself past the end of the space.
    fn step_bits(&self) -> u32 {
        u32::from(self.first.max_len().saturating_sub(self.first.len))
    }

    /// The last address of `first`'s family, as an integer.
    fn top(&self) -> u128 {
        if self.first.is_ipv4() {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        }
    }

    /// How many prefixes of `first`'s length fit from `first` to the end of
    /// the address space, less one: the whole IPv6 space at /128 is 2^128
    /// prefixes, one more than a u128 holds. A /0 has room for itself only.
    fn room_after_first(&self) -> u128 {
        let left = self.top().saturating_sub(to_bits(self.first.addr));
        left.checked_shr(self.step_bits()).unwrap_or(0)
    }

    /// The address integer of the i-th prefix, or None past the end of the
    /// address space. `i << step_bits` in checked steps: a plain shift by
    /// 128 (the IPv6 /0) overflows, and a shifted-out index would wrap.
    fn bits_of(&self, i: u32) -> Option<u128> {
        let offset = if i == 0 {
            0
        } else {
            1u128
                .checked_shl(self.step_bits())?
                .checked_mul(u128::from(i))?
        };
        to_bits(self.first.addr)
            .checked_add(offset)
            .filter(|b| *b <= self.top())
    }

    /// The i-th generated prefix.
    ///
    /// # Panics
    /// When the prefix lies past the end of the address space, which only
    /// an `i >= count` or a range [`RouterConfig::validate`] rejects can do.
    pub fn prefix(&self, i: u32) -> Prefix {
        let bits = self.bits_of(i).unwrap_or_else(|| {
            panic!(
                "route_range prefix {i} of {} x /{} is past the end of the address space",
                self.first, self.first.len
            )
        });
        Prefix {
            addr: from_bits(self.first.addr, bits),
            len: self.first.len,
        }
    }

    /// The metric the kernel stores for this range's routes.
    pub fn kernel_metric(&self) -> u32 {
        kernel_metric(self.metric, self.first.is_ipv4())
    }

    /// Which of this range's routes `dest` in `table` at kernel metric
    /// `metric` is, if it is one: arithmetic, so a million-route range is
    /// never enumerated to answer it.
    pub fn index_of(&self, table: u32, dest: &Prefix, metric: u32) -> Option<u32> {
        if table != self.table()
            || metric != self.kernel_metric()
            || dest.len != self.first.len
            || dest.is_ipv4() != self.first.is_ipv4()
        {
            return None;
        }
        let offset = to_bits(dest.addr).checked_sub(to_bits(self.first.addr))?;
        let i = offset.checked_shr(self.step_bits()).unwrap_or(0);
        let aligned = i.checked_shl(self.step_bits()).unwrap_or(0) == offset;
        (aligned && i < u128::from(self.count)).then_some(i as u32)
    }

    /// True when this range and `other` generate a route in common.
    pub fn overlaps(&self, other: &RouteRange) -> bool {
        if self.table() != other.table()
            || self.kernel_metric() != other.kernel_metric()
            || self.first.len != other.first.len
            || self.first.is_ipv4() != other.first.is_ipv4()
        {
            return false;
        }
        let last = |r: &RouteRange| r.bits_of(r.count - 1).unwrap_or(r.top());
        to_bits(self.first.addr) <= last(other) && to_bits(other.first.addr) <= last(self)
    }

    /// Checks that the last prefix still lies inside the address space.
    pub(crate) fn check_fits(&self) -> Result<(), String> {
        let room_after = self.room_after_first();
        if u128::from(self.count.saturating_sub(1)) <= room_after {
            return Ok(());
        }
        // Less room than `count - 1 < 2^32`, so adding one cannot overflow.
        Err(format!(
            "{} prefixes of length /{} starting at {} run past the end of the address space (room for {})",
            self.count,
            self.first.len,
            self.first,
            room_after + 1
        ))
    }
}

/// A policy routing rule; with neither `from` nor `to` it is installed for
/// both IPv4 and IPv6.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub from: Option<Prefix>,
    pub to: Option<Prefix>,
    pub iif: Option<IfName>,
    pub oif: Option<IfName>,
    pub table: u32,
    pub priority: Option<u32>,
}

impl Rule {
    /// The families this rule is installed for: (IPv4, IPv6).
    pub fn families(&self) -> (bool, bool) {
        match self.from.or(self.to) {
            Some(p) => (p.is_ipv4(), !p.is_ipv4()),
            None => (true, true),
        }
    }
}

/// A permanent ARP/NDP entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Neighbor {
    pub ip: IpAddr,
    pub mac: MacAddr,
    pub dev: IfName,
}

/// Sysctl values may be written as strings or integers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SysctlValue {
    Int(i64),
    Str(String),
}

impl std::fmt::Display for SysctlValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SysctlValue::Int(i) => write!(f, "{i}"),
            SysctlValue::Str(s) => f.write_str(s),
        }
    }
}

/// Router defaults, applied before `[sysctl]`: forward, accept packets from
/// anywhere, send no redirects.
pub const ROUTER_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.default.send_redirects", "0"),
    ("net.ipv4.conf.all.accept_redirects", "0"),
];

/// The IPv6 half of the router defaults, for a config that uses IPv6.
pub const ROUTER_SYSCTLS_IPV6: &[(&str, &str)] = &[
    ("net.ipv6.conf.all.forwarding", "1"),
    ("net.ipv6.conf.all.accept_redirects", "0"),
];

/// Instead of [`ROUTER_SYSCTLS_IPV6`] when a config has no IPv6 at all: no
/// link-local addresses, and no neighbour discovery, DAD or MLD packets on
/// links that carry only the IPv4 traffic being measured (IPv6 forwarding
/// is not switched on either: that alone joins every device to the
/// all-routers group). `[sysctl]` can turn IPv6 back on.
pub const NO_IPV6_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
];

/// A process the init starts after READY and restarts when it exits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    pub exec: Vec<String>,
    /// Keep CAP_NET_ADMIN for this service (a routing daemon needs it).
    #[serde(default)]
    pub net_admin: bool,
}

impl RouterConfig {
    /// Parses TOML; a syntax error, an unknown key or a value of the wrong
    /// type is reported with the path of the field.
    pub fn from_toml(text: &str) -> Result<RouterConfig, ConfigError> {
        let de = || {
            toml::Deserializer::parse(text).map_err(|e| {
                ConfigError::new("", format!("TOML syntax: {}", one_line(&e.to_string())))
            })
        };
        // A good file takes the plain path; only a bad one is decoded again
        // with the path tracker, whose wrappers double the code a TCG guest
        // has to translate on every boot.
        if let Ok(cfg) = RouterConfig::deserialize(de()?) {
            return Ok(cfg);
        }
        serde_path_to_error::deserialize(de()?).map_err(|e| {
            let path = e.path().to_string();
            let mut path = if path == "." { String::new() } else { path };
            let msg = one_line(&e.into_inner().to_string());
            // serde reports a missing field at its parent; name the field.
            if let Some(field) = msg
                .split("missing field `")
                .nth(1)
                .and_then(|r| r.split('`').next())
            {
                path = if path.is_empty() {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                };
            }
            ConfigError::new(path, msg)
        })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a RouterConfig always serializes")
    }

    /// The config as the router's own init gets it: the host-side tables
    /// are the host tools' business, so they are left out.
    pub fn guest_toml(&self) -> String {
        let mut c = self.clone();
        for i in &mut c.interfaces {
            i.host = None;
        }
        c.to_toml()
    }

    /// The interface whose subnet contains `ip` (the first, in file order).
    pub fn connected_dev(&self, ip: IpAddr) -> Option<&IfName> {
        self.interfaces
            .iter()
            .find(|i| i.addresses.iter().any(|a| a.contains(ip)))
            .map(|i| &i.name)
    }

    /// Whether anything in a validated config is IPv6: an address, a route
    /// (validation keeps its gateways and source in its destination's
    /// family, and `default` takes theirs), a route range, a neighbour, or a
    /// rule's prefixes. A rule with neither `from` nor `to` does not count:
    /// it is installed for both families anyway.
    pub fn uses_ipv6(&self) -> bool {
        self.interfaces
            .iter()
            .any(|i| i.addresses.iter().any(|a| !a.is_ipv4()))
            || self.routes.iter().any(|r| !r.dest_prefix().is_ipv4())
            || self.route_ranges.iter().any(|r| !r.first.is_ipv4())
            || self.neighbors.iter().any(|n| n.ip.is_ipv6())
            || self
                .rules
                .iter()
                .any(|r| r.from.or(r.to).is_some_and(|p| !p.is_ipv4()))
    }

    /// The sysctls the init sets before `[sysctl]`: [`ROUTER_SYSCTLS`], then
    /// [`ROUTER_SYSCTLS_IPV6`] or, when the config has no IPv6,
    /// [`NO_IPV6_SYSCTLS`].
    pub fn default_sysctls(&self) -> impl Iterator<Item = &'static (&'static str, &'static str)> {
        let v6: &'static [(&str, &str)] = if self.uses_ipv6() {
            ROUTER_SYSCTLS_IPV6
        } else {
            NO_IPV6_SYSCTLS
        };
        ROUTER_SYSCTLS.iter().chain(v6)
    }

    /// How many routes this config installs in each table.
    pub fn routes_by_table(&self) -> std::collections::BTreeMap<u32, u64> {
        let mut t = std::collections::BTreeMap::new();
        for r in &self.routes {
            *t.entry(r.table()).or_default() += 1;
        }
        for r in &self.route_ranges {
            *t.entry(r.table()).or_default() += u64::from(r.count);
        }
        t
    }

    /// Total number of routes this config installs (explicit plus generated).
    pub fn route_count(&self) -> u64 {
        self.routes.len() as u64
            + self
                .route_ranges
                .iter()
                .map(|r| r.count as u64)
                .sum::<u64>()
    }
}

/// toml's messages carry a source snippet over several lines; keep the gist.
fn one_line(msg: &str) -> String {
    let lines: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // The snippet lines start with a line number and '|' or are '^' markers.
    let gist: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.contains('|') && !l.starts_with('^'))
        .collect();
    let head = lines.first().copied().unwrap_or_default();
    let mut out = gist.join(": ");
    if out.is_empty() {
        out = head.to_string();
    } else if head.starts_with("TOML parse error") && !out.starts_with(head) {
        out = format!("{head}: {out}");
    }
    out
}
