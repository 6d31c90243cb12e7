//! Local live migration of a VM router: `tinyvr vm migrate NAME --local`.
//!
//! The destination is a second qemu, an instance of its own (`migNNNNN`,
//! its own record, QMP socket and console) started from the source's
//! command line as the kernel holds it (/proc/<pid>/cmdline) with
//! `-incoming`, in the router's cgroup. Each of the source's NICs must be a
//! macvtap (the `macvtap` datapath, or `[interface.host] kind = "macvtap"`):
//! the destination gets a sibling macvtap on the same lower with the same
//! MAC, kept down while the source's is up (a lower takes one up macvtap
//! per MAC), and they are swapped the moment QMP reports the migration
//! completed. The sink counts on the lower's peer, so its counters run on
//! across the switch. The VM's thread placement and scheduling are read
//! from the source's threads and applied to the destination's, read back;
//! then the source is told to quit and the destination takes the router's
//! name and record. A migration that fails or times out leaves the source
//! running (resumed if it was paused) and removes every destination object.

use crate::platform::{place, run_file, spawn_qemu, threads};
use crate::qmp::Qmp;
use crate::sched::{self, Placement};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tinyvr_host::state::{self, Resource, State};
use tinyvr_host::{links, netns, HostError};

pub struct Migrate {
    pub name: String,
    /// The longest pause qemu may plan for the final copy (QMP
    /// `downtime-limit`), ms.
    pub downtime_limit_ms: u64,
    /// Migration bandwidth cap (QMP `max-bandwidth`), MB/s; None: qemu's.
    pub bandwidth_mbps: Option<u64>,
    /// Longest the whole migration may take before it is cancelled.
    pub timeout: Duration,
    /// Post-copy: the destination runs as soon as the device state is
    /// over and pulls the rest of the memory as it faults on it.
    pub postcopy: bool,
}

/// A `-netdev tap,...` of the source: its id and the fd it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct TapNetdev {
    pub id: String,
    pub fd: i32,
    pub vhost: bool,
}

/// The tap netdevs of a qemu command line, in order. Pure.
pub fn tap_netdevs(argv: &[String]) -> Result<Vec<TapNetdev>, String> {
    let mut out = Vec::new();
    for w in argv.windows(2).filter(|w| w[0] == "-netdev") {
        let Some(opts) = w[1].strip_prefix("tap,") else {
            return Err(format!("netdev {:?}: only tap netdevs migrate here", w[1]));
        };
        let kv = |k: &str| {
            opts.split(',')
                .find_map(|p| p.strip_prefix(&format!("{k}=")))
                .map(String::from)
        };
        let id = kv("id").ok_or(format!("netdev {:?} has no id", w[1]))?;
        if kv("fds").is_some() {
            return Err(format!(
                "netdev {id}: several queues (fds=): a multi-queue NIC does not migrate here"
            ));
        }
        let fd = kv("fd")
            .and_then(|f| f.parse().ok())
            .ok_or(format!("netdev {id}: no fd="))?;
        out.push(TapNetdev {
            id,
            fd,
            vhost: kv("vhost").as_deref() == Some("on"),
        });
    }
    Ok(out)
}

/// The destination's command line: the source's, its run files renamed to
/// the destination's (by the instance name the source was started under:
/// a source that was itself a destination runs under that one's), waiting
/// for the incoming stream. Pure.
pub fn dest_argv(argv: &[String], dest: &str) -> Vec<String> {
    let dir = format!("{}/", state::DIR);
    // The instance the source's files are named after, from its QMP socket.
    let started_as = argv
        .iter()
        .find_map(|a| {
            let p = a.split(',').find_map(|kv| kv.strip_prefix("path="))?;
            p.strip_prefix(&dir)?.strip_suffix(".qmp").map(String::from)
        })
        .unwrap_or_default();
    let (from, to) = (format!("{dir}{started_as}."), format!("{dir}{dest}."));
    let mut out = Vec::new();
    let mut words = argv.iter();
    while let Some(a) = words.next() {
        if a == "-incoming" {
            words.next();
            continue;
        }
        out.push(if started_as.is_empty() {
            a.clone()
        } else {
            a.replace(&from, &to)
        });
    }
    out.extend(["-incoming".to_string(), "defer".to_string()]);
    out
}

