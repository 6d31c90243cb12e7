//! `tinyvr vm up|down`: boot the image under qemu with one virtio NIC per
//! interface, wait for TINYVR-READY on the serial console, power it down
//! through QMP.

use crate::accel::{self, Accel, HostCaps};
use crate::argv::{self, Backend, Nic, VmSpec};
use crate::memory::{self, Thp};
use crate::qmp::Qmp;
use crate::sched::{self, Class, Placement, ThreadState};
use crate::vfio;
use std::fs::File;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tinyvr_config::{HostLink, RouterConfig, Vhost, VirtioNic};
use tinyvr_host::cgroup::{self, Resources};
use tinyvr_host::state::{self, Resource, State};
use tinyvr_host::{links, netns, sriov, tap, topology, HostError};

pub struct Up<'a> {
    /// The router config, validated (read by the CLI, built by the bench).
    pub config: &'a tinyvr_config::RouterConfig,
    /// Instance name (default: the router's name); every host-side name
    /// (taps, bridges, namespaces, cgroup, run files) derives from it.
    pub name: Option<String>,
    /// Directory with bzImage and initramfs.cpio.gz.
    pub image: PathBuf,
    pub topology: bool,
    /// With the topology: how the source and sink reach the VM's NICs
    /// (bridge, tap or macvtap).
    pub datapath: topology::Datapath,
    /// Wait for a migration stream at this URI (`tcp:0:PORT`) instead of
    /// booting: the receiving end of `vm migrate --to`.
    pub incoming: Option<String>,
    pub accel: String,
    pub cpus: u32,
    pub memory_mb: u32,
    /// Preallocate guest memory when qemu starts.
    pub prealloc: bool,
    /// Transparent huge pages for qemu's memory.
    pub thp: Thp,
    pub console: bool,
    pub timeout: Duration,
    pub qemu: String,
    /// Thread affinity and scheduling per class.
    pub placement: Placement,
    /// The VM's cgroup: CPU weight, bandwidth, cpuset.
    pub resources: Resources,
    /// RT budget (µs per 1 s period) of the VM's cgroup; needed for
    /// SCHED_FIFO/RR under RT group scheduling. Default with fifo/rr: 100000.
    pub rt_runtime_us: Option<u64>,
    /// Start the VM through the libvirtd at this URI (`vm up --libvirt`)
    /// instead of running qemu itself.
    pub libvirt: Option<String>,
}

pub(crate) const DEFAULT_RT_RUNTIME_US: u64 = 100_000;

fn vhost_on(v: Vhost) -> bool {
    match v {
        Vhost::On => true,
        Vhost::Off => false,
        Vhost::Auto => Path::new("/dev/vhost-net").exists(),
    }
}

/// Pauses a VM tinyvr runs (`running` false: QMP `stop`, its vCPUs halt)
/// or resumes it (`cont`), and reads the run state back (`query-status`):
/// a state other than the one asked is an error naming both.
pub fn set_running(name: &str, running: bool) -> Result<(), HostError> {
    // Held (locked) while it acts: no `down` in between.
    let _s = state::State::load(name)?.of_platform("vm")?;
    let e = |e: crate::qmp::QmpError| HostError::Other(format!("VM {name}: {e}"));
    let mut q = Qmp::connect(&run_file(name, "qmp"), Duration::from_secs(5)).map_err(e)?;
    q.execute(if running { "cont" } else { "stop" }, None)
        .map_err(e)?;
    let s = q.execute("query-status", None).map_err(e)?;
    match s["running"].as_bool() {
        Some(r) if r == running => Ok(()),
        _ => Err(HostError::Other(format!(
            "VM {name}: asked {}, query-status says {s}",
            if running { "running" } else { "paused" }
        ))),
    }
}

/// Files of one VM under /run/tinyvr.
pub(crate) fn run_file(name: &str, ext: &str) -> PathBuf {
    PathBuf::from(state::DIR).join(format!("{name}.{ext}"))
}

/// What `prepare` settles: the effective config, the topology, the
/// accelerator with its reason, the versioned machine type.
type Prepared = (
    RouterConfig,
    Option<topology::Topology>,
    Accel,
    String,
    String,
);

/// The versioned machine type `pc` stands for in this qemu (e.g.
/// `pc-i440fx-7.2`): pinned, so a migration stream is accepted by a
/// destination whose qemu has another default.
fn machine_type(qemu: &str) -> Result<String, HostError> {
    let out = Command::new(qemu)
        .args(["-machine", "help"])
        .output()
        .map_err(|e| HostError::io(format!("running {qemu} -machine help"), e))?;
    argv::alias_target(&String::from_utf8_lossy(&out.stdout), "pc").ok_or_else(|| {
        HostError::Other(format!(
            "{qemu} -machine help names no versioned machine behind \"pc\""
        ))
    })
}

