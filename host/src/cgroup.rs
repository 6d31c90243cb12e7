//! A router's cgroup: CPU weight, bandwidth and cpuset, in whichever
//! hierarchy holds the cpu controller (these hosts are v1+v2 hybrids, where
//! that is v1). LXC makes its own from these settings; for a VM tinyvr
//! makes it, moves qemu into it, and reads every value back.

use crate::HostError;
use std::path::{Path, PathBuf};

/// CPU resource settings for a router's cgroup (container or VM).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// cgroup v2 cpu.weight (1-10000); v1 cpu.shares is derived when only v1 exists.
    pub cpu_weight: Option<u32>,
    /// cgroup v2 cpu.max quota as "QUOTA PERIOD" in µs, e.g. "50000 100000".
    pub cpu_max: Option<String>,
    /// cpuset, e.g. "0" or "0-1".
    pub cpuset: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cgroup {
    V2,
    V1,
}

/// cgroup v1 cpu.shares for a v2 weight, the mapping systemd uses
/// (weight 100 = shares 1024).
pub fn shares_for_weight(w: u32) -> u32 {
    (w as u64 * 1024 / 100).clamp(2, 262_144) as u32
}

/// Checks resource settings before anything is created.
pub fn check(res: &Resources, online: &[u32]) -> Result<(), String> {
    if let Some(w) = res.cpu_weight {
        if !(1..=10_000).contains(&w) {
            return Err(format!("--cpu-weight {w}: expected 1 to 10000"));
        }
    }
    if let Some(m) = &res.cpu_max {
        let p: Vec<&str> = m.split_whitespace().collect();
        let ok = p.len() == 2
            && (p[0] == "max" || p[0].parse::<u64>().is_ok_and(|q| q >= 1000))
            && p[1]
                .parse::<u64>()
                .is_ok_and(|x| (1000..=1_000_000).contains(&x));
        if !ok {
            return Err(format!("--cpu-max {m:?}: expected \"QUOTA PERIOD\" in µs (quota ≥ 1000 or max, period 1000 to 1000000), e.g. \"50000 100000\""));
        }
    }
    if let Some(s) = &res.cpuset {
        let cpus: tinyvr_config::CpuList = s.parse().map_err(|e| format!("--cpuset: {e}"))?;
        if let Some(c) = cpus.0.iter().find(|c| !online.contains(c)) {
            return Err(format!(
                "--cpuset {s}: CPU {c} is not online (online: {online:?})"
            ));
        }
    }
    Ok(())
}

/// Is the cpu controller on cgroup v2 here?
pub fn version() -> Cgroup {
    let ctl = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    if ctl.split_whitespace().any(|c| c == "cpu") {
        Cgroup::V2
    } else {
        Cgroup::V1
    }
}

pub fn online_cpus() -> Vec<u32> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| s.trim().parse::<tinyvr_config::CpuList>().ok())
        .map(|c| c.0)
        .unwrap_or_default()
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), HostError> {
    let p = dir.join(file);
    std::fs::write(&p, value)
        .map_err(|e| HostError::io(format!("writing {value:?} to {}", p.display()), e))
}

fn read(dir: &Path, file: &str) -> Result<String, HostError> {
    let p = dir.join(file);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| HostError::io(format!("reading back {}", p.display()), e))
}

/// The directories a router cgroup named `dir_name` has under `root` (one
/// per v1 hierarchy it uses, or one v2 directory).
pub fn dirs_in(root: &Path, dir_name: &str, cg: Cgroup, cpuset: bool) -> Vec<PathBuf> {
    match cg {
        Cgroup::V2 => vec![root.join(dir_name)],
        Cgroup::V1 => {
            let mut v = vec![root.join("cpu").join(dir_name)];
            if cpuset {
                v.push(root.join("cpuset").join(dir_name));
            }
            // Where cpuacct is a hierarchy of its own, the router's CPU
            // time is only counted if it has a group there too.
            let acct = root.join("cpuacct");
            if acct.join("cpuacct.usage").exists()
                && !root.join("cpu").join("cpuacct.usage").exists()
            {
                v.push(acct.join(dir_name));
            }
            v
        }
    }
}

const ROOT: &str = "/sys/fs/cgroup";