/// What QMP's `query-migrate` reports of a finished migration. Pure.
pub fn figures(q: &Value) -> Value {
    let ram = &q["ram"];
    json!({
        "status": q["status"],
        "total_time_ms": q["total-time"],
        "downtime_ms": q["downtime"],
        "setup_time_ms": q["setup-time"],
        "ram_transferred_bytes": ram["transferred"],
        "ram_total_bytes": ram["total"],
        "dirty_pages_rate": ram["dirty-pages-rate"],
        "iterations": ram["dirty-sync-count"],
        "mbps": ram["mbps"],
        "postcopy_requests": ram["postcopy-requests"],
    })
}

/// The largest `--bandwidth`, MB/s (QMP takes bytes per second).
pub const MAX_BANDWIDTH_MBPS: u64 = 1 << 20;

fn other(e: impl std::fmt::Display) -> HostError {
    HostError::Other(e.to_string())
}

/// The instance name of a migration destination, until it takes the
/// router's: `mig` and 5 digits (router names have at most 8 characters;
/// a name already taken is an error, never a reason to touch it). A new
/// one for every migration of a process: a qemu that was a destination
/// unlinks the QMP socket and pid file it made, by their old names, when
/// it quits as a later migration's source.
pub fn dest_name() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("mig{:05}", (std::process::id() as u64 + 7919 * n) % 100_000)
}

/// The router being migrated: its locked record, its qemu, that qemu's
/// command line and NICs as the kernel holds them.
struct Source {
    state: State,
    pid: u32,
    argv: Vec<String>,
    nics: Vec<(TapNetdev, links::MacvtapFacts)>,
}

/// Checks everything that can be checked before anything changes:
/// the arguments, the router, its qemu, its NICs.
fn inspect(o: &Migrate, local: bool) -> Result<Source, HostError> {
    if o.downtime_limit_ms == 0 {
        return Err(other(
            "--downtime-limit 0: expected at least 1 ms (the longest pause qemu may plan)",
        ));
    }
    if o.bandwidth_mbps
        .is_some_and(|b| b == 0 || b > MAX_BANDWIDTH_MBPS)
    {
        return Err(other(format!(
            "--bandwidth {}: expected 1 to {MAX_BANDWIDTH_MBPS} MB/s",
            o.bandwidth_mbps.unwrap_or(0)
        )));
    }
    if o.timeout.is_zero() {
        return Err(other("--timeout 0: expected at least 1 s"));
    }
    let state = State::load(&o.name)?.of_platform("vm")?;
    if state.stale() {
        return Err(other(format!(
            "router {}: its record is stale (being built or torn down): tinyvr gc",
            o.name
        )));
    }
    // The qemu this record started, by pid and start time.
    let pid = state
        .owner_pid
        .filter(|&p| {
            state.resources.iter().any(|e| {
                matches!(e.what, Resource::Process { pid } if pid == p)
                    && e.id.is_some()
                    && e.id == state::starttime(p)
            }) && state::is_alive(p)
        })
        .ok_or_else(|| other(format!("router {}: its qemu is not running", o.name)))?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map_err(|e| HostError::io(format!("reading qemu {pid}'s command line"), e))?;
    let argv: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    if argv
        .windows(2)
        .any(|w| w[0] == "-device" && w[1].starts_with("vfio-pci"))
    {
        return Err(other(format!(
            "router {}: a VF passed through (vfio) does not migrate",
            o.name
        )));
    }
    let netdevs = tap_netdevs(&argv).map_err(|e| other(format!("router {}: {e}", o.name)))?;
    if netdevs.is_empty() {
        return Err(other(format!(
            "router {}: its qemu has no tap NICs",
            o.name
        )));
    }
    // To another host, the destination brings NICs of its own.
    let netdevs = if local { netdevs } else { Vec::new() };
    let mut nl = netns::socket(None)?;
    let mut nics = Vec::new();
    // vhost=on migrates as it is: the destination's qemu opens
    // /dev/vhost-net itself (not exercised here: no vhost-net).
    for n in netdevs {
        let link = std::fs::read_link(format!("/proc/{pid}/fd/{}", n.fd))
            .map_err(|e| HostError::io(format!("netdev {}: qemu's fd {}", n.id, n.fd), e))?;
        let index = link
            .to_str()
            .and_then(|l| l.strip_prefix("/dev/tap"))
            .and_then(|i| i.parse::<u32>().ok())
            .ok_or_else(|| {
                other(format!(
                    "router {}: netdev {} is a tap ({}), not a macvtap: the destination would have nowhere to join (use datapath macvtap)",
                    o.name,
                    n.id,
                    link.display()
                ))
            })?;
        nics.push((n, links::macvtap_facts(&mut nl, index)?));
    }
    Ok(Source {
        state,
        pid,
        argv,
        nics,
    })
}

