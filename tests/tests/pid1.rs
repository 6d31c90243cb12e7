//! tinyvr-init as PID 1 of a pid + mount + net + uts namespace (`unshare`):
//! READY, zombies reaped, capabilities reduced, SIGTERM ends it with 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tinyvr_tests::*;

/// The host pid of the process `unshare --fork` started (PID 1 inside).
fn child_of(pid: u32) -> Option<u32> {
    let c = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    c.split_whitespace().next()?.parse().ok()
}

fn status_field(pid: u32, field: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(&format!("{field}:"))
            .map(|v| v.trim().to_string())
    })
}

/// Host pids of the zombie children of `pid`.
fn zombie_children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if status_field(p, "PPid").as_deref() == Some(&pid.to_string())
            && status_field(p, "State").is_some_and(|s| s.starts_with('Z'))
        {
            out.push(p);
        }
    }
    out
}

#[test]
fn pid1_in_a_namespace_reaps_drops_caps_and_stops_on_sigterm() {
    require!(is_root(), "needs root for pid and network namespaces");
    require!(has_cmd("unshare"), "needs unshare (util-linux)");
    let dir = Scratch::new("pid1");
    // The service leaves two orphans behind each time it runs, then exits:
    // PID 1 must reap them and restart the service.
    let cfg = dir.file(
        "router.toml",
        r#"name = "p1"
[[route]]
dest = "10.66.0.0/16"
kind = "blackhole"
[[service]]
name = "orphans"
exec = ["/bin/sh", "-c", "sleep 0.1 & sleep 0.2 & echo service-ran"]
"#,
    );
    let mut child = Command::new("unshare")
        .args([
            "--pid",
            "--mount",
            "--net",
            "--uts",
            "--fork",
            "--mount-proc",
        ])
        .arg(bin("tinyvr-init"))
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let mut lines = Vec::new();
    let wait_for = |lines: &mut Vec<String>, what: &str, secs: u64| -> bool {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if lines.iter().any(|l| l.contains(what)) {
                return true;
            }
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(50)) {
                lines.push(l);
            }
        }
        false
    };
    let guard = scopeguard(child.id());
    assert!(
        wait_for(&mut lines, "TINYVR-READY", 10),
        "no READY: {lines:#?}"
    );
    let ready = tagged_json(&lines.join("\n"), "TINYVR-READY").unwrap();
    assert_eq!(ready["platform"], "container");
    assert_eq!(ready["routes"], 1);
    let init = child_of(child.id()).expect("the namespace's PID 1");

    // Capabilities: only CAP_SYS_BOOT (bit 22) is left, and nothing more can be regained.
    assert_eq!(
        status_field(init, "CapEff").as_deref(),
        Some("0000000000400000")
    );
    assert_eq!(
        status_field(init, "CapBnd").as_deref(),
        Some("0000000000400000")
    );

    // The service ran, exited, was restarted after back-off; its orphans were reaped.
    std::thread::sleep(Duration::from_millis(1500));
    while let Ok(l) = rx.try_recv() {
        lines.push(l);
    }
    let runs = lines
        .iter()
        .filter(|l| l.contains("service orphans started"))
        .count();
    assert!(runs >= 2, "service not restarted: {lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("service orphans") && l.contains("exited with status 0")),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("reaped pid")) || zombie_children(init).is_empty());
    assert_eq!(
        zombie_children(init),
        Vec::<u32>::new(),
        "zombies left under PID 1"
    );

    // SIGHUP: interface counters on the console, from /proc/net/dev.
    nix_kill(init, 1);
    assert!(
        wait_for(&mut lines, "counters lo: rx_packets=", 5),
        "no counters after SIGHUP: {lines:#?}"
    );

    // SIGTERM: clean shutdown, exit status 0.
    nix_kill(init, 15);
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "PID 1 did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(guard);
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        lines.push(l);
    }
    assert!(status.success(), "exit status {status}: {lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("received SIGTERM")),
        "{lines:#?}"
    );
}

#[test]
fn pid1_with_a_bad_config_reports_and_exits_nonzero() {
    require!(is_root(), "needs root for pid and network namespaces");
    require!(has_cmd("unshare"), "needs unshare (util-linux)");
    let dir = Scratch::new("pid1-bad");
    let cfg = dir.file(
        "router.toml",
        "name = \"p1\"\n[[route]]\ndest = \"10.9.0.0/16\"\nvia = \"10.7.0.2\"\n",
    );
    let out = Command::new("unshare")
        .args([
            "--pid",
            "--mount",
            "--net",
            "--uts",
            "--fork",
            "--mount-proc",
        ])
        .arg(bin("tinyvr-init"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let err = tagged_json(&stdout, "TINYVR-ERROR").expect("an ERROR line");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("route[0].via: gateway 10.7.0.2 is outside every connected subnet"),
        "{err}"
    );
    assert!(!stdout.contains("TINYVR-READY"));
}

fn nix_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Kills the unshare process tree if the test fails midway.
struct Guard(u32);
fn scopeguard(pid: u32) -> Guard {
    Guard(pid)
}
impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(init) = child_of(self.0) {
            nix_kill(init, 9);
        }
        nix_kill(self.0, 9);
    }
}
