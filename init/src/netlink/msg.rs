//! Pure builders: config pieces in, rtnetlink messages out. No I/O here, so
//! every message is unit-tested for its exact header and attributes.

use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteNextHop, RouteNextHopFlags,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;
use std::net::IpAddr;
use tinyvr_config::{IfName, MacAddr, Neighbor, Prefix, Route, RouteKind, RouteRange, Rule};

/// Maps an interface name from the config to its kernel index.
pub type Ifindex<'a> = &'a dyn Fn(&IfName) -> u32;

fn family(v4: bool) -> AddressFamily {
    if v4 {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// A request for every link in the namespace, without the statistics
/// (less for the kernel to gather and send).
pub fn dump_links() -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::ExtMask(vec![
        netlink_packet_route::link::LinkExtentMask::SkipStats,
    ]));
    m
}

/// Changes to one link, all in one message. Rename needs the link down, so
/// callers bring it down first when they rename.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LinkChange<'a> {
    pub name: Option<&'a str>,
    pub mtu: Option<u32>,
    pub txqueuelen: Option<u32>,
    pub up: Option<bool>,
}

pub fn set_link(index: u32, c: &LinkChange) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    if let Some(up) = c.up {
        m.header.change_mask = LinkFlags::Up;
        m.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
    }
    if let Some(n) = c.name {
        m.attributes.push(LinkAttribute::IfName(n.to_string()));
    }
    if let Some(mtu) = c.mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(q) = c.txqueuelen {
        m.attributes.push(LinkAttribute::TxQueueLen(q));
    }
    m
}

/// An interface address. IPv6 addresses skip duplicate address detection:
/// a router's addresses are assigned by its config, and DAD would hold them
/// "tentative" (unusable) for a second after READY.
pub fn address(index: u32, p: &Prefix) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = family(p.is_ipv4());
    m.header.prefix_len = p.len;
    m.header.index = index;
    m.header.scope = AddressScope::Universe;
    m.attributes.push(AddressAttribute::Local(p.addr));
    m.attributes.push(AddressAttribute::Address(p.addr));
    match p.addr {
        IpAddr::V4(a) => {
            if p.len < 31 {
                let host = u32::MAX >> p.len;
                m.attributes
                    .push(AddressAttribute::Broadcast((u32::from(a) | host).into()));
            }
        }
        IpAddr::V6(_) => {
            m.header.flags = AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    m
}

/// A permanent neighbour entry: no ARP or NDP on the measured path.
pub fn neighbor(index: u32, n: &Neighbor) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family(n.ip.is_ipv4());
    m.header.ifindex = index;
    m.header.state = NeighbourState::Permanent;
    m.header.kind = RouteType::Unicast;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(
            n.ip,
        )));
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac_bytes(&n.mac)));
    m
}

pub fn mac_bytes(mac: &MacAddr) -> Vec<u8> {
    mac.0.to_vec()
}

fn route_type(k: RouteKind) -> RouteType {
    match k {
        RouteKind::Unicast => RouteType::Unicast,
        RouteKind::Blackhole => RouteType::BlackHole,
        RouteKind::Unreachable => RouteType::Unreachable,
        RouteKind::Prohibit => RouteType::Prohibit,
    }
}

/// The common part of every route: family, destination, table, type, metric.
/// The destination comes first among the attributes: [`super::bulk`]
/// relies on that to patch it in place.
fn route_base(dest: Prefix, table: u32, kind: RouteKind, metric: Option<u32>) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family(dest.is_ipv4());
    m.header.destination_prefix_length = dest.len;
    // Tables above 255 only fit in the attribute; the header says "see attribute".
    m.header.table = if table < 256 { table as u8 } else { 0 };
    m.header.protocol = RouteProtocol::Static;
    m.header.scope = RouteScope::Universe;
    m.header.kind = route_type(kind);
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(
            dest.network(),
        )));
    m.attributes.push(RouteAttribute::Table(table));
    if let Some(p) = metric {
        m.attributes.push(RouteAttribute::Priority(p));
    }
    m
}