/// Checks everything that can be checked before creating anything; returns
/// the effective config (every interface has a MAC: in a VM the init finds
/// its NICs by MAC), the topology, the accelerator and the machine type.
pub(crate) fn prepare(o: &Up) -> Result<Prepared, HostError> {
    if !tinyvr_host::console::have(&o.qemu) {
        return Err(HostError::Other(format!(
            "{} not found: install Debian's qemu-system-x86 (scripts/setup does)",
            o.qemu
        )));
    }
    let machine = machine_type(&o.qemu)?;
    for f in ["bzImage", "initramfs.cpio.gz"] {
        if !o.image.join(f).is_file() {
            return Err(HostError::Other(format!(
                "image {} has no {f}: run tinyvr image build (or pass --image)",
                o.image.display()
            )));
        }
    }
    let (mut cfg, topo) =
        topology::resolve_wired(o.config, o.name.as_deref(), o.topology, o.datapath)?;
    let online = cgroup::online_cpus();
    o.placement.check(&online).map_err(HostError::Other)?;
    cgroup::check(&o.resources, &online).map_err(HostError::Other)?;
    let (acc, why) = accel::choose(&o.accel, &HostCaps::probe()).map_err(HostError::Other)?;
    if o.cpus == 0 || o.memory_mb < 64 {
        return Err(HostError::Other(format!(
            "--cpus {} / --memory {}: expected at least 1 CPU and 64 MB",
            o.cpus, o.memory_mb
        )));
    }
    let mut nl = netns::socket(None)?;
    for (i, ifc) in cfg.interfaces.iter_mut().enumerate() {
        // Every virtio NIC needs a MAC of its own (qemu would give them all
        // the same one); a VF gets one when nothing else finds it in the
        // guest (it is set on the VF through its PF).
        let vf = matches!(ifc.host, Some(HostLink::Vfio { .. }));
        if ifc.mac.is_none() && (!vf || (ifc.pci.is_none() && ifc.driver.is_none())) {
            ifc.mac = Some(argv::derived_mac(&cfg.name, i));
        }
        if let Some(HostLink::Macvtap { nic, .. }) = &ifc.host {
            // tinyvr opens the macvtap's character device once: one queue.
            if nic.queues.is_some_and(|q| q > 1) {
                return Err(HostError::Other(format!(
                    "interface[{i}].host.queues: {}: a macvtap here has one queue (use kind = \"tap\" or \"bridge\" for multi-queue)",
                    nic.queues.unwrap_or(1)
                )));
            }
        }
        // The topology's lowers are made with it; any other parent must exist.
        let lowers = topo.as_ref().and_then(|t| t.lowers.as_ref());
        if let Some(HostLink::Macvtap { parent, .. }) = &ifc.host {
            if !lowers.is_some_and(|l| l.devs.iter().any(|d| d == parent.as_str())) {
                links::must_index(
                    &mut nl,
                    parent.as_str(),
                    &format!("interface[{i}] ({}) macvtap parent", ifc.name),
                )?;
            }
        }
        if let Some(HostLink::Vfio { pci }) = &ifc.host {
            if acc != Accel::Kvm {
                return Err(HostError::Other(format!(
                    "interface[{i}] ({}): vfio passthrough needs KVM; {why}",
                    ifc.name
                )));
            }
            // IOMMU group and vfio-pci binding before anything is made; a PF
            // too when the VF's MAC must be set (the guest finds it by MAC).
            let what = format!("interface[{i}].host.pci");
            let r = if ifc.mac.is_some() || (ifc.pci.is_none() && ifc.driver.is_none()) {
                vfio::inspect(Path::new("/sys"), &pci.to_string(), &what).map(|_| ())
            } else {
                vfio::check(Path::new("/sys"), &pci.to_string(), &what).map(|_| ())
            };
            r.map_err(HostError::Other)?;
        }
    }
    Ok((cfg, topo, acc, why, machine))
}

/// Makes the host side of each NIC and returns the fds qemu inherits, in
/// the order `planned_nics` numbers them (3, 4, ...), and each host
/// device's settings as asked and read back.
/// A persistent tap handed to libvirt by name, to be moved into its
/// namespace and bridged once libvirt has opened it: (its record, name,
/// namespace, bridge).
pub(crate) type Handed = (usize, String, Option<String>, Option<String>);