/// The source's placement and scheduling per thread class, as the kernel
/// holds them now.
fn held_placement(pid: u32, qmp: &Path) -> Result<Placement, HostError> {
    let mut p = Placement::default();
    for (c, i, tid) in threads(pid, qmp)? {
        if i != 0 {
            continue; // one thread per class says the class's settings
        }
        let cpus: tinyvr_config::CpuList = sched::affinity_of(pid, tid)
            .parse()
            .map_err(|e| other(format!("{c:?} thread {tid}: {e}")))?;
        p.affinity.push((c, cpus));
        let pol = sched::get_policy(tid).map_err(|e| other(format!("{c:?} thread {tid}: {e}")))?;
        p.sched.push((c, pol));
    }
    Ok(p)
}

/// The `cgroup.procs` files of the cgroups the router's record says
/// tinyvr made for it (the source qemu is in them): what the destination
/// joins between fork and exec.
fn cgroup_procs_of(router: &State) -> Result<Vec<std::fs::File>, HostError> {
    router
        .resources
        .iter()
        .filter(|e| e.id.is_some())
        .filter_map(|e| match &e.what {
            Resource::Cgroup { path } => Some(path.join("cgroup.procs")),
            _ => None,
        })
        .map(|p| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .map_err(|e| HostError::io(format!("opening {}", p.display()), e))
        })
        .collect()
}

/// The tinyvr cgroups of a process, as /proc/<pid>/cgroup lists them.
fn tinyvr_cgroups(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("tinyvr-"))
        .map(String::from)
        .collect()
}

fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The link switch: per NIC, the source's macvtap goes down and is renamed
/// `<dest>-o<k>`, the destination's takes its name and goes up (a lower
/// takes one up macvtap per MAC; a link is renamed only while down), each
/// step recorded in the record that owns the link right after it.
struct Switch {
    /// The source's macvtaps, by their names now.
    src: Vec<String>,
    /// The destination's, by their names now.
    dest: Vec<String>,
    /// NICs switched so far.
    done: usize,
    dest_name: String,
}

impl Switch {
    fn forward(
        &mut self,
        nl: &mut tinyvr_init::netlink::Socket,
        router: &mut State,
        st: &mut State,
    ) -> Result<(), HostError> {
        for k in self.done..self.src.len() {
            let (s, d) = (self.src[k].clone(), self.dest[k].clone());
            let old = format!("{}-o{k}", self.dest_name);
            links::must_be_free(nl, &old, None)?;
            links::set_state(nl, &s, false)?;
            links::rename(nl, &s, &old)?;
            self.src[k] = old.clone();
            router.renamed_link(&s, &old)?;
            links::rename(nl, &d, &s)?;
            self.dest[k] = s.clone();
            st.renamed_link(&d, &s)?;
            self.done = k + 1;
            links::set_state(nl, &s, true)?;
        }
        Ok(())
    }

    /// Undoes what `forward` did, best effort (a failure here leaves each
    /// link named as its record says).
    fn back(&mut self, nl: &mut tinyvr_init::netlink::Socket, router: &mut State, st: &mut State) {
        for k in (0..self.done).rev() {
            let (old, name) = (self.src[k].clone(), self.dest[k].clone());
            let was = format!("{}-{k}", self.dest_name);
            let _ = links::set_state(nl, &name, false);
            if links::rename(nl, &name, &was).is_ok() && st.renamed_link(&name, &was).is_ok() {
                self.dest[k] = was;
                if links::rename(nl, &old, &name).is_ok()
                    && router.renamed_link(&old, &name).is_ok()
                {
                    self.src[k] = name.clone();
                }
            }
            let _ = links::set_state(nl, &self.src[k], true);
        }
        self.done = 0;
    }