/// Adds the gateway/device part of a unicast route.
fn route_target(m: &mut RouteMessage, via: Option<IpAddr>, dev: Option<u32>, onlink: bool) {
    if let Some(gw) = via {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    } else if dev.is_some() {
        // A device route with no gateway reaches its hosts directly.
        m.header.scope = RouteScope::Link;
    }
    if let Some(i) = dev {
        m.attributes.push(RouteAttribute::Oif(i));
    }
    if onlink {
        m.header.flags |= RouteFlags::Onlink;
    }
}

pub fn route(r: &Route, ifindex: Ifindex) -> RouteMessage {
    let mut m = route_base(r.dest_prefix(), r.table(), r.kind, r.metric);
    if r.kind != RouteKind::Unicast {
        return m;
    }
    route_target(&mut m, r.via, r.dev.as_ref().map(ifindex), r.onlink);
    if let Some(src) = r.src {
        m.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(src)));
    }
    if !r.nexthops.is_empty() {
        let hops = r
            .nexthops
            .iter()
            .map(|nh| {
                let mut h = RouteNextHop::default();
                // The kernel stores weight - 1 in rtnh_hops.
                h.hops = (nh.weight - 1) as u8;
                h.interface_index = nh.dev.as_ref().or(r.dev.as_ref()).map(ifindex).unwrap_or(0);
                if nh.onlink || r.onlink {
                    h.flags = RouteNextHopFlags::Onlink;
                }
                h.attributes
                    .push(RouteAttribute::Gateway(RouteAddress::from(nh.via)));
                h
            })
            .collect();
        m.attributes.push(RouteAttribute::MultiPath(hops));
    }
    m
}

/// The i-th route of a generated range, with its own gateway and device
/// (`oif`). Not a shared nexthop object: the kernel flushes a nexthop
/// object, and every route using it, when its device loses carrier, while a
/// route with its own gateway stays (marked linkdown) and forwards again
/// when carrier returns.
pub fn range_route(r: &RouteRange, i: u32, oif: Option<u32>) -> RouteMessage {
    let mut m = route_base(r.prefix(i), r.table(), r.kind, r.metric);
    if r.kind == RouteKind::Unicast {
        route_target(&mut m, r.via, oif, r.onlink);
    }
    m
}