pub(crate) fn plumb(
    cfg: &RouterConfig,
    state: &mut State,
    handed: Option<&mut Vec<Handed>>,
) -> Result<(Vec<File>, Vec<serde_json::Value>), HostError> {
    let mut handed = handed;
    let mut fds: Vec<File> = Vec::new();
    let mut host_links = Vec::new();
    let mut txqueuelen = |nl: &mut dyn tinyvr_init::netlink::Netlink,
                          dev: &str,
                          asked: Option<u32>| {
        if let Some(q) = asked {
            let held = links::set_txqueuelen(nl, dev, q)?;
            host_links
                .push(serde_json::json!({"dev": dev, "txqueuelen": {"asked": q, "held": held}}));
        }
        Ok::<(), HostError>(())
    };
    let mut nl = netns::socket(None)?;
    let default = HostLink::Tap {
        name: None,
        netns: None,
        bridge: None,
        nic: VirtioNic::default(),
    };
    for (i, ifc) in cfg.interfaces.iter().enumerate() {
        let mac = ifc.mac.unwrap_or_default();
        let host = ifc.host.as_ref().unwrap_or(&default);
        match host {
            // Passed through by PCI address: nothing to make on the host, but
            // the VF must carry the MAC the guest's init looks for. The MAC
            // it had is recorded first and goes back on down.
            HostLink::Vfio { pci } => {
                let Some(mac) = ifc.mac else {
                    continue; // found by pci or driver in the guest
                };
                let vf = vfio::inspect(
                    Path::new("/sys"),
                    &pci.to_string(),
                    &format!("interface[{i}].host.pci"),
                )
                .map_err(HostError::Other)?;
                let pf = links::must_index(&mut nl, &vf.pf_netdev, "the VF's PF")?;
                let was = sriov::mac(&mut nl, pf, vf.vf_index)?.unwrap_or_default();
                if was != mac {
                    state.add_made(
                        Resource::VfMac {
                            pf: vf.pf_netdev.clone(),
                            vf: vf.vf_index,
                            was,
                            set: mac,
                        },
                        pf.into(),
                    )?;
                    sriov::set_mac(&mut nl, pf, &vf.pf_netdev, vf.vf_index, &mac)?;
                }
            }
            HostLink::Tap { .. } | HostLink::Bridge { .. } => {
                // A tap, optionally in a namespace, or on a bridge (given,
                // or made by tinyvr for the `bridge` kind).
                let (tns, br, nic) = match host {
                    HostLink::Tap {
                        netns, bridge, nic, ..
                    } => (netns.clone(), bridge.as_ref().map(|b| b.to_string()), nic),
                    HostLink::Bridge { bridge, nic } => {
                        // A bridge the user names is theirs: it must exist,
                        // and is used, never removed. Without a name tinyvr
                        // makes <router>-br<n> (which must not exist yet).
                        let b = bridge
                            .as_ref()
                            .map(|b| b.to_string())
                            .unwrap_or_else(|| format!("{}-br{i}", cfg.name));
                        let exists = links::index(&mut nl, &b)?.is_some();
                        if bridge.is_some() && !exists {
                            return Err(HostError::Other(format!(
                                "interface[{i}].host.bridge: bridge {b} does not exist: create it (ip link add {b} type bridge), or leave bridge out and tinyvr makes {}-br{i}",
                                cfg.name
                            )));
                        }
                        if exists && bridge.is_none() {
                            links::must_be_free(&mut nl, &b, None)?;
                        }
                        if !exists {
                            let e = state.intend(Resource::Link {
                                name: b.clone(),
                                netns: None,
                            })?;
                            links::add_bridge(&mut nl, &b)?;
                            state.made(
                                e,
                                links::must_index(&mut nl, &b, "the new bridge")? as u64,
                            )?;
                            links::quiet_ipv6(&b)?;
                            links::set_up(&mut nl, &b)?;
                        }
                        (None, Some(b), nic)
                    }
                    _ => unreachable!(),
                };
                let tname = ifc.host_name(&cfg.name);
                links::must_be_free(&mut nl, &tname, None)?;
                if let Some(ns) = &tns {
                    links::must_be_free(&mut netns::socket(Some(ns))?, &tname, Some(ns))?;
                }
                let e = state.intend(Resource::Link {
                    name: tname.clone(),
                    netns: None,
                })?;
                let files = tap::open(&tname, nic.queues.unwrap_or(1))?;
                state.made(e, links::must_index(&mut nl, &tname, "the new tap")? as u64)?;
                txqueuelen(&mut nl, &tname, nic.txqueuelen)?;
                links::quiet_ipv6(&tname)?;
                if let Some(h) = handed.as_deref_mut() {
                    // libvirt opens it by name in the host's namespace: it
                    // must outlive our fds and stay here until then.
                    tap::persist(&files[0], &tname)?;
                    h.push((e, tname.clone(), tns.clone(), br.clone()));
                    continue;
                }
                // Moving a device detaches it from its bridge: move first,
                // then enslave to the bridge in the tap's own namespace.
                let mut tnl = match &tns {
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
                fds.extend(files);
            }
            HostLink::Macvtap { parent, mode, nic } => {
                let mname = ifc.host_name(&cfg.name);
                links::must_be_free(&mut nl, &mname, None)?;
                let e = state.intend(Resource::Link {
                    name: mname.clone(),
                    netns: None,
                })?;
                let index = links::add_macvtap(&mut nl, &mname, parent.as_str(), *mode, None)?;
                state.made(e, index as u64)?;
                links::set_mac(&mut nl, &mname, &mac)?;
                links::quiet_ipv6(&mname)?;
                txqueuelen(&mut nl, &mname, nic.txqueuelen)?;
                links::set_up(&mut nl, &mname)?;
                let dev = format!("/dev/tap{index}");
                if handed.is_some() {
                    continue; // libvirt opens /dev/tapN itself
                }
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&dev)
                    .map_err(|e| HostError::io(format!("opening {dev} (macvtap {mname})"), e))?;
                fds.push(f);
            }
            other => {
                return Err(HostError::Other(format!(
                    "interface {}: {other:?} is not a VM backend",
                    ifc.name
                )))
            }
        }
    }
    Ok((fds, host_links))
}

/// The NICs qemu gets, with tap fds numbered as `plumb` hands them over
/// (3, 4, ... in interface order); the one source of both `vm argv` and `up`.
pub(crate) fn planned_nics(cfg: &RouterConfig) -> Vec<Nic> {
    let mut next = 3;
    cfg.interfaces
        .iter()
        .map(|ifc| {
            // A VF found by pci/driver has no MAC here; argv gives it none.
            let mac = ifc.mac.unwrap_or_default();
            let plain = VirtioNic::default();
            let (backend, nic) = match &ifc.host {
                Some(HostLink::Vfio { pci }) => (Backend::Vfio { pci: pci.clone() }, &plain),
                Some(HostLink::Tap { nic, .. } | HostLink::Bridge { nic, .. }) => {
                    let q = nic.queues.unwrap_or(1) as i32;
                    let fds = (next..next + q).collect();
                    next += q;
                    (Backend::Fds { fds }, nic)
                }
                Some(HostLink::Macvtap { nic, .. }) => {
                    next += 1;
                    (
                        Backend::Fds {
                            fds: vec![next - 1],
                        },
                        nic,
                    )
                }
                _ => {
                    next += 1;
                    (
                        Backend::Fds {
                            fds: vec![next - 1],
                        },
                        &plain,
                    )
                }
            };
            Nic {
                mac,
                backend,
                vhost: vhost_on(nic.vhost),
                queues: nic.queues.unwrap_or(1),
                rx_queue_size: nic.rx_queue_size,
                tx_queue_size: nic.tx_queue_size,
            }
        })
        .collect()
}

