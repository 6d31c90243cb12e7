//! CPU accounting per thread class, from /proc and the cgroup files, as
//! percent of one core over a trial.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// USER_HZ: the unit of /proc/<pid>/stat and /proc/stat times.
fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

/// utime + stime (ticks) from a /proc/<pid>/task/<tid>/stat line: the
/// fields after the parenthesised command name.
pub fn stat_ticks(line: &str) -> Option<u64> {
    let rest = &line[line.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The class of a qemu thread by its name (qemu runs with debug-threads=on).
pub fn qemu_class(comm: &str) -> &'static str {
    if comm.starts_with("CPU ") {
        "vcpu"
    } else if comm.starts_with("vhost-") {
        "vhost"
    } else {
        "emulator"
    }
}

/// A snapshot: ticks per class for the threads of `pids` (classified by
/// `class`), host softirq ticks, and cgroup CPU time (µs) per router.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub classes: BTreeMap<String, u64>,
    pub softirq: u64,
    pub cgroups: BTreeMap<String, u64>,
    /// Where each router's cgroup time was read: a router whose qemu is
    /// replaced during a trial (a migration: the destination joins the
    /// same cgroup) is read there again at the end.
    pub cgroup_files: BTreeMap<String, PathBuf>,
    /// Per CPU, /proc/stat's times (ticks).
    pub cores: Vec<(u32, CoreTicks)>,
}

/// One CPU's times from its /proc/stat line, in ticks. The kernel counts
/// guest time in user too; `user` here is without it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreTicks {
    pub user: u64,
    pub system: u64,
    pub irq: u64,
    pub softirq: u64,
    pub guest: u64,
    pub idle: u64,
}

impl CoreTicks {
    fn total(&self) -> u64 {
        self.user + self.system + self.irq + self.softirq + self.guest + self.idle
    }
}

/// One CPU's use over a trial, percent of that CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct CoreUse {
    pub cpu: u32,
    pub user: f64,
    pub system: f64,
    pub irq: f64,
    pub softirq: f64,
    pub guest: f64,
    pub idle: f64,
}

/// The `cpuN` lines of /proc/stat.
pub fn core_ticks(stat: &str) -> Vec<(u32, CoreTicks)> {
    stat.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let cpu: u32 = f.next()?.strip_prefix("cpu")?.parse().ok()?;
            let v: Vec<u64> = f.map(|x| x.parse().unwrap_or(0)).collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            let guest = at(8) + at(9);
            Some((
                cpu,
                CoreTicks {
                    // user + nice, less the guest time counted in them
                    user: (at(0) + at(1)).saturating_sub(guest),
                    system: at(2),
                    idle: at(3) + at(4),
                    irq: at(5),
                    softirq: at(6),
                    guest,
                },
            ))
        })
        .collect()
}

/// Per CPU, percent of its time in each state between two snapshots.
pub fn cores(a: &Snapshot, b: &Snapshot) -> Vec<CoreUse> {
    b.cores
        .iter()
        .filter_map(|(cpu, after)| {
            let before = a.cores.iter().find(|c| c.0 == *cpu)?.1;
            let d = |x: u64, y: u64| x.saturating_sub(y) as f64;
            let total = d(after.total(), before.total());
            if total <= 0.0 {
                return None;
            }
            let pct = |x: u64, y: u64| (d(x, y) / total * 1000.0).round() / 10.0;
            Some(CoreUse {
                cpu: *cpu,
                user: pct(after.user, before.user),
                system: pct(after.system, before.system),
                irq: pct(after.irq, before.irq),
                softirq: pct(after.softirq, before.softirq),
                guest: pct(after.guest, before.guest),
                idle: pct(after.idle, before.idle),
            })
        })
        .collect()
}

/// What to account: (router name, pid, qemu?) triples. With `before`, a
/// router whose process is gone has its cgroup read where it was then.
pub fn snapshot(procs: &[(String, u32, bool)], before: Option<&Snapshot>) -> Snapshot {
    let mut s = Snapshot::default();
    for (name, pid, qemu) in procs {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
        for t in tasks.into_iter().flatten().flatten() {
            let dir = t.path();
            let class = if *qemu {
                qemu_class(
                    std::fs::read_to_string(dir.join("comm"))
                        .unwrap_or_default()
                        .trim(),
                )
            } else {
                "init"
            };
            if let Some(ticks) = std::fs::read_to_string(dir.join("stat"))
                .ok()
                .and_then(|l| stat_ticks(&l))
            {
                *s.classes.entry(format!("{name}/{class}")).or_default() += ticks;
            }
        }
        let file = cgroup_usage_file(*pid)
            .or_else(|| before.and_then(|b| b.cgroup_files.get(name).cloned()));
        if let Some((f, us)) = file.and_then(|f| usage_us(&f).map(|us| (f, us))) {
            s.cgroups.insert(name.clone(), us);
            s.cgroup_files.insert(name.clone(), f);
        }
    }
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    s.softirq = softirq_ticks(&stat).unwrap_or(0);
    s.cores = core_ticks(&stat);
    s
}

