//! What a run leaves in its output directory: results.json (every trial
//! and summary), results.csv (one tidy row per point), environment.json
//! (the host, the tools, the image, every setting as read back), and the
//! short table printed at the end.

use crate::experiment::Loaded;
use crate::run::{Point, Results};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

fn write(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(|e| format!("writing {}: {e}", p.display()))
}

pub fn results_json(dir: &Path, l: &Loaded, r: &Results) -> Result<(), String> {
    let j = serde_json::json!({
        "experiment": l.exp,
        "results": r,
    });
    write(
        dir,
        "results.json",
        &serde_json::to_string_pretty(&j).expect("serializes"),
    )
}

pub const CSV_HEADER: &str = "router,label,platform,frame,step,target_pps,n,offered_pps,forwarded_pps,forwarded_sd,forwarded_ci,loss_ratio,loss_ratio_ci,generator_bound,latency_p50_us,latency_p99_us";

pub fn csv_row(p: &Point) -> String {
    format!(
        "{},{},{},{},{},{},{},{:.1},{:.1},{:.1},{:.1},{:.6},{:.6},{},{},{}",
        p.router,
        p.label.replace(',', ";"),
        p.platform.as_str(),
        p.frame,
        p.step,
        p.target_pps.map_or("max".into(), |x| x.to_string()),
        p.forwarded_pps.n,
        p.offered_pps.mean,
        p.forwarded_pps.mean,
        p.forwarded_pps.sd,
        p.forwarded_pps.ci,
        p.loss_ratio.mean,
        p.loss_ratio.ci,
        p.generator_bound,
        p.latency_p50_us
            .as_ref()
            .map_or(String::new(), |l| format!("{:.1}", l.mean)),
        p.latency_p99_us
            .as_ref()
            .map_or(String::new(), |l| format!("{:.1}", l.mean))
    )
}