pub(crate) fn spec(
    o: &Up,
    cfg: &RouterConfig,
    acc: Accel,
    machine: &str,
    nics: Vec<Nic>,
) -> VmSpec {
    let name = &cfg.name;
    VmSpec {
        name: name.clone(),
        qemu: o.qemu.clone(),
        accel: acc,
        machine: machine.into(),
        cpus: o.cpus,
        memory_mb: o.memory_mb,
        prealloc: o.prealloc,
        kernel: o.image.join("bzImage"),
        initrd: o.image.join("initramfs.cpio.gz"),
        append: "console=ttyS0 tinyvr.log=info".into(),
        config: run_file(name, "toml"),
        console_log: run_file(name, "console"),
        console_stdio: o.console,
        qmp: run_file(name, "qmp"),
        pidfile: run_file(name, "pid"),
        nics,
    }
}

/// The qemu command line `up` would run (tap fds numbered as qemu would
/// receive them), and the accelerator with its reason. Creates nothing.
pub fn dry_run(o: &Up) -> Result<(Vec<String>, String), HostError> {
    let (cfg, _, acc, why, machine) = prepare(o)?;
    Ok((
        argv::argv(&spec(o, &cfg, acc, &machine, planned_nics(&cfg))),
        why,
    ))
}

/// The libvirt domain XML for what `up` would start, and the settings
/// libvirt cannot carry. The guest's config is referenced by file: with
/// `guest_config` tinyvr writes the effective config there (a new file);
/// without, the XML names the run file `vm up --libvirt` writes.
pub fn domain_xml(o: &Up, guest_config: Option<&Path>) -> Result<(String, Vec<String>), HostError> {
    let (cfg, _, acc, _, machine) = prepare(o)?;
    // The XML names the file by its absolute path; the file is written
    // only once the XML is made (a refused setting writes nothing).
    let file = match guest_config {
        Some(p) => {
            let (dir, base) = (
                p.parent().filter(|d| !d.as_os_str().is_empty()),
                p.file_name(),
            );
            let dir = std::fs::canonicalize(dir.unwrap_or(Path::new("."))).map_err(|e| {
                HostError::io(format!("--guest-config {}: its directory", p.display()), e)
            })?;
            let base = base.ok_or_else(|| {
                HostError::Other(format!(
                    "--guest-config {}: expected a file name",
                    p.display()
                ))
            })?;
            dir.join(base)
        }
        None => run_file(&cfg.name, "toml"),
    };
    let (xml, mut notes) = xml_for(o, &cfg, acc, &machine, &file, None, o.libvirt.is_some())?;
    if let Some(p) = guest_config {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, cfg.guest_toml().as_bytes()))
            .map_err(|e| {
                HostError::io(
                    format!("--guest-config {}: writing a new file", p.display()),
                    e,
                )
            })?;
    }
    if guest_config.is_none() {
        notes.push(format!(
            "the guest's config is read from {} (what `vm up --libvirt` writes); --guest-config PATH writes it elsewhere for a domain defined by hand",
            file.display()
        ));
    }
    Ok((xml, notes))
}

/// The domain XML of this plan with the config read from `config_file`.
pub(crate) fn xml_for(
    o: &Up,
    cfg: &RouterConfig,
    acc: Accel,
    machine: &str,
    config_file: &Path,
    uuid: Option<String>,
    launched: bool,
) -> Result<(String, Vec<String>), HostError> {
    let mut spec = spec(o, cfg, acc, machine, planned_nics(cfg));
    // libvirt starts qemu elsewhere: absolute paths.
    for p in [&mut spec.kernel, &mut spec.initrd] {
        *p = std::fs::canonicalize(&*p)
            .map_err(|e| HostError::io(format!("resolving {}", p.display()), e))?;
    }
    // libvirt wants the emulator's absolute path.
    let emulator = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(&o.qemu))
        .find(|p| p.is_file())
        .map_or(o.qemu.clone(), |p| p.display().to_string());
    crate::libvirt::domain_xml(
        &spec,
        cfg,
        &crate::libvirt::Extra {
            placement: &o.placement,
            resources: &o.resources,
            rt_runtime_us: o.rt_runtime_us,
            thp_off: o.thp == Thp::Off,
            thp_auto_off: o.thp == Thp::Auto && !Thp::Auto.enabled(acc),
            emulator,
            config_file: config_file.display().to_string(),
            uuid,
            launched,
            cgroup_v2: tinyvr_host::cgroup::version() == tinyvr_host::cgroup::Cgroup::V2,
        },
    )
    .map_err(HostError::Other)
}

pub fn up(o: &Up) -> Result<serde_json::Value, HostError> {
    let (cfg, topo, acc, why, machine) = prepare(o)?;
    tinyvr_host::lifecycle::up(&cfg.name.clone(), "vm", |state| {
        start(o, &cfg, topo.as_ref(), (acc, &machine), &why, state)
    })
}

