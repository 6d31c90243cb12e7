//! `tinyvr lxc up|down`: start the image's rootfs under lxc-start with the
//! router config inside, wait for TINYVR-READY on its console, stop it with
//! lxc-stop (SIGPWR, which the init treats as a clean shutdown).

use crate::config::{self, Resources};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tinyvr_host::console::tail;
use tinyvr_host::state::{Resource, State};
use tinyvr_host::{links, netns, topology, HostError};

pub const DEFAULT_LXCPATH: &str = "/var/lib/tinyvr/lxc";

pub struct Up<'a> {
    /// The router config, validated (read by the CLI, built by the bench).
    pub config: &'a tinyvr_config::RouterConfig,
    /// Instance name (default: the router's name); every host-side name
    /// (container, topology namespaces, host link ends) derives from it.
    pub name: Option<String>,
    pub rootfs: PathBuf,
    pub topology: bool,
    /// With the topology: veth or macvlan.
    pub datapath: topology::Datapath,
    pub resources: Resources,
    pub lxcpath: PathBuf,
    pub timeout: Duration,
}

use tinyvr_host::cgroup::{self as cg, online_cpus};

/// The config `up` would write, for `tinyvr lxc config`.
pub fn render(o: &Up) -> Result<String, HostError> {
    let (cfg, _) = load(o)?;
    let dir = o.lxcpath.join(&cfg.name);
    Ok(config::generate(
        &cfg,
        &dir.display().to_string(),
        &o.resources,
        cg::version(),
        &hook()?,
    ))
}

/// The tinyvr binary LXC runs as the veths' up hook (through a shell: the
/// path must be one plain word).
fn hook() -> Result<String, HostError> {
    let me = std::env::current_exe().map_err(|e| HostError::io("finding the tinyvr binary", e))?;
    let s = me.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-_.+".contains(c))
    {
        Ok(s)
    } else {
        Err(HostError::Other(format!(
            "the tinyvr binary's path {s:?} has characters LXC's hook command cannot carry: run it from a plain path"
        )))
    }
}

/// LXC's `script.up` for a veth (`tinyvr lxc net-up`): moves the host end
/// LXC just made (LXC_NET_PEER) into `netns`, gives it `mac`, and brings it
/// up there, before the container's init runs.
pub fn net_up(
    netns: Option<&str>,
    mac: Option<&tinyvr_config::MacAddr>,
    last_arg: Option<&str>,
) -> Result<(), HostError> {
    // LXC gives the host end as LXC_NET_PEER (hook version 1) and as the
    // last argument.
    let dev = std::env::var("LXC_NET_PEER")
        .ok()
        .or(last_arg.map(String::from))
        .ok_or_else(|| {
            HostError::Other(
                "no LXC_NET_PEER and no device argument: this runs as LXC's network up hook".into(),
            )
        })?;
    let mut nl = netns::socket(None)?;
    if let Some(ns) = netns {
        let fd = netns::open(ns)?;
        links::move_to(&mut nl, &dev, fd.as_raw_fd(), None)?;
        nl = netns::socket(Some(ns))?;
    }
    if let Some(m) = mac {
        links::set_mac(&mut nl, &dev, m)?;
    }
    links::set_up(&mut nl, &dev)
}

/// `--lxcpath` becomes part of every container path: absolute and plain.
pub fn check_lxcpath(p: &Path) -> Result<(), HostError> {
    use std::path::Component;
    if !p.is_absolute()
        || p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(HostError::Other(format!(
            "--lxcpath {}: expected an absolute path without '.' or '..' components",
            p.display()
        )));
    }
    Ok(())
}

fn load(o: &Up) -> Result<(tinyvr_config::RouterConfig, Option<topology::Topology>), HostError> {
    check_lxcpath(&o.lxcpath)?;
    let loaded = topology::resolve_wired(o.config, o.name.as_deref(), o.topology, o.datapath)?;
    tinyvr_host::cgroup::check(&o.resources, &online_cpus()).map_err(HostError::Other)?;
    Ok(loaded)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        std::fs::set_permissions(to, meta.permissions())?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}

/// The console log's lines so far.
fn console(path: &Path) -> String {
    let mut s = String::new();
    let _ = std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut s));
    s
}

