//! The baseline platform: the router config applied to a fresh named
//! network namespace by the same code the init runs, no VM, no container.

use crate::state::{Resource, State};
use crate::{links, netns, topology, HostError};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use tinyvr_config::{HostLink, RouterConfig};

pub struct Up<'a> {
    pub config: &'a Path,
    /// Namespace name (default: the router's name).
    pub name: Option<String>,
    /// Also build the source/sink topology around the router.
    pub topology: bool,
    /// The tinyvr-init binary that applies the config.
    pub init: PathBuf,
}

/// Runs `init --apply FILE` inside namespace `ns`, with a private mount
/// namespace and /sys remounted so /sys/class/net shows that namespace's
/// devices (what `ip netns exec` does). Returns the READY json.
pub fn apply_in(ns: &str, init: &Path, config: &Path) -> Result<serde_json::Value, HostError> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    use nix::sched::{setns, unshare, CloneFlags};
    let fd = netns::open(ns)?;
    let raw = fd.as_raw_fd();
    let mut cmd = std::process::Command::new(init);
    cmd.arg("--apply").arg(config);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let f = std::os::fd::BorrowedFd::borrow_raw(raw);
            setns(f, CloneFlags::CLONE_NEWNET)?;
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
            )?;
            Ok(())
        });
    }
    let out = cmd
        .output()
        .map_err(|e| HostError::io(format!("running {}", init.display()), e))?;
    drop(fd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |tag: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(tag).map(str::trim).map(String::from))
    };
    if let Some(j) = line("TINYVR-READY ") {
        return serde_json::from_str(&j)
            .map_err(|e| HostError::Other(format!("bad READY line: {e}")));
    }
    let msg = line("TINYVR-ERROR ")
        .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or_else(|| {
            format!(
                "{} exited with {} and no READY line: {}",
                init.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    Err(HostError::Other(msg))
}

/// Makes the host side of every interface and records it.
fn plumb(cfg: &RouterConfig, ns: &str, state: &mut State) -> Result<(), HostError> {
    let ns_fd = netns::open(ns)?;
    for ifc in &cfg.interfaces {
        let default = HostLink::Veth {
            peer: None,
            peer_mac: None,
            netns: None,
            bridge: None,
        };
        match ifc.host.as_ref().unwrap_or(&default) {
            HostLink::Veth {
                netns: host_ns,
                bridge,
                peer_mac,
                ..
            } => {
                let peer = ifc.host_name(&cfg.name);
                state.add(Resource::Link {
                    name: peer.clone(),
                    netns: host_ns.clone(),
                })?;
                let mut nl = netns::socket(host_ns.as_deref())?;
                links::add_veth(
                    &mut nl,
                    (&peer, peer_mac.as_ref()),
                    (ifc.name.as_str(), ifc.mac.as_ref()),
                    Some(ns),
                )?;
                if let Some(b) = bridge {
                    links::set_master(&mut nl, &peer, b.as_str())?;
                }
                links::set_up(&mut nl, &peer)?;
            }
            HostLink::Macvlan { parent, mode } => {
                state.add(Resource::Link {
                    name: ifc.name.to_string(),
                    netns: Some(ns.into()),
                })?;
                let mut nl = netns::socket(None)?;
                links::add_macvlan(
                    &mut nl,
                    ifc.name.as_str(),
                    parent.as_str(),
                    *mode,
                    ns,
                    ifc.mac.as_ref(),
                )?;
            }
            HostLink::Phys { device } => {
                let mut nl = netns::socket(None)?;
                links::must_index(
                    &mut nl,
                    device.as_str(),
                    &format!("interface {} (phys)", ifc.name),
                )?;
                state.add(Resource::Moved {
                    name: ifc.name.to_string(),
                    netns: ns.into(),
                    back_as: device.to_string(),
                })?;
                links::move_to(
                    &mut nl,
                    device.as_str(),
                    ns_fd.as_raw_fd(),
                    Some(ifc.name.as_str()),
                )?;
            }
            // topology::load refuses VM backends before anything is made.
            vm => {
                return Err(HostError::Other(format!(
                    "interface {}: {vm:?} is a VM backend",
                    ifc.name
                )))
            }
        }
    }
    Ok(())
}

/// Brings a router up; on any failure everything created so far is removed.
pub fn up(o: &Up) -> Result<serde_json::Value, HostError> {
    let (cfg, topo) = topology::load(o.config, o.topology, false)?;
    let name = o.name.clone().unwrap_or_else(|| cfg.name.clone());
    let mut state = State::create(&name, "netns")?;
    let result = (|| {
        if let Some(t) = &topo {
            topology::create_namespaces(t, &mut state)?;
        }
        state.add(Resource::Netns { name: name.clone() })?;
        netns::create(&name)?;
        plumb(&cfg, &name, &mut state)?;
        let eff = PathBuf::from(crate::state::DIR).join(format!("{name}.toml"));
        state.add(Resource::File { path: eff.clone() })?;
        std::fs::write(&eff, cfg.to_toml())
            .map_err(|e| HostError::io(format!("writing {}", eff.display()), e))?;
        let mut ready = apply_in(&name, &o.init, &eff)?;
        if let Some(t) = &topo {
            topology::finish(t, &mut ready)?;
        }
        ready["netns"] = name.clone().into();
        Ok(ready)
    })();
    if result.is_err() {
        let _ = state.teardown();
    }
    result
}

pub fn down(name: &str) -> Result<(), HostError> {
    State::load(name)?.teardown()
}