/// One setting: the file, the value asked, and how the kernel's read-back
/// is compared with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub dir: PathBuf,
    pub file: &'static str,
    pub asked: String,
}

/// What a router's cgroup must hold, file by file, in write order. Pure.
pub fn settings(
    ds: &[PathBuf],
    cg: Cgroup,
    res: &Resources,
    rt_runtime_us: Option<u64>,
    parent_mems: &str,
) -> Vec<Setting> {
    let mut v = Vec::new();
    let mut set = |dir: &PathBuf, file: &'static str, asked: String| {
        v.push(Setting {
            dir: dir.clone(),
            file,
            asked,
        })
    };
    let cpu = &ds[0];
    match cg {
        Cgroup::V2 => {
            if let Some(w) = res.cpu_weight {
                set(cpu, "cpu.weight", w.to_string());
            }
            if let Some(m) = &res.cpu_max {
                set(
                    cpu,
                    "cpu.max",
                    m.split_whitespace().collect::<Vec<_>>().join(" "),
                );
            }
            if let Some(c) = &res.cpuset {
                set(cpu, "cpuset.cpus", c.clone());
            }
        }
        Cgroup::V1 => {
            if let Some(w) = res.cpu_weight {
                set(cpu, "cpu.shares", shares_for_weight(w).to_string());
            }
            if let Some(m) = &res.cpu_max {
                let mut it = m.split_whitespace();
                let (q, per) = (it.next().unwrap_or("max"), it.next().unwrap_or("100000"));
                set(cpu, "cpu.cfs_period_us", per.to_string());
                set(
                    cpu,
                    "cpu.cfs_quota_us",
                    if q == "max" {
                        "-1".into()
                    } else {
                        q.to_string()
                    },
                );
            }
            if let Some(rt) = rt_runtime_us {
                set(cpu, "cpu.rt_runtime_us", rt.to_string());
            }
            if let (Some(c), Some(d)) = (
                &res.cpuset,
                ds.iter()
                    .find(|d| d.parent().is_some_and(|p| p.ends_with("cpuset"))),
            ) {
                // A v1 cpuset takes no task before it has cpus and mems.
                set(d, "cpuset.mems", parent_mems.to_string());
                set(d, "cpuset.cpus", c.clone());
            }
        }
    }
    v
}

/// Does the kernel's `read` value hold what was `asked`? CPU lists are
/// compared as sets ("0,1" is "0-1"); everything else as text.
pub fn holds(file: &str, asked: &str, read: &str) -> bool {
    if file.ends_with(".cpus") || file.ends_with(".mems") {
        return asked.parse::<tinyvr_config::CpuList>().ok() == read.parse().ok();
    }
    asked.split_whitespace().eq(read.split_whitespace())
}

/// Is the process whose /proc/<pid>/cgroup is `text` exactly in cgroup
/// `rel` (e.g. "/tinyvr-vr1") of the hierarchy holding `controller` (v1),
/// or of the unified hierarchy (v2: `controller` None)? Exact: "/tinyvr-vr1"
/// is not "/tinyvr-vr10".
pub fn member(text: &str, controller: Option<&str>, rel: &str) -> bool {
    text.lines().any(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let right = match controller {
            None => ctl.is_empty(),
            Some(c) => ctl.split(',').any(|x| x == c),
        };
        right && path == rel
    })
}

/// Reads a setting back; a value the kernel does not hold is an error
/// naming the file.
fn read_back(s: &Setting) -> Result<String, HostError> {
    let got = read(&s.dir, s.file)?;
    if holds(s.file, &s.asked, &got) {
        Ok(got)
    } else {
        Err(HostError::Other(format!(
            "{}: asked {:?}, the kernel holds {got:?}",
            s.dir.join(s.file).display(),
            s.asked
        )))
    }
}

/// A router's cgroup, made and set, ready to take a process.
#[derive(Debug)]
pub struct Prepared {
    pub name: String,
    pub version: Cgroup,
    pub dirs: Vec<PathBuf>,
    pub settings: Vec<Setting>,
    /// Controllers enabled on the host's behalf: always none (kept in the
    /// json so a reader sees the root cgroup was not changed).
    pub enabled: Vec<String>,
}

