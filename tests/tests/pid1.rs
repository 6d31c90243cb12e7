//! tinyvr-init as PID 1 of a pid + mount + net + uts namespace (`unshare`):
//! READY, zombies reaped, capabilities reduced (the init's and each
//! service's, read from /proc), SIGTERM ends it with 0, a panic after READY
//! ends it too; and what it refuses: init mode as any other pid, host-wide
//! sysctls in a container or with `--apply`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tinyvr_tests::*;

/// The host pid of the process `unshare --fork` started (PID 1 inside).
fn child_of(pid: u32) -> Option<u32> {
    children(pid).first().copied()
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
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

const UNSHARE: &[&str] = &[
    "--pid",
    "--mount",
    "--net",
    "--uts",
    "--fork",
    "--mount-proc",
];

/// `tinyvr-init --config CFG` as PID 1 of fresh namespaces, its console
/// lines collected as they come. Killed when dropped, also when the test
/// fails midway.
struct Pid1 {
    child: Child,
    rx: mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Pid1 {
    fn start(cfg: &Path, env: &[(&str, &str)]) -> Pid1 {
        let mut child = Command::new("unshare")
            .args(UNSHARE)
            .arg(bin("tinyvr-init"))
            .arg("--config")
            .arg(cfg)
            .envs(env.iter().copied())
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
        Pid1 {
            child,
            rx,
            lines: Vec::new(),
        }
    }

    fn wait_for(&mut self, what: &str, secs: u64) -> bool {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if self.lines.iter().any(|l| l.contains(what)) {
                return true;
            }
            if let Ok(l) = self.rx.recv_timeout(Duration::from_millis(50)) {
                self.lines.push(l);
            }
        }
        false
    }

    fn drain(&mut self) {
        while let Ok(l) = self.rx.try_recv() {
            self.lines.push(l);
        }
    }

    /// PID 1's host pid.
    fn init(&self) -> u32 {
        child_of(self.child.id()).expect("the namespace's PID 1")
    }

    /// Waits (bounded) for the namespace to end; its exit status.
    fn exit_status(&mut self, secs: u64) -> ExitStatus {
        let end = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < end,
                "PID 1 still running after {secs} s: {:#?}",
                self.lines
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.rx.recv_timeout(Duration::from_millis(200)) {
            self.lines.push(l);
        }
        status
    }
}

impl Drop for Pid1 {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            if let Some(init) = child_of(self.child.id()) {
                nix_kill(init, 9);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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
    let mut p = Pid1::start(&cfg, &[]);
    assert!(p.wait_for("TINYVR-READY", 10), "no READY: {:#?}", p.lines);
    let ready = tagged_json(&p.lines.join("\n"), "TINYVR-READY").unwrap();
    assert_eq!(ready["platform"], "container");
    assert_eq!(ready["routes"], 1);
    let init = p.init();

    // Capabilities: only CAP_SYS_BOOT (bit 22) is effective; CAP_SETPCAP
    // (bit 8) stays permitted for the services' children to cut their
    // bounding sets; no service asks for anything, so the bounding set is empty.
    assert_eq!(
        status_field(init, "CapEff").as_deref(),
        Some("0000000000400000")
    );
    assert_eq!(
        status_field(init, "CapPrm").as_deref(),
        Some("0000000000400100")
    );
    assert_eq!(
        status_field(init, "CapBnd").as_deref(),
        Some("0000000000000000")
    );

    // The service ran, exited, was restarted after back-off; its orphans were reaped.
    std::thread::sleep(Duration::from_millis(1500));
    p.drain();
    let runs = p
        .lines
        .iter()
        .filter(|l| l.contains("service orphans started"))
        .count();
    assert!(runs >= 2, "service not restarted: {:#?}", p.lines);
    assert!(
        p.lines
            .iter()
            .any(|l| l.contains("service orphans") && l.contains("exited with status 0")),
        "{:#?}",
        p.lines
    );
    assert!(p.lines.iter().any(|l| l.contains("reaped pid")) || zombie_children(init).is_empty());
    assert_eq!(
        zombie_children(init),
        Vec::<u32>::new(),
        "zombies left under PID 1"
    );

    // SIGHUP: interface counters on the console, from /proc/net/dev.
    nix_kill(init, 1);
    assert!(
        p.wait_for("counters lo: rx_packets=", 5),
        "no counters after SIGHUP: {:#?}",
        p.lines
    );

    // SIGTERM: clean shutdown, exit status 0.
    nix_kill(init, 15);
    let status = p.exit_status(10);
    assert!(status.success(), "exit status {status}: {:#?}", p.lines);
    assert!(
        p.lines.iter().any(|l| l.contains("received SIGTERM")),
        "{:#?}",
        p.lines
    );
}

/// The host pid of the child of `init` whose command line is `argv`.
fn service_pid(init: u32, argv: &[&str]) -> Option<u32> {
    let want = argv.join("\0") + "\0";
    children(init)
        .into_iter()
        .find(|c| std::fs::read(format!("/proc/{c}/cmdline")).is_ok_and(|b| b == want.as_bytes()))
}

const NONE: &str = "0000000000000000";
const NET_ADMIN: &str = "0000000000001000";

#[test]
fn services_get_exactly_the_capabilities_they_ask_for() {
    require!(is_root(), "needs root for pid and network namespaces");
    require!(has_cmd("unshare"), "needs unshare (util-linux)");
    let dir = Scratch::new("pid1-caps");
    let cfg = dir.file(
        "router.toml",
        r#"name = "p1"
[[service]]
name = "plain"
exec = ["/bin/sleep", "1000"]
[[service]]
name = "router"
exec = ["/bin/sleep", "1001"]
net_admin = true
"#,
    );
    let mut p = Pid1::start(&cfg, &[]);
    assert!(p.wait_for("TINYVR-READY", 10), "no READY: {:#?}", p.lines);
    let init = p.init();
    let end = Instant::now() + Duration::from_secs(5);
    let (plain, router) = loop {
        let found = (
            service_pid(init, &["/bin/sleep", "1000"]),
            service_pid(init, &["/bin/sleep", "1001"]),
        );
        if let (Some(a), Some(b)) = found {
            break (a, b);
        }
        assert!(Instant::now() < end, "services not running: {:#?}", p.lines);
        std::thread::sleep(Duration::from_millis(20));
    };
    let caps = |pid: u32| {
        [
            "CapEff",
            "CapPrm",
            "CapBnd",
            "CapInh",
            "CapAmb",
            "NoNewPrivs",
        ]
        .map(|f| status_field(pid, f).unwrap_or_default())
    };
    // What /proc shows, for whoever reads the test log.
    for (who, pid) in [("init", init), ("plain", plain), ("router", router)] {
        eprintln!(
            "{who}: CapEff CapPrm CapBnd CapInh CapAmb NoNewPrivs {:?}",
            caps(pid)
        );
    }
    // Asking for nothing gives nothing, and nothing can be regained.
    assert_eq!(caps(plain), [NONE, NONE, NONE, NONE, NONE, "1"]);
    // net_admin gives CAP_NET_ADMIN (bit 12) alone: no CAP_SYS_BOOT.
    assert_eq!(
        caps(router),
        [NET_ADMIN, NET_ADMIN, NET_ADMIN, NET_ADMIN, NET_ADMIN, "1"]
    );
    // The init: CAP_SYS_BOOT effective; CAP_SETPCAP and CAP_NET_ADMIN only
    // permitted, to hand on; a bounding set of what the services ask for.
    assert_eq!(
        caps(init)[..3],
        ["0000000000400000", "0000000000401100", NET_ADMIN]
    );

    // The services do not inherit the init's blocked signals: SIGTERM ends
    // them at once, with no SIGKILL after the grace period.
    nix_kill(init, 15);
    let status = p.exit_status(10);
    assert!(status.success(), "exit status {status}: {:#?}", p.lines);
    assert!(
        !p.lines.iter().any(|l| l.contains("sending SIGKILL")),
        "{:#?}",
        p.lines
    );
}

#[test]
fn a_panic_after_ready_stops_everything_and_exits_nonzero() {
    require!(is_root(), "needs root for pid and network namespaces");
    require!(has_cmd("unshare"), "needs unshare (util-linux)");
    let dir = Scratch::new("pid1-panic");
    let cfg = dir.file(
        "router.toml",
        r#"name = "p1"
[[service]]
name = "waiter"
exec = ["/bin/sh", "-c", "trap 'echo waiter-got-term; exit 0' TERM; echo waiter-up; while :; do sleep 0.1; done"]
"#,
    );
    // A debug build of the init panics on SIGHUP with this set.
    let mut p = Pid1::start(&cfg, &[("TINYVR_TEST_PANIC_ON_SIGHUP", "1")]);
    assert!(p.wait_for("waiter-up", 10), "no service: {:#?}", p.lines);
    nix_kill(p.init(), 1);
    let status = p.exit_status(10);
    assert_eq!(status.code(), Some(1), "{:#?}", p.lines);
    let err = tagged_json(&p.lines.join("\n"), "TINYVR-ERROR").expect("an ERROR line");
    assert_eq!(err["stage"], "panic", "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("TINYVR_TEST_PANIC_ON_SIGHUP"),
        "{err}"
    );
    assert!(
        p.lines.iter().any(|l| l.contains("waiter-got-term")),
        "the service was not stopped: {:#?}",
        p.lines
    );
}

#[test]
fn init_mode_is_refused_when_not_pid_1() {
    require!(is_root(), "needs root for pid and mount namespaces");
    require!(has_cmd("unshare"), "needs unshare (util-linux)");
    let dir = Scratch::new("pid1-not1");
    let cfg = dir.file(
        "router.toml",
        "name = \"p1\"\n[[route]]\ndest = \"10.66.0.0/16\"\nkind = \"blackhole\"\n",
    );
    // A shell is PID 1 of the namespace and the init a later pid: were it
    // not refused, it could harm only the namespace.
    // Mounts compared by mount ID: only one the init would add counts (a
    // host mount that goes away meanwhile, say a namespace another test
    // deletes, is not the init's doing).
    let script = r#"before=$(cut -d' ' -f1,5 /proc/self/mountinfo | sort)
"$0" --config "$1"; a=$?
"$0"; b=$?
after=$(cut -d' ' -f1,5 /proc/self/mountinfo | sort)
new=$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | tr '\n' ';')
echo "status $a $b new [$new]"
"#;
    let out = Command::new("unshare")
        .args(UNSHARE)
        .args(["bash", "-c", script])
        .arg(bin("tinyvr-init"))
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("status "))
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        summary.get(1..3),
        Some(&["2", "2"][..]),
        "{stdout} {stderr}"
    );
    assert_eq!(summary.get(3), Some(&"new"), "{stdout} {stderr}");
    assert!(
        stdout.contains("new []"),
        "the init mounted something: {stdout}"
    );
    assert!(!stdout.contains("TINYVR-"), "{stdout}");
    assert_eq!(stderr.matches("runs as PID 1 only").count(), 2, "{stderr}");
    assert!(
        stderr.contains("tinyvr-init --apply FILE") && stderr.contains("tinyvr-init --check FILE"),
        "{stderr}"
    );
}

