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

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The directories a router cgroup named `dir_name` has (one per v1
/// hierarchy it uses, or one v2 directory).
pub fn dirs(dir_name: &str, cg: Cgroup, cpuset: bool) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
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

/// Makes the cgroup, applies the settings and `rt_runtime_us` (the RT
/// budget SCHED_FIFO/RR threads in it need under RT group scheduling),
/// moves process `pid` (all its threads) in, and returns what the kernel
/// reports back, file by file. Any refusal is an error naming the file.
pub fn create_for(
    state: &mut crate::state::State,
    dir_name: &str,
    res: &Resources,
    rt_runtime_us: Option<u64>,
    pid: u32,
) -> Result<serde_json::Value, HostError> {
    let cg = version();
    let ds = dirs(dir_name, cg, res.cpuset.is_some());
    // A cgroup that exists is someone else's: refused, never reused.
    if let Some(d) = ds.iter().find(|d| d.exists()) {
        return Err(HostError::Other(format!(
            "cgroup {} exists and tinyvr did not make it: left alone; pick another --name",
            d.display()
        )));
    }
    for d in &ds {
        let e = state.intend(crate::state::Resource::Cgroup { path: d.clone() })?;
        std::fs::create_dir(d)
            .map_err(|e| HostError::io(format!("creating cgroup {}", d.display()), e))?;
        state.made(e, crate::state::file_id(d)?)?;
    }
    let cpu = &ds[0];
    let mut back = serde_json::Map::new();
    match cg {
        Cgroup::V2 => {
            if let Some(w) = res.cpu_weight {
                write(cpu, "cpu.weight", &w.to_string())?;
            }
            if let Some(m) = &res.cpu_max {
                write(cpu, "cpu.max", m)?;
            }
            if let Some(c) = &res.cpuset {
                write(cpu, "cpuset.cpus", c)?;
            }
            write(cpu, "cgroup.procs", &pid.to_string())?;
            for f in ["cpu.weight", "cpu.max", "cpuset.cpus"] {
                back.insert(f.into(), read(cpu, f).into());
            }
        }
        Cgroup::V1 => {
            if let Some(w) = res.cpu_weight {
                write(cpu, "cpu.shares", &shares_for_weight(w).to_string())?;
            }
            if let Some(m) = &res.cpu_max {
                let mut it = m.split_whitespace();
                let (q, per) = (it.next().unwrap_or("max"), it.next().unwrap_or("100000"));
                write(cpu, "cpu.cfs_period_us", per)?;
                write(cpu, "cpu.cfs_quota_us", if q == "max" { "-1" } else { q })?;
            }
            if let Some(rt) = rt_runtime_us {
                if cpu
                    .parent()
                    .is_some_and(|p| p.join("cpu.rt_runtime_us").exists())
                {
                    write(cpu, "cpu.rt_runtime_us", &rt.to_string())?;
                }
            }
            let cpuset_dir = ds.iter().find(|d| d.starts_with("/sys/fs/cgroup/cpuset"));
            if let (Some(c), Some(set)) = (&res.cpuset, cpuset_dir) {
                // A v1 cpuset takes no task before it has cpus and mems.
                let mems = read(set.parent().unwrap(), "cpuset.mems");
                write(set, "cpuset.mems", &mems)?;
                write(set, "cpuset.cpus", c)?;
            }
            for d in &ds {
                write(d, "cgroup.procs", &pid.to_string())?;
            }
            for f in [
                "cpu.shares",
                "cpu.cfs_quota_us",
                "cpu.cfs_period_us",
                "cpu.rt_runtime_us",
            ] {
                back.insert(f.into(), read(cpu, f).into());
            }
            if let Some(set) = cpuset_dir {
                back.insert("cpuset.cpus".into(), read(set, "cpuset.cpus").into());
            }
        }
    }
    back.insert("path".into(), cpu.display().to_string().into());
    back.insert(
        "version".into(),
        (if cg == Cgroup::V2 { "v2" } else { "v1" }).into(),
    );
    let ours = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    if !ours.contains(dir_name) {
        return Err(HostError::Other(format!(
            "process {pid} is not in cgroup {dir_name} after moving it: {ours}"
        )));
    }
    Ok(serde_json::Value::Object(back))
}

#[cfg(test)]
mod tests {
    use super::*;

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