/// Makes the cgroup (each directory recorded in `state`), enables the
/// controllers it needs (v2), writes every setting and its RT budget, and
/// reads each back: a value the kernel does not hold fails here, naming
/// the file. No process is in it yet.
pub fn prepare(
    state: &mut crate::state::State,
    dir_name: &str,
    res: &Resources,
    rt_runtime_us: Option<u64>,
) -> Result<Prepared, HostError> {
    let cg = version();
    let root = Path::new(ROOT);
    let ds = dirs_in(root, dir_name, cg, res.cpuset.is_some());
    // A cgroup that exists is someone else's: refused, never reused.
    if let Some(d) = ds.iter().find(|d| d.exists()) {
        return Err(HostError::Other(format!(
            "cgroup {} exists and tinyvr did not make it: left alone; pick another --name",
            d.display()
        )));
    }
    let enabled = Vec::new();
    if cg == Cgroup::V2 {
        // A v2 child has the cpu (and cpuset) files only when the root
        // delegates them. That is a host-wide setting tinyvr did not make:
        // refused with the command, never changed behind the user's back.
        let have = read(root, "cgroup.subtree_control").unwrap_or_default();
        for c in std::iter::once("cpu").chain(res.cpuset.as_ref().map(|_| "cpuset")) {
            if !have.split_whitespace().any(|x| x == c) {
                return Err(HostError::Other(format!(
                    "cgroup v2: the {c} controller is not enabled for child cgroups ({}/cgroup.subtree_control: {have:?}); tinyvr does not change the host's root cgroup: echo +{c} > {}/cgroup.subtree_control",
                    root.display(),
                    root.display()
                )));
            }
        }
    }
    for d in &ds {
        let e = state.intend(crate::state::Resource::Cgroup { path: d.clone() })?;
        std::fs::create_dir(d)
            .map_err(|e| HostError::io(format!("creating cgroup {}", d.display()), e))?;
        state.made(e, crate::state::file_id(d)?)?;
    }
    let mems = ds
        .iter()
        .find(|d| d.parent().is_some_and(|p| p.ends_with("cpuset")))
        .and_then(|d| d.parent())
        .map(|p| read(p, "cpuset.mems").unwrap_or_default())
        .unwrap_or_default();
    let mut rt = rt_runtime_us;
    if cg == Cgroup::V1
        && !ds[0]
            .parent()
            .is_some_and(|p| p.join("cpu.rt_runtime_us").exists())
    {
        rt = None; // no RT group scheduling on this host: nothing to budget
    }
    let settings = settings(&ds, cg, res, rt, &mems);
    for s in &settings {
        write(&s.dir, s.file, &s.asked)?;
        read_back(s)?;
    }
    Ok(Prepared {
        name: dir_name.to_string(),
        version: cg,
        dirs: ds,
        settings,
        enabled,
    })
}

/// The cgroup.procs files of a prepared cgroup, opened for the child to
/// write "0" into between fork and exec: the process (and so every thread
/// it will start) is inside before it runs a line of its own.
pub fn procs_files(p: &Prepared) -> Result<Vec<std::fs::File>, HostError> {
    p.dirs
        .iter()
        .map(|d| {
            let f = d.join("cgroup.procs");
            std::fs::OpenOptions::new()
                .write(true)
                .open(&f)
                .map_err(|e| HostError::io(format!("opening {}", f.display()), e))
        })
        .collect()
}

