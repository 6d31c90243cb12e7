//! Link operations the host side needs: veth pairs, macvlans, moving a
//! device into a namespace, bridges, addresses, neighbours, routes. Each
//! takes a netlink socket bound to the namespace it acts in.

use crate::HostError;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoVeth, LinkAttribute, LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage as M};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use tinyvr_config::{MacAddr, MacvlanMode, Neighbor, Prefix};
use tinyvr_init::netlink::msg::{self, LinkChange};
use tinyvr_init::netlink::{flags, Netlink};

/// The index of a link by name, or None.
pub fn index(nl: &mut dyn Netlink, name: &str) -> Result<Option<u32>, HostError> {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.into()));
    match nl.request(&|| format!("looking up {name}"), M::GetLink(m), flags::NONE) {
        Ok(r) => Ok(r.iter().find_map(|m| match m {
            M::NewLink(l) => Some(l.header.index),
            _ => None,
        })),
        Err(e) if e.errno == libc::ENODEV => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn must_index(nl: &mut dyn Netlink, name: &str, what: &str) -> Result<u32, HostError> {
    index(nl, name)?.ok_or_else(|| HostError::Other(format!("{what}: no device named {name:?}")))
}

/// The veth pair request: `(name, mac)` here, `(peer, mac)` created in
/// the namespace `peer_ns` (an open namespace file).
pub fn veth_message(
    local: (&str, Option<&MacAddr>),
    peer: (&str, Option<&MacAddr>),
    peer_ns: Option<i32>,
) -> LinkMessage {
    let mut p = LinkMessage::default();
    p.attributes.push(LinkAttribute::IfName(peer.0.into()));
    if let Some(fd) = peer_ns {
        p.attributes.push(LinkAttribute::NetNsFd(fd));
    }
    if let Some(m) = peer.1 {
        p.attributes.push(LinkAttribute::Address(m.0.to_vec()));
    }
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(local.0.into()));
    if let Some(mac) = local.1 {
        m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
    ]));
    m
}

pub fn add_veth(
    nl: &mut dyn Netlink,
    local: (&str, Option<&MacAddr>),
    peer: (&str, Option<&MacAddr>),
    peer_ns: Option<&str>,
) -> Result<(), HostError> {
    let ns = peer_ns.map(crate::netns::open).transpose()?;
    let m = veth_message(local, peer, ns.as_ref().map(|f| f.as_raw_fd()));
    nl.request(
        &|| format!("creating veth pair {} / {}", local.0, peer.0),
        M::NewLink(m),
        flags::CREATE_EXCL,
    )?;
    Ok(())
}

fn macvlan_mode(m: MacvlanMode) -> MacVlanMode {
    match m {
        MacvlanMode::Bridge => MacVlanMode::Bridge,
        MacvlanMode::Vepa => MacVlanMode::Vepa,
        MacvlanMode::Private => MacVlanMode::Private,
        MacvlanMode::Passthru => MacVlanMode::Passthrough,
    }
}

/// A macvlan named `name` on `parent`, created directly in namespace `ns`.
pub fn add_macvlan(
    nl: &mut dyn Netlink,
    name: &str,
    parent: &str,
    mode: MacvlanMode,
    ns: &str,
    mac: Option<&MacAddr>,
) -> Result<(), HostError> {
    let parent_index = must_index(nl, parent, &format!("macvlan {name}: parent"))?;
    let fd = crate::netns::open(ns)?;
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.into()));
    m.attributes.push(LinkAttribute::Link(parent_index));
    m.attributes.push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
    if let Some(mac) = mac {
        m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::MacVlan),
        LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(macvlan_mode(
            mode,
        ))])),
    ]));
    nl.request(
        &|| format!("creating macvlan {name} on {parent} in {ns}"),
        M::NewLink(m),
        flags::CREATE_EXCL,
    )?;
    Ok(())
}

