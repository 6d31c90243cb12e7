//! After READY the init keeps only the capabilities it still needs:
//! CAP_SYS_BOOT to power off, CAP_NET_ADMIN only when a service needs it.
//! The bounding set is cut too, so services (exec'd as root) inherit no more.

use caps::{CapSet, Capability, CapsHashSet};

pub fn keep_set(net_admin: bool) -> CapsHashSet {
    let mut keep = CapsHashSet::new();
    keep.insert(Capability::CAP_SYS_BOOT);
    if net_admin {
        keep.insert(Capability::CAP_NET_ADMIN);
    }
    keep
}

pub fn drop_all_but(keep: &CapsHashSet) -> Result<(), caps::errors::CapsError> {
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes next.
    for c in caps::all() {
        if !keep.contains(&c) && caps::has_cap(None, CapSet::Bounding, c).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, c)?;
        }
    }
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new())?;
    caps::set(None, CapSet::Effective, keep)?;
    caps::set(None, CapSet::Permitted, keep)?;
    Ok(())
}