fn start(
    o: &Up,
    cfg: &RouterConfig,
    topo: Option<&topology::Topology>,
    (acc, machine): (Accel, &str),
    why: &str,
    state: &mut State,
) -> Result<serde_json::Value, HostError> {
    let name = &cfg.name;
    if let Some(uri) = &o.libvirt {
        return crate::libvirt_up::start(o, cfg, topo, (acc, machine), why, uri, state);
    }
    if let Some(t) = topo {
        topology::create_namespaces(t, state)?;
    }
    let (fds, host_links) = plumb(cfg, state, None)?;
    let nics = planned_nics(cfg);
    let numbered: usize = nics
        .iter()
        .map(|n| {
            if let Backend::Fds { fds } = &n.backend {
                fds.len()
            } else {
                0
            }
        })
        .sum();
    debug_assert_eq!(
        numbered,
        fds.len(),
        "plumb and planned_nics disagree on the tap fds"
    );
    // The same paths `spec` uses: config, console, QMP socket, pidfile, qemu's own log.
    let files: Vec<PathBuf> = ["toml", "console", "qmp", "pid", "qemu.log"]
        .iter()
        .map(|e| run_file(name, e))
        .collect();
    // qemu makes the console, QMP and pid files: none may exist before it
    // does, so whatever is there afterwards is this VM's.
    for f in &files {
        if std::fs::symlink_metadata(f).is_ok() {
            return Err(HostError::Other(format!(
                "{} exists and tinyvr did not make it: left alone",
                f.display()
            )));
        }
    }
    state.write_new(&files[0], &cfg.guest_toml())?;
    state.write_new(&files[4], "")?;
    let made_by_qemu: Vec<usize> = files[1..4]
        .iter()
        .map(|f| state.intend(Resource::File { path: f.clone() }))
        .collect::<Result<_, _>>()?;
    let spec = spec(o, cfg, acc, machine, nics);
    let args = argv::argv(&spec);
    // The VM's cgroup, made and set before qemu exists: qemu joins it
    // between fork and exec, so every thread and allocation of it is inside.
    let rt = if o.placement.wants_rt() {
        Some(o.rt_runtime_us.unwrap_or(DEFAULT_RT_RUNTIME_US))
    } else {
        o.rt_runtime_us
    };
    let cgroup = cgroup::prepare(state, &format!("tinyvr-{name}"), &o.resources, rt)?;
    let procs = cgroup::procs_files(&cgroup)?;
    let thp = o.thp.enabled(acc);
    let t0 = Instant::now();
    let mut args = args;
    if let Some(uri) = &o.incoming {
        args.extend(["-incoming".to_string(), uri.clone()]);
    }
    let mut child = spawn_qemu(&args, fds, &procs, thp, &files[4], o.console)?;
    state.owner_pid = Some(child.id());
    state.add_process(child.id())?;
    if let Some(uri) = &o.incoming {
        return incoming(
            o,
            cfg,
            topo,
            uri,
            (acc, why),
            &files,
            made_by_qemu,
            state,
            {
                let (pid, a) = (child.id(), args);
                (pid, a, cgroup, host_links, thp)
            },
        );
    }

    let qemu_log = files[4].clone();
    let ready = tinyvr_host::console::wait_ready(
        &files[1],
        &mut child,
        o.timeout,
        &format!("VM {name}"),
        &|st| {
            format!(
                "qemu exited ({st}) before READY: {}",
                std::fs::read_to_string(&qemu_log)
                    .unwrap_or_default()
                    .trim()
            )
        },
    );
    let boot_ms = t0.elapsed().as_secs_f64() * 1000.0;
    // What qemu made in our private directory (absent before it started),
    // whether or not READY came.
    for (k, f) in made_by_qemu.into_iter().zip(&files[1..4]) {
        if let Ok(id) = state::file_id(f) {
            state.made(k, id)?;
        }
    }
    let mut ready = ready?;
    let mem = memory::read_back(child.id(), o.memory_mb, o.prealloc, thp)
        .map_err(|e| HostError::Other(format!("VM {name}: memory: {e}")))?;
    let cg = cgroup::verify(&cgroup, child.id())?;
    let threads = place(&o.placement, child.id(), &files[2], &cg)?;
    let virtqueues = guest_holds(o, cfg, topo, &mut ready, &files[1])?;
    ready["vm"] = serde_json::json!({
        "virtqueues": virtqueues,
        "accel": acc,
        "accel_reason": why,
        "qemu_pid": child.id(),
        "boot_to_ready_ms": boot_ms.round(),
        "memory": mem,
        "host_links": host_links,
        "cgroup": cg,
        "threads": threads,
        "argv": args,
    });
    Ok(ready)
}