/// Turns IPv6 off on a host-side device before it goes up: a tap or
/// macvtap is a plain L2 conduit, and its own router solicitations and MLD
/// reports would be counted as traffic. Acts in the caller's namespace.
pub fn quiet_ipv6(name: &str) -> Result<(), HostError> {
    let p = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
    match std::fs::write(&p, "1") {
        // No IPv6 on this host at all: nothing to quiet.
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && !std::path::Path::new("/proc/sys/net/ipv6").exists() =>
        {
            Ok(())
        }
        r => r.map_err(|e| HostError::io(format!("writing {p}"), e)),
    }
}

/// A bridge named `name` in the socket's namespace.
pub fn add_bridge(nl: &mut dyn Netlink, name: &str) -> Result<(), HostError> {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.into()));
    m.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Bridge,
        )]));
    nl.request(
        &|| format!("creating bridge {name}"),
        M::NewLink(m),
        flags::CREATE_EXCL,
    )?;
    Ok(())
}

/// A macvtap named `name` on `parent`; returns its ifindex (its character
/// device is /dev/tap<ifindex>).
pub fn add_macvtap(
    nl: &mut dyn Netlink,
    name: &str,
    parent: &str,
    mode: MacvlanMode,
    mac: Option<&MacAddr>,
) -> Result<u32, HostError> {
    let parent_index = must_index(nl, parent, &format!("macvtap {name}: parent"))?;
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.into()));
    m.attributes.push(LinkAttribute::Link(parent_index));
    // Given at creation: a MAC another (up) macvtap on the lower has can
    // be created but not set later.
    if let Some(mac) = mac {
        m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::MacVtap),
        LinkInfo::Data(InfoData::MacVtap(vec![
            netlink_packet_route::link::InfoMacVtap::Mode(macvlan_mode(mode)),
        ])),
    ]));
    nl.request(
        &|| format!("creating macvtap {name} on {parent}"),
        M::NewLink(m),
        flags::CREATE_EXCL,
    )?;
    must_index(nl, name, "the new macvtap")
}

/// Reads link `index` back and picks one attribute from it (`what` names
/// it in errors): what a setter compares with what it set.
fn read_attr<T>(
    nl: &mut dyn Netlink,
    index: u32,
    what: &str,
    pick: impl Fn(LinkAttribute) -> Option<T>,
) -> Result<Option<T>, HostError> {
    Ok(link_attrs(nl, index, what)?.into_iter().find_map(pick))
}

/// Every attribute of link `index`, in one request.
fn link_attrs(
    nl: &mut dyn Netlink,
    index: u32,
    what: &str,
) -> Result<Vec<LinkAttribute>, HostError> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    Ok(nl
        .request(
            &|| format!("reading back {what}"),
            M::GetLink(m),
            flags::NONE,
        )?
        .into_iter()
        .find_map(|r| match r {
            M::NewLink(l) => Some(l.attributes),
            _ => None,
        })
        .unwrap_or_default())
}

/// Sets a link's txqueuelen and reads it back: a value the kernel does not
/// hold fails, naming the link (the queue length is an experiment's knob).
pub fn set_txqueuelen(nl: &mut dyn Netlink, name: &str, len: u32) -> Result<u32, HostError> {
    let c = LinkChange {
        txqueuelen: Some(len),
        ..Default::default()
    };
    set_number(nl, name, "txqueuelen", len, &c, |a| match a {
        LinkAttribute::TxQueueLen(q) => Some(q),
        _ => None,
    })
}

/// Sets a link's MTU and reads it back.
pub fn set_mtu(nl: &mut dyn Netlink, name: &str, mtu: u32) -> Result<u32, HostError> {
    let c = LinkChange {
        mtu: Some(mtu),
        ..Default::default()
    };
    set_number(nl, name, "mtu", mtu, &c, |a| match a {
        LinkAttribute::Mtu(q) => Some(q),
        _ => None,
    })
}

