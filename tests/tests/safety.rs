//! tinyvr runs as root on shared machines: it must never remove or change
//! what it did not create. Each test here makes the clash a user would
//! meet (a namespace or link already there, a second instance of a config,
//! two `up`s at once, a crash at any moment) and checks with `ip`, `stat`
//! and `/run/tinyvr` that what existed before is exactly as it was.

use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tinyvr_tests::*;

fn config(name: &str, extra: &str) -> String {
    two_nic_config(name, extra)
}

/// A unique name (≤ 8 characters) for this test process and `tag`.
fn unique(tag: char) -> String {
    format!("s{}{tag}", std::process::id() % 100_000)
}

fn tinyvr(args: &[&str]) -> Output {
    bin("tinyvr-init");
    Command::new(bin("tinyvr")).args(args).output().unwrap()
}

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn ns_inode(name: &str) -> String {
    sh(&format!("stat -L -c %i /run/netns/{name}"))
        .trim()
        .to_string()
}

/// Packets sent from the source of router `name` that reach its sink.
fn forwards(name: &str) -> u64 {
    let (src, snk) = (format!("{name}-src"), format!("{name}-snk"));
    let dev = format!("{name}-out0");
    let before = link_stat(&snk, &dev, "rx", "packets");
    udp_send(&src, "10.2.0.2:9".parse().unwrap(), 1000, 18);
    std::thread::sleep(Duration::from_millis(200));
    link_stat(&snk, &dev, "rx", "packets") - before
}

/// What a test must leave as it found: namespaces, host links, state files
/// (but those of the other tests of this file, which run alongside).
fn host_snapshot() -> Value {
    let mine = format!("s{}", std::process::id() % 100_000);
    let others = |v: &Value| {
        let n = v["ifname"].as_str().or(v["name"].as_str()).unwrap_or("");
        !n.starts_with(&mine)
    };
    let netns = sh("ip -json netns list || true");
    let links = sh("ip -json link show");
    let strip = |v: Value| -> Value {
        // Counters and operational details move on their own.
        Value::Array(
            v.as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(others)
                .map(|l| {
                    serde_json::json!({
                        "ifindex": l["ifindex"], "ifname": l["ifname"], "name": l["name"], "id": l["id"],
                    })
                })
                .collect(),
        )
    };
    let state: Vec<String> = std::fs::read_dir("/run/tinyvr")
        .map(|rd| {
            let mut v: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with(&mine))
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    serde_json::json!({
        "netns": strip(serde_json::from_str(&netns).unwrap_or(Value::Null)),
        "links": strip(serde_json::from_str(&links).unwrap()),
        "state": state,
    })
}

#[test]
fn a_users_namespace_with_the_routers_name_survives_up_and_down() {
    require!(is_root(), "needs root for network namespaces");
    let name = unique('a');
    let dir = Scratch::new("safety-ns");
    let f = dir.file("r.toml", &config("anyname", ""));
    // The user's namespace, with a veth pair of their own inside.
    run(Command::new("ip").args(["netns", "add", &name]));
    let _theirs = NsDel(name.clone());
    run(Command::new("ip").args([
        "-n", &name, "link", "add", "u0", "type", "veth", "peer", "name", "u1",
    ]));
    let (ino, links) = (ns_inode(&name), sh(&format!("ip -n {name} -o link show")));
    let _down = Down::new("netns", &name);
    let out = tinyvr(&["netns", "up", f.to_str().unwrap(), "--name", &name]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&format!("network namespace {name} exists already")),
        "{err}"
    );
    assert_eq!(ns_inode(&name), ino, "the user's namespace was replaced");
    assert_eq!(sh(&format!("ip -n {name} -o link show")), links);
    assert!(!std::path::Path::new(&format!("/run/tinyvr/{name}.json")).exists());
    // `down` of that name finds no router and touches nothing either.
    let out = tinyvr(&["netns", "down", &name]);
    assert!(!out.status.success());
    assert_eq!(ns_inode(&name), ino);
}

