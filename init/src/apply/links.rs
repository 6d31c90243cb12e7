//! Finding the devices a config names, waiting (bounded) for late ones,
//! renaming them and setting MTU, queue length and state.

use crate::netlink::msg::{self, LinkChange};
use crate::netlink::{flags, Netlink, NlError};
use crate::sysfs;
use netlink_packet_route::RouteNetlinkMessage as M;
use std::time::{Duration, Instant};
use tinyvr_config::{Interface, RouterConfig};

/// Loopback is always ifindex 1 in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// The hardware address as the kernel gives it (6 bytes for Ethernet).
    pub addr: Vec<u8>,
    pub up: bool,
    pub driver: Option<String>,
    pub pci: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    #[error("interface[{idx}] ({name}): no device matched {keys} within {waited_ms} ms; devices present: {present}")]
    NotFound {
        idx: usize,
        name: String,
        keys: String,
        waited_ms: u64,
        present: String,
    },
    #[error("interface[{idx}] ({name}): the device {keys} is {dev}, already taken by interface[{other}]")]
    Taken {
        idx: usize,
        name: String,
        keys: String,
        dev: String,
        other: usize,
    },
    #[error("interface[{idx}] ({name}): cannot rename {from} to {name}: the name belongs to a device the config does not manage")]
    NameTaken {
        idx: usize,
        name: String,
        from: String,
    },
}