/// What the guest reports after READY, checked: its virtqueue sizes
/// against the asked ones, and the init's own read-back of the kernel
/// (TINYVR-HELD on the console, the host's only view into the guest)
/// against READY; then the topology's ends. Returns the virtqueues.
pub(crate) fn guest_holds(
    o: &Up,
    cfg: &RouterConfig,
    topo: Option<&topology::Topology>,
    ready: &mut serde_json::Value,
    console: &Path,
) -> Result<serde_json::Value, HostError> {
    let name = &cfg.name;
    let virtqueues =
        virtqueues(cfg, ready).map_err(|e| HostError::Other(format!("VM {name}: {e}")))?;
    let held =
        tinyvr_host::console::wait_tagged(console, "TINYVR-HELD ", o.timeout).ok_or_else(|| {
            HostError::Other(format!(
                "VM {name}: no TINYVR-HELD line from the guest within {:?} of READY",
                o.timeout
            ))
        })?;
    let counts: tinyvr_host::verify::Held = serde_json::from_value(held.clone())
        .map_err(|e| HostError::Other(format!("VM {name}: bad TINYVR-HELD line: {e}")))?;
    tinyvr_host::verify::compare(ready, &counts)
        .map_err(|e| HostError::Other(format!("VM {name}: {e}")))?;
    ready["held"] = serde_json::to_value(counts).expect("counts serialize");
    if let Some(t) = topo {
        topology::finish(t, ready)?;
    }
    Ok(virtqueues)
}

/// `vm up --incoming`: the guest arrives by migration, so there is no
/// READY; qemu is up and waiting for the stream (`inmigrate`, read back),
/// with its memory, cgroup and thread placement read back like a booted
/// VM's, and the topology's ends configured with the config's MACs.
#[allow(clippy::too_many_arguments)]
fn incoming(
    o: &Up,
    cfg: &RouterConfig,
    topo: Option<&topology::Topology>,
    uri: &str,
    (acc, why): (Accel, &str),
    files: &[PathBuf],
    made_by_qemu: Vec<usize>,
    state: &mut State,
    (pid, args, cgroup, host_links, thp): (
        u32,
        Vec<String>,
        cgroup::Prepared,
        Vec<serde_json::Value>,
        bool,
    ),
) -> Result<serde_json::Value, HostError> {
    let name = &cfg.name;
    let mut q = Qmp::connect(&files[2], o.timeout).map_err(|e| HostError::Other(e.to_string()));
    for (k, f) in made_by_qemu.into_iter().zip(&files[1..4]) {
        if let Ok(id) = state::file_id(f) {
            state.made(k, id)?;
        }
    }
    let status = q
        .as_mut()
        .map_err(|e| HostError::Other(e.to_string()))?
        .execute("query-status", None)
        .map_err(|e| HostError::Other(format!("VM {name}: {e}")))?;
    drop(q);
    if status["status"] != "inmigrate" {
        return Err(HostError::Other(format!(
            "VM {name}: qemu is not waiting for a migration stream: {status}"
        )));
    }
    let mem = memory::read_back(pid, o.memory_mb, o.prealloc, thp)
        .map_err(|e| HostError::Other(format!("VM {name}: memory: {e}")))?;
    let cg = cgroup::verify(&cgroup, pid)?;
    let threads = place(&o.placement, pid, &files[2], &cg)?;
    let mut ready = serde_json::json!({
        "name": name,
        "platform": "vm",
        "incoming": uri,
        "status": status["status"],
        "interfaces": cfg.interfaces.iter().map(|i| serde_json::json!({
            "name": i.name.as_str(),
            "mac": i.mac.map(|m| m.to_string()),
        })).collect::<Vec<_>>(),
    });
    if let Some(t) = topo {
        topology::finish(t, &mut ready)?;
    }
    ready["vm"] = serde_json::json!({
        "accel": acc,
        "accel_reason": why,
        "qemu_pid": pid,
        "memory": mem,
        "host_links": host_links,
        "cgroup": cg,
        "threads": threads,
        "argv": args,
    });
    Ok(ready)
}