/// Keys that are not per network namespace and exist in no fresh one:
/// were the refusal missing, setting them would fail and harm nothing.
const HOST_WIDE_SYSCTLS: &str =
    "[sysctl]\n\"kernel.tinyvr_test_absent\" = 1\n\"net.core.netdev_max_backlog\" = 5000\n";
const REFUSED: &str = "not per network namespace: the baseline and a container share the host kernel; only a VM may set it";

#[test]
fn a_container_init_refuses_host_wide_sysctls() {
    require!(is_root(), "needs root for pid and network namespaces");
    require!(has_cmd("unshare"), "needs unshare (util-linux)");
    let dir = Scratch::new("pid1-sysctl");
    let cfg = dir.file(
        "router.toml",
        &format!("name = \"p1\"\n{HOST_WIDE_SYSCTLS}"),
    );
    let out = Command::new("unshare")
        .args(UNSHARE)
        .arg(bin("tinyvr-init"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let err = tagged_json(&stdout, "TINYVR-ERROR").expect("an ERROR line");
    assert_eq!(err["stage"], "config", "{err}");
    let msg = err["error"].as_str().unwrap();
    for key in ["kernel.tinyvr_test_absent", "net.core.netdev_max_backlog"] {
        assert!(
            msg.contains(&format!("sysctl.\"{key}\": {REFUSED}")),
            "{msg}"
        );
    }
    assert!(!stdout.contains("TINYVR-READY"));
}

/// `--apply` lives in tests/tests/apply_netns.rs otherwise; this one is
/// about the same refusal as the container's.
#[test]
fn apply_refuses_host_wide_sysctls_before_touching_anything() {
    require!(is_root(), "needs root for network namespaces");
    let ns = Netns::new();
    let state = || (ns.snapshot(), ns.read("/proc/sys/net/ipv4/ip_forward"));
    let before = state();
    let dir = Scratch::new("apply-sysctl");
    let cfg = dir.file(
        "router.toml",
        &format!(
            "name = \"a1\"\n[[route]]\ndest = \"10.66.0.0/16\"\nkind = \"blackhole\"\n{HOST_WIDE_SYSCTLS}"
        ),
    );
    let out = ns
        .exec(bin("tinyvr-init"))
        .arg("--apply")
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let err = tagged_json(&stdout, "TINYVR-ERROR").expect("an ERROR line");
    let msg = err["error"].as_str().unwrap();
    assert!(
        msg.contains(&format!("sysctl.\"kernel.tinyvr_test_absent\": {REFUSED}")),
        "{msg}"
    );
    // Neither the route nor the router's default sysctls went in.
    assert_eq!(state(), before);
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
        .args(UNSHARE)
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
