//! `tinyvr vm up --libvirt[=URI]`: the same router VM, started by libvirtd
//! instead of by tinyvr. tinyvr makes the host side as for its own qemu
//! (namespaces, persistent taps or macvtaps, bridges), hands the devices to
//! a transient domain built from `vm xml`'s plan (`virsh create`: defined
//! and started in one step, gone when it stops, so a crash never leaves a
//! domain defined), then moves the taps into place, waits for READY and
//! reads back what libvirt set and applies what it cannot (RT budget and
//! FIFO/RR, SCHED_DEADLINE, vhost placement). The domain is recorded by
//! the UUID tinyvr gives it and is stopped through libvirt, never by pid.

use crate::accel::Accel;
use crate::memory;
use crate::platform::{self, Handed, Up};
use serde_json::{json, Value};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tinyvr_config::RouterConfig;
use tinyvr_host::libvirt::{self as lv, virsh};
use tinyvr_host::state::{self, Resource, State};
use tinyvr_host::{cgroup, console, links, netns, topology, HostError};

/// A domain tinyvr started, as its record names it.
pub(crate) struct Domain {
    pub uri: String,
    pub name: String,
    pub uuid: String,
}

/// The libvirt domain in a router's record, if it runs under libvirt.
pub(crate) fn domain_of(st: &State) -> Option<Domain> {
    st.resources.iter().find_map(|e| match &e.what {
        Resource::Domain { uri, name, uuid } => Some(Domain {
            uri: uri.clone(),
            name: name.clone(),
            uuid: uuid.clone(),
        }),
        _ => None,
    })
}

/// Where libvirt's qemu driver logs a domain's start (what to show when
/// it fails).
fn libvirt_log(name: &str) -> PathBuf {
    PathBuf::from(format!("/var/log/libvirt/qemu/{name}.log"))
}

fn log_tail(name: &str) -> String {
    console::tail(
        &std::fs::read_to_string(libvirt_log(name)).unwrap_or_default(),
        5,
    )
}

/// Checks made before anything is created: libvirtd answers at `uri`,
/// runs on this host (tinyvr reads the domain back from this host's
/// /proc and hands it this host's devices), and has no domain `name`.
fn preflight(o: &Up, uri: &str, name: &str) -> Result<(), HostError> {
    if o.incoming.is_some() {
        return Err(HostError::Other(
            "--incoming with --libvirt: a libvirt domain migrates through libvirt (virsh migrate), not tinyvr".into(),
        ));
    }
    if o.console {
        return Err(HostError::Other(format!(
            "--console with --libvirt: libvirt writes the console to /run/tinyvr/{name}.console only; follow it there (or virsh console)"
        )));
    }
    if o.rt_runtime_us.is_some() && !o.placement.wants_rt() {
        return Err(HostError::Other(
            "--rt-runtime with --libvirt but no fifo/rr --sched: libvirt's cgroups get an RT budget from tinyvr only for the threads it makes FIFO/RR; add --sched or drop --rt-runtime".into(),
        ));
    }
    check_uri(uri).map_err(HostError::Other)?;
    let there = lv::hostname(uri).map_err(|e| {
        HostError::Other(format!(
            "--libvirt {uri}: libvirtd does not answer ({e}); scripts/setup installs libvirt-daemon-system and starts libvirtd"
        ))
    })?;
    let here = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    if there != here {
        return Err(HostError::Other(format!(
            "--libvirt {uri}: that libvirtd runs on {there:?}, not on this host ({here:?}); tinyvr makes the VM's devices and reads it back on the VM's host: run tinyvr there (ssh, or deploy/ with Ansible)"
        )));
    }
    if let Some(u) = lv::uuid_of(uri, name)? {
        return Err(HostError::Other(format!(
            "libvirt domain {name} exists at {uri} (UUID {u}) and tinyvr did not make it: left alone; pick another --name"
        )));
    }
    Ok(())
}

/// `--libvirt URI` must name this host's system libvirtd: tinyvr makes
/// the domain's devices and reads its threads back here, and its qemu
/// runs as root (the session daemon's would not be).
fn check_uri(uri: &str) -> Result<(), String> {
    let (scheme, rest) = uri.split_once("://").ok_or_else(|| {
        format!("--libvirt {uri:?}: expected a libvirt URI such as qemu:///system")
    })?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.split('?').next().unwrap_or("");
    if !host.is_empty() {
        return Err(format!(
            "--libvirt {uri}: names host {host:?}; tinyvr makes the VM's devices and reads it back on the VM's host: run tinyvr there (ssh, or deploy/ with Ansible)"
        ));
    }
    if !matches!(scheme, "qemu" | "qemu+unix") {
        return Err(format!(
            "--libvirt {uri}: only this host's qemu driver (qemu:///system or qemu+unix:///system) is supported; for another host run tinyvr there (ssh, or deploy/ with Ansible)"
        ));
    }
    if path != "system" {
        return Err(format!(
            "--libvirt {uri}: expected the system instance (qemu:///system): a session libvirtd runs qemu as a user, which cannot use tinyvr's taps or scheduling"
        ));
    }
    Ok(())
}