/// In the child, between fork and exec: joins the cgroup through the
/// files [`procs_files`] opened. Async-signal-safe (write only).
pub fn join_in_child(fds: &[i32]) -> std::io::Result<()> {
    for &fd in fds {
        // SAFETY: writes two bytes from a static buffer to an open fd.
        if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A cgroup someone else made from `res` (LXC's `lxc.payload.NAME`), as a
/// [`Prepared`] to [`verify`] against what was asked.
pub fn made_by_other(dir_name: &str, res: &Resources) -> Prepared {
    let cg = version();
    let dirs = dirs_in(Path::new(ROOT), dir_name, cg, res.cpuset.is_some());
    let settings = settings(&dirs, cg, res, None, "")
        .into_iter()
        .filter(|s| s.file != "cpuset.mems")
        .collect();
    Prepared {
        name: dir_name.to_string(),
        version: cg,
        dirs,
        settings,
        enabled: vec![],
    }
}

/// After the process started: it is exactly in every directory, and every
/// setting still holds. Returns, per file, the value asked and read back.
pub fn verify(p: &Prepared, pid: u32) -> Result<serde_json::Value, HostError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| HostError::io(format!("reading /proc/{pid}/cgroup"), e))?;
    let rel = format!("/{}", p.name);
    for d in &p.dirs {
        let ctl = match p.version {
            Cgroup::V2 => None,
            Cgroup::V1 => d
                .parent()
                .and_then(|h| h.file_name())
                .and_then(|n| n.to_str()),
        };
        if !member(&text, ctl, &rel) {
            return Err(HostError::Other(format!(
                "process {pid} is not in cgroup {} (its /proc/{pid}/cgroup: {})",
                d.display(),
                text.trim()
            )));
        }
    }
    let mut files = serde_json::Map::new();
    for s in &p.settings {
        let got = read_back(s)?;
        files.insert(
            s.file.into(),
            serde_json::json!({"asked": s.asked, "held": got}),
        );
    }
    // What the VM's threads run with even when nothing was asked.
    for f in [
        "cpu.weight",
        "cpu.max",
        "cpu.shares",
        "cpu.rt_runtime_us",
        "cpuset.cpus",
    ] {
        if !files.contains_key(f) {
            if let Ok(v) = read(&p.dirs[0], f) {
                files.insert(f.into(), serde_json::json!({"asked": null, "held": v}));
            }
        }
    }
    Ok(serde_json::json!({
        "path": p.dirs[0].display().to_string(),
        "dirs": p.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        "version": if p.version == Cgroup::V2 { "v2" } else { "v1" },
        "member": true,
        "enabled_controllers": p.enabled,
        "files": files,
    }))
}

/// The cgroup of thread `tid` of process `pid` in the hierarchy that
/// holds the cpu controller (v1), or the unified one (v2). A vhost worker
/// is a kernel thread of its own, not in qemu's task list: read from
/// /proc/{tid} then.
pub fn cpu_dir_of(pid: u32, tid: u32) -> Result<PathBuf, HostError> {
    let mut f = format!("/proc/{pid}/task/{tid}/cgroup");
    // Only qemu's own vhost worker: an exited thread's reused TID must not
    // lead to another process's cgroup.
    if !Path::new(&f).exists()
        && std::fs::read_to_string(format!("/proc/{tid}/comm"))
            .is_ok_and(|c| c.trim() == format!("vhost-{pid}"))
    {
        f = format!("/proc/{tid}/cgroup");
    }
    let text = std::fs::read_to_string(&f).map_err(|e| HostError::io(format!("reading {f}"), e))?;
    let rel = |want_v1: bool| {
        text.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctl, path) = (p.next()?, p.next()?, p.next()?);
            let hit = if want_v1 {
                ctl.split(',').any(|c| c == "cpu")
            } else {
                ctl.is_empty()
            };
            hit.then(|| path.trim_start_matches('/').to_string())
        })
    };
    Ok(match version() {
        Cgroup::V1 => Path::new(ROOT)
            .join("cpu")
            .join(rel(true).unwrap_or_default()),
        Cgroup::V2 => Path::new(ROOT).join(rel(false).unwrap_or_default()),
    })
}

/// A cgroup someone else made (a libvirt domain's), read back against
/// the CPU weight and bandwidth of `res`: each asked value must be held.
/// Returns, per file, the value asked and held, as [`verify`] does.
pub fn verify_dir(dir: &Path, res: &Resources) -> Result<serde_json::Value, HostError> {
    let cg = version();
    let res = Resources {
        cpuset: None, // libvirt puts it on the thread groups below
        ..res.clone()
    };
    let mut files = serde_json::Map::new();
    for s in settings(&[dir.to_path_buf()], cg, &res, None, "") {
        let got = read_back(&s)?;
        files.insert(
            s.file.into(),
            serde_json::json!({"asked": s.asked, "held": got}),
        );
    }
    for f in ["cpu.weight", "cpu.max", "cpu.shares", "cpu.rt_runtime_us"] {
        if !files.contains_key(f) {
            if let Ok(v) = read(dir, f) {
                files.insert(f.into(), serde_json::json!({"asked": null, "held": v}));
            }
        }
    }
    Ok(serde_json::json!({
        "path": dir.display().to_string(),
        "version": if cg == Cgroup::V2 { "v2" } else { "v1" },
        "made_by": "libvirt",
        "files": files,
    }))
}