/// Runs qemu as `args` says: the tap fds as 3, 4, ... in `fds` order, in
/// the cgroups whose `cgroup.procs` files are `procs` (joined between fork
/// and exec, so every thread and allocation is inside), in a session of
/// its own (Ctrl-C on the caller's terminal must not reach it), THP off
/// for it unless `thp`, its output to `log` unless `console`.
pub(crate) fn spawn_qemu(
    args: &[String],
    fds: Vec<std::fs::File>,
    procs: &[std::fs::File],
    thp: bool,
    log: &Path,
    console: bool,
) -> Result<std::process::Child, HostError> {
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]).stdin(Stdio::null());
    if !console {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(log)
            .map_err(|e| HostError::io("opening the qemu log", e))?;
        cmd.stdout(log.try_clone().map_err(|e| HostError::io("qemu log", e))?)
            .stderr(log);
    }
    let procs_fds: Vec<i32> = procs.iter().map(|f| f.as_raw_fd()).collect();
    let raw: Vec<i32> = fds.into_iter().map(|f| f.into_raw_fd()).collect();
    let keep = raw.clone();
    // SAFETY: only write/dup2/fcntl/setsid/prctl between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // First, before the fds below are moved over 3, 4, ...
            cgroup::join_in_child(&procs_fds)?;
            libc::setsid();
            if !thp {
                memory::disable_thp()?;
            }
            // Move every fd above the target range first, then into place.
            let high: Vec<i32> = keep
                .iter()
                .map(|&fd| libc::fcntl(fd, libc::F_DUPFD, 100))
                .collect();
            for (k, &fd) in high.iter().enumerate() {
                if fd < 0 || libc::dup2(fd, 3 + k as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    for fd in raw {
        // SAFETY: these fds were ours; qemu holds its own copies now.
        unsafe { libc::close(fd) };
    }
    spawned.map_err(|e| HostError::io(format!("running {}", args[0]), e))
}

/// Each virtio NIC's virtqueue sizes as asked (qemu's default is 256) and
/// as the guest's driver reports them in READY; a size that did not take is
/// an error naming the interface. Pure.
pub fn virtqueues(
    cfg: &RouterConfig,
    ready: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let mut out = Vec::new();
    for ifc in &cfg.interfaces {
        let nic = match &ifc.host {
            Some(HostLink::Vfio { .. }) => continue, // a VF's rings are its own
            Some(
                HostLink::Tap { nic, .. }
                | HostLink::Bridge { nic, .. }
                | HostLink::Macvtap { nic, .. },
            ) => nic.clone(),
            _ => VirtioNic::default(),
        };
        let asked = (
            nic.rx_queue_size.unwrap_or(256),
            nic.tx_queue_size.unwrap_or(256),
        );
        let rings = ready["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["name"] == ifc.name.as_str())
            .map(|i| &i["rings"])
            .ok_or_else(|| format!("interface {} is not in the guest's READY", ifc.name))?;
        let (rx, tx) = (rings["rx"].as_u64(), rings["tx"].as_u64());
        let (Some(rx), Some(tx)) = (rx, tx) else {
            return Err(format!(
                "interface {}: the guest reported no ring sizes",
                ifc.name
            ));
        };
        for (what, want, got) in [
            ("rx_queue_size", asked.0, rx),
            ("tx_queue_size", asked.1, tx),
        ] {
            if want as u64 != got {
                return Err(format!(
                    "interface {}: {what} {want} was asked, the guest's virtio-net reports {got}",
                    ifc.name
                ));
            }
        }
        // Queue pairs: virtio-net uses one per vCPU at most.
        let queues_asked = nic.queues.unwrap_or(1);
        let queues = rings["queues"].as_u64();
        if let Some(q) = queues.filter(|&q| q != queues_asked as u64) {
            return Err(format!(
                "interface {}: queues {queues_asked} was asked, the guest's virtio-net uses {q} (it uses at most one queue pair per vCPU: give the VM as many CPUs)",
                ifc.name
            ));
        }
        out.push(serde_json::json!({
            "interface": ifc.name.as_str(),
            "rx_asked": asked.0, "rx": rx, "tx_asked": asked.1, "tx": tx,
            "queues_asked": queues_asked, "queues": queues,
        }));
    }
    Ok(serde_json::Value::Array(out))
}

/// The threads of qemu `pid` by class: vCPUs from QMP, vhost workers,
/// and the emulator (main) thread.
pub(crate) fn threads(pid: u32, qmp: &Path) -> Result<Vec<(Class, usize, u32)>, HostError> {
    let mut q =
        Qmp::connect(qmp, Duration::from_secs(5)).map_err(|e| HostError::Other(e.to_string()))?;
    let cpus = q
        .execute("query-cpus-fast", None)
        .map_err(|e| HostError::Other(e.to_string()))?;
    Ok(threads_of(pid, &cpus))
}

/// The threads of qemu `pid` by class, its vCPUs from QMP's
/// `query-cpus-fast` answer `cpus`.
pub(crate) fn threads_of(pid: u32, cpus: &serde_json::Value) -> Vec<(Class, usize, u32)> {
    let mut out: Vec<(Class, usize, u32)> = cpus
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["thread-id"].as_u64())
        .enumerate()
        .map(|(i, t)| (Class::Vcpu, i, t as u32))
        .collect();
    out.extend(
        sched::vhost_threads(pid)
            .into_iter()
            .enumerate()
            .map(|(i, t)| (Class::Vhost, i, t)),
    );
    out.push((Class::Emulator, 0, pid));
    out
}

/// Applies affinity and policy per thread class, then reads every thread
/// back from /proc and sched_getattr. A refusal, or a value that did not
/// stick, is an error naming the thread.
pub(crate) fn place(
    p: &Placement,
    pid: u32,
    qmp: &Path,
    cg: &serde_json::Value,
) -> Result<Vec<ThreadState>, HostError> {
    place_threads(p, pid, threads(pid, qmp)?, cg)
}

/// As [`place`], on threads already found.
pub(crate) fn place_threads(
    p: &Placement,
    pid: u32,
    ts: Vec<(Class, usize, u32)>,
    cg: &serde_json::Value,
) -> Result<Vec<ThreadState>, HostError> {
    for c in [Class::Vcpu, Class::Vhost, Class::Emulator] {
        let asked = p.affinity_of(c).is_some() || p.policy_of(c).is_some();
        if asked && !ts.iter().any(|(k, _, _)| *k == c) {
            return Err(HostError::Other(format!("{c:?} threads were asked for, but this VM has none (vhost is off without /dev/vhost-net)").to_lowercase()));
        }
    }
    for &(c, i, tid) in &ts {
        let what = format!("{c:?} {i} (tid {tid})").to_lowercase();
        if let Some(l) = p.affinity_of(c) {
            sched::set_affinity(tid, l)
                .map_err(|e| HostError::Other(format!("pinning {what} to CPUs {l}: {e}")))?;
        }
        if let Some(pol) = p.policy_of(c) {
            sched::set_policy(tid, pol).map_err(|e| {
                let rt = cg["files"]["cpu.rt_runtime_us"]["held"]
                    .as_str()
                    .unwrap_or("?");
                let hint = if pol.is_rt() && e.raw_os_error() == Some(libc::EPERM) {
                    format!(
                        " (RT group scheduling: the VM's cgroup {} has cpu.rt_runtime_us = {rt})",
                        cg["path"].as_str().unwrap_or("?")
                    )
                } else {
                    String::new()
                };
                HostError::Other(format!("setting {pol:?} on {what}: {e}{hint}"))
            })?;
        }
    }
    let mut out = Vec::new();
    for &(c, i, tid) in &ts {
        let what = format!("{c:?} {i} (tid {tid})").to_lowercase();
        let cpus = sched::affinity_of(pid, tid);
        let policy = sched::get_policy(tid)
            .map_err(|e| HostError::Other(format!("reading the policy of {what}: {e}")))?;
        if let Some(l) = p.affinity_of(c) {
            if cpus.parse::<tinyvr_config::CpuList>().ok().as_ref() != Some(l) {
                return Err(HostError::Other(format!(
                    "{what}: asked for CPUs {l}, the kernel reports {cpus}"
                )));
            }
        }
        if let Some(want) = p.policy_of(c) {
            if policy != want {
                return Err(HostError::Other(format!(
                    "{what}: asked for {want:?}, the kernel reports {policy:?}"
                )));
            }
        }
        out.push(ThreadState {
            class: c,
            index: i,
            tid,
            cpus,
            policy,
            asked: sched::Asked {
                cpus: p.affinity_of(c).map(|l| l.to_string()),
                policy: p.policy_of(c),
            },
        });
    }
    Ok(out)
}

/// Powers the VM off through QMP (the init handles the ACPI power button),
/// kills qemu only after `timeout` and says so, then removes everything.
pub fn down(name: &str, timeout: Duration) -> Result<Vec<String>, HostError> {
    tinyvr_host::lifecycle::down(name, "vm", |st| stop(st, timeout))
}

/// ACPI power-down through QMP, waiting up to `timeout` for qemu to exit
/// (the teardown kills it after that and says so).
fn stop(st: &State, timeout: Duration) -> Vec<String> {
    if let Some(d) = crate::libvirt_up::domain_of(st) {
        return crate::libvirt_up::stop(&d, timeout);
    }
    let name = &st.name;
    let mut notes = Vec::new();
    if let Some(pid) = st.owner_pid.filter(|&p| state::is_alive(p)) {
        let qmp = run_file(name, "qmp");
        match Qmp::connect(&qmp, Duration::from_secs(2))
            .and_then(|mut q| q.execute("system_powerdown", None))
        {
            Ok(_) => {}
            Err(e) => notes.push(format!("QMP system_powerdown failed: {e}")),
        }
        let end = Instant::now() + timeout;
        while state::is_alive(pid) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        if state::is_alive(pid) {
            notes.push(format!(
                "qemu {pid} still running {timeout:?} after system_powerdown: killed"
            ));
        } else {
            let console = std::fs::read_to_string(run_file(name, "console")).unwrap_or_default();
            notes.extend(
                console
                    .lines()
                    .filter(|l| {
                        l.contains("power button")
                            || l.contains("shutting down")
                            || l.contains("Power down")
                    })
                    .map(|l| l.trim().to_string()),
            );
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rx: Option<u32>) -> RouterConfig {
        let mut c = tinyvr_config::load(
            "name = \"v\"\n[[interface]]\nname = \"in0\"\n[[interface]]\nname = \"out0\"\n",
        )
        .unwrap();
        c.interfaces[0].host = Some(HostLink::Tap {
            name: None,
            netns: None,
            bridge: None,
            nic: VirtioNic {
                rx_queue_size: rx,
                ..Default::default()
            },
        });
        c
    }

    fn ready(rx: u64) -> serde_json::Value {
        serde_json::json!({"interfaces": [
            {"name": "in0", "rings": {"rx": rx, "tx": 256}},
            {"name": "out0", "rings": {"rx": 256, "tx": 256}},
        ]})
    }

    #[test]
    fn virtqueue_sizes_are_compared_with_the_guests_view() {
        let v = virtqueues(&cfg(Some(1024)), &ready(1024)).unwrap();
        assert_eq!(v[0]["rx"], 1024);
        assert_eq!(v[1]["rx_asked"], 256, "qemu's default when none is asked");
        let e = virtqueues(&cfg(Some(1024)), &ready(256)).unwrap_err();
        assert_eq!(
            e,
            "interface in0: rx_queue_size 1024 was asked, the guest's virtio-net reports 256"
        );
        let none = serde_json::json!({"interfaces": [{"name": "in0"}, {"name": "out0"}]});
        assert!(virtqueues(&cfg(None), &none)
            .unwrap_err()
            .contains("reported no ring sizes"));
    }

    #[test]
    fn queue_pairs_are_compared_with_the_guests_view() {
        let mut c = cfg(None);
        if let Some(HostLink::Tap { nic, .. }) = &mut c.interfaces[0].host {
            nic.queues = Some(2);
        }
        let guest = |q: u64| {
            serde_json::json!({"interfaces": [
                {"name": "in0", "rings": {"rx": 256, "tx": 256, "queues": q}},
                {"name": "out0", "rings": {"rx": 256, "tx": 256, "queues": 1}},
            ]})
        };
        let v = virtqueues(&c, &guest(2)).unwrap();
        assert_eq!(
            (v[0]["queues_asked"].as_u64(), v[0]["queues"].as_u64()),
            (Some(2), Some(2))
        );
        let e = virtqueues(&c, &guest(1)).unwrap_err();
        assert!(
            e.starts_with("interface in0: queues 2 was asked, the guest's virtio-net uses 1"),
            "{e}"
        );
    }
}
