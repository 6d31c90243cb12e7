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

/// Creates a named namespace; fails if the name is taken.
pub fn create(name: &str) -> Result<(), HostError> {
    std::fs::create_dir_all(RUN_DIR)
        .map_err(|e| HostError::io(format!("creating {RUN_DIR}"), e))?;
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
    // unshare() changes the calling thread only: do it in a thread of its own.
    let target = p.clone();
    let r = std::thread::spawn(move || -> Result<(), HostError> {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| HostError::sys("unshare(CLONE_NEWNET)", e))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            HostError::sys(
                format!("bind-mounting the new namespace on {}", target.display()),
                e,
            )
        })
    })
    .join()
    .map_err(|_| HostError::Other("namespace thread panicked".into()))?;
    if r.is_err() {
        let _ = std::fs::remove_file(&p);
    }
    r
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
    let fd = name.map(open).transpose()?;
    std::thread::spawn(move || {
        if let Some(fd) = fd {
            setns(&fd, CloneFlags::CLONE_NEWNET).map_err(|e| HostError::sys("setns", e))?;
        }
        f()
    })
    .join()
    .map_err(|_| HostError::Other("namespace thread panicked".into()))?
}

/// A netlink socket bound to namespace `name`.
pub fn socket(name: Option<&str>) -> Result<tinyvr_init::netlink::Socket, HostError> {
    run_in(name, || Ok(tinyvr_init::netlink::Socket::open()?))
}
