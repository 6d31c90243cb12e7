//! Named network namespaces, made the way iproute2 makes them (a file in
//! /run/netns bind-mounted over a namespace), so `ip netns` sees ours and
//! we see its.

use crate::HostError;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use std::fs::File;
use std::path::{Path, PathBuf};

pub const RUN_DIR: &str = "/run/netns";

pub fn path(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(name)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// The inode of the namespace mounted at /run/netns/<name>: what
/// identifies it beyond its name (`ip netns` shows the same number).
pub fn inode(name: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path(name)).ok().map(|m| m.ino())
}

/// Creates a named namespace. The namespace is made first and its inode
/// handed to `record` before the name appears in /run/netns, so a record
/// of it exists before anything can be left behind; fails if the name is
/// taken (and then touches nothing).
pub fn create(
    name: &str,
    record: impl FnOnce(u64) -> Result<(), HostError>,
) -> Result<u64, HostError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(RUN_DIR)
        .map_err(|e| HostError::io(format!("creating {RUN_DIR}"), e))?;
    shared_run_dir()?;
    // unshare() changes the calling thread only: do it in a thread of its
    // own; the open namespace file keeps it alive until it is mounted.
    let ns = std::thread::spawn(|| -> Result<File, HostError> {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| HostError::sys("unshare(CLONE_NEWNET)", e))?;
        File::open("/proc/thread-self/ns/net")
            .map_err(|e| HostError::io("opening the new namespace", e))
    })
    .join()
    .map_err(|_| HostError::Other("namespace thread panicked".into()))??;
    let ino = ns
        .metadata()
        .map_err(|e| HostError::io("reading the new namespace", e))?
        .ino();
    record(ino)?;
    let p = path(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .map_err(|e| {
            HostError::io(
                format!("creating network namespace {name} ({})", p.display()),
                e,
            )
        })?;
    let src = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&ns));
    if let Err(e) = mount(
        Some(src.as_str()),
        &p,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        let _ = std::fs::remove_file(&p);
        return Err(HostError::sys(
            format!("bind-mounting the new namespace on {}", p.display()),
            e,
        ));
    }
    Ok(ino)
}

/// Makes /run/netns a shared mount point first, as `ip netns add` does:
/// otherwise a later `ip netns add` bind-mounts the directory over itself
/// and namespaces mounted in it before are hidden under that mount, where
/// neither `ip` nor `down` can reach them again.
fn shared_run_dir() -> Result<(), HostError> {
    let shared = || {
        mount(
            None::<&str>,
            RUN_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself, then share it.
        Err(nix::errno::Errno::EINVAL) => mount(
            Some(RUN_DIR),
            RUN_DIR,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .and_then(|()| shared())
        .map_err(|e| HostError::sys(format!("making {RUN_DIR} a shared mount point"), e)),
        Err(e) => Err(HostError::sys(format!("making {RUN_DIR} shared"), e)),
    }
}

/// True when /run/netns/<name> is a plain file with no namespace mounted
/// on it: what a `create` killed between naming and mounting leaves.
pub fn is_unmounted_name(name: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::symlink_metadata(path(name)),
        std::fs::metadata(RUN_DIR),
    ) {
        (Ok(f), Ok(d)) => f.is_file() && f.len() == 0 && f.dev() == d.dev(),
        _ => false,
    }
}

/// Removes a named namespace (its links go with it once nothing holds it).
pub fn delete(name: &str) -> Result<(), HostError> {
    let p = path(name);
    if !p.exists() {
        return Ok(());
    }
    let _ = umount2(&p, MntFlags::MNT_DETACH);
    std::fs::remove_file(&p)
        .map_err(|e| HostError::io(format!("removing network namespace {name}"), e))
}

/// Namespace `name`, or with None the namespace the tool itself runs in
/// (the host's: only helper threads enter others).
pub fn open_or_own(name: Option<&str>) -> Result<File, HostError> {
    match name {
        Some(n) => open(n),
        None => File::open("/proc/self/ns/net")
            .map_err(|e| HostError::io("opening the host namespace", e)),
    }
}

pub fn open(name: &str) -> Result<File, HostError> {
    File::open(path(name))
        .map_err(|e| HostError::io(format!("opening network namespace {name}"), e))
}

/// Runs `f` on a thread that has entered namespace `name` (or the caller's
/// own namespace when `None`). Netlink sockets opened there stay bound to it.
pub fn run_in<T: Send + 'static>(
    name: Option<&str>,
    f: impl FnOnce() -> Result<T, HostError> + Send + 'static,
) -> Result<T, HostError> {
    run_in_file(name.map(open).transpose()?, f)
}

/// As [`run_in`], for a namespace given by an open file (e.g. a
/// container's /proc/<pid>/ns/net).
pub fn run_in_file<T: Send>(
    fd: Option<File>,
    f: impl FnOnce() -> Result<T, HostError> + Send,
) -> Result<T, HostError> {
    // Scoped: `f` may borrow from the caller (a config to read back against).
    std::thread::scope(|s| {
        s.spawn(move || {
            if let Some(fd) = fd {
                setns(&fd, CloneFlags::CLONE_NEWNET).map_err(|e| HostError::sys("setns", e))?;
            }
            f()
        })
        .join()
        .map_err(|_| HostError::Other("namespace thread panicked".into()))?
    })
}

/// As [`run_in`], with /sys remounted in a mount namespace of the
/// thread's own, so /sys/class/net shows namespace `name`'s devices (their
/// queue files: RPS masks). The mount goes with the thread.
pub fn with_sysfs<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> Result<T, HostError> + Send + 'static,
) -> Result<T, HostError> {
    run_in(Some(name), move || {
        own_sysfs().map_err(|e| HostError::sys("remounting /sys for the namespace", e))?;
        f()
    })
}

/// In a mount namespace of the caller's own (thread or freshly forked
/// child), /sys remounted so it shows the current network namespace's
/// devices (what `ip netns exec` does). Syscalls only: safe after fork.
pub fn own_sysfs() -> nix::Result<()> {
    unshare(CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )?;
    umount2("/sys", MntFlags::MNT_DETACH)?;
    mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        MsFlags::empty(),
        None::<&str>,
    )
}

/// A netlink socket bound to namespace `name`.
pub fn socket(name: Option<&str>) -> Result<tinyvr_init::netlink::Socket, HostError> {
    run_in(name, || Ok(tinyvr_init::netlink::Socket::open()?))
}