/// The softirq column of /proc/stat's "cpu" line (all CPUs).
pub fn softirq_ticks(stat: &str) -> Option<u64> {
    let l = stat.lines().find(|l| l.starts_with("cpu "))?;
    l.split_whitespace().nth(7)?.parse().ok()
}

/// The file holding the CPU time of the cgroup `pid` is in: cpuacct.usage
/// in ns (v1) or cpu.stat's usage_usec (v2). None in the root cgroup (the
/// whole host, not a router's group).
pub fn cgroup_usage_file(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for l in text.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
        if ctl.split(',').any(|c| c == "cpuacct") {
            if path == "/" {
                return None;
            }
            let p = PathBuf::from(format!("/sys/fs/cgroup/cpuacct{path}/cpuacct.usage"));
            return Some(if p.exists() {
                p
            } else {
                PathBuf::from(format!("/sys/fs/cgroup/cpu,cpuacct{path}/cpuacct.usage"))
            });
        }
    }
    let v2 = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .filter(|p| *p != "/")?;
    Some(PathBuf::from(format!("/sys/fs/cgroup{v2}/cpu.stat")))
}

/// The CPU time (µs) in a file [`cgroup_usage_file`] named.
fn usage_us(f: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(f).ok()?;
    if f.ends_with("cpuacct.usage") {
        return Some(text.trim().parse::<u64>().ok()? / 1000);
    }
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))?
        .trim()
        .parse()
        .ok()
}

/// Percent of one core per class between two snapshots `secs` apart.
pub fn percent(a: &Snapshot, b: &Snapshot, secs: f64) -> BTreeMap<String, f64> {
    let hz = clk_tck();
    let pct = |d: u64| (d as f64 / hz / secs * 1000.0).round() / 10.0;
    let mut out = BTreeMap::new();
    for (k, v) in &b.classes {
        out.insert(
            k.clone(),
            pct(v.saturating_sub(*a.classes.get(k).unwrap_or(&0))),
        );
    }
    out.insert(
        "host/softirq".into(),
        pct(b.softirq.saturating_sub(a.softirq)),
    );
    for (k, v) in &b.cgroups {
        if let Some(before) = a.cgroups.get(k) {
            let d = v.saturating_sub(*before) as f64 / 1e6;
            out.insert(format!("{k}/cgroup"), (d / secs * 1000.0).round() / 10.0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_times_past_a_name_with_spaces() {
        let l = "1234 (CPU 0/TCG) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(stat_ticks(l), Some(300));
        assert_eq!(qemu_class("CPU 0/TCG"), "vcpu");
        assert_eq!(qemu_class("vhost-1234"), "vhost");
        assert_eq!(qemu_class("qemu-system-x86"), "emulator");
    }

    #[test]
    fn per_core_times_with_guest_time_out_of_user() {
        let a = "cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 100 0 50 800 0 0 50 0 0 0\ncpu1 300 0 0 700 0 0 0 0 200 0\n";
        let b = "cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 110 0 60 860 0 0 70 0 0 0\ncpu1 390 0 0 710 0 0 0 0 280 0\n";
        let snap = |t: &str| Snapshot {
            cores: core_ticks(t),
            ..Default::default()
        };
        let c = cores(&snap(a), &snap(b));
        assert_eq!(c.len(), 2);
        // cpu0: 10 user, 10 system, 60 idle, 20 softirq of 100 ticks.
        assert_eq!(
            (c[0].cpu, c[0].user, c[0].system, c[0].softirq, c[0].idle),
            (0, 10.0, 10.0, 20.0, 60.0)
        );
        // cpu1: 90 user ticks of which 80 guest; 10 idle.
        assert_eq!((c[1].user, c[1].guest, c[1].idle), (10.0, 80.0, 10.0));
    }

    #[test]
    fn softirq_column() {
        let s = "cpu  10 0 20 300 5 1 42 0 0 0\ncpu0 5 0 10 150 2 0 21 0 0 0\n";
        assert_eq!(softirq_ticks(s), Some(42));
    }
}