/// The RT budget each cgroup directory between the cpu hierarchy's root
/// and `leaves` needs so that every leaf gets `per_leaf` µs: a directory
/// needs the sum of its leaves'. Parents first. Pure.
pub fn rt_needs(root: &Path, leaves: &[PathBuf], per_leaf: u64) -> Vec<(PathBuf, u64)> {
    let mut leaves: Vec<&PathBuf> = leaves.iter().collect();
    leaves.sort();
    leaves.dedup();
    let mut need: Vec<(PathBuf, u64)> = Vec::new();
    for l in leaves {
        let Ok(rel) = l.strip_prefix(root) else {
            continue;
        };
        let mut d = root.to_path_buf();
        for c in rel.components() {
            d.push(c);
            match need.iter_mut().find(|(p, _)| *p == d) {
                Some((_, n)) => *n += per_leaf,
                None => need.push((d.clone(), per_leaf)),
            }
        }
    }
    need.sort_by_key(|(p, _)| p.components().count());
    need
}

/// Gives the cgroups a launcher made (libvirt's) the RT budget their RT
/// threads need under RT group scheduling: `per_leaf` µs for each cgroup
/// in `leaves`, parents first. The top directory below the root is
/// shared with other domains (libvirt's `machine`): tinyvr adds to what
/// it holds and records the addition, which `down` takes back off; the
/// directories below are the domain's own and go with it. No-op without
/// RT group scheduling (v2, or no cpu.rt_runtime_us).
pub fn give_rt_budget(
    state: &mut crate::state::State,
    leaves: &[PathBuf],
    per_leaf: u64,
) -> Result<serde_json::Value, HostError> {
    let root = Path::new(ROOT).join("cpu");
    if version() != Cgroup::V1 || !root.join("cpu.rt_runtime_us").exists() {
        return Ok(serde_json::Value::Null);
    }
    let mut out = serde_json::Map::new();
    // Two `up`s adding to the shared directory at once would lose one
    // addition (read, add, write): one at a time.
    let _lock = rt_budget_lock()?;
    for (d, need) in rt_needs(&root, leaves, per_leaf) {
        let now: u64 = read(&d, "cpu.rt_runtime_us")?.parse().unwrap_or(0);
        let shared = d.parent() == Some(root.as_path());
        let want = if shared { now + need } else { now.max(need) };
        if want != now {
            // Intended before it is written: a crash between the two
            // leaves an addition nobody takes back, never a subtraction
            // of budget tinyvr did not add.
            let e = shared
                .then(|| {
                    state.intend(crate::state::Resource::RtBudget {
                        path: d.clone(),
                        added: need,
                    })
                })
                .transpose()?;
            write(&d, "cpu.rt_runtime_us", &want.to_string())?;
            if let Some(e) = e {
                state.made(e, 1)?;
            }
        }
        let held = read(&d, "cpu.rt_runtime_us")?;
        if held != want.to_string() {
            return Err(HostError::Other(format!(
                "{}/cpu.rt_runtime_us: asked {want}, the kernel holds {held}",
                d.display()
            )));
        }
        out.insert(
            d.display().to_string(),
            serde_json::json!({"asked": want, "held": held, "added_to_shared": shared.then_some(need)}),
        );
    }
    Ok(serde_json::Value::Object(out))
}