/// One rule for one family.
pub fn rule(r: &Rule, v4: bool) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = family(v4);
    m.header.table = if r.table < 256 { r.table as u8 } else { 0 };
    m.header.action = RuleAction::ToTable;
    m.attributes.push(RuleAttribute::Table(r.table));
    if let Some(f) = r.from {
        m.header.src_len = f.len;
        m.attributes.push(RuleAttribute::Source(f.network()));
    }
    if let Some(t) = r.to {
        m.header.dst_len = t.len;
        m.attributes.push(RuleAttribute::Destination(t.network()));
    }
    if let Some(i) = &r.iif {
        m.attributes.push(RuleAttribute::Iifname(i.to_string()));
    }
    if let Some(o) = &r.oif {
        m.attributes.push(RuleAttribute::Oifname(o.to_string()));
    }
    if let Some(p) = r.priority {
        m.attributes.push(RuleAttribute::Priority(p));
    }
    m.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::Static));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(n: &IfName) -> u32 {
        match n.as_str() {
            "in0" => 2,
            "out0" => 3,
            _ => 99,
        }
    }

    fn cfg() -> tinyvr_config::RouterConfig {
        tinyvr_config::load(include_str!("../../../examples/router.toml")).unwrap()
    }

    #[test]
    fn gateway_route_with_metric() {
        let c = cfg();
        let m = route(&c.routes[0], &idx);
        assert_eq!(m.header.address_family, AddressFamily::Inet);
        assert_eq!(m.header.destination_prefix_length, 16);
        assert_eq!(m.header.table, 254);
        assert_eq!(m.header.kind, RouteType::Unicast);
        assert_eq!(m.header.protocol, RouteProtocol::Static);
        assert_eq!(
            m.attributes,
            vec![
                RouteAttribute::Destination(RouteAddress::Inet("10.9.0.0".parse().unwrap())),
                RouteAttribute::Table(254),
                RouteAttribute::Priority(20),
                RouteAttribute::Gateway(RouteAddress::Inet("10.2.0.2".parse().unwrap())),
            ]
        );
    }

    #[test]
    fn multipath_weights_are_stored_minus_one() {
        let c = cfg();
        let m = route(&c.routes[2], &idx);
        let Some(RouteAttribute::MultiPath(hops)) = m.attributes.last() else {
            panic!("no multipath attribute: {:?}", m.attributes)
        };
        assert_eq!(hops.len(), 2);
        assert_eq!((hops[0].hops, hops[0].interface_index), (0, 3));
        assert_eq!((hops[1].hops, hops[1].interface_index), (2, 2));
    }

    #[test]
    fn onlink_route_in_a_custom_table() {
        let c = cfg();
        let m = route(&c.routes[3], &idx);
        assert!(m.header.flags.contains(RouteFlags::Onlink));
        assert_eq!(m.header.table, 100);
        assert!(m.attributes.contains(&RouteAttribute::Oif(3)));
    }

    #[test]
    fn blackhole_has_no_gateway() {
        let c = cfg();
        let m = route(&c.routes[4], &idx);
        assert_eq!(m.header.kind, RouteType::BlackHole);
        assert_eq!(m.attributes.len(), 2);
    }

    #[test]
    fn big_table_numbers_go_in_the_attribute_only() {
        let mut r = cfg().routes[0].clone();
        r.table = Some(1000);
        let m = route(&r, &idx);
        assert_eq!(m.header.table, 0);
        assert!(m.attributes.contains(&RouteAttribute::Table(1000)));
    }

    #[test]
    fn v6_address_skips_dad_and_v4_gets_broadcast() {
        let v6 = address(2, &"fd00:1::1/64".parse().unwrap());
        assert_eq!(v6.header.flags, AddressHeaderFlags::Nodad);
        let v4 = address(2, &"10.1.0.1/24".parse().unwrap());
        assert!(v4
            .attributes
            .contains(&AddressAttribute::Broadcast("10.1.0.255".parse().unwrap())));
    }

    #[test]
    fn neighbour_is_permanent() {
        let c = cfg();
        let m = neighbor(3, &c.neighbors[0]);
        assert_eq!(m.header.state, NeighbourState::Permanent);
        assert_eq!(m.header.ifindex, 3);
        assert!(m
            .attributes
            .contains(&NeighbourAttribute::LinkLayerAddress(vec![
                2, 0, 0, 0, 2, 2
            ])));
    }

    #[test]
    fn rule_selectors() {
        let c = cfg();
        let m = rule(&c.rules[0], true);
        assert_eq!(
            (m.header.src_len, m.header.table, m.header.action),
            (24, 100, RuleAction::ToTable)
        );
        assert!(m.attributes.contains(&RuleAttribute::Priority(1000)));
        let m = rule(&c.rules[1], false);
        assert_eq!(m.header.family, AddressFamily::Inet6);
        assert!(m.attributes.contains(&RuleAttribute::Iifname("in0".into())));
    }

    #[test]
    fn link_change_sets_only_what_is_asked() {
        let m = set_link(
            7,
            &LinkChange {
                name: Some("in0"),
                up: Some(true),
                ..Default::default()
            },
        );
        assert_eq!(m.header.index, 7);
        assert_eq!(m.header.change_mask, LinkFlags::Up);
        assert_eq!(m.attributes, vec![LinkAttribute::IfName("in0".into())]);
    }
}