fn new_uuid() -> Result<String, HostError> {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_string())
        .map_err(|e| HostError::io("reading /proc/sys/kernel/random/uuid", e))
}

/// Moves each handed-over tap into its namespace and onto its bridge, up:
/// what `vm up` does before qemu starts, done once libvirt has opened it.
fn place_taps(handed: Vec<Handed>, state: &mut State) -> Result<(), HostError> {
    let mut nl = netns::socket(None)?;
    for (e, tname, ns, br) in handed {
        let mut tnl = match &ns {
            Some(ns) => {
                let fd = netns::open(ns)?;
                links::move_to(&mut nl, &tname, fd.as_raw_fd(), None)?;
                let mut tnl = netns::socket(Some(ns))?;
                let i = links::must_index(&mut tnl, &tname, "the moved tap")?;
                state.relocate(e, Some(ns.clone()), i as u64)?;
                tnl
            }
            None => netns::socket(None)?,
        };
        if let Some(b) = &br {
            links::set_master(&mut tnl, &tname, b)?;
        }
        links::set_up(&mut tnl, &tname)?;
    }
    Ok(())
}

/// The pid of the domain's qemu, from libvirt's pid file, checked against
/// its command line (it must carry the domain's UUID).
fn qemu_pid(name: &str, uuid: &str) -> Result<u32, HostError> {
    let f = format!("/run/libvirt/qemu/{name}.pid");
    let pid: u32 = std::fs::read_to_string(&f)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| HostError::Other(format!("libvirt domain {name}: no pid in {f}")))?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains(uuid) {
        return Err(HostError::Other(format!(
            "libvirt domain {name}: process {pid} (from {f}) is not the domain tinyvr started ({uuid})"
        )));
    }
    Ok(pid)
}

/// A QMP command through libvirt's monitor (`virsh qemu-monitor-command`);
/// its `return`.
fn monitor(d: &Domain, cmd: &str) -> Result<Value, HostError> {
    let out = virsh(
        &d.uri,
        &[
            "qemu-monitor-command",
            &d.uuid,
            &json!({ "execute": cmd }).to_string(),
        ],
    )?;
    let v: Value = serde_json::from_str(&out)
        .map_err(|e| HostError::Other(format!("{cmd} through libvirt: {e}: {out}")))?;
    Ok(v["return"].clone())
}