    /// The router's links after the switch, read back: each up, by name.
    fn held(&self, nl: &mut tinyvr_init::netlink::Socket) -> Result<Value, HostError> {
        let mut out = Vec::new();
        for (s, d) in self.src.iter().zip(&self.dest) {
            let up = links::is_up(nl, d)?;
            let src_up = links::is_up(nl, s)?;
            if !up || src_up {
                return Err(other(format!(
                    "after the switch {d} is {} and the source's {s} is {}",
                    if up { "up" } else { "down" },
                    if src_up { "up" } else { "down" }
                )));
            }
            out.push(json!({ "dev": d, "up": up, "source_dev": s, "source_up": src_up }));
        }
        Ok(Value::Array(out))
    }
}

fn qmp(path: &Path) -> Result<Qmp, HostError> {
    Qmp::connect(path, Duration::from_secs(10)).map_err(other)
}

/// Migrates router `o.name` to a new qemu on this host; returns what was
/// measured and read back.
pub fn local(o: &Migrate) -> Result<Value, HostError> {
    let Source {
        state: mut router,
        pid,
        argv,
        nics,
    } = inspect(o, true)?;
    let name = o.name.clone();
    let dest = dest_name();
    state::check_name("destination", &dest)?;
    let src_qmp = run_file(&name, "qmp");
    let placement = held_placement(pid, &src_qmp)?;
    let thp_off = std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["THP_enabled:", "0"])
    });
    let mut src_taps = Vec::new();
    let t0 = Instant::now();
    let mut result = json!({});
    let outcome = tinyvr_host::lifecycle::up_with(&dest, "vm", false, |st| {
        let mut nl = netns::socket(None)?;
        // Sibling macvtaps, down, with the source's MACs and queue lengths.
        let mut fds = Vec::new();
        let mut dest_taps = Vec::new();
        for (k, (_, f)) in nics.iter().enumerate() {
            let m = format!("{dest}-{k}");
            links::must_be_free(&mut nl, &m, None)?;
            let e = st.intend(Resource::Link {
                name: m.clone(),
                netns: None,
            })?;
            let index = links::add_macvtap(&mut nl, &m, &f.lower, f.mode, Some(&f.mac))?;
            st.made(e, index as u64)?;
            let held = links::mac_of(&mut nl, &m)?;
            if held != f.mac {
                return Err(other(format!(
                    "macvtap {m}: MAC {} was asked, the kernel holds {held}",
                    f.mac
                )));
            }
            links::quiet_ipv6(&m)?;
            links::set_txqueuelen(&mut nl, &m, f.txqueuelen)?;
            let dev = format!("/dev/tap{index}");
            fds.push(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&dev)
                    .map_err(|e| HostError::io(format!("opening {dev} (macvtap {m})"), e))?,
            );
            dest_taps.push(m);
            src_taps.push(f.name.clone());
        }
        // Its own run files; the config copied (the fw_cfg file must match).
        let file = |ext: &str| run_file(&dest, ext);
        let toml = std::fs::read_to_string(run_file(&name, "toml"))
            .map_err(|e| HostError::io("reading the router's config file", e))?;
        st.write_new(&file("toml"), &toml)?;
        st.write_new(&file("qemu.log"), "")?;
        let made_by_qemu: Vec<(usize, PathBuf)> = ["console", "qmp", "pid", "mig"]
            .iter()
            .map(|e| Ok((st.intend(Resource::File { path: file(e) })?, file(e))))
            .collect::<Result<_, HostError>>()?;
        let args = dest_argv(&argv, &dest);
        let procs = cgroup_procs_of(&router)?;
        let mut child = spawn_qemu(&args, fds, &procs, !thp_off, &file("qemu.log"), false)?;
        st.owner_pid = Some(child.id());
        st.add_process(child.id())?;
        // In the router's cgroups, read back.
        let cgroups = tinyvr_cgroups(child.id());
        if cgroups != tinyvr_cgroups(pid) {
            return Err(other(format!(
                "router {name}: the destination's cgroups {cgroups:?} are not the source's {:?}",
                tinyvr_cgroups(pid)
            )));
        }
        let dst_qmp = file("qmp");
        let mut dq = qmp(&dst_qmp)?;
        for (k, f) in &made_by_qemu {
            if let Ok(id) = state::file_id(f) {
                st.made(*k, id)?;
            }
        }
        let uri = format!("unix:{}", file("mig").display());
        // Set either way: a source that was a post-copy destination keeps
        // the capability on.
        let caps =
            json!({ "capabilities": [{ "capability": "postcopy-ram", "state": o.postcopy }] });
        dq.execute("migrate-set-capabilities", Some(caps.clone()))
            .map_err(|e| other(format!("post-copy {} at the destination: {e}", o.postcopy)))?;
        dq.execute("migrate-incoming", Some(json!({ "uri": uri })))
            .map_err(other)?;
        if let Ok(id) = state::file_id(&file("mig")) {
            st.made(made_by_qemu[3].0, id)?;
        }
        let mut sq = qmp(&src_qmp)?;
        let (started, wall_migrate_ns) = start_migration(&mut sq, o, &uri)?;
        let mut sw = Switch {
            src: src_taps.clone(),
            dest: dest_taps,
            done: 0,
            dest_name: dest.clone(),
        };
        let mut switch_ms = None;
        // Until qemu reports the migration over; in post-copy the
        // destination runs (and needs its links) from postcopy-active on.
        let polled = loop {
            let q = sq.execute("query-migrate", None).map_err(other)?;
            let status = q["status"].as_str().unwrap_or("");
            let ready = status == "completed" || (o.postcopy && status == "postcopy-active");
            if ready && switch_ms.is_none() {
                let t = Instant::now();
                if let Err(e) = sw.forward(&mut nl, &mut router, st) {
                    break Err(e);
                }
                switch_ms = Some(t.elapsed().as_secs_f64() * 1e3);
            }
            if status == "completed" {
                break Ok(q);
            }
            let failed = stop_reason(&q, started, o).or_else(|| match child.try_wait() {
                Ok(Some(x)) => Some(format!(
                    "the destination qemu exited ({x}) during the migration"
                )),
                _ => None,
            });
            if let Some(why) = failed {
                let _ = sq.execute("migrate_cancel", None);
                break Err(other(format!("router {name}: {why}")));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let finished = polled.and_then(|done| {
            let wall_completed_ns = wall_ns();
            let status = dq.execute("query-status", None).map_err(other)?;
            if status["running"] != true {
                dq.execute("cont", None).map_err(other)?;
            }
            let status = dq.execute("query-status", None).map_err(other)?;
            if status["running"] != true {
                return Err(other(format!(
                    "router {name}: the destination does not run after the migration: {status}"
                )));
            }
            // QMP takes one client at a time: placement opens its own.
            drop(dq);
            let threads = place(&placement, child.id(), &dst_qmp, &Value::Null)?;
            Ok(json!({
                "migration": figures(&done),
                "postcopy": o.postcopy,
                "links_switched_ms": switch_ms.map(|m| (m * 1000.0).round() / 1000.0),
                "links": sw.held(&mut nl)?,
                "qemu_pid": child.id(),
                "source_qemu_pid": pid,
                "cgroups": cgroups,
                "threads": threads,
                "wall_migrate_ns": wall_migrate_ns,
                "wall_completed_ns": wall_completed_ns,
            }))
        });
        match finished {
            Ok(r) => {
                result = r;
                src_taps = sw.src;
                Ok(())
            }
            Err(e) => {
                // Back to the source, names and records as they were (the
                // destination goes with its record). After a post-copy
                // switch the guest's memory is split: the source cannot
                // run it again, and says so.
                if o.postcopy && switch_ms.is_some() {
                    return Err(other(format!(
                        "{e} (post-copy had switched over: the guest cannot fall back to the source; its qemu is left paused)"
                    )));
                }
                sw.back(&mut nl, &mut router, st);
                resume(&mut sq);
                Err(e)
            }
        }
    });
    outcome?;
    // The destination forwards; the source goes, and the destination
    // takes the router's name.
    if let Ok(mut sq) = qmp(&src_qmp) {
        let _ = sq.execute("quit", None);
    }
    let end = Instant::now() + Duration::from_secs(10);
    while state::is_alive(pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The guest's console so far (READY, its TINYVR-HELD lines) stays
    // readable: appended to <name>.console.before, which the router keeps.
    let history = std::fs::read(run_file(&name, "console")).unwrap_or_default();
    let before = run_file(&name, "console.before");
    if std::fs::symlink_metadata(&before).is_ok() {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&before)
            .and_then(|mut f| f.write_all(&history))
            .map_err(|e| HostError::io(format!("appending to {}", before.display()), e))?;
    } else {
        router.write_new(&before, &String::from_utf8_lossy(&history))?;
    }
    let dest_state = State::load(&dest)?;
    let run_prefix = format!("{name}.");
    router.hand_over(dest_state, |r| match r {
        Resource::Process { pid: p } => *p == pid,
        Resource::Link {
            name: n,
            netns: None,
        } => src_taps.contains(n),
        Resource::File { path } => {
            *path != before
                && path.parent() == Some(Path::new(state::DIR))
                && path
                    .file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.starts_with(&run_prefix))
        }
        _ => false,
    })?;
    // The migration socket is spent.
    let mig = run_file(&name, "mig");
    if std::fs::symlink_metadata(&mig).is_ok() {
        router.forget_file(&mig)?;
    }
    result["total_ms"] = json!((t0.elapsed().as_secs_f64() * 1e3).round());
    Ok(result)
}