pub fn up(o: &Up) -> Result<serde_json::Value, HostError> {
    if !tinyvr_host::console::have("lxc-start") {
        return Err(HostError::Other(
            "lxc-start not found: install Debian's lxc package (scripts/setup does)".into(),
        ));
    }
    let (cfg, topo) = load(o)?;
    if !o.rootfs.join("init").is_file() {
        return Err(HostError::Other(format!(
            "rootfs {} has no /init: build the image first (tinyvr image build) or pass --rootfs",
            o.rootfs.display()
        )));
    }
    // LXC would fail on a missing phys device with a less clear message.
    let mut nl = netns::socket(None)?;
    for (i, ifc) in cfg.interfaces.iter().enumerate() {
        if let Some(tinyvr_config::HostLink::Phys { device }) = &ifc.host {
            links::must_index(
                &mut nl,
                device.as_str(),
                &format!("interface[{i}] ({}) host phys device", ifc.name),
            )?;
        }
    }
    tinyvr_host::lifecycle::up(&cfg.name.clone(), "lxc", |state| {
        start(o, &cfg, topo.as_ref(), state)
    })
}

/// What LXC itself will make for the container must not exist yet: its
/// cgroups and the host ends of its veths (LXC removes those itself, so
/// tinyvr must know they are the container's).
fn check_free(cfg: &tinyvr_config::RouterConfig) -> Result<Vec<String>, HostError> {
    let name = &cfg.name;
    let cgroups = vec![format!("lxc.payload.{name}"), format!("lxc.monitor.{name}")];
    if let Some(p) = tinyvr_host::state::lxc_cgroup_paths(&cgroups).first() {
        return Err(HostError::Other(format!(
            "cgroup {} exists: another container named {name} runs (perhaps in another lxcpath); left alone, pick another --name",
            p.display()
        )));
    }
    let mut nl = netns::socket(None)?;
    for ifc in &cfg.interfaces {
        if matches!(ifc.host, None | Some(tinyvr_config::HostLink::Veth { .. })) {
            links::must_be_free(&mut nl, &ifc.host_name(name), None)?;
        }
        // A namespace of the user's that the up hook will move the end into.
        if let Some(tinyvr_config::HostLink::Veth {
            netns: Some(ns), ..
        }) = &ifc.host
        {
            // (The topology's own namespaces are made later, by up.)
            let topology_ns = [format!("{name}-src"), format!("{name}-snk")];
            if netns::exists(ns) {
                let mut tnl = netns::socket(Some(ns))?;
                links::must_be_free(&mut tnl, &ifc.host_name(name), Some(ns))?;
            } else if !topology_ns.contains(ns) {
                return Err(HostError::Other(format!(
                    "interface {}: host.netns {ns}: no such network namespace (ip netns add {ns})",
                    ifc.name
                )));
            }
        }
    }
    Ok(cgroups)
}

