//! Capabilities after READY, for the init and for each service.
//!
//! The init keeps CAP_SYS_BOOT effective (to power off) and, permitted only,
//! CAP_SETPCAP plus what its services ask for: a service's child needs
//! SETPCAP to cut its own bounding set, and can only keep what the init
//! still holds. The init's bounding set is cut to what the services ask for
//! together (the init itself never execs).
//!
//! A service runs as root, and for a root exec the kernel makes permitted
//! and effective the whole bounding set. So each child, between fork and
//! exec, cuts its bounding set to exactly what its service asks for, sets
//! that as its permitted, inheritable and ambient set, and sets
//! no_new_privs, which keeps the exec from gaining beyond that permitted set
//! (setuid and file capabilities included).

use caps::{CapSet, Capability, CapsHashSet};
use std::io;
use tinyvr_config::Service;

/// A set of capabilities as bits, `1 << CAP_*`, as /proc/<pid>/status shows it.
pub type Mask = u64;

pub const SYS_BOOT: Mask = 1 << 22;
pub const SETPCAP: Mask = 1 << 8;
pub const NET_ADMIN: Mask = 1 << 12;

/// What a service asks for; nothing unless it says so.
pub fn asked(s: &Service) -> Mask {
    if s.net_admin {
        NET_ADMIN
    } else {
        0
    }
}

/// The init's own sets after READY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub effective: Mask,
    pub permitted: Mask,
    pub bounding: Mask,
}

pub fn kept(services: &[Service]) -> Kept {
    let for_services = services.iter().fold(0, |m, s| m | asked(s));
    Kept {
        effective: SYS_BOOT,
        permitted: SYS_BOOT | SETPCAP | for_services,
        bounding: for_services,
    }
}

fn set_of(mask: Mask) -> CapsHashSet {
    caps::all()
        .into_iter()
        .filter(|c| mask & c.bitmask() != 0)
        .collect()
}

/// Reduces the init to `k`. Runs while the init still has everything.
pub fn keep(k: &Kept) -> Result<(), caps::errors::CapsError> {
    // The bounding set first: dropping from it needs CAP_SETPCAP effective.
    for c in caps::all() {
        if k.bounding & c.bitmask() == 0
            && caps::has_cap(None, CapSet::Bounding, c).unwrap_or(false)
        {
            caps::drop(None, CapSet::Bounding, c)?;
        }
    }
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new())?;
    // Effective before permitted: effective must stay within permitted.
    caps::set(None, CapSet::Effective, &set_of(k.effective))?;
    caps::set(None, CapSet::Permitted, &set_of(k.permitted))?;
    Ok(())
}

/// The calling process's permitted set, read before fork for [`confine`].
pub fn permitted() -> Result<Mask, caps::errors::CapsError> {
    Ok(caps::read(None, CapSet::Permitted)?
        .iter()
        .fold(0, |m, c: &Capability| m | c.bitmask()))
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPS_V3: u32 = 0x2008_0522;

/// capset(2) for the calling thread, from masks on the stack.
fn capset(effective: Mask, permitted: Mask, inheritable: Mask) -> io::Result<()> {
    let hdr = CapHeader {
        version: CAPS_V3,
        pid: 0,
    };
    let word = |shift: u32| CapData {
        effective: (effective >> shift) as u32,
        permitted: (permitted >> shift) as u32,
        inheritable: (inheritable >> shift) as u32,
    };
    let data = [word(0), word(32)];
    // SAFETY: the header and two data words are valid for the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn prctl(op: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> io::Result<()> {
    // SAFETY: these prctl operations take integers only.
    if unsafe { libc::prctl(op, a, b, 0 as libc::c_ulong, 0 as libc::c_ulong) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Gives the calling process exactly `asked`, given that it holds `held`
/// (permitted, with CAP_SETPCAP). For a service's child between fork and
/// exec: raw syscalls on stack values only, no allocation, no locks.
pub fn confine(asked: Mask, held: Mask) -> io::Result<()> {
    // SETPCAP effective, for the bounding set.
    capset(held, held, 0)?;
    for cap in 0..64 {
        if asked & (1 << cap) != 0 {
            continue;
        }
        match prctl(libc::PR_CAPBSET_DROP, cap, 0) {
            Ok(()) => {}
            // Past the kernel's last capability.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    capset(asked, asked, asked)?;
    for cap in 0..64 {
        if asked & (1 << cap) != 0 {
            prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap,
            )?;
        }
    }
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(net_admin: bool) -> Service {
        let text = format!(
            "name = \"r1\"\n[[service]]\nname = \"s\"\nexec = [\"/bin/true\"]\nnet_admin = {net_admin}\n"
        );
        tinyvr_config::load(&text).unwrap().services.remove(0)
    }

    #[test]
    fn the_init_keeps_sys_boot_and_what_services_ask_for() {
        assert_eq!(
            kept(&[service(false)]),
            Kept {
                effective: SYS_BOOT,
                permitted: SYS_BOOT | SETPCAP,
                bounding: 0,
            }
        );
        let k = kept(&[service(false), service(true)]);
        assert_eq!(k.permitted, SYS_BOOT | SETPCAP | NET_ADMIN);
        assert_eq!(k.bounding, NET_ADMIN);
        assert_eq!(asked(&service(false)), 0);
        assert_eq!(Capability::CAP_NET_ADMIN.bitmask(), NET_ADMIN);
        assert_eq!(Capability::CAP_SYS_BOOT.bitmask(), SYS_BOOT);
        assert_eq!(Capability::CAP_SETPCAP.bitmask(), SETPCAP);
    }
}