pub(crate) fn start(
    o: &Up,
    cfg: &RouterConfig,
    topo: Option<&topology::Topology>,
    (acc, machine): (Accel, &str),
    why: &str,
    uri: &str,
    state: &mut State,
) -> Result<Value, HostError> {
    let name = &cfg.name;
    preflight(o, uri, name)?;
    let files: Vec<PathBuf> = ["toml", "console", "xml"]
        .iter()
        .map(|e| platform::run_file(name, e))
        .collect();
    for f in &files {
        if std::fs::symlink_metadata(f).is_ok() {
            return Err(HostError::Other(format!(
                "{} exists and tinyvr did not make it: left alone",
                f.display()
            )));
        }
    }
    let uuid = new_uuid()?;
    let (xml, notes) =
        platform::xml_for(o, cfg, acc, machine, &files[0], Some(uuid.clone()), true)?;
    if let Some(t) = topo {
        topology::create_namespaces(t, state)?;
    }
    let mut handed = Vec::new();
    let (_, host_links) = platform::plumb(cfg, state, Some(&mut handed))?;
    state.write_new(&files[0], &cfg.guest_toml())?;
    state.write_new(&files[2], &xml)?;
    // virtlogd makes the console file; nobody else writes in /run/tinyvr.
    let console_entry = state.intend(Resource::File {
        path: files[1].clone(),
    })?;
    let d = Domain {
        uri: uri.to_string(),
        name: name.clone(),
        uuid: uuid.clone(),
    };
    // Recorded before it exists: its UUID is what teardown looks for, so a
    // crash during the create leaves nothing unrecorded.
    state.add_made(
        Resource::Domain {
            uri: d.uri.clone(),
            name: d.name.clone(),
            uuid: d.uuid.clone(),
        },
        1,
    )?;
    let t0 = Instant::now();
    let created = lv::create(uri, &files[2].display().to_string());
    if let Ok(id) = state::file_id(&files[1]) {
        state.made(console_entry, id)?;
    }
    created.map_err(|e| HostError::Other(format!("VM {name}: {e}\n{}", log_tail(name))))?;
    place_taps(handed, state)?;
    let pid = qemu_pid(name, &uuid)?;
    state.owner_pid = Some(pid);
    state.save()?;
    let mut ready = console::wait_ready_while(
        &files[1],
        &mut || {
            (!state::is_alive(pid))
                .then(|| format!("qemu exited before READY:\n{}", log_tail(name)))
        },
        o.timeout,
        &format!("VM {name}"),
    )?;
    let boot_ms = t0.elapsed().as_secs_f64() * 1000.0;
    // libvirt cannot turn THP off for qemu (`vm xml` refuses --thp off):
    // the host's policy applies.
    let mem = memory::read_back(pid, o.memory_mb, o.prealloc, true)
        .map_err(|e| HostError::Other(format!("VM {name}: memory: {e}")))?;
    let emulator_dir = cgroup::cpu_dir_of(pid, pid)?;
    // libvirt puts the main thread in <domain>/emulator; the domain's
    // weight and bandwidth are on <domain>.
    let domain_dir = if emulator_dir.ends_with("emulator") {
        emulator_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or(emulator_dir)
    } else {
        emulator_dir
    };
    let ts = crate::platform::threads_of(pid, &monitor(&d, "query-cpus-fast")?);
    // Under RT group scheduling FIFO/RR need a budget in every cgroup
    // above the thread: libvirt gives its cgroups none.
    let mut rt_budget = Value::Null;
    if o.placement.wants_rt() {
        let leaves: Vec<PathBuf> = ts
            .iter()
            .filter(|(c, _, _)| o.placement.policy_of(*c).is_some_and(|p| p.is_rt()))
            .map(|&(_, _, tid)| cgroup::cpu_dir_of(pid, tid))
            .collect::<Result<_, _>>()?;
        let mut distinct = leaves.clone();
        distinct.sort();
        distinct.dedup();
        let budget = o.rt_runtime_us.unwrap_or(platform::DEFAULT_RT_RUNTIME_US);
        rt_budget = cgroup::give_rt_budget(state, &leaves, budget / distinct.len().max(1) as u64)?;
    }
    let mut cg = cgroup::verify_dir(&domain_dir, &o.resources)?;
    cg["rt_budget"] = rt_budget;
    let threads = platform::place_threads(&o.placement, pid, ts, &cg)?;
    if let Some(set) = &o.resources.cpuset {
        let allowed: tinyvr_config::CpuList = set
            .parse()
            .map_err(|e| HostError::Other(format!("--cpuset {set}: {e}")))?;
        for t in &threads {
            let cpus = t
                .cpus
                .parse::<tinyvr_config::CpuList>()
                .map(|c| c.0)
                .unwrap_or_default();
            if !cpus.iter().all(|c| allowed.0.contains(c)) {
                return Err(HostError::Other(format!(
                    "{:?} thread {} may run on CPUs {}, outside --cpuset {set}",
                    t.class, t.tid, t.cpus
                )));
            }
        }
    }
    let virtqueues = platform::guest_holds(o, cfg, topo, &mut ready, &files[1])?;
    ready["vm"] = json!({
        "virtqueues": virtqueues,
        "accel": acc,
        "accel_reason": why,
        "qemu_pid": pid,
        "boot_to_ready_ms": boot_ms.round(),
        "memory": mem,
        "host_links": host_links,
        "cgroup": cg,
        "threads": threads,
        "libvirt": {
            "uri": uri,
            "domain": name,
            "uuid": uuid,
            "xml": files[2].display().to_string(),
            "not_in_xml": notes,
        },
    });
    Ok(ready)
}

/// ACPI power-down through libvirt (`virsh shutdown --mode acpi`), waiting
/// up to `timeout` for the domain to go; the teardown destroys it after
/// that and says so.
pub(crate) fn stop(d: &Domain, timeout: Duration) -> Vec<String> {
    let mut notes = Vec::new();
    // An error (libvirtd not answering) counts as "still there": the
    // teardown then tries again and keeps the record if that fails too.
    let there = || lv::exists(&d.uri, &d.uuid).unwrap_or(true);
    if !there() {
        return notes;
    }
    if let Err(e) = virsh(&d.uri, &["shutdown", "--mode", "acpi", &d.uuid]) {
        notes.push(format!("libvirt shutdown failed: {e}"));
    }
    let end = Instant::now() + timeout;
    while there() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    if there() {
        notes.push(format!(
            "libvirt domain {} still running {timeout:?} after an ACPI shutdown: destroyed",
            d.name
        ));
    } else {
        notes.push(format!("libvirt domain {} shut down through ACPI", d.name));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::check_uri;

    #[test]
    fn only_this_hosts_system_libvirtd() {
        for ok in [
            "qemu:///system",
            "qemu+unix:///system",
            "qemu+unix:///system?socket=/run/libvirt/libvirt-sock",
        ] {
            assert_eq!(check_uri(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("qemu:///session", "system instance"),
            ("qemu+ssh://root@h2/system", "names host \"root@h2\""),
            ("qemu+tcp://h2/system", "names host \"h2\""),
            ("qemu+tls:///system", "only this host's qemu driver"),
            ("xen:///system", "only this host's qemu driver"),
            ("system", "expected a libvirt URI"),
        ] {
            let e = check_uri(bad).unwrap_err();
            assert!(e.contains(why) && e.contains("--libvirt"), "{bad}: {e}");
        }
    }
}