fn start(
    o: &Up,
    cfg: &tinyvr_config::RouterConfig,
    topo: Option<&topology::Topology>,
    state: &mut State,
) -> Result<serde_json::Value, HostError> {
    let name = &cfg.name;
    let lxc_cgroups = check_free(cfg)?;
    if let Some(t) = topo {
        topology::create_namespaces(t, state)?;
    }
    let dir = o.lxcpath.join(name);
    std::fs::create_dir_all(&o.lxcpath)
        .map_err(|e| HostError::io(format!("creating {}", o.lxcpath.display()), e))?;
    if dir.exists() {
        return Err(HostError::Other(format!(
            "{} exists: a container named {name} is there already and tinyvr did not make it; left alone, pick another --name or --lxcpath",
            dir.display()
        )));
    }
    let e = state.intend(Resource::Container {
        name: name.clone(),
        lxcpath: o.lxcpath.clone(),
    })?;
    std::fs::create_dir(&dir).map_err(|e| {
        HostError::io(
            format!("creating {} (a container of that name?)", dir.display()),
            e,
        )
    })?;
    state.made(e, tinyvr_host::state::file_id(&dir)?)?;
    let rootfs = dir.join("rootfs");
    copy_tree(&o.rootfs, &rootfs).map_err(|e| {
        HostError::io(
            format!("copying {} to {}", o.rootfs.display(), rootfs.display()),
            e,
        )
    })?;
    let etc = rootfs.join("etc/tinyvr");
    std::fs::create_dir_all(&etc)
        .map_err(|e| HostError::io(format!("creating {}", etc.display()), e))?;
    std::fs::write(etc.join("router.toml"), cfg.guest_toml())
        .map_err(|e| HostError::io("writing router.toml", e))?;
    let text = config::generate(
        cfg,
        &dir.display().to_string(),
        &o.resources,
        cg::version(),
        &hook()?,
    );
    std::fs::write(dir.join("config"), text)
        .map_err(|e| HostError::io("writing the LXC config", e))?;

    let log = dir.join("console.log");
    let start_log = dir.join("lxc-start.out");
    let out = std::fs::File::create(&start_log)
        .map_err(|e| HostError::io(format!("creating {}", start_log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| HostError::io("console log", e))?;
    let mut cmd = Command::new("lxc-start");
    cmd.args(["-F", "-n", name, "-P"])
        .arg(&o.lxcpath)
        .arg("-o")
        .arg(dir.join("lxc.log"))
        .args(["-l", "INFO"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // Its own session: Ctrl-C on the caller's terminal must not reach it.
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    // What LXC normally removes itself, recorded for when it cannot (its
    // monitor was killed): the container's cgroups, checked absent above.
    state.add_made(
        Resource::LxcCgroups {
            dir_names: lxc_cgroups,
        },
        1,
    )?;
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| HostError::io("running lxc-start", e))?;
    state.owner_pid = Some(child.id());
    state.add_process(child.id())?;

    let lxc_log = dir.join("lxc.log");
    let ready = tinyvr_host::console::wait_ready(
        &log,
        &mut child,
        o.timeout,
        &format!("container {name}"),
        &|st| {
            let text = console(&lxc_log) + &console(&start_log);
            format!(
                "lxc-start exited ({st}) before READY; lxc log:\n{}",
                tail(&text, 10)
            )
        },
    )?;
    let boot_ms = t0.elapsed().as_secs_f64() * 1000.0;
    // The container's PID 1, so that a teardown can still end it when the
    // LXC monitor is gone.
    let pid = init_pid(name, &o.lxcpath);
    if let Some(p) = pid {
        state.add_process(p)?;
    }
    let mut ready = ready;
    if let Some(t) = topo {
        // The host ends are in the source and sink namespaces already (LXC's
        // up hook put them there before the init ran): only the ends'
        // addresses, routes and neighbours are left, none of which touches
        // the router's carrier.
        topology::finish(t, &mut ready)?;
    }
    // Without the init's pid nothing below can be checked: not up.
    let p = pid.ok_or_else(|| {
        HostError::Other(format!(
            "container {name}: lxc-info gives no pid for its init: its cgroup and kernel state cannot be read back"
        ))
    })?;
    // The cgroup LXC made from the resource settings: the container's init
    // exactly in it, every value as asked.
    {
        let cg = cg::made_by_other(&format!("lxc.payload.{name}"), &o.resources);
        ready["cgroup"] = cg::verify(&cg, p)?;
    }
    // With everything in place: the container's kernel state is what READY says.
    {
        let ns = std::fs::File::open(format!("/proc/{p}/ns/net"))
            .map_err(|e| HostError::io(format!("opening the network namespace of {p}"), e))?;
        let held = tinyvr_host::verify::check(ns, cfg, &ready)?;
        ready["held"] = serde_json::to_value(held).expect("counts serialize");
    }
    ready["container"] = name.clone().into();
    ready["lxcpath"] = o.lxcpath.display().to_string().into();
    ready["init_pid"] = pid.map_or(serde_json::Value::Null, Into::into);
    ready["start_to_ready_ms"] = boot_ms.round().into();
    Ok(ready)
}

/// The host pid of the container's PID 1, from lxc-info.
pub fn init_pid(name: &str, lxcpath: &Path) -> Option<u32> {
    let o = Command::new("lxc-info")
        .args(["-n", name, "-p", "-H", "-P"])
        .arg(lxcpath)
        .output()
        .ok()?;
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

/// Whether CRIU can checkpoint on this host: `criu check`, its first
/// error as the reason when it cannot.
pub fn criu_ready() -> Result<(), String> {
    if !tinyvr_host::console::have("criu") {
        return Err("criu not found (Debian's criu; scripts/setup installs it)".into());
    }
    let o = Command::new("criu")
        .arg("check")
        .output()
        .map_err(|e| format!("running criu check: {e}"))?;
    if o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("Error") {
        return Ok(());
    }
    let text =
        String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") && !l.contains("exited, status"))
        .map(str::trim)
        .take(3)
        .collect();
    Err(format!(
        "criu check fails on this host: {}",
        if errors.is_empty() {
            "no reason given".to_string()
        } else {
            errors.join("; ")
        }
    ))
}

/// Live migration of a container router (CRIU checkpoint and restore):
/// checks the router, then CRIU; `Ok(Err(why))` is a skip.
pub fn migrate_local(name: &str, lxcpath: &Path) -> Result<Result<(), String>, HostError> {
    check_lxcpath(lxcpath)?;
    let _s = tinyvr_host::state::State::load(name)?.of_platform("lxc")?;
    if let Err(why) = criu_ready() {
        return Ok(Err(why));
    }
    Err(HostError::Other(format!(
        "router {name}: criu works on this host, but tinyvr's container migration (lxc-checkpoint, restore, the router's links re-made) is not built yet: it could not be tried where it was written, whose kernel criu cannot checkpoint on"
    )))
}

/// Freezes a container tinyvr runs (`frozen`; lxc-freeze, the cgroup
/// freezer) or thaws it (lxc-unfreeze), and reads its state back from
/// lxc-info: a state other than the one asked is an error naming both.
pub fn set_frozen(name: &str, lxcpath: &Path, frozen: bool) -> Result<(), HostError> {
    check_lxcpath(lxcpath)?;
    // Held (locked) while it acts: no `down` in between; and only the
    // container its record says tinyvr made, in that directory.
    let s = tinyvr_host::state::State::load(name)?.of_platform("lxc")?;
    let ours = s.resources.iter().any(|e| {
        e.id.is_some()
            && matches!(&e.what, tinyvr_host::state::Resource::Container { name: n, lxcpath: p }
                if n == name && p == lxcpath)
    });
    if !ours {
        return Err(HostError::Other(format!(
            "router {name}: no container of tinyvr's in {}",
            lxcpath.display()
        )));
    }
    let tool = if frozen { "lxc-freeze" } else { "lxc-unfreeze" };
    let o = Command::new(tool)
        .args(["-n", name, "-P"])
        .arg(lxcpath)
        .output()
        .map_err(|e| HostError::io(format!("running {tool}"), e))?;
    if !o.status.success() {
        return Err(HostError::Other(format!(
            "{tool} {name}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    let want = if frozen { "FROZEN" } else { "RUNNING" };
    let o = Command::new("lxc-info")
        .args(["-n", name, "-s", "-H", "-P"])
        .arg(lxcpath)
        .output()
        .map_err(|e| HostError::io("running lxc-info", e))?;
    let held = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if held != want {
        return Err(HostError::Other(format!(
            "container {name}: {tool} asked {want}, lxc-info says {held:?}"
        )));
    }
    Ok(())
}

/// Stops the container (SIGPWR; SIGKILL after `timeout`), shows how its
/// init ended, and removes everything `up` created.
pub fn down(name: &str, lxcpath: &Path, timeout: Duration) -> Result<Vec<String>, HostError> {
    check_lxcpath(lxcpath)?;
    tinyvr_host::lifecycle::down(name, "lxc", |state| stop(state, lxcpath, timeout))
}

/// lxc-stop for the container this router's record says tinyvr made (its
/// directory, by inode, in the lxcpath `up` used), and how its init ended.
fn stop(state: &State, lxcpath: &Path, timeout: Duration) -> Vec<String> {
    let name = &state.name;
    let Some(lxcpath) = state.resources.iter().find_map(|e| match &e.what {
        Resource::Container { name: n, lxcpath }
            if n == name
                && e.id.is_some()
                && tinyvr_host::state::file_id(&lxcpath.join(name)).ok() == e.id =>
        {
            Some(lxcpath.clone())
        }
        _ => None,
    }) else {
        return vec![format!(
            "no container tinyvr made for {name} (looked in the record, not only {})",
            lxcpath.display()
        )];
    };
    let dir = lxcpath.join(name);
    let mut notes = Vec::new();
    match Command::new("lxc-stop")
        .args([
            "-n",
            name,
            "-t",
            &timeout.as_secs().max(1).to_string(),
            "-P",
        ])
        .arg(&lxcpath)
        .output()
    {
        Ok(st) if !st.status.success() => notes.push(format!(
            "lxc-stop: {}",
            String::from_utf8_lossy(&st.stderr).trim()
        )),
        Ok(_) => {}
        Err(e) => notes.push(format!("running lxc-stop: {e}")),
    }
    // lxc-start -F returns once the container is down.
    if let Some(pid) = state.owner_pid {
        let end = Instant::now() + timeout;
        while tinyvr_host::state::is_alive(pid) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let text = console(&dir.join("console.log"));
    notes.extend(
        text.lines()
            .filter(|l| {
                l.contains("received") || l.contains("shutting down") || l.contains("exiting")
            })
            .map(String::from),
    );
    notes
}
