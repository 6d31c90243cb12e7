//! Tap devices for VM NICs, made with the tun driver's ioctl (netlink cannot
//! create them). The device is not persistent: it lives as long as a file
//! descriptor of it is open, so it goes away with qemu.

use crate::HostError;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
/// Fail instead of attaching when a tap of this name exists (someone
/// else's persistent tap would otherwise be silently taken over).
const IFF_TUN_EXCL: libc::c_short = 0x8000u16 as libc::c_short;

/// Opens `queues` file descriptors of tap `name` (creating it), with
/// virtio-net headers as qemu's virtio NIC expects.
pub fn open(name: &str, queues: u32) -> Result<Vec<File>, HostError> {
    let mut out = Vec::new();
    for q in 0..queues.max(1) {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|e| HostError::io("opening /dev/net/tun (tun driver)", e))?;
        // SAFETY: ifreq is plain data; zeroed is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        let mut flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if queues > 1 {
            flags |= IFF_MULTI_QUEUE;
        }
        if q == 0 {
            flags |= IFF_TUN_EXCL;
        }
        req.ifr_ifru.ifru_flags = flags;
        // SAFETY: TUNSETIFF reads and writes an ifreq we own.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF, &mut req) };
        if r < 0 {
            return Err(HostError::io(
                format!("creating tap {name}"),
                std::io::Error::last_os_error(),
            ));
        }
        out.push(f);
    }
    Ok(out)
}

const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;

/// Makes the tap behind `f` outlive its file descriptors, for a launcher
/// that opens it by name itself (libvirt's `type='ethernet'`,
/// `managed='no'`). It is removed like any link (RTM_DELLINK).
pub fn persist(f: &File, name: &str) -> Result<(), HostError> {
    // SAFETY: TUNSETPERSIST takes an int argument by value.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETPERSIST, 1 as libc::c_ulong) };
    if r < 0 {
        return Err(HostError::io(
            format!("making tap {name} persistent"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
