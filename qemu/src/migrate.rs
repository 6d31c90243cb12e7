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
use tinyvr_config::MacvlanMode;
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

/// Checks everything that can be checked before anything changes:
/// the router, its qemu, its NICs.
struct Source {
    state: State,
    pid: u32,
    argv: Vec<String>,
    nics: Vec<(TapNetdev, links::MacvtapFacts)>,
}

fn inspect(o: &Migrate) -> Result<Source, HostError> {
    if o.downtime_limit_ms == 0 {
        return Err(other(
            "--downtime-limit 0: expected at least 1 ms (the longest pause qemu may plan)",
        ));
    }
    if o.bandwidth_mbps == Some(0) {
        return Err(other("--bandwidth 0: expected at least 1 MB/s"));
    }
    let state = State::load(&o.name)?.of_platform("vm")?;
    let pid = state
        .owner_pid
        .filter(|&p| state::is_alive(p))
        .ok_or_else(|| other(format!("router {}: its qemu is not running", o.name)))?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map_err(|e| HostError::io(format!("reading qemu {pid}'s command line"), e))?;
    let argv: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let netdevs = tap_netdevs(&argv).map_err(|e| other(format!("router {}: {e}", o.name)))?;
    let mut nl = netns::socket(None)?;
    let mut nics = Vec::new();
    for n in netdevs {
        if n.vhost {
            return Err(other(format!(
                "router {}: netdev {}: vhost=on does not migrate here yet",
                o.name, n.id
            )));
        }
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

/// The router cgroups qemu `pid` is in, as `cgroup.procs` files to join.
fn cgroup_procs_of(pid: u32) -> Result<Vec<std::fs::File>, HostError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| HostError::io("reading qemu's cgroups", e))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctl, rel) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or("/"));
        if !rel.contains("tinyvr-") {
            continue;
        }
        let unified = Path::new("/sys/fs/cgroup/unified");
        let base = if !ctl.is_empty() {
            PathBuf::from("/sys/fs/cgroup").join(ctl)
        } else if unified.exists() {
            unified.to_path_buf()
        } else {
            PathBuf::from("/sys/fs/cgroup")
        };
        let p = base.join(rel.trim_start_matches('/')).join("cgroup.procs");
        out.push(
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .map_err(|e| HostError::io(format!("opening {}", p.display()), e))?,
        );
    }
    Ok(out)
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
    } = inspect(o)?;
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
    let outcome = tinyvr_host::lifecycle::up(&dest, "vm", |st| {
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
            let index =
                links::add_macvtap(&mut nl, &m, &f.lower, MacvlanMode::Bridge, Some(&f.mac))?;
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
        let procs = cgroup_procs_of(pid)?;
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
        let mut params = json!({ "downtime-limit": o.downtime_limit_ms });
        if let Some(b) = o.bandwidth_mbps {
            params["max-bandwidth"] = json!(b * 1024 * 1024);
        }
        sq.execute("migrate-set-parameters", Some(params))
            .map_err(other)?;
        sq.execute("migrate-set-capabilities", Some(caps))
            .map_err(|e| other(format!("post-copy {} at the source: {e}", o.postcopy)))?;
        let started = Instant::now();
        sq.execute("migrate", Some(json!({ "uri": uri })))
            .map_err(other)?;
        if o.postcopy {
            sq.execute("migrate-start-postcopy", None)
                .map_err(|e| other(format!("starting post-copy: {e}")))?;
        }
        let done = loop {
            let q = sq.execute("query-migrate", None).map_err(other)?;
            match q["status"].as_str() {
                Some("completed") => break q,
                Some(s @ ("failed" | "cancelled")) => {
                    resume(&mut sq);
                    return Err(other(format!(
                        "router {name}: the migration {s}: {}",
                        q["error-desc"].as_str().unwrap_or("qemu gave no reason")
                    )));
                }
                _ => {}
            }
            if started.elapsed() > o.timeout {
                let _ = sq.execute("migrate_cancel", None);
                resume(&mut sq);
                return Err(other(format!(
                    "router {name}: the migration did not finish within {:?}: cancelled",
                    o.timeout
                )));
            }
            if let Ok(Some(st)) = child.try_wait() {
                resume(&mut sq);
                return Err(other(format!(
                    "router {name}: the destination qemu exited ({st}) during the migration"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let switch = Instant::now();
        // The source is paused now: its macvtaps down, the destination's up.
        // Each destination macvtap takes its source's name (a link is
        // renamed only while down), so the router keeps its device names.
        // The links first (the traffic waits for them), the records after.
        let mut finish = |nl: &mut tinyvr_init::netlink::Socket, mut dq: Qmp| {
            let mut renamed = Vec::new();
            for (k, (s, d)) in src_taps.iter_mut().zip(&mut dest_taps).enumerate() {
                links::set_state(nl, s, false)?;
                let old = format!("{dest}-o{k}");
                links::rename(nl, s, &old)?;
                links::rename(nl, d, s)?;
                renamed.push((s.clone(), old.clone(), d.clone()));
                std::mem::swap(s, d);
                *s = old;
                links::set_state(nl, d, true)?;
            }
            for (orig, old, was) in &renamed {
                router.renamed_link(orig, old)?;
                st.renamed_link(was, orig)?;
            }
            let switch_ms = switch.elapsed().as_secs_f64() * 1e3;
            let status = dq.execute("query-status", None).map_err(other)?;
            if status["running"] != true {
                dq.execute("cont", None).map_err(other)?;
            }
            // QMP takes one client at a time: placement opens its own.
            drop(dq);
            let threads = place(&placement, child.id(), &dst_qmp, &Value::Null)?;
            Ok::<_, HostError>(json!({
                "migration": figures(&done),
                "links_switched_ms": (switch_ms * 1000.0).round() / 1000.0,
                "qemu_pid": child.id(),
                "source_qemu_pid": pid,
                "cgroups": cgroups,
                "threads": threads,
            }))
        };
        match finish(&mut nl, dq) {
            Ok(r) => {
                result = r;
                Ok(())
            }
            Err(e) => {
                // Back to the source (the destination goes with its record;
                // the source's links keep whatever name they have now).
                for (s, d) in src_taps.iter().zip(&dest_taps) {
                    let _ = links::set_state(&mut nl, d, false);
                    let _ = links::set_state(&mut nl, s, true);
                }
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