pub fn results_csv(dir: &Path, r: &Results) -> Result<(), String> {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    let iso = r.isolation.iter().flat_map(|st| st.routers.iter());
    for p in r.points.iter().chain(iso) {
        s.push_str(&csv_row(p));
        s.push('\n');
    }
    if !r.ndr_pdr.is_empty() {
        write(
            dir,
            "ndr_pdr.csv",
            &r.ndr_pdr.iter().fold(
                "router,label,platform,frame,n,ndr_pps,ndr_ci,pdr_pps,pdr_ci\n".to_string(),
                |mut s, x| {
                    let _ = writeln!(
                        s,
                        "{},{},{},{},{},{:.0},{:.0},{:.0},{:.0}",
                        x.router,
                        x.label,
                        x.platform.as_str(),
                        x.frame,
                        x.ndr_pps.n,
                        x.ndr_pps.mean,
                        x.ndr_pps.ci,
                        x.pdr_pps.mean,
                        x.pdr_pps.ci
                    );
                    s
                },
            ),
        )?;
    }
    write(dir, "results.csv", &s)
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(if o.stdout.is_empty() {
                &o.stderr
            } else {
                &o.stdout
            })
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "not found".into())
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The host as it was for this run.
pub fn environment(l: &Loaded, r: &Results) -> serde_json::Value {
    let cpuinfo = read("/proc/cpuinfo");
    let field = |k: &str| {
        cpuinfo
            .lines()
            .find(|x| x.starts_with(k))
            .and_then(|x| x.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let uname = nix::sys::utsname::uname().ok();
    let manifest: serde_json::Value = std::fs::read_to_string(l.image.join("manifest.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "kernel": uname.as_ref().map(|u| format!("{} {}", u.release().to_string_lossy(), u.version().to_string_lossy())),
        "machine": uname.as_ref().map(|u| u.machine().to_string_lossy().to_string()),
        "cpu_model": field("model name"),
        "cpu_flags": field("flags"),
        "online_cpus": read("/sys/devices/system/cpu/online"),
        "governor": read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "kvm": std::path::Path::new("/dev/kvm").exists(),
        "vhost_net": std::path::Path::new("/dev/vhost-net").exists(),
        "cgroup": format!("{:?}", tinyvr_host::cgroup::version()),
        "qemu": first_line("qemu-system-x86_64", &["--version"]),
        "lxc": first_line("lxc-start", &["--version"]),
        "tinyvr": env!("CARGO_PKG_VERSION"),
        "image": manifest,
        "sysctl": {
            "net.core.netdev_max_backlog": read("/proc/sys/net/core/netdev_max_backlog"),
            "net.core.netdev_budget": read("/proc/sys/net/core/netdev_budget"),
            "kernel.sched_rt_runtime_us": read("/proc/sys/kernel/sched_rt_runtime_us"),
        },
        // Each router's READY json: what the init applied, and for VMs the
        // accelerator, qemu argv, thread placement and cgroup as read back.
        "routers": r.routers,
    })
}

pub fn environment_json(dir: &Path, l: &Loaded, r: &Results) -> Result<(), String> {
    write(
        dir,
        "environment.json",
        &serde_json::to_string_pretty(&environment(l, r)).expect("serializes"),
    )
}

/// The short table: per router and frame, the zero-loss rate and the
/// peak forwarded rate.
pub fn table(r: &Results) -> String {
    let mut s = String::new();
    // The router column fits the longest label.
    let w = r
        .points
        .iter()
        .map(|p| p.label.chars().count())
        .chain(r.ndr_pdr.iter().map(|x| x.label.chars().count()))
        .fold(18, usize::max);
    if !r.points.is_empty() || !r.ndr_pdr.is_empty() {
        let _ = writeln!(
            s,
            "{:<w$} {:<6} {:>6} {:>14} {:>14}",
            "router", "plat", "frame", "zero-loss kpps", "peak fwd kpps"
        );
    }
    let mut keys: Vec<(String, String)> = Vec::new();
    let mut footnote = false;
    for p in &r.points {
        let k = (p.label.clone(), p.frame.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for (label, frame) in keys {
        let ps: Vec<&Point> = r
            .points
            .iter()
            .filter(|p| p.label == label && p.frame == frame)
            .collect();
        let zero = ps
            .iter()
            .filter(|p| p.loss_ratio.max <= 0.0)
            .max_by(|a, b| a.offered_pps.mean.total_cmp(&b.offered_pps.mean));
        let peak = ps.iter().map(|p| p.forwarded_pps.mean).fold(0.0, f64::max);
        // A zero-loss rate the generator could not go beyond is a lower
        // bound of the router's, not its capacity.
        let bound = zero.is_some_and(|p| p.generator_bound);
        footnote |= bound;
        let _ = writeln!(
            s,
            "{:<w$} {:<6} {:>6} {:>14} {:>14.1}",
            label,
            ps[0].platform.as_str(),
            frame,
            format!(
                "{}{:.1}",
                if bound { "≥ " } else { "" },
                zero.map_or(0.0, |p| p.offered_pps.mean) / 1e3
            ),
            peak / 1e3
        );
    }
    for x in &r.ndr_pdr {
        let _ = writeln!(
            s,
            "{:<w$} {:<6} {:>6} {:>14.1} {:>14}   (NDR; PDR {:.1} kpps{})",
            x.label,
            x.platform.as_str(),
            x.frame,
            x.ndr_pps.mean / 1e3,
            "",
            x.pdr_pps.mean / 1e3,
            if x.generator_bound {
                "; the generator could not offer the search's top rates"
            } else {
                ""
            }
        );
    }
    for c in &r.generator_ceiling {
        let _ = writeln!(
            s,
            "generator alone into a bare sink, {}B: {:.1} kpps (the ceiling of every rate above)",
            c.frame,
            c.offered_pps / 1e3
        );
    }
    if footnote {
        let _ = writeln!(
            s,
            "≥: generator-bound — the router lost nothing at the most the generator could offer; its capacity is higher"
        );
    }
    for st in &r.isolation {
        let _ = writeln!(s, "{}", step_line(st.step, &st.routers, st.jain_forwarded));
    }
    for p in r.scale.iter().filter(|p| !p.baseline_only) {
        let _ = writeln!(s, "{}", scale_line(p));
    }
    for p in &r.migration_points {
        let _ = writeln!(s, "{}", migration_line(p).trim_start());
    }
    s
}

/// One migrate point, as printed while the run goes.
pub fn migration_line(p: &crate::run::MigrationPoint) -> String {
    format!(
        "  {:<12} {:>5}B at {:>7.1} kpps: downtime {:.1} ± {:.1} ms (qemu), longest sink gap {:.1} ± {:.1} ms, total {:.0} ± {:.0} ms, {:.1} ± {:.1} MB moved, {:.0} lost",
        p.label,
        p.frame,
        p.offered_pps.mean / 1e3,
        p.downtime_ms.mean,
        p.downtime_ms.ci,
        p.longest_gap_ms.mean,
        p.longest_gap_ms.ci,
        p.total_time_ms.mean,
        p.total_time_ms.ci,
        p.ram_transferred_mb.mean,
        p.ram_transferred_mb.ci,
        p.lost.mean
    )
}

/// One scale point: the copies' aggregate against one router offered the
/// same total.
pub fn scale_line(p: &crate::run::ScalePoint) -> String {
    format!(
        "  {} routers x {:.1} kpps: aggregate {:.1} ± {:.1} kpps{}  Jain(fwd) {:.3}{}",
        p.routers,
        p.rate_pps as f64 / 1e3,
        p.aggregate_pps.mean / 1e3,
        p.aggregate_pps.ci / 1e3,
        match (p.baseline_pps, p.efficiency) {
            (Some(b), Some(e)) => format!(
                "  (one router at the same total: {:.1} kpps; efficiency {e:.3})",
                b / 1e3
            ),
            _ => String::new(),
        },
        p.jain_forwarded.unwrap_or(f64::NAN),
        if p.generator_bound {
            "  (generator-bound: the rates were not offered)"
        } else {
            ""
        }
    )
}

/// One isolation step: each router's forwarded/offered rate and Jain's index.
pub fn step_line(step: usize, points: &[Point], jain: Option<f64>) -> String {
    format!(
        "step {:<3} {}  Jain(fwd) {:.3}",
        step + 1,
        points
            .iter()
            .map(|p| format!(
                "{}: {:.1}/{:.1} kpps",
                p.label,
                p.forwarded_pps.mean / 1e3,
                p.offered_pps.mean / 1e3
            ))
            .collect::<Vec<_>>()
            .join("  "),
        jain.unwrap_or(f64::NAN)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Point;
    use crate::stats::summarize;

    fn point(label: &str, offered: f64, forwarded: f64) -> Point {
        Point {
            router: "r".into(),
            label: label.into(),
            platform: crate::experiment::Platform::Vm,
            frame: "64".into(),
            step: 0,
            target_pps: None,
            offered_pps: summarize(&[offered], 0.95),
            forwarded_pps: summarize(&[forwarded], 0.95),
            loss_ratio: summarize(&[1.0 - forwarded / offered], 0.95),
            cpu: Default::default(),
            generator_bound: false,
            cores: Vec::new(),
            latency_p50_us: None,
            latency_p99_us: None,
        }
    }

    #[test]
    fn a_generator_bound_zero_loss_rate_is_a_lower_bound() {
        let mut p = point("baseline", 300e3, 300e3);
        p.generator_bound = true;
        let r = Results {
            points: vec![point("baseline", 10e3, 10e3), p],
            ..Default::default()
        };
        let t = table(&r);
        assert!(t.contains("≥ 300.0"), "{t}");
        assert!(
            t.lines().last().unwrap().starts_with("≥: generator-bound"),
            "{t}"
        );
        assert!(csv_row(&r.points[1]).ends_with(",true,,"));
        assert_eq!(
            CSV_HEADER.split(',').count(),
            csv_row(&r.points[1]).split(',').count()
        );
    }

    #[test]
    fn the_table_keeps_its_columns_under_long_labels() {
        let r = Results {
            points: vec![
                point("vm", 40e3, 40e3),
                point("prealloc, no THP (TCG default)", 80e3, 60e3),
            ],
            ..Default::default()
        };
        let t = table(&r);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        // Every line ends its platform column at the same place.
        let at: Vec<usize> = lines
            .iter()
            .map(|l| l.find(" vm ").or(l.find(" plat ")).unwrap())
            .collect();
        assert!(at.iter().all(|&a| a == at[0]), "{t}");
        assert!(lines[2].contains("0.0") && lines[2].contains("60.0"), "{t}");
    }
}