/// Applies `c` (which sets `what` to `v`) and reads `what` back through
/// `pick`: a value the kernel does not hold fails, naming it.
fn set_number(
    nl: &mut dyn Netlink,
    name: &str,
    what: &str,
    v: u32,
    c: &LinkChange,
    pick: fn(LinkAttribute) -> Option<u32>,
) -> Result<u32, HostError> {
    let i = must_index(nl, name, &format!("setting {what}"))?;
    nl.request(
        &|| format!("setting {what} {v} on {name}"),
        M::SetLink(msg::set_link(i, c)),
        flags::NONE,
    )?;
    match read_attr(nl, i, &format!("the {what} of {name}"), pick)? {
        Some(q) if q == v => Ok(q),
        other => Err(HostError::Other(format!(
            "{name}: {what} {v} was asked, the kernel holds {}",
            other.map_or("none".to_string(), |q| q.to_string())
        ))),
    }
}

/// Moves device `name` into namespace `ns` (optionally renaming it there).
pub fn move_to(
    nl: &mut dyn Netlink,
    name: &str,
    ns_fd: i32,
    new_name: Option<&str>,
) -> Result<(), HostError> {
    let i = must_index(nl, name, "moving a device")?;
    let mut m = LinkMessage::default();
    m.header.index = i;
    m.attributes.push(LinkAttribute::NetNsFd(ns_fd));
    if let Some(n) = new_name {
        m.attributes.push(LinkAttribute::IfName(n.into()));
    }
    nl.request(
        &|| format!("moving {name} to another namespace"),
        M::SetLink(m),
        flags::NONE,
    )?;
    Ok(())
}

/// Sets a link's MAC and reads it back: a driver that keeps another one
/// (or a hook's change that did not take) fails naming both.
pub fn set_mac(nl: &mut dyn Netlink, name: &str, mac: &MacAddr) -> Result<(), HostError> {
    let i = must_index(nl, name, "setting a MAC address")?;
    let mut m = LinkMessage::default();
    m.header.index = i;
    m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    nl.request(
        &|| format!("setting the MAC of {name} to {mac}"),
        M::SetLink(m),
        flags::NONE,
    )?;
    let held = read_attr(nl, i, &format!("the MAC of {name}"), |a| match a {
        LinkAttribute::Address(b) => <[u8; 6]>::try_from(b.as_slice()).ok().map(MacAddr),
        _ => None,
    })?;
    match held {
        Some(h) if h == *mac => Ok(()),
        other => Err(HostError::Other(format!(
            "{name}: MAC {mac} was set, the kernel holds {}",
            other.map_or("none".to_string(), |h| h.to_string())
        ))),
    }
}

pub fn set_master(nl: &mut dyn Netlink, name: &str, bridge: &str) -> Result<(), HostError> {
    let i = must_index(nl, name, "attaching to a bridge")?;
    let b = must_index(nl, bridge, &format!("attaching {name} to bridge {bridge}"))?;
    let mut m = LinkMessage::default();
    m.header.index = i;
    m.attributes.push(LinkAttribute::Controller(b));
    nl.request(
        &|| format!("attaching {name} to bridge {bridge}"),
        M::SetLink(m),
        flags::NONE,
    )?;
    Ok(())
}

pub fn set_up(nl: &mut dyn Netlink, name: &str) -> Result<(), HostError> {
    set_state(nl, name, true)
}

/// Sets a link up or down.
pub fn set_state(nl: &mut dyn Netlink, name: &str, up: bool) -> Result<(), HostError> {
    let i = must_index(nl, name, "setting a link up or down")?;
    let c = LinkChange {
        up: Some(up),
        ..Default::default()
    };
    nl.request(
        &|| format!("setting {name} {}", if up { "up" } else { "down" }),
        M::SetLink(msg::set_link(i, &c)),
        flags::NONE,
    )?;
    Ok(())
}