/// The lock every change to a shared RT budget holds (adding in `up`,
/// giving back in `down`): an flock on a file in tinyvr's run directory,
/// never removed. Its name is no router's (longer than a router name may
/// be), so no router's lock and no `gc` sweep ever touches it.
pub fn rt_budget_lock() -> Result<std::fs::File, HostError> {
    let p = Path::new(crate::state::DIR).join("rt-budget.lock");
    crate::state::ensure_dir()?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| HostError::io(format!("opening {}", p.display()), e))?;
    f.lock()
        .map_err(|e| HostError::io(format!("locking {}", p.display()), e))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rt_budget_goes_to_every_ancestor_parents_first() {
        let root = Path::new("/cg/cpu");
        let leaves = [
            root.join("machine/qemu-1-v.libvirt-qemu/vcpu0"),
            root.join("machine/qemu-1-v.libvirt-qemu/emulator"),
            root.join("machine/qemu-1-v.libvirt-qemu/vcpu0"),
        ];
        let n = rt_needs(root, &leaves, 50_000);
        assert_eq!(
            n,
            vec![
                (root.join("machine"), 100_000),
                (root.join("machine/qemu-1-v.libvirt-qemu"), 100_000),
                (root.join("machine/qemu-1-v.libvirt-qemu/emulator"), 50_000),
                (root.join("machine/qemu-1-v.libvirt-qemu/vcpu0"), 50_000),
            ]
        );
    }

    use super::*;

    #[test]
    fn membership_is_exact_per_hierarchy() {
        let v1 = "12:pids:/\n4:cpu,cpuacct:/tinyvr-vr10\n3:cpuset:/tinyvr-vr1\n0::/\n";
        assert!(
            !member(v1, Some("cpu"), "/tinyvr-vr1"),
            "a prefix is not membership"
        );
        assert!(member(v1, Some("cpu"), "/tinyvr-vr10"));
        assert!(member(v1, Some("cpuacct"), "/tinyvr-vr10"));
        assert!(member(v1, Some("cpuset"), "/tinyvr-vr1"));
        let v2 = "0::/tinyvr-vr1\n";
        assert!(member(v2, None, "/tinyvr-vr1"));
        assert!(!member(v2, None, "/tinyvr-vr"));
    }

    #[test]
    fn read_back_comparison() {
        assert!(holds("cpuset.cpus", "0,1", "0-1"));
        assert!(!holds("cpuset.cpus", "1", "0-1"));
        assert!(holds("cpu.max", "50000  100000", "50000 100000"));
        assert!(
            !holds("cpu.weight", "200", ""),
            "an empty read is not a value"
        );
    }

    #[test]
    fn settings_per_layout() {
        let res = Resources {
            cpu_weight: Some(200),
            cpu_max: Some("max 100000".into()),
            cpuset: Some("1".into()),
        };
        let v2 = settings(&[PathBuf::from("/cg/tinyvr-a")], Cgroup::V2, &res, None, "");
        let files: Vec<&str> = v2.iter().map(|s| s.file).collect();
        assert_eq!(files, ["cpu.weight", "cpu.max", "cpuset.cpus"]);
        assert_eq!(v2[1].asked, "max 100000");
        let ds = dirs_in(Path::new("/cg"), "tinyvr-a", Cgroup::V1, true);
        let v1 = settings(&ds, Cgroup::V1, &res, Some(100_000), "0");
        let got: Vec<(&str, &str)> = v1.iter().map(|s| (s.file, s.asked.as_str())).collect();
        assert_eq!(
            got,
            [
                ("cpu.shares", "2048"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "-1"),
                ("cpu.rt_runtime_us", "100000"),
                ("cpuset.mems", "0"),
                ("cpuset.cpus", "1"),
            ]
        );
        assert!(v1[4].dir.starts_with("/cg/cpuset"));
    }

    #[test]
    fn resource_checks() {
        let on = [0, 1];
        assert!(check(
            &Resources {
                cpu_weight: Some(0),
                ..Default::default()
            },
            &on
        )
        .unwrap_err()
        .contains("1 to 10000"));
        assert!(check(
            &Resources {
                cpu_max: Some("5 100000".into()),
                ..Default::default()
            },
            &on
        )
        .is_err());
        assert!(check(
            &Resources {
                cpuset: Some("7".into()),
                ..Default::default()
            },
            &on
        )
        .unwrap_err()
        .contains("CPU 7 is not online"));
        assert!(check(
            &Resources {
                cpu_weight: Some(100),
                cpu_max: Some("50000 100000".into()),
                cpuset: Some("0-1".into())
            },
            &on
        )
        .is_ok());
    }
}
