//! The baseline platform: the router config applied to a fresh named
//! network namespace by the same code the init runs, no VM, no container.

use crate::state::{Resource, State};
use crate::{links, netns, topology, HostError};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use tinyvr_config::{HostLink, RouterConfig};

pub struct Up<'a> {
    /// The router config, validated (read by the CLI, built by the bench).
    pub config: &'a tinyvr_config::RouterConfig,
    /// Namespace name (default: the router's name).
    pub name: Option<String>,
    /// Also build the source/sink topology around the router.
    pub topology: bool,
    /// With the topology: veth or macvlan.
    pub datapath: topology::Datapath,
    /// The tinyvr-init binary that applies the config.
    pub init: PathBuf,
}

/// Runs `init --apply FILE` inside namespace `ns`, with a private mount
/// namespace and /sys remounted so /sys/class/net shows that namespace's
/// devices (what `ip netns exec` does). Returns the READY json.
pub fn apply_in(ns: &str, init: &Path, config: &Path) -> Result<serde_json::Value, HostError> {
    use nix::sched::{setns, CloneFlags};
    let fd = netns::open(ns)?;
    let raw = fd.as_raw_fd();
    let mut cmd = std::process::Command::new(init);
    cmd.arg("--apply").arg(config);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let f = std::os::fd::BorrowedFd::borrow_raw(raw);
            setns(f, CloneFlags::CLONE_NEWNET)?;
            netns::own_sysfs()?;
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

/// Makes the host side of every interface, each recorded as intended
/// before it is made and as made once the kernel has it.
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
                let mut nl = netns::socket(host_ns.as_deref())?;
                links::must_be_free(&mut nl, &peer, host_ns.as_deref())?;
                // Made whole inside the router's own namespace (where it
                // would go with the namespace), recorded with its ifindex,
                // and only then is the host end moved out: no moment where
                // it exists outside unrecorded.
                let mut rnl = netns::socket(Some(ns))?;
                links::add_veth(
                    &mut rnl,
                    (ifc.name.as_str(), ifc.mac.as_ref()),
                    (&peer, peer_mac.as_ref()),
                    None,
                )?;
                let i = links::must_index(&mut rnl, &peer, "the new veth")?;
                let e = state.add_made(
                    Resource::Link {
                        name: peer.clone(),
                        netns: host_ns.clone(),
                    },
                    i as u64,
                )?;
                let to = netns::open_or_own(host_ns.as_deref())?;
                links::move_to(&mut rnl, &peer, to.as_raw_fd(), None)?;
                let moved = links::must_index(&mut nl, &peer, "the moved veth end")?;
                if moved != i {
                    state.relocate(e, host_ns.clone(), moved as u64)?;
                }
                if let Some(b) = bridge {
                    links::set_master(&mut nl, &peer, b.as_str())?;
                }
                links::set_up(&mut nl, &peer)?;
            }
            HostLink::Macvlan { parent, mode } => {
                // Made inside the router's own namespace: goes with it.
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
                let i = links::must_index(
                    &mut nl,
                    device.as_str(),
                    &format!("interface {} (phys)", ifc.name),
                )?;
                // Recorded with the ifindex it keeps across the move before it
                // moves: no moment where it is in the router's namespace
                // unrecorded (it would come back under the router's name).
                let e = state.add_made(
                    Resource::Moved {
                        name: ifc.name.to_string(),
                        netns: ns.into(),
                        back_as: device.to_string(),
                    },
                    i as u64,
                )?;
                links::move_to(
                    &mut nl,
                    device.as_str(),
                    ns_fd.as_raw_fd(),
                    Some(ifc.name.as_str()),
                )?;
                let mut rnl = netns::socket(Some(ns))?;
                let moved = links::must_index(&mut rnl, ifc.name.as_str(), "the moved device")?;
                if moved != i {
                    state.made(e, moved as u64)?;
                }
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

/// Creates a named namespace for a router, recorded as tinyvr's only once
/// made: a name that is taken fails `up` and is never removed.
pub fn create_netns(state: &mut State, name: &str) -> Result<(), HostError> {
    if netns::exists(name) {
        return Err(HostError::Other(format!(
            "network namespace {name} exists already ({}) and tinyvr did not make it: left alone; pick another --name",
            netns::path(name).display()
        )));
    }
    let e = state.intend(Resource::Netns { name: name.into() })?;
    if let Err(err) = netns::create(name, |ino| state.made(e, ino)) {
        // The name was not made ours (taken meanwhile, or the mount failed
        // and create removed its file): nothing to remove under it.
        state.unmark(e)?;
        return Err(err);
    }
    Ok(())
}

/// Where a namespace router's watcher writes its TINYVR-HELD lines.
pub fn held_log(name: &str) -> PathBuf {
    PathBuf::from(crate::state::DIR).join(format!("{name}.held"))
}

/// Starts `init --watch CONFIG` in namespace `ns`: the router's owner from
/// here on (recorded as a process and as `owner_pid`, so `down` ends it and
/// `gc` treats a router whose watcher died as stale). It reads the table
/// back after every change and writes TINYVR-HELD lines to [`held_log`];
/// `up` returns once its first line is there.
fn spawn_watcher(
    state: &mut State,
    ns: &str,
    init: &Path,
    config: &Path,
) -> Result<u32, HostError> {
    let log = held_log(ns);
    let f = state.create_file(&log)?;
    let err = f
        .try_clone()
        .map_err(|e| HostError::io("duplicating the watcher's log", e))?;
    let fd = netns::open(ns)?;
    let raw = fd.as_raw_fd();
    let mut cmd = std::process::Command::new(init);
    cmd.arg("--watch")
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(f)
        .stderr(err);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let f = std::os::fd::BorrowedFd::borrow_raw(raw);
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)?;
            // Its own session: a Ctrl-C meant for `up` or the bench does
            // not end the router's owner.
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| HostError::io(format!("starting {} --watch", init.display()), e))?;
    drop(fd);
    let pid = child.id();
    state.add_process(pid)?;
    state.owner_pid = Some(pid);
    state.save()?;
    let t = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().any(|l| l.starts_with("TINYVR-HELD ")) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(HostError::Other(format!(
                "the router's watcher ({} --watch) exited with {status}: {}",
                init.display(),
                text.trim()
            )));
        }
        if t.elapsed() > std::time::Duration::from_secs(10) {
            return Err(HostError::Other(format!(
                "the router's watcher wrote no TINYVR-HELD line in 10 s: {}",
                text.trim()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Reaped by a thread of its own when it ends (a long-running bench
    // would otherwise keep a zombie); `down` ends it by pid.
    std::thread::spawn(move || child.wait());
    Ok(pid)
}

/// Brings a router up; on any failure everything it created so far is
/// removed, and nothing it did not create is touched.
pub fn up(o: &Up) -> Result<serde_json::Value, HostError> {
    let (cfg, topo) = topology::resolve_wired(o.config, o.name.as_deref(), o.topology, o.datapath)?;
    let name = cfg.name.clone();
    crate::lifecycle::up(&name, "netns", |state| {
        if let Some(t) = &topo {
            topology::create_namespaces(t, state)?;
        }
        create_netns(state, &name)?;
        plumb(&cfg, &name, state)?;
        let eff = PathBuf::from(crate::state::DIR).join(format!("{name}.toml"));
        state.write_new(&eff, &cfg.to_toml())?;
        let mut ready = apply_in(&name, &o.init, &eff)?;
        if let Some(t) = &topo {
            topology::finish(t, &mut ready)?;
        }
        // With everything in place: the kernel holds what READY says.
        let held = crate::verify::check(netns::open(&name)?, &cfg, &ready)?;
        ready["held"] = serde_json::to_value(held).expect("counts serialize");
        ready["netns"] = name.clone().into();
        let pid = spawn_watcher(state, &name, &o.init, &eff)?;
        ready["watcher_pid"] = pid.into();
        ready["watch_log"] = held_log(&name).display().to_string().into();
        Ok(ready)
    })
}

pub fn down(name: &str) -> Result<(), HostError> {
    crate::lifecycle::down(name, "netns", |_| vec![]).map(|_| ())
}