/// Whether link `name` is administratively up, read from the kernel.
pub fn is_up(nl: &mut dyn Netlink, name: &str) -> Result<bool, HostError> {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.into()));
    let r = nl.request(&|| format!("reading {name}"), M::GetLink(m), flags::NONE)?;
    r.iter()
        .find_map(|m| match m {
            M::NewLink(l) => Some(
                l.header
                    .flags
                    .contains(netlink_packet_route::link::LinkFlags::Up),
            ),
            _ => None,
        })
        .ok_or_else(|| HostError::Other(format!("no link named {name:?}")))
}

/// Renames a link (it must be down).
pub fn rename(nl: &mut dyn Netlink, name: &str, to: &str) -> Result<(), HostError> {
    let i = must_index(nl, name, "renaming a link")?;
    let c = LinkChange {
        name: Some(to),
        ..Default::default()
    };
    nl.request(
        &|| format!("renaming {name} to {to}"),
        M::SetLink(msg::set_link(i, &c)),
        flags::NONE,
    )?;
    Ok(())
}

/// What a migration copies of a macvtap: its name, lower, MAC and queue
/// length, read from the kernel by ifindex.
#[derive(Debug, Clone, PartialEq)]
pub struct MacvtapFacts {
    pub name: String,
    pub lower: String,
    pub mac: MacAddr,
    pub txqueuelen: u32,
    /// The mode the kernel holds (a copy must forward the same way).
    pub mode: MacvlanMode,
}

/// Our mode for the kernel's; None for one tinyvr never makes (source).
fn config_mode(m: &MacVlanMode) -> Option<MacvlanMode> {
    Some(match m {
        MacVlanMode::Bridge => MacvlanMode::Bridge,
        MacVlanMode::Vepa => MacvlanMode::Vepa,
        MacVlanMode::Private => MacvlanMode::Private,
        MacVlanMode::Passthrough => MacvlanMode::Passthru,
        _ => return None,
    })
}

