//! The filesystems the init needs, from a table. Mounting what is already
//! mounted is a no-op, so the same table serves a VM and a container.

use nix::mount::{mount, MsFlags};
use std::path::Path;

pub struct Mount {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

pub const MOUNTS: &[Mount] = &[
    Mount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    Mount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    Mount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    Mount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
    },
    Mount {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
];

/// A directory is a mount point when it sits on another device than its
/// parent (or is /).
fn is_mountpoint(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(m), Some(Ok(parent))) => m.dev() != parent.dev(),
        _ => false,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("mounting {fstype} on {target}: {source}")]
pub struct MountError {
    pub fstype: &'static str,
    pub target: &'static str,
    #[source]
    pub source: nix::Error,
}

/// Mounts whatever of the table is missing. In a container, what the
/// manager forbids (EPERM/EACCES) is skipped with a note; in a VM every
/// failure is fatal.
pub fn mount_all(strict: bool) -> Result<Vec<&'static str>, MountError> {
    let mut done = Vec::new();
    for m in MOUNTS {
        let target = Path::new(m.target);
        // A VM's init starts on a bare initramfs that has the directories
        // and nothing mounted: no checks there (each costs on a TCG guest).
        if !strict {
            if is_mountpoint(target) {
                continue;
            }
            let _ = std::fs::create_dir_all(target);
        }
        let attempt = || mount(Some(m.source), target, Some(m.fstype), m.flags, m.data);
        let result = match attempt() {
            // An initramfs built by someone else may lack the directory.
            Err(nix::Error::ENOENT) => {
                let _ = std::fs::create_dir_all(target);
                attempt()
            }
            r => r,
        };
        match result {
            Ok(()) => done.push(m.target),
            Err(e)
                if !strict
                    && matches!(
                        e,
                        nix::Error::EPERM | nix::Error::EACCES | nix::Error::EBUSY
                    ) =>
            {
                log::info!(
                    "not mounting {} on {}: {e} (left to the container manager)",
                    m.fstype,
                    m.target
                );
            }
            Err(source) => {
                return Err(MountError {
                    fstype: m.fstype,
                    target: m.target,
                    source,
                })
            }
        }
    }
    Ok(done)
}