/// `tcp:HOST:PORT`, checked: what `--to` and `vm up --incoming` take.
pub fn parse_tcp_uri(s: &str) -> Result<String, String> {
    let bad = || format!("{s:?}: expected tcp:HOST:PORT (PORT 1 to 65535)");
    let rest = s.strip_prefix("tcp:").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !host.is_empty() => Ok(s.to_string()),
        _ => Err(bad()),
    }
}

/// Migrates router `o.name` to a qemu waiting at `to` (`tinyvr vm up
/// --incoming` on the destination host, from the same config). When qemu
/// reports it completed, the source quits and everything of the router on
/// this host goes with its record; until then a failure, a timeout or
/// Ctrl-C cancels and leaves the source running.
pub fn remote(o: &Migrate, to: &str) -> Result<Value, HostError> {
    parse_tcp_uri(to).map_err(|e| other(format!("--to {e}")))?;
    let Source {
        state: router, pid, ..
    } = inspect(o, false)?;
    let name = o.name.clone();
    let mut sq = qmp(&run_file(&name, "qmp"))?;
    let (started, wall_migrate_ns) = start_migration(&mut sq, o, to)
        .map_err(|e| other(format!("router {name}: migrating to {to}: {e}")))?;
    let done = loop {
        let q = sq.execute("query-migrate", None).map_err(other)?;
        let status = q["status"].as_str().unwrap_or("");
        if status == "completed" {
            break q;
        }
        if let Some(why) = stop_reason(&q, started, o) {
            let _ = sq.execute("migrate_cancel", None);
            if !(o.postcopy && status.starts_with("postcopy")) {
                resume(&mut sq);
            }
            return Err(other(format!("router {name}: to {to}: {why}")));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let wall_completed_ns = wall_ns();
    // The guest runs there now: the source goes, and with it everything
    // of the router on this host.
    let _ = sq.execute("quit", None);
    drop(sq);
    let end = Instant::now() + Duration::from_secs(10);
    while state::is_alive(pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    router.teardown()?;
    Ok(json!({
        "migration": figures(&done),
        "postcopy": o.postcopy,
        "to": to,
        "source_qemu_pid": pid,
        "wall_migrate_ns": wall_migrate_ns,
        "wall_completed_ns": wall_completed_ns,
    }))
}

/// At the source: the capabilities (post-copy set either way: a source
/// that was a post-copy destination keeps it on) and parameters, then the
/// migration itself (and post-copy); returns when it started, monotonic
/// and wall clock (ns).
fn start_migration(sq: &mut Qmp, o: &Migrate, uri: &str) -> Result<(Instant, u64), HostError> {
    let caps = json!({ "capabilities": [{ "capability": "postcopy-ram", "state": o.postcopy }] });
    sq.execute("migrate-set-capabilities", Some(caps))
        .map_err(|e| other(format!("post-copy {} at the source: {e}", o.postcopy)))?;
    let mut params = json!({ "downtime-limit": o.downtime_limit_ms });
    if let Some(b) = o.bandwidth_mbps {
        params["max-bandwidth"] = json!(b * 1024 * 1024);
    }
    sq.execute("migrate-set-parameters", Some(params))
        .map_err(other)?;
    let started = (Instant::now(), wall_ns());
    sq.execute("migrate", Some(json!({ "uri": uri })))
        .map_err(other)?;
    if o.postcopy {
        sq.execute("migrate-start-postcopy", None)
            .map_err(|e| other(format!("starting post-copy: {e}")))?;
    }
    Ok(started)
}

/// Why polling a migration (`q`, QMP's `query-migrate`) should stop short
/// of completion: qemu's failure, the timeout, Ctrl-C; None: go on.
fn stop_reason(q: &Value, started: Instant, o: &Migrate) -> Option<String> {
    match q["status"].as_str().unwrap_or("") {
        s @ ("failed" | "cancelled" | "postcopy-paused") => Some(format!(
            "the migration {s}: {}",
            q["error-desc"].as_str().unwrap_or("qemu gave no reason")
        )),
        _ if started.elapsed() > o.timeout => Some(format!(
            "the migration did not finish within {:?}: cancelled",
            o.timeout
        )),
        _ if tinyvr_host::interrupt::interrupted() => {
            Some("interrupted: the migration was cancelled".into())
        }
        _ => None,
    }
}

/// After a failed or cancelled migration: the source runs again.
fn resume(sq: &mut Qmp) {
    if let Ok(s) = sq.execute("query-status", None) {
        if s["running"] != true {
            let _ = sq.execute("cont", None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn finds_the_tap_netdevs_and_refuses_what_does_not_migrate() {
        let a = words(
            "qemu -netdev tap,id=n0,fd=3,vhost=off -device x -netdev tap,id=n1,fd=4,vhost=on",
        );
        assert_eq!(
            tap_netdevs(&a).unwrap(),
            vec![
                TapNetdev {
                    id: "n0".into(),
                    fd: 3,
                    vhost: false
                },
                TapNetdev {
                    id: "n1".into(),
                    fd: 4,
                    vhost: true
                },
            ]
        );
        assert!(tap_netdevs(&words("q -netdev user,id=u"))
            .unwrap_err()
            .contains("only tap netdevs"));
        assert!(tap_netdevs(&words("q -netdev tap,id=n0,fds=3:4"))
            .unwrap_err()
            .contains("multi-queue"));
    }

    #[test]
    fn the_destination_gets_its_own_run_files_and_waits_for_the_stream() {
        let a = words("qemu -chardev file,id=con,path=/run/tinyvr/vr1.console -fw_cfg name=opt/tinyvr/config,file=/run/tinyvr/vr1.toml -name guest=vr1 -chardev socket,id=qmp,path=/run/tinyvr/vr1.qmp,server=on");
        let d = dest_argv(&a, "mig00001");
        assert_eq!(d[2], "file,id=con,path=/run/tinyvr/mig00001.console");
        assert_eq!(
            d[4],
            "name=opt/tinyvr/config,file=/run/tinyvr/mig00001.toml"
        );
        assert_eq!(d[6], "guest=vr1", "the guest keeps its name");
        assert_eq!(
            d[8],
            "socket,id=qmp,path=/run/tinyvr/mig00001.qmp,server=on"
        );
        assert_eq!(&d[9..], ["-incoming", "defer"]);
        // A source that was a destination: its files, one -incoming.
        let d2 = dest_argv(&d, "mig00002");
        assert_eq!(d2[2], "file,id=con,path=/run/tinyvr/mig00002.console");
        assert_eq!(d2.iter().filter(|w| *w == "-incoming").count(), 1);
    }

    #[test]
    fn a_destination_is_tcp_host_port() {
        assert!(parse_tcp_uri("tcp:10.0.0.2:4444").is_ok());
        assert!(parse_tcp_uri("tcp:0:4444").is_ok());
        for bad in [
            "10.0.0.2:4444",
            "tcp:host",
            "tcp::4444",
            "tcp:h:0",
            "tcp:h:70000",
            "unix:/x",
        ] {
            assert!(
                parse_tcp_uri(bad)
                    .unwrap_err()
                    .contains("expected tcp:HOST:PORT"),
                "{bad}"
            );
        }
    }

    #[test]
    fn figures_come_from_query_migrate() {
        let q = json!({"status": "completed", "total-time": 1200, "downtime": 170,
            "setup-time": 3, "ram": {"transferred": 5_000_000, "total": 134_217_728,
            "dirty-pages-rate": 12, "dirty-sync-count": 4, "mbps": 268.4}});
        let f = figures(&q);
        assert_eq!(f["downtime_ms"], 170);
        assert_eq!(f["iterations"], 4);
        assert_eq!(f["ram_transferred_bytes"], 5_000_000);
    }
}