pub fn macvtap_facts(nl: &mut dyn Netlink, index: u32) -> Result<MacvtapFacts, HostError> {
    let (mut name, mut lower, mut mac, mut txqueuelen) = (None, None, None, None);
    let mut mode = None;
    for a in link_attrs(nl, index, &format!("link {index}"))? {
        match a {
            LinkAttribute::IfName(n) => name = Some(n),
            LinkAttribute::Link(l) => lower = Some(l),
            LinkAttribute::Address(m) => mac = <[u8; 6]>::try_from(m.as_slice()).ok(),
            LinkAttribute::TxQueueLen(q) => txqueuelen = Some(q),
            LinkAttribute::LinkInfo(info) => {
                for i in info {
                    if let LinkInfo::Data(InfoData::MacVtap(d)) = i {
                        for x in d {
                            if let netlink_packet_route::link::InfoMacVtap::Mode(m) = x {
                                mode = config_mode(&m);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let missing = || HostError::Other(format!("link {index}: not a macvtap on a lower"));
    if lower.is_some() && mode.is_none() {
        return Err(HostError::Other(format!(
            "link {index}: a macvtap in a mode tinyvr does not make (source): not copied"
        )));
    }
    let lower = name_of(nl, lower.ok_or_else(missing)?)?.ok_or_else(missing)?;
    Ok(MacvtapFacts {
        name: name.ok_or_else(missing)?,
        lower,
        mac: MacAddr(mac.ok_or_else(missing)?),
        txqueuelen: txqueuelen.ok_or_else(missing)?,
        mode: mode.ok_or_else(missing)?,
    })
}

/// The name of link `index`, or None when there is no such link.
pub fn name_of(nl: &mut dyn Netlink, index: u32) -> Result<Option<String>, HostError> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    match nl.request(
        &|| format!("looking up link {index}"),
        M::GetLink(m),
        flags::NONE,
    ) {
        Ok(r) => Ok(r.into_iter().find_map(|m| match m {
            M::NewLink(l) => l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            }),
            _ => None,
        })),
        Err(e) if e.errno == libc::ENODEV => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Deletes link `index` (`name` is for the message); gone already is fine.
pub fn delete_index(nl: &mut dyn Netlink, index: u32, name: &str) -> Result<(), HostError> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    match nl.request(&|| format!("deleting {name}"), M::DelLink(m), flags::NONE) {
        Err(e) if e.errno == libc::ENODEV => Ok(()),
        r => r.map(|_| ()).map_err(Into::into),
    }
}

/// Fails naming the conflict when a link called `name` exists already.
pub fn must_be_free(nl: &mut dyn Netlink, name: &str, ns: Option<&str>) -> Result<(), HostError> {
    match index(nl, name)? {
        None => Ok(()),
        Some(i) => Err(HostError::Other(format!(
            "a link named {name} exists already in {} (ifindex {i}) and tinyvr did not make it: left alone; pick another --name or remove it",
            ns.map_or("the host namespace".to_string(), |n| format!("namespace {n}"))
        ))),
    }
}

pub fn add_address(nl: &mut dyn Netlink, dev: &str, p: &Prefix) -> Result<(), HostError> {
    let i = must_index(nl, dev, "adding an address")?;
    nl.request(
        &|| format!("adding {p} to {dev}"),
        M::NewAddress(msg::address(i, p)),
        flags::CREATE_REPLACE,
    )?;
    Ok(())
}

pub fn add_neighbor(
    nl: &mut dyn Netlink,
    dev: &str,
    ip: IpAddr,
    mac: MacAddr,
) -> Result<(), HostError> {
    let i = must_index(nl, dev, "adding a neighbour")?;
    let n = Neighbor {
        ip,
        mac,
        dev: dev.parse().map_err(HostError::Other)?,
    };
    nl.request(
        &|| format!("adding neighbour {ip} on {dev}"),
        M::NewNeighbour(msg::neighbor(i, &n)),
        flags::CREATE_REPLACE,
    )?;
    Ok(())
}

/// A route to `dest` via `gw` in the main table.
pub fn add_route(nl: &mut dyn Netlink, dest: &Prefix, gw: IpAddr) -> Result<(), HostError> {
    let mut m = RouteMessage::default();
    m.header.address_family = if dest.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.destination_prefix_length = dest.len;
    m.header.table = 254;
    m.header.protocol = RouteProtocol::Static;
    m.header.scope = RouteScope::Universe;
    m.header.kind = RouteType::Unicast;
    if dest.len > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                dest.network(),
            )));
    }
    m.attributes
        .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    nl.request(
        &|| format!("adding route {dest} via {gw}"),
        M::NewRoute(m),
        flags::CREATE_REPLACE,
    )?;
    Ok(())
}

/// The MAC address of a link.
pub fn mac_of(nl: &mut dyn Netlink, name: &str) -> Result<MacAddr, HostError> {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.into()));
    let r = nl.request(
        &|| format!("reading the MAC of {name}"),
        M::GetLink(m),
        flags::NONE,
    )?;
    for msg in r {
        if let M::NewLink(l) = msg {
            for a in l.attributes {
                if let LinkAttribute::Address(b) = a {
                    if b.len() == 6 {
                        return Ok(MacAddr(b.try_into().unwrap()));
                    }
                }
            }
        }
    }
    Err(HostError::Other(format!("{name} has no MAC address")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyvr_init::netlink::NlError;

    /// Records every request; answers lookups from a table of links.
    #[derive(Default)]
    struct Fake {
        links: Vec<(u32, String)>,
        sent: Vec<(M, u16)>,
        /// What the "kernel" reports as every link's txqueuelen.
        txqueuelen: u32,
        /// ...and as every link's MAC.
        mac: [u8; 6],
    }

    impl Netlink for Fake {
        fn request(
            &mut self,
            what: &dyn Fn() -> String,
            msg: M,
            flags: u16,
        ) -> Result<Vec<M>, NlError> {
            self.sent.push((msg.clone(), flags));
            let nodev = || NlError {
                what: what(),
                errno: libc::ENODEV,
                detail: None,
            };
            let found = |l: &LinkMessage| {
                self.links.iter().find(|(i, n)| {
                    *i == l.header.index
                        || l.attributes
                            .iter()
                            .any(|a| matches!(a, LinkAttribute::IfName(x) if x == n))
                })
            };
            match msg {
                M::GetLink(l) => {
                    let (i, n) = found(&l).ok_or_else(nodev)?;
                    let mut r = LinkMessage::default();
                    r.header.index = *i;
                    r.attributes.push(LinkAttribute::IfName(n.clone()));
                    r.attributes
                        .push(LinkAttribute::TxQueueLen(self.txqueuelen));
                    r.attributes.push(LinkAttribute::Address(self.mac.to_vec()));
                    Ok(vec![M::NewLink(r)])
                }
                M::DelLink(l) => found(&l).map(|_| vec![]).ok_or_else(nodev),
                _ => Ok(vec![]),
            }
        }
        fn bulk(
            &mut self,
            _: usize,
            _: &mut dyn FnMut(usize, u32, &mut Vec<u8>),
        ) -> Result<Vec<(usize, i32, Option<String>)>, NlError> {
            unimplemented!("not used by the host side")
        }
    }

    #[test]
    fn a_taken_name_is_a_conflict_that_names_the_owner_namespace() {
        let mut nl = Fake {
            links: vec![(7, "vr1-in0".into())],
            ..Default::default()
        };
        let e = must_be_free(&mut nl, "vr1-in0", Some("lab"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("vr1-in0 exists already in namespace lab (ifindex 7)"),
            "{e}"
        );
        must_be_free(&mut nl, "vr1-out0", None).unwrap();
    }

    #[test]
    fn removal_goes_by_ifindex_and_a_link_already_gone_is_fine() {
        let mut nl = Fake {
            links: vec![(7, "vr1-in0".into())],
            ..Default::default()
        };
        assert_eq!(name_of(&mut nl, 7).unwrap().as_deref(), Some("vr1-in0"));
        assert_eq!(name_of(&mut nl, 8).unwrap(), None);
        delete_index(&mut nl, 7, "vr1-in0").unwrap();
        delete_index(&mut nl, 9, "gone").unwrap();
        let (M::DelLink(l), f) = &nl.sent[2] else {
            panic!("{:?}", nl.sent[2])
        };
        assert_eq!((l.header.index, *f), (7, flags::NONE));
        assert!(l.attributes.is_empty(), "deleted by index, not by name");
    }

    #[test]
    fn a_queue_length_that_did_not_take_fails() {
        let mut nl = Fake {
            links: vec![(7, "vr1-in0".into())],
            txqueuelen: 50,
            ..Default::default()
        };
        set_txqueuelen(&mut nl, "vr1-in0", 50).unwrap();
        let e = set_txqueuelen(&mut nl, "vr1-in0", 35)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "vr1-in0: txqueuelen 35 was asked, the kernel holds 50");
    }

    #[test]
    fn a_mac_that_did_not_take_fails() {
        let mac: MacAddr = "02:74:00:00:00:0b".parse().unwrap();
        let mut nl = Fake {
            links: vec![(7, "vr1-out0".into())],
            mac: mac.0,
            ..Default::default()
        };
        set_mac(&mut nl, "vr1-out0", &mac).unwrap();
        let other: MacAddr = "02:74:00:00:00:0c".parse().unwrap();
        let e = set_mac(&mut nl, "vr1-out0", &other)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "vr1-out0: MAC 02:74:00:00:00:0c was set, the kernel holds 02:74:00:00:00:0b"
        );
    }

    #[test]
    fn new_links_are_created_exclusively() {
        let mut nl = Fake::default();
        add_bridge(&mut nl, "vr1-br0").unwrap();
        assert_eq!(nl.sent[0].1, flags::CREATE_EXCL);
    }
}
