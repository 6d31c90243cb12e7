//! An SR-IOV VF's MAC, read and set through its PF (what `ip link show PF`
//! and `ip link set PF vf N mac MAC` send). tinyvr sets a VF's MAC so the
//! guest finds its NIC; it records the MAC the VF had and puts it back on
//! `down` (see `state::Resource::VfMac`).

use crate::HostError;
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkMessage, LinkVfInfo, VfInfo, VfInfoMac,
};
use netlink_packet_route::RouteNetlinkMessage as M;
use tinyvr_config::MacAddr;
use tinyvr_init::netlink::{flags, Netlink};

/// The request that gives VF `vf` of the PF (ifindex `pf`) `mac`.
pub fn set_mac_message(pf: u32, vf: u32, mac: &MacAddr) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = pf;
    m.attributes
        .push(LinkAttribute::VfInfoList(vec![LinkVfInfo(vec![
            VfInfo::Mac(VfInfoMac::new(vf, &mac.0)),
        ])]));
    m
}

/// The request for the PF's link with its VFs' settings.
pub fn get_vfs_message(pf: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = pf;
    m.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Vf]));
    m
}

/// VF `vf`'s MAC in a reply to [`get_vfs_message`].
pub fn mac_in(reply: &LinkMessage, vf: u32) -> Option<MacAddr> {
    reply.attributes.iter().find_map(|a| match a {
        LinkAttribute::VfInfoList(vfs) => vfs.iter().find_map(|v| {
            v.0.iter().find_map(|i| match i {
                VfInfo::Mac(m) if m.vf_id == vf => m.mac[..6].try_into().ok().map(MacAddr),
                _ => None,
            })
        }),
        _ => None,
    })
}

/// VF `vf`'s MAC as the PF (ifindex `pf`) reports it.
pub fn mac(nl: &mut dyn Netlink, pf: u32, vf: u32) -> Result<Option<MacAddr>, HostError> {
    let replies = nl.request(
        &|| format!("reading the VFs of link {pf}"),
        M::GetLink(get_vfs_message(pf)),
        flags::NONE,
    )?;
    Ok(replies.iter().find_map(|m| match m {
        M::NewLink(l) => mac_in(l, vf),
        _ => None,
    }))
}

/// Gives VF `vf` of the PF (ifindex `pf`, named `pf_name`) `mac`, and
/// reads it back: a PF driver that keeps another MAC is an error.
pub fn set_mac(
    nl: &mut dyn Netlink,
    pf: u32,
    pf_name: &str,
    vf: u32,
    mac: &MacAddr,
) -> Result<(), HostError> {
    nl.request(
        &|| format!("setting the MAC of VF {vf} of {pf_name} to {mac}"),
        M::SetLink(set_mac_message(pf, vf, mac)),
        flags::NONE,
    )?;
    match self::mac(nl, pf, vf)? {
        Some(held) if held == *mac => Ok(()),
        held => Err(HostError::Other(format!(
            "VF {vf} of {pf_name}: MAC {mac} was set, the PF reports {}",
            held.map_or("none".to_string(), |h| h.to_string())
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_goes_through_the_pf_and_reads_back() {
        let mac: MacAddr = "52:54:00:00:01:01".parse().unwrap();
        let m = set_mac_message(7, 1, &mac);
        assert_eq!(m.header.index, 7);
        let LinkAttribute::VfInfoList(l) = &m.attributes[0] else {
            panic!("{m:?}")
        };
        let VfInfo::Mac(v) = &l[0].0[0] else {
            panic!("{l:?}")
        };
        assert_eq!((v.vf_id, &v.mac[..6]), (1, &mac.0[..]));
        // A PF's reply lists every VF; the one asked for is picked.
        let other: MacAddr = "02:00:00:00:00:09".parse().unwrap();
        let mut reply = LinkMessage::default();
        reply.attributes.push(LinkAttribute::VfInfoList(vec![
            LinkVfInfo(vec![VfInfo::Mac(VfInfoMac::new(0, &other.0))]),
            LinkVfInfo(vec![VfInfo::Mac(VfInfoMac::new(1, &mac.0))]),
        ]));
        assert_eq!(mac_in(&reply, 1), Some(mac));
        assert_eq!(mac_in(&reply, 0), Some(other));
        assert_eq!(mac_in(&reply, 2), None);
        let g = get_vfs_message(7);
        assert_eq!(g.header.index, 7);
        assert_eq!(
            g.attributes,
            [LinkAttribute::ExtMask(vec![LinkExtentMask::Vf])]
        );
    }
}