#[test]
fn a_users_link_with_a_host_end_name_survives() {
    require!(is_root(), "needs root for network namespaces");
    let name = unique('b');
    let dir = Scratch::new("safety-link");
    let f = dir.file("r.toml", &config(&name, ""));
    let taken = format!("{name}-out0"); // the host end of out0
    let _theirs = HostLinks(vec![taken.clone()]);
    run(Command::new("ip").args([
        "link",
        "add",
        &taken,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{name}-p"),
    ]));
    let index = sh(&format!("cat /sys/class/net/{taken}/ifindex"));
    let _down = Down::new("netns", &name);
    let out = tinyvr(&["netns", "up", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(&format!("a link named {taken} exists already"))
            && err.contains("did not make it"),
        "{err}"
    );
    assert_eq!(sh(&format!("cat /sys/class/net/{taken}/ifindex")), index);
    // The router's own namespace and in0's host end were removed again.
    let left = leftovers(&name);
    assert_eq!(
        left,
        vec![format!("link {name}-p"), format!("link {taken}")],
        "only the user's pair is left"
    );
}

#[test]
fn two_instances_of_one_config_run_side_by_side() {
    require!(is_root(), "needs root for network namespaces");
    let (a, b) = (unique('c'), unique('d'));
    let dir = Scratch::new("safety-two");
    let f = dir.file("edge.toml", &config("edge", ""));
    let _da = Down::new("netns", &a);
    let _db = Down::new("netns", &b);
    let ra = ok(&tinyvr(&[
        "netns",
        "up",
        f.to_str().unwrap(),
        "--topology",
        "--name",
        &a,
    ]));
    assert_eq!(ra["topology"]["src"]["netns"], format!("{a}-src").as_str());
    ok(&tinyvr(&[
        "netns",
        "up",
        f.to_str().unwrap(),
        "--topology",
        "--name",
        &b,
    ]));
    assert_eq!(forwards(&a), 1000);
    assert_eq!(forwards(&b), 1000);
    // A third `up` with a name that is up fails and harms neither.
    let out = tinyvr(&[
        "netns",
        "up",
        f.to_str().unwrap(),
        "--topology",
        "--name",
        &a,
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("a router named {a} is already up")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(forwards(&a), 1000);
    ok(&tinyvr(&["netns", "down", &a]));
    assert_eq!(forwards(&b), 1000, "taking a down left b forwarding");
    ok(&tinyvr(&["netns", "down", &b]));
    assert_eq!(leftovers(&a), Vec::<String>::new());
    assert_eq!(leftovers(&b), Vec::<String>::new());
}

#[test]
fn of_two_concurrent_ups_of_one_name_exactly_one_wins() {
    require!(is_root(), "needs root for network namespaces");
    let name = unique('e');
    let dir = Scratch::new("safety-race");
    let f = dir.file("r.toml", &config(&name, ""));
    let _down = Down::new("netns", &name);
    for round in 0..3 {
        let spawn = || {
            Command::new(bin("tinyvr"))
                .args(["netns", "up", f.to_str().unwrap(), "--topology"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (p, q) = (spawn(), spawn());
        let (p, q) = (p.wait_with_output().unwrap(), q.wait_with_output().unwrap());
        let wins = [&p, &q].iter().filter(|o| o.status.success()).count();
        let loser = if p.status.success() { &q } else { &p };
        assert_eq!(
            wins,
            1,
            "round {round}: {} / {}",
            String::from_utf8_lossy(&p.stderr),
            String::from_utf8_lossy(&q.stderr)
        );
        let err = String::from_utf8_lossy(&loser.stderr);
        assert!(
            err.contains("already up") || err.contains("being brought up"),
            "round {round}: {err}"
        );
        assert_eq!(forwards(&name), 1000, "round {round}: the winner forwards");
        ok(&tinyvr(&["netns", "down", &name]));
        assert_eq!(leftovers(&name), Vec::<String>::new());
    }
}

#[test]
fn kill_9_of_up_at_any_moment_then_gc_leaves_the_host_as_it_was() {
    require!(is_root(), "needs root for network namespaces");
    let name = unique('f');
    let dir = Scratch::new("safety-kill");
    // A route range makes the apply step long enough to be hit mid-way.
    let f = dir.file(
        "r.toml",
        &config(
            &name,
            "[[route_range]]\nfirst = \"10.100.0.0/32\"\ncount = 20000\nvia = \"10.2.0.2\"\n",
        ),
    );
    let _down = Down::new("netns", &name);
    let before = host_snapshot();
    let mut hit_midway = 0;
    for delay_ms in [0u64, 5, 15, 30, 60, 100, 200, 400, 2000] {
        let mut child = Command::new(bin("tinyvr"))
            .args(["netns", "up", f.to_str().unwrap(), "--topology"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let st = child.wait().unwrap();
        if finished && st.success() {
            ok(&tinyvr(&["netns", "down", &name]));
        } else {
            hit_midway += 1;
            // The killed up's init child may still be applying: let it end.
            std::thread::sleep(Duration::from_millis(300));
            let out = tinyvr(&["gc"]);
            assert!(
                out.status.success(),
                "after {delay_ms} ms: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(
            leftovers(&name),
            Vec::<String>::new(),
            "after a kill at {delay_ms} ms"
        );
        assert_eq!(host_snapshot(), before, "after a kill at {delay_ms} ms");
    }
    assert!(
        hit_midway >= 2,
        "only {hit_midway} kills landed before up finished"
    );
}

#[test]
fn gc_acts_only_on_its_own_state_files() {
    require!(is_root(), "needs root");
    let name = unique('g');
    std::fs::create_dir_all("/run/tinyvr").unwrap();
    let junk = format!("/run/tinyvr/{name}j.json");
    let link = format!("/run/tinyvr/{name}l.json");
    let target = Scratch::new("safety-gc");
    let victim = target.file("victim.json", r#"{"name":"x","platform":"netns","owner_pid":999999,"resources":[{"kind":"file","path":"/etc/hostname"}]}"#);
    std::fs::write(
        &junk,
        r#"{"name":"x","platform":"netns","owner_pid":999999,"resources":[]}"#,
    )
    .unwrap();
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let out = tinyvr(&["gc"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let (j, l) = (
        std::fs::symlink_metadata(&junk),
        std::fs::symlink_metadata(&link),
    );
    let _ = std::fs::remove_file(&junk);
    let _ = std::fs::remove_file(&link);
    assert!(out.status.success(), "{err}");
    assert!(j.is_ok() && l.is_ok(), "gc removed a file it does not own");
    assert!(
        err.contains("not a tinyvr state file") || err.contains("schema"),
        "{err}"
    );
    assert!(std::path::Path::new("/etc/hostname").exists());
    let mode = sh("stat -c %a /run/tinyvr");
    assert_eq!(mode.trim(), "700");
}

/// A namespace the test made itself, deleted when dropped.
struct NsDel(String);

impl Drop for NsDel {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
