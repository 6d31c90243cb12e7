//! `tinyvr lxc up/down` with real LXC: the image's rootfs, tinyvr-init as
//! the container's PID 1, traffic through it, settings read back from
//! /proc and the cgroup files, nothing left behind.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use tinyvr_tests::*;

/// The image's rootfs, built once (the kernel comes from the cache).
fn rootfs() -> &'static Path {
    static R: OnceLock<PathBuf> = OnceLock::new();
    R.get_or_init(|| built_image("tinyvr-lxc-image").join("rootfs"))
}

fn can_run() -> Option<&'static str> {
    if !is_root() {
        return Some("needs root");
    }
    if !has_cmd("lxc-start") {
        return Some("needs lxc-start (Debian's lxc; scripts/setup installs it)");
    }
    if !Path::new(tinyvr_image::kernel::DEFAULT_SOURCE).exists() {
        return Some("needs linux-source-6.1 to build the image (scripts/setup installs it)");
    }
    None
}

fn router(tag: char, extra: &str) -> (String, String) {
    let name = format!("l{}{tag}", std::process::id() % 100_000);
    let cfg = format!(
        r#"name = "{name}"
[[interface]]
name = "in0"
addresses = ["10.1.0.1/24"]
[[interface]]
name = "out0"
addresses = ["10.2.0.1/24"]
{extra}
[sysctl]
"net.ipv6.conf.in0.disable_ipv6" = 1
"net.ipv6.conf.out0.disable_ipv6" = 1
"#
    );
    (name, cfg)
}

fn tinyvr(args: &[&str]) -> Output {
    Command::new(bin("tinyvr")).args(args).output().unwrap()
}

fn up(cfg: &Path, more: &[&str]) -> Output {
    let mut a = vec![
        "lxc",
        "up",
        cfg.to_str().unwrap(),
        "--rootfs",
        rootfs().to_str().unwrap(),
    ];
    a.extend_from_slice(more);
    tinyvr(&a)
}

/// Everything with the router's name: namespaces, links, state, the
/// container directory, cgroups.
fn all_leftovers(name: &str) -> Vec<String> {
    let mut l = leftovers(name);
    if Path::new("/var/lib/tinyvr/lxc").join(name).exists() {
        l.push(format!("container dir {name}"));
    }
    let cg = sh(&format!(
        "find /sys/fs/cgroup -maxdepth 3 -name '*{name}*' 2>/dev/null || true"
    ));
    l.extend(cg.lines().map(|s| format!("cgroup {s}")));
    l
}

fn cgroup_cpu(name: &str) -> (String, String) {
    let v2 = format!("/sys/fs/cgroup/lxc.payload.{name}/cpu.weight");
    if Path::new(&v2).exists() {
        return (
            "cpu.weight".into(),
            std::fs::read_to_string(v2).unwrap().trim().into(),
        );
    }
    let v1 = format!("/sys/fs/cgroup/cpu/lxc.payload.{name}/cpu.shares");
    (
        "cpu.shares".into(),
        std::fs::read_to_string(&v1)
            .unwrap_or_else(|e| panic!("{v1}: {e}"))
            .trim()
            .into(),
    )
}

#[test]
fn container_router_forwards_and_stops_cleanly() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let (name, cfg) = router('a', "");
    let dir = Scratch::new("lxc");
    let f = dir.file("router.toml", &cfg);
    let _down = Down::new("lxc", &name);
    let out = up(&f, &["--topology", "--cpu-weight", "200"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ready["platform"], "container");
    let pid = ready["init_pid"].as_u64().expect("init pid") as u32;

    // Inside the container's namespace, with ip, not tinyvr's view.
    let ip = run(Command::new("nsenter").args([
        "-t",
        &pid.to_string(),
        "-n",
        "ip",
        "-json",
        "-4",
        "addr",
        "show",
        "dev",
        "out0",
    ]));
    let v: Value = serde_json::from_slice(&ip.stdout).unwrap();
    assert_eq!(v[0]["addr_info"][0]["local"], "10.2.0.1");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.lines().any(|l| l == "CapEff:\t0000000000400000"),
        "PID 1 keeps more than CAP_SYS_BOOT:\n{status}"
    );
    let (file, val) = cgroup_cpu(&name);
    assert_eq!(
        val,
        if file == "cpu.weight" { "200" } else { "2048" },
        "{file}"
    );
    // up reported the same, as asked and as held.
    let held = &ready["cgroup"]["files"][file.as_str()];
    assert_eq!(
        (held["asked"].as_str(), held["held"].as_str()),
        (Some(val.as_str()), Some(val.as_str())),
        "{held}"
    );

    let (src, snk, dev) = (
        format!("{name}-src"),
        format!("{name}-snk"),
        format!("{name}-out0"),
    );
    let before = link_stat(&snk, &dev, "rx", "packets");
    udp_send(&src, "10.2.0.2:9".parse().unwrap(), 10_000, 18);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(link_stat(&snk, &dev, "rx", "packets") - before, 10_000);

    let out = tinyvr(&["lxc", "down", &name]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("received SIGPWR") && err.contains("exiting with status 0"),
        "no clean exit logged: {err}"
    );
    assert_eq!(all_leftovers(&name), Vec::<String>::new());
}

