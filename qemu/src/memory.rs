//! How the host backs a VM's memory: preallocated or faulted in on first
//! touch, with or without transparent huge pages (THP) for qemu's own
//! memory; applied at start, read back from /proc afterwards.
//!
//! Both decide where host page faults land. Without preallocation the
//! guest's first touch of each page faults on the host, in the middle of
//! its boot or of a trial. Under TCG, qemu also writes the code it
//! translates into fresh memory as it goes, and with THP every new 2 MB of
//! it is zeroed at once: on a host whose own memory is backed lazily (a
//! VM, like the development machine) that was a 4 ms stall each time.

use serde::Serialize;

/// THP for qemu's memory: `auto` is off under TCG, the system's policy
/// under KVM (where huge pages back guest memory with fewer TLB misses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thp {
    Auto,
    On,
    Off,
}

impl std::str::FromStr for Thp {
    type Err = String;
    fn from_str(s: &str) -> Result<Thp, String> {
        match s {
            "auto" => Ok(Thp::Auto),
            "on" => Ok(Thp::On),
            "off" => Ok(Thp::Off),
            _ => Err(format!("{s:?}: expected auto, on or off")),
        }
    }
}

impl Thp {
    /// Whether qemu may use THP, for the accelerator chosen.
    pub fn enabled(self, accel: crate::accel::Accel) -> bool {
        match self {
            Thp::On => true,
            Thp::Off => false,
            Thp::Auto => accel == crate::accel::Accel::Kvm,
        }
    }
}

/// Called between fork and exec: from here on this process and what it
/// execs get no transparent huge pages, whatever they madvise.
pub fn disable_thp() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    match unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// A VM's memory as the kernel shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryState {
    pub memory_mb: u32,
    pub prealloc: bool,
    /// THP allowed for the qemu process (`THP_enabled` in its status).
    pub thp: bool,
    /// The host's THP policy (`always`, `madvise`, `never`): with THP
    /// allowed, qemu gets huge pages unless this is `never`.
    pub thp_policy: String,
    /// qemu's resident anonymous memory; with prealloc, at least the guest's.
    pub rss_anon_mb: u64,
}

/// The bracketed choice of a sysfs policy file: "always [madvise] never".
fn selected(policy: &str) -> Option<&str> {
    let start = policy.find('[')? + 1;
    let end = start + policy[start..].find(']')?;
    Some(&policy[start..end])
}

/// Reads the memory settings of qemu `pid` back (its /proc status, through
/// procfs) and checks them against what was asked: a setting that did not
/// take is an error.
pub fn read_back(
    pid: u32,
    memory_mb: u32,
    prealloc: bool,
    thp: bool,
) -> Result<MemoryState, String> {
    let status = procfs::process::Process::new(pid as i32)
        .and_then(|p| p.status())
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    check(
        Status {
            thp_enabled: status.thp_enabled,
            rss_anon_kb: status.rssanon,
        },
        &std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default(),
        memory_mb,
        prealloc,
        thp,
    )
}

/// The two fields of /proc/<pid>/status the check needs.
struct Status {
    thp_enabled: Option<bool>,
    rss_anon_kb: Option<u64>,
}

fn check(
    status: Status,
    policy: &str,
    memory_mb: u32,
    prealloc: bool,
    thp: bool,
) -> Result<MemoryState, String> {
    // Kernels before 5.0 do not report it; the prctl itself is older.
    let thp_read = status.thp_enabled.unwrap_or(thp);
    if thp_read != thp {
        return Err(format!(
            "qemu's THP_enabled is {} where {} was asked",
            thp_read as u8,
            if thp { "on" } else { "off" }
        ));
    }
    let rss_anon_mb = status
        .rss_anon_kb
        .map(|kb| kb / 1024)
        .ok_or("no RssAnon in qemu's /proc status")?;
    if prealloc && rss_anon_mb < memory_mb as u64 {
        return Err(format!(
            "guest memory was to be preallocated, but qemu holds {rss_anon_mb} MB of its {memory_mb} MB"
        ));
    }
    Ok(MemoryState {
        memory_mb,
        prealloc,
        thp: thp_read,
        thp_policy: selected(policy).unwrap_or("none").to_string(),
        rss_anon_mb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::Accel;

    const STATUS: Status = Status {
        thp_enabled: Some(false),
        rss_anon_kb: Some(140212),
    };

    #[test]
    fn auto_means_off_under_tcg_only() {
        assert!(!Thp::Auto.enabled(Accel::Tcg));
        assert!(Thp::Auto.enabled(Accel::Kvm));
        assert!(Thp::On.enabled(Accel::Tcg));
        assert!(!Thp::Off.enabled(Accel::Kvm));
        assert!("sometimes"
            .parse::<Thp>()
            .unwrap_err()
            .contains("auto, on or off"));
    }

    #[test]
    fn checks_what_was_read_back() {
        let m = check(STATUS, "always [madvise] never\n", 128, true, false).unwrap();
        assert_eq!(m.rss_anon_mb, 136);
        assert!(!m.thp && m.prealloc);
        assert_eq!(m.thp_policy, "madvise");
    }

    #[test]
    fn a_setting_that_did_not_take_is_an_error() {
        let e = check(STATUS, "", 128, false, true).unwrap_err();
        assert!(e.contains("THP_enabled is 0 where on was asked"), "{e}");
        let e = check(STATUS, "", 256, true, false).unwrap_err();
        assert!(e.contains("holds 136 MB of its 256 MB"), "{e}");
    }
}