impl LinkInfo {
    /// The hardware address as text, like `52:54:00:00:01:01`.
    pub fn mac(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(self.addr.len() * 3);
        for (i, b) in self.addr.iter().enumerate() {
            if i > 0 {
                s.push(':');
            }
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        s
    }
}

/// Decodes the part of an RTM_NEWLINK reply (netlink header included) the
/// init uses: index, up flag, name and hardware address. By hand, because
/// the generic decoder parses every attribute of every link and on a TCG
/// guest that costs more than the kernel's side of the dump.
pub fn info_from_raw(msg: &[u8]) -> Option<LinkInfo> {
    const NLMSG_HDR: usize = 16;
    const IFINFOMSG: usize = 16;
    const IFLA_ADDRESS: u16 = 1;
    const IFLA_IFNAME: u16 = 3;
    const RTM_NEWLINK: u16 = 16;
    let u16_at = |o: usize| u16::from_ne_bytes([msg[o], msg[o + 1]]);
    let u32_at = |o: usize| u32::from_ne_bytes(msg[o..o + 4].try_into().unwrap());
    if msg.len() < NLMSG_HDR + IFINFOMSG || u16_at(4) != RTM_NEWLINK {
        return None;
    }
    let mut l = LinkInfo {
        index: u32_at(NLMSG_HDR + 4),
        name: String::new(),
        addr: Vec::new(),
        up: u32_at(NLMSG_HDR + 8) & libc::IFF_UP as u32 != 0,
        driver: None,
        pci: None,
    };
    let mut off = NLMSG_HDR + IFINFOMSG;
    while off + 4 <= msg.len() {
        let len = u16_at(off) as usize;
        if len < 4 || off + len > msg.len() {
            break;
        }
        let value = &msg[off + 4..off + len];
        // The top bits are the nested and byte-order flags.
        match u16_at(off + 2) & 0x3fff {
            IFLA_IFNAME => {
                let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
                l.name = String::from_utf8_lossy(&value[..end]).into_owned();
            }
            IFLA_ADDRESS => l.addr = value.to_vec(),
            _ => {}
        }
        off += (len + 3) & !3;
    }
    Some(l)
}

/// Every link in the namespace but loopback; with `sysfs`, also its driver
/// and PCI address (only read when a config matches on them: on a TCG
/// guest every file read counts).
pub fn list(nl: &mut dyn Netlink, sysfs: bool) -> Result<Vec<LinkInfo>, NlError> {
    let mut links = Vec::new();
    nl.request_raw(
        &|| "listing links".into(),
        M::GetLink(msg::dump_links()),
        flags::DUMP,
        &mut |raw| links.extend(info_from_raw(raw)),
    )?;
    Ok(links
        .into_iter()
        .filter(|l| l.name != "lo")
        .map(|mut l| {
            if sysfs {
                l.driver = sysfs::driver_of(&l.name);
                l.pci = sysfs::pci_of(&l.name);
            }
            l
        })
        .collect())
}

fn keys(i: &Interface) -> String {
    let mut k = Vec::new();
    if let Some(m) = i.mac {
        k.push(format!("mac={m}"));
    }
    if let Some(p) = &i.pci {
        k.push(format!("pci={p}"));
    }
    if let Some(d) = &i.driver {
        k.push(format!("driver={d}"));
    }
    if let Some(n) = i.index {
        k.push(format!("index={n}"));
    }
    if k.is_empty() {
        k.push(format!("name={}", i.name));
    }
    k.join(" ")
}

fn matches(i: &Interface, l: &LinkInfo) -> bool {
    if i.matched_by_name() {
        return l.name == i.name.as_str();
    }
    i.mac.is_none_or(|m| m.0[..] == l.addr[..])
        && i.pci
            .as_ref()
            .is_none_or(|p| l.pci.as_deref() == Some(p.as_str()))
        && i.driver
            .as_ref()
            .is_none_or(|d| l.driver.as_deref() == Some(d.as_str()))
}

/// Picks a device for every interface, or says which one is missing.
/// `index` counts among all matching devices in PCI order; without it the
/// first device not claimed by an earlier interface is taken.
pub fn assign(
    cfg: &RouterConfig,
    links: &[LinkInfo],
) -> Result<Vec<LinkInfo>, (usize, MatchError)> {
    // (ifindex, interface) pairs: a config has a handful of interfaces.
    let mut claimed: Vec<(u32, usize)> = Vec::new();
    let mut out = Vec::new();
    for (idx, ifc) in cfg.interfaces.iter().enumerate() {
        let mut cands: Vec<&LinkInfo> = links.iter().filter(|l| matches(ifc, l)).collect();
        cands.sort_by(|a, b| (&a.pci, a.index).cmp(&(&b.pci, b.index)));
        let pick = match ifc.index {
            Some(n) => cands.get(n as usize).copied(),
            None => cands
                .iter()
                .find(|l| !claimed.iter().any(|c| c.0 == l.index))
                .copied(),
        };
        let not_found = || MatchError::NotFound {
            idx,
            name: ifc.name.to_string(),
            keys: keys(ifc),
            waited_ms: 0,
            present: present(links),
        };
        let l = pick.ok_or_else(|| (idx, not_found()))?;
        if let Some(&(_, other)) = claimed.iter().find(|c| c.0 == l.index) {
            return Err((
                idx,
                MatchError::Taken {
                    idx,
                    name: ifc.name.to_string(),
                    keys: keys(ifc),
                    dev: l.name.clone(),
                    other,
                },
            ));
        }
        claimed.push((l.index, idx));
        out.push(l.clone());
    }
    Ok(out)
}

fn present(links: &[LinkInfo]) -> String {
    if links.is_empty() {
        return "none".into();
    }
    links
        .iter()
        .map(|l| {
            format!(
                "{} ({} {})",
                l.name,
                l.mac(),
                l.driver.as_deref().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits for all devices, then renames them and sets MTU and queue length;
/// bringing them up is [`set_up`]'s job, after the sysctls, so that
/// per-interface sysctls (disable_ipv6, accept_ra...) hold from the first
/// packet. Returns the final state of each interface, in config order.
pub fn prepare(
    cfg: &RouterConfig,
    nl: &mut dyn Netlink,
    timeout: Duration,
) -> Result<Vec<LinkInfo>, super::ApplyError> {
    let start = Instant::now();
    let need_sysfs = cfg
        .interfaces
        .iter()
        .any(|i| i.pci.is_some() || i.driver.is_some());
    let (found, all) = loop {
        let links = list(nl, need_sysfs)?;
        match assign(cfg, &links) {
            Ok(found) => break (found, links),
            Err((
                _,
                MatchError::NotFound {
                    idx,
                    name,
                    keys,
                    present,
                    ..
                },
            )) if start.elapsed() >= timeout => {
                let waited_ms = start.elapsed().as_millis() as u64;
                return Err(MatchError::NotFound {
                    idx,
                    name,
                    keys,
                    waited_ms,
                    present,
                }
                .into());
            }
            Err((_, e @ MatchError::NotFound { .. })) => {
                log::debug!("waiting: {e}");
                // A dump is cheap; devices probed late show up within ms.
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((_, e)) => return Err(e.into()),
        }
    };
    log::debug!("links found in {:.3} ms", super::ms(start.elapsed()));
    rename(cfg, nl, &found, &all)?;
    log::debug!("links renamed at {:.3} ms", super::ms(start.elapsed()));
    for (ifc, l) in cfg.interfaces.iter().zip(&found) {
        if ifc.mtu.is_none() && ifc.txqueuelen.is_none() {
            continue;
        }
        let change = LinkChange {
            mtu: ifc.mtu,
            txqueuelen: ifc.txqueuelen,
            ..Default::default()
        };
        nl.request(
            &|| {
                format!(
                    "setting {} mtu {:?} txqueuelen {:?}",
                    ifc.name, ifc.mtu, ifc.txqueuelen
                )
            },
            M::SetLink(msg::set_link(l.index, &change)),
            flags::NONE,
        )?;
    }
    // Renaming and MTU changes keep index and MAC: no need to list again.
    Ok(cfg
        .interfaces
        .iter()
        .zip(found)
        .map(|(ifc, mut l)| {
            l.name = ifc.name.to_string();
            l
        })
        .collect())
}

/// Sets loopback and every interface of the config up. Loopback too comes
/// up only after the sysctls, so they hold for it as well (with IPv6 off,
/// it never gets ::1).
pub fn set_up(cfg: &RouterConfig, nl: &mut dyn Netlink, links: &[LinkInfo]) -> Result<(), NlError> {
    let up = LinkChange {
        up: Some(true),
        ..Default::default()
    };
    // Nobody else brings loopback up in a VM or a fresh namespace.
    nl.request(
        &|| "setting lo up".into(),
        M::SetLink(msg::set_link(LOOPBACK_IFINDEX, &up)),
        flags::NONE,
    )?;
    for (ifc, l) in cfg.interfaces.iter().zip(links) {
        let i = l.index;
        nl.request(
            &|| format!("setting {} up", ifc.name),
            M::SetLink(msg::set_link(i, &up)),
            flags::NONE,
        )?;
    }
    Ok(())
}

/// Renames matched devices to their config names. When a target name is
/// held by another managed device (a swap), everything being renamed first
/// moves to a temporary name.
fn rename(
    cfg: &RouterConfig,
    nl: &mut dyn Netlink,
    found: &[LinkInfo],
    all: &[LinkInfo],
) -> Result<(), super::ApplyError> {
    let todo: Vec<(usize, &LinkInfo)> = found
        .iter()
        .enumerate()
        .filter(|(i, l)| l.name != cfg.interfaces[*i].name.as_str())
        .collect();
    let mut conflict = false;
    for &(i, l) in &todo {
        let target = cfg.interfaces[i].name.as_str();
        if let Some(holder) = all.iter().find(|a| a.name == target && a.index != l.index) {
            if !found.iter().any(|f| f.index == holder.index) {
                return Err(MatchError::NameTaken {
                    idx: i,
                    name: target.into(),
                    from: l.name.clone(),
                }
                .into());
            }
            conflict = true;
        }
    }
    for &(_, l) in &todo {
        if l.up {
            let down = LinkChange {
                up: Some(false),
                ..Default::default()
            };
            nl.request(
                &|| format!("setting {} down to rename it", l.name),
                M::SetLink(msg::set_link(l.index, &down)),
                flags::NONE,
            )?;
        }
    }
    if conflict {
        for &(i, l) in &todo {
            let tmp = format!("tvrtmp{i}");
            let c = LinkChange {
                name: Some(&tmp),
                ..Default::default()
            };
            nl.request(
                &|| format!("renaming {} to {tmp}", l.name),
                M::SetLink(msg::set_link(l.index, &c)),
                flags::NONE,
            )?;
        }
    }
    for &(i, l) in &todo {
        let target = cfg.interfaces[i].name.as_str();
        let c = LinkChange {
            name: Some(target),
            ..Default::default()
        };
        nl.request(
            &|| format!("renaming {} to {target}", l.name),
            M::SetLink(msg::set_link(l.index, &c)),
            flags::NONE,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_link_reply_by_hand() {
        use netlink_packet_route::link::{LinkAttribute as A, LinkFlags, LinkMessage, State};
        let mut m = LinkMessage::default();
        m.header.index = 7;
        m.header.flags = LinkFlags::Up | LinkFlags::Broadcast;
        m.attributes = vec![
            A::Mtu(1500),
            A::IfName("in0".into()),
            A::OperState(State::Up),
            A::Address(vec![0x52, 0x54, 0, 0, 0x01, 0xab]),
            A::Broadcast(vec![0xff; 6]),
        ];
        let mut buf = crate::netlink::encode(0, 0, M::NewLink(m));
        let l = info_from_raw(&buf).unwrap();
        assert_eq!(
            (l.index, l.name.as_str(), l.mac().as_str(), l.up),
            (7, "in0", "52:54:00:00:01:ab", true)
        );
        // Truncated or other messages give nothing rather than garbage.
        assert!(info_from_raw(&buf[..20]).is_none());
        buf[4] = 20; // RTM_NEWADDR
        assert!(info_from_raw(&buf).is_none());
    }

    fn link(index: u32, name: &str, mac: &str, driver: &str, pci: &str) -> LinkInfo {
        LinkInfo {
            index,
            name: name.into(),
            addr: mac.parse::<tinyvr_config::MacAddr>().unwrap().0.to_vec(),
            up: false,
            driver: Some(driver.into()),
            pci: Some(pci.into()),
        }
    }

    fn cfg(ifaces: &str) -> RouterConfig {
        tinyvr_config::load(&format!("name = \"r\"\n{ifaces}")).unwrap()
    }

    #[test]
    fn index_counts_in_pci_order() {
        let links = [
            link(2, "eth0", "52:54:00:00:00:02", "virtio_net", "0000:00:05.0"),
            link(3, "eth1", "52:54:00:00:00:01", "virtio_net", "0000:00:04.0"),
        ];
        let c = cfg("[[interface]]\nname = \"a\"\ndriver = \"virtio_net\"\nindex = 1\n[[interface]]\nname = \"b\"\ndriver = \"virtio_net\"\nindex = 0");
        let got = assign(&c, &links).unwrap();
        assert_eq!(
            (got[0].name.as_str(), got[1].name.as_str()),
            ("eth0", "eth1")
        );
    }

    #[test]
    fn mac_and_name_matching_and_missing_device() {
        let links = [link(
            2,
            "eth0",
            "52:54:00:00:00:02",
            "virtio_net",
            "0000:00:05.0",
        )];
        let c = cfg("[[interface]]\nname = \"a\"\nmac = \"52:54:00:00:00:02\"");
        assert_eq!(assign(&c, &links).unwrap()[0].index, 2);
        let c = cfg("[[interface]]\nname = \"eth9\"");
        let (idx, e) = assign(&c, &links).unwrap_err();
        assert_eq!(idx, 0);
        assert!(e.to_string().contains("name=eth9"), "{e}");
        assert!(
            e.to_string()
                .contains("eth0 (52:54:00:00:00:02 virtio_net)"),
            "{e}"
        );
    }

    #[test]
    fn without_index_each_device_is_claimed_once() {
        let links = [
            link(2, "eth0", "52:54:00:00:00:02", "virtio_net", "0000:00:04.0"),
            link(3, "eth1", "52:54:00:00:00:01", "virtio_net", "0000:00:05.0"),
        ];
        let c = cfg("[[interface]]\nname = \"a\"\ndriver = \"virtio_net\"\n[[interface]]\nname = \"b\"\ndriver = \"virtio_net\"");
        let got = assign(&c, &links).unwrap();
        assert_eq!((got[0].index, got[1].index), (2, 3));
    }
}