#[test]
fn phys_and_macvlan_in_a_container() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let (name, _) = router('b', "");
    let (ph0, ph1, par, pp) = (
        format!("{name}-ph0"),
        format!("{name}-ph1"),
        format!("{name}-par"),
        format!("{name}-pp"),
    );
    let _links = HostLinks(vec![ph0.clone(), par.clone()]);
    let _down = Down::new("lxc", &name);
    run(Command::new("ip").args(["link", "add", &ph0, "type", "veth", "peer", "name", &ph1]));
    run(Command::new("ip").args(["link", "add", &par, "type", "veth", "peer", "name", &pp]));
    let cleanup = || {
        for d in [&ph0, &ph1, &par] {
            let _ = Command::new("ip").args(["link", "del", d]).output();
        }
    };
    let cfg = format!(
        "name = \"{name}\"\n[[interface]]\nname = \"in0\"\naddresses = [\"10.1.0.1/24\"]\nhost = {{ kind = \"phys\", device = \"{ph0}\" }}\n\
         [[interface]]\nname = \"out0\"\naddresses = [\"10.2.0.1/24\"]\nhost = {{ kind = \"macvlan\", parent = \"{par}\" }}\n"
    );
    let dir = Scratch::new("lxc-phys");
    let _down = Down::new("lxc", &name);
    let out = up(&dir.file("router.toml", &cfg), &[]);
    if !out.status.success() {
        cleanup();
        panic!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let ready: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pid = ready["init_pid"].as_u64().unwrap().to_string();
    let l =
        run(Command::new("nsenter").args(["-t", &pid, "-n", "ip", "-d", "-json", "link", "show"]));
    let v: Value = serde_json::from_slice(&l.stdout).unwrap();
    let kind = |n: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|x| x["ifname"] == n)
            .map(|x| x["linkinfo"]["info_kind"].clone())
    };
    assert_eq!(kind("in0"), Some("veth".into()), "{v}");
    assert_eq!(kind("out0"), Some("macvlan".into()), "{v}");
    let out = tinyvr(&["lxc", "down", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cleanup();
    assert_eq!(all_leftovers(&name), Vec::<String>::new());
}

#[test]
fn failures_leave_nothing_behind() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let dir = Scratch::new("lxc-bad");
    // Refused inside the container: the init's TINYVR-ERROR text comes back.
    let (name, cfg) = router('c', "");
    let f = dir.file(
        "refused.toml",
        &format!("{cfg}\"net.core.netdev_max_backlog\" = 5000\n"),
    );
    let _down = Down::new("lxc", &name);
    let out = up(&f, &["--topology"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("sysctl.\"net.core.netdev_max_backlog\": not per network namespace"),
        "{err}"
    );
    assert_eq!(all_leftovers(&name), Vec::<String>::new());

    // A config mistake: named, nothing created.
    let (name, cfg) = router('d', "");
    let _down = Down::new("lxc", &name);
    let out = up(
        &dir.file("bad.toml", &cfg.replace("10.2.0.1/24", "10.2.0.1/99")),
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("interface[1].addresses[0]"),
        "{err}"
    );
    assert_eq!(all_leftovers(&name), Vec::<String>::new());

    // A phys device that does not exist.
    let (name, cfg) = router('e', "");
    let cfg = cfg.replace(
        "name = \"out0\"",
        "name = \"out0\"\nhost = { kind = \"phys\", device = \"nosuchvf0\" }",
    );
    let _down = Down::new("lxc", &name);
    let out = up(&dir.file("phys.toml", &cfg), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no device named \"nosuchvf0\""),
        "{err}"
    );
    assert_eq!(all_leftovers(&name), Vec::<String>::new());

    // A missing rootfs.
    let (name, cfg) = router('f', "");
    let f = dir.file("ok.toml", &cfg);
    let out = tinyvr(&[
        "lxc",
        "up",
        f.to_str().unwrap(),
        "--rootfs",
        "/nonexistent/rootfs",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("rootfs /nonexistent/rootfs has no /init"),
        "{err}"
    );
    assert_eq!(all_leftovers(&name), Vec::<String>::new());

    // No lxc-start on the PATH.
    let out = Command::new(bin("tinyvr"))
        .env("PATH", "/nonexistent")
        .args(["lxc", "up", f.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("lxc-start not found"),
        "{err}"
    );
    assert_eq!(all_leftovers(&name), Vec::<String>::new());

    // A CPU that is not online.
    let _down = Down::new("lxc", &name);
    let off = offline_cpu().to_string();
    let out = up(&f, &["--cpuset", &off]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&format!("CPU {off} is not online")),
        "{err}"
    );
    assert_eq!(all_leftovers(&name), Vec::<String>::new());
}

#[test]
fn gc_cleans_up_after_the_monitor_was_killed() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let (name, cfg) = router('g', "");
    let dir = Scratch::new("lxc-gc");
    let _down = Down::new("lxc", &name);
    let out = up(
        &dir.file("router.toml", &cfg),
        &["--topology", "--cpu-weight", "50"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("/run/tinyvr/{name}.json")).unwrap())
            .unwrap();
    let owner = state["owner_pid"].as_u64().expect("owner pid");
    // The tool and the monitor die uncleanly: gc finds the owner gone.
    run(Command::new("kill").args(["-9", &owner.to_string()]));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = tinyvr(&["gc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("removing {name}")));
    assert_eq!(all_leftovers(&name), Vec::<String>::new());
}

#[test]
fn a_users_container_is_left_alone_and_two_instances_run_side_by_side() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let dir = Scratch::new("lxc-own");
    let (name, cfg) = router('h', "");
    let f = dir.file("router.toml", &cfg);
    // A container directory of the same name that tinyvr did not make.
    let theirs = Path::new("/var/lib/tinyvr/lxc").join(&name);
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("config"), "# the user's\n").unwrap();
    let _down = Down::new("lxc", &name);
    let out = up(&f, &["--topology"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let kept = std::fs::read_to_string(theirs.join("config"));
    std::fs::remove_dir_all(&theirs).unwrap();
    assert!(
        !out.status.success() && err.contains("tinyvr did not make it"),
        "{err}"
    );
    assert_eq!(
        kept.unwrap(),
        "# the user's\n",
        "the user's container was touched"
    );
    assert_eq!(all_leftovers(&name), Vec::<String>::new());

    // The same config as two routers at once, each with its own topology.
    let (a, b) = (format!("{name}a"), format!("{name}b"));
    let _da = Down::new("lxc", &a);
    let _db = Down::new("lxc", &b);
    for n in [&a, &b] {
        let out = up(&f, &["--topology", "--name", n]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for n in [&a, &b] {
        let (src, snk, dev) = (format!("{n}-src"), format!("{n}-snk"), format!("{n}-out0"));
        let before = link_stat(&snk, &dev, "rx", "packets");
        udp_send(&src, "10.2.0.2:9".parse().unwrap(), 1_000, 18);
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(
            link_stat(&snk, &dev, "rx", "packets") - before,
            1_000,
            "{n}"
        );
    }
    for n in [&a, &b] {
        let out = tinyvr(&["lxc", "down", n]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(all_leftovers(n), Vec::<String>::new());
    }
}

#[test]
fn kill_9_of_up_then_down_leaves_nothing() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let dir = Scratch::new("lxc-kill");
    let (name, cfg) = router('k', "");
    let f = dir.file("router.toml", &cfg);
    let _down = Down::new("lxc", &name);
    // Early (copying the rootfs), while lxc-start boots, after READY.
    let mut midway = 0;
    for delay_ms in [20u64, 300, 15_000] {
        let mut child = Command::new(bin("tinyvr"))
            .args(["lxc", "up", f.to_str().unwrap(), "--rootfs"])
            .arg(rootfs())
            .arg("--topology")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let end = std::time::Instant::now() + std::time::Duration::from_millis(delay_ms);
        while std::time::Instant::now() < end && child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        midway += usize::from(child.try_wait().unwrap().is_none());
        let _ = child.kill();
        let _ = child.wait();
        // `down` of a router whose up was killed: the record's lock died
        // with it. (gc does the same; it is not used here because it would
        // also collect the stale router another test of this file makes.)
        let out = tinyvr(&["lxc", "down", &name]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains(&format!("no router named {name} is up")),
            "after {delay_ms} ms: {}",
            err
        );
        assert_eq!(
            all_leftovers(&name),
            Vec::<String>::new(),
            "after {delay_ms} ms"
        );
    }
    assert!(midway >= 1, "no kill landed before up finished");
}
