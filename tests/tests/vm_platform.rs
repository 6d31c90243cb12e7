//! `tinyvr vm up/down` under qemu (TCG here): a router VM between a source
//! and a sink namespace with tap backends, then with macvtap on veth
//! parents; 10,000 UDP packets counted at the sink; READY lists the NICs'
//! MACs; bad inputs fail cleanly.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tinyvr_tests::*;

fn image() -> &'static Path {
    vm_image()
}

fn can_run() -> Option<&'static str> {
    vm_can_run()
}

fn router(tag: char, in_host: &str, out_host: &str) -> (String, String) {
    let name = format!("v{}{tag}", std::process::id() % 100_000);
    let cfg = format!(
        "name = \"{name}\"\n[[interface]]\nname = \"in0\"\nmac = \"52:54:00:00:01:01\"\naddresses = [\"10.1.0.1/24\"]\n{in_host}\n\
         [[interface]]\nname = \"out0\"\nmac = \"52:54:00:00:02:01\"\naddresses = [\"10.2.0.1/24\"]\n{out_host}\n\
         [sysctl]\n\"net.ipv6.conf.in0.disable_ipv6\" = 1\n\"net.ipv6.conf.out0.disable_ipv6\" = 1\n"
    );
    (name, cfg)
}

fn tinyvr(args: &[&str]) -> Output {
    Command::new(bin("tinyvr")).args(args).output().unwrap()
}

fn up(cfg: &Path, more: &[&str]) -> Output {
    let mut a = vec![
        "vm",
        "up",
        cfg.to_str().unwrap(),
        "--image",
        image().to_str().unwrap(),
    ];
    a.extend_from_slice(more);
    tinyvr(&a)
}

fn check_ready(ready: &Value) {
    assert_eq!(ready["platform"], "vm");
    // Virtqueue sizes as the guest's virtio-net reports them (qemu's 256
    // default), compared by up with what was asked.
    for i in 0..2 {
        assert_eq!(
            ready["interfaces"][i]["rings"]["tx"], 256,
            "{}",
            ready["interfaces"][i]
        );
        assert_eq!(ready["vm"]["virtqueues"][i]["tx"], 256);
    }
    // The guest's own count of its table, matching READY.
    assert_eq!(ready["held"]["addresses"], ready["addresses"]);
    assert_eq!(ready["interfaces"][0]["mac"], "52:54:00:00:01:01");
    assert_eq!(ready["interfaces"][1]["mac"], "52:54:00:00:02:01");
    // auto picks KVM exactly where the host can run a KVM guest.
    let want = if host_has_kvm() { "kvm" } else { "tcg" };
    assert_eq!(
        ready["vm"]["accel"], want,
        "{}",
        ready["vm"]["accel_reason"]
    );
    if want == "tcg" {
        let why = ready["vm"]["accel_reason"].as_str().unwrap();
        assert!(
            why.contains("vmx or svm") || why.contains("/dev/kvm"),
            "{why}"
        );
    }
}

#[test]
fn tap_topology_forwards_10000_packets() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    // A non-default rx virtqueue size, read back from the guest.
    let (name, cfg) = router('a', "host = { kind = \"tap\", rx_queue_size = 1024 }", "");
    let dir = Scratch::new("vm-tap");
    let _down = Down::new("vm", &name);
    let out = up(&dir.file("router.toml", &cfg), &["--topology"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready: Value = serde_json::from_slice(&out.stdout).unwrap();
    check_ready(&ready);
    assert_eq!(
        ready["interfaces"][0]["rings"]["rx"], 1024,
        "{}",
        ready["interfaces"][0]
    );
    assert_eq!(ready["interfaces"][0]["rings"]["queues"], 1);
    assert_eq!(
        (
            ready["vm"]["virtqueues"][0]["rx_asked"].as_u64(),
            ready["vm"]["virtqueues"][0]["rx"].as_u64()
        ),
        (Some(1024), Some(1024))
    );
    let (src, snk, dev) = (
        format!("{name}-src"),
        format!("{name}-snk"),
        format!("{name}-out0"),
    );
    let before = link_stat(&snk, &dev, "rx", "packets");
    // Paced well below what TCG forwards on this machine.
    udp_send_paced(&src, "10.2.0.2:9".parse().unwrap(), 10_000, 18, Some(2_000));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let got = link_stat(&snk, &dev, "rx", "packets") - before;
    let out = tinyvr(&["vm", "down", &name]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("ACPI power button pressed"),
        "down did not power off through the init: {err}"
    );
    assert_eq!(got, 10_000, "the sink counted {got}");
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

#[test]
fn macvtap_on_veth_parents_forwards() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let tag = 'b';
    let base = format!("v{}{tag}", std::process::id() % 100_000);
    // The macvtaps sit on veth ends whose peers are the source and sink.
    let (src, snk) = (format!("{base}-s"), format!("{base}-k"));
    let (p_in, p_out) = (format!("{base}-pi"), format!("{base}-po"));
    let (e_in, e_out) = (format!("{base}-ei"), format!("{base}-eo"));
    let cleanup = || {
        for n in [&src, &snk] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
        for l in [&p_in, &p_out] {
            let _ = Command::new("ip").args(["link", "del", l]).output();
        }
    };
    let _links = HostLinks(vec![p_in.clone(), p_out.clone()]);
    let _ns = [Netns { name: src.clone() }, Netns { name: snk.clone() }];
    sh(&format!(
        "ip netns add {src}; ip netns add {snk}
         ip link add {p_in} type veth peer name {e_in} netns {src}
         ip link add {p_out} type veth peer name {e_out} netns {snk}
         sysctl -qw net.ipv6.conf.{p_in}.disable_ipv6=1 net.ipv6.conf.{p_out}.disable_ipv6=1
         ip link set {p_in} up; ip link set {p_out} up
         ip -n {src} addr add 10.1.0.2/24 dev {e_in}; ip -n {src} link set {e_in} up
         ip -n {snk} addr add 10.2.0.2/24 dev {e_out}; ip -n {snk} link set {e_out} up
         ip -n {src} route add default via 10.1.0.1
         ip -n {src} neigh add 10.1.0.1 lladdr 52:54:00:00:01:01 dev {e_in} nud permanent
         ip netns exec {snk} sysctl -qw net.ipv6.conf.all.disable_ipv6=1"
    ));
    let src_mac = sh(&format!(
        "ip -n {src} -br link show {e_in} | awk '{{print $3}}'"
    ));
    let snk_mac = sh(&format!(
        "ip -n {snk} -br link show {e_out} | awk '{{print $3}}'"
    ));
    let (name, cfg) = router(
        tag,
        &format!("host = {{ kind = \"macvtap\", parent = \"{p_in}\", mode = \"bridge\" }}"),
        &format!("host = {{ kind = \"macvtap\", parent = \"{p_out}\", mode = \"bridge\", txqueuelen = 321 }}"),
    );
    let cfg = format!(
        "{cfg}[[neighbor]]\nip = \"10.1.0.2\"\nmac = \"{}\"\ndev = \"in0\"\n[[neighbor]]\nip = \"10.2.0.2\"\nmac = \"{}\"\ndev = \"out0\"\n",
        src_mac.trim(),
        snk_mac.trim()
    );
    let dir = Scratch::new("vm-macvtap");
    let _down = Down::new("vm", &name);
    let out = up(&dir.file("router.toml", &cfg), &[]);
    if !out.status.success() {
        cleanup();
        panic!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let ready: Value = serde_json::from_slice(&out.stdout).unwrap();
    check_ready(&ready);
    // The host queue length as asked and as read back, and as ip sees it.
    let mtap = format!("{name}-out0");
    assert_eq!(
        ready["vm"]["host_links"],
        serde_json::json!([{"dev": mtap, "txqueuelen": {"asked": 321, "held": 321}}])
    );
    let ip = sh(&format!("ip -json link show {mtap}"));
    assert!(ip.contains("\"txqlen\":321"), "{ip}");
    let before = link_stat(&snk, &e_out, "rx", "packets");
    udp_send_paced(&src, "10.2.0.2:9".parse().unwrap(), 10_000, 18, Some(2_000));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let got = link_stat(&snk, &e_out, "rx", "packets") - before;
    let out = tinyvr(&["vm", "down", &name]);
    cleanup();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(got, 10_000, "the sink counted {got}");
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

#[test]
fn bad_inputs_fail_cleanly() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let dir = Scratch::new("vm-bad");
    let (name, cfg) = router('c', "", "");
    let f = dir.file("router.toml", &cfg);
    let mut cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--qemu", "no-such-qemu"], "no-such-qemu not found"),
        (vec!["--thp", "sometimes"], "expected auto, on or off"),
        (vec!["--prealloc", "yes"], "expected on or off"),
        (
            vec!["--name", "../x"],
            "--name \"../x\": expected 1 to 8 characters",
        ),
    ];
    if !host_has_kvm() {
        // Only a host without KVM can refuse it.
        cases.push((vec!["--accel", "kvm"], "--accel kvm: /dev/kvm"));
    } else {
        eprintln!("note: --accel kvm refused: not checked, this host has KVM");
    }
    for (args, want) in cases {
        let _down = Down::new("vm", &name);
        let out = up(&f, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{args:?}: want {want:?}, got {err}"
        );
        assert_eq!(leftovers(&name), Vec::<String>::new(), "{args:?}");
    }
    let _down = Down::new("vm", &name);
    let out = tinyvr(&["vm", "up", f.to_str().unwrap(), "--image", "/nonexistent"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("image /nonexistent has no bzImage"),
        "{err}"
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
    let (name, cfg) = router(
        'd',
        "host = { kind = \"macvtap\", parent = \"nosuchparent0\" }",
        "",
    );
    let _down = Down::new("vm", &name);
    let out = up(&dir.file("mv.toml", &cfg), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no device named \"nosuchparent0\""),
        "{err}"
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
    // Settings that would not hold: a multi-queue macvtap is refused
    // before anything is made; two queue pairs on a one-vCPU guest boot,
    // and the guest's own channel count fails up, naming both.
    let (name, cfg) = router(
        'g',
        "host = { kind = \"macvtap\", parent = \"lo\", queues = 2 }",
        "",
    );
    let _down = Down::new("vm", &name);
    let out = up(&dir.file("mq.toml", &cfg), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("interface[0].host.queues: 2: a macvtap here has one queue"),
        "{err}"
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
    let (name, cfg) = router('i', "host = { kind = \"tap\", queues = 2 }", "");
    let _down = Down::new("vm", &name);
    let out = up(&dir.file("q2.toml", &cfg), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("interface in0: queues 2 was asked, the guest's virtio-net uses 1"),
        "{err}"
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
    // A mistake the init finds: TINYVR-ERROR text comes back, qemu is gone.
    let (name, cfg) = router('e', "", "");
    let _down = Down::new("vm", &name);
    let out = up(
        &dir.file(
            "refused.toml",
            &format!("{cfg}\"net.core.no_such_sysctl\" = 1\n"),
        ),
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("setting sysctl net.core.no_such_sysctl"),
        "{err}"
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
    assert!(
        !sh("pgrep -af qemu-system || true").contains(&name),
        "qemu left running"
    );
}

#[test]
fn argv_prints_the_command_line_without_creating_anything() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let (name, cfg) = router(
        'f',
        "host = { kind = \"tap\", vhost = \"on\", queues = 2, rx_queue_size = 1024, txqueuelen = 50 }",
        "host = { kind = \"vfio\", pci = \"0000:01:10.0\" }",
    );
    let dir = Scratch::new("vm-argv");
    let f = dir.file("router.toml", &cfg);
    // vfio needs KVM, which this host cannot give: the reason is named.
    let out = tinyvr(&[
        "vm",
        "argv",
        f.to_str().unwrap(),
        "--image",
        image().to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("vfio passthrough needs KVM"),
        "{err}"
    );
    let cfg = cfg.replace("host = { kind = \"vfio\", pci = \"0000:01:10.0\" }", "");
    let f = dir.file("router2.toml", &cfg);
    let out = tinyvr(&[
        "vm",
        "argv",
        f.to_str().unwrap(),
        "--image",
        image().to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("-netdev tap,id=n0,fds=3:4,vhost=on"),
        "{text}"
    );
    assert!(
        text.contains("mq=on,vectors=6,rx_queue_size=1024"),
        "{text}"
    );
    assert!(
        text.contains("-machine pc-i440fx-")
            && text.contains(",accel=tcg,memory-backend=ram0")
            && text.contains("-object memory-backend-ram,id=ram0,size=128M,prealloc=on"),
        "guest memory is preallocated by default: {text}"
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

/// The VM's cgroup directories, and whether any is left.
fn cgroup_left(name: &str) -> bool {
    !sh(&format!(
        "find /sys/fs/cgroup -maxdepth 3 -name 'tinyvr-{name}' 2>/dev/null || true"
    ))
    .trim()
    .is_empty()
}

#[test]
fn threads_are_pinned_and_scheduled_as_asked() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let (name, cfg) = router('g', "", "");
    let dir = Scratch::new("vm-sched");
    let f = dir.file("router.toml", &cfg);
    let _down = Down::new("vm", &name);
    // Where the cpu controller lives, read from the host, and a cgroup of
    // someone else's whose name starts with the VM's.
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .is_ok_and(|c| c.split_whitespace().any(|x| x == "cpu"));
    let cpu_root = if v2 {
        "/sys/fs/cgroup"
    } else {
        "/sys/fs/cgroup/cpu"
    };
    let decoy = format!("{cpu_root}/tinyvr-{name}0");
    std::fs::create_dir(&decoy).unwrap();
    struct Rmdir(String);
    impl Drop for Rmdir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _decoy = Rmdir(decoy.clone());
    let out = up(
        &f,
        &[
            "--affinity",
            "vcpu=0",
            "--affinity",
            "emulator=1",
            "--sched",
            "vcpu=fifo:10",
            "--cpu-weight",
            "200",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready: Value = serde_json::from_slice(&out.stdout).unwrap();
    let threads = ready["vm"]["threads"].as_array().unwrap().clone();
    let tid = |class: &str| {
        threads.iter().find(|t| t["class"] == class).unwrap()["tid"]
            .as_u64()
            .unwrap()
            .to_string()
    };
    let (vcpu, emu) = (tid("vcpu"), tid("emulator"));
    // Checked with tools nobody here wrote, and with /proc and the cgroup files.
    let chrt = sh(&format!("chrt -p {vcpu}"));
    assert!(
        chrt.contains("SCHED_FIFO") && chrt.contains("priority: 10"),
        "{chrt}"
    );
    assert!(sh(&format!("chrt -p {emu}")).contains("SCHED_OTHER"));
    let allowed = |t: &str| {
        sh(&format!("grep Cpus_allowed_list /proc/{t}/status"))
            .split_whitespace()
            .last()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        (allowed(&vcpu), allowed(&emu)),
        ("0".to_string(), "1".to_string())
    );
    let cg = ready["vm"]["cgroup"]["path"].as_str().unwrap().to_string();
    let file = if Path::new(&format!("{cg}/cpu.shares")).exists() {
        "cpu.shares"
    } else {
        "cpu.weight"
    };
    let v = std::fs::read_to_string(format!("{cg}/{file}")).unwrap();
    assert_eq!(v.trim(), if file == "cpu.shares" { "2048" } else { "200" });
    let procs = std::fs::read_to_string(format!("{cg}/cgroup.procs")).unwrap();
    let qemu = ready["vm"]["qemu_pid"].to_string();
    assert!(procs.lines().any(|l| l == qemu), "qemu not in its cgroup");
    // Every thread of qemu, read from /proc: exactly in tinyvr-<name> (it
    // joined before exec, so none started outside), not in the decoy whose
    // name the VM's is a prefix of.
    let rel = format!("/tinyvr-{name}");
    for t in std::fs::read_dir(format!("/proc/{qemu}/task"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(t.path().join("cgroup")).unwrap();
        let cpu_line = text
            .lines()
            .find(|l| {
                let ctl = l.split(':').nth(1).unwrap_or("");
                if v2 {
                    ctl.is_empty()
                } else {
                    ctl.split(',').any(|x| x == "cpu")
                }
            })
            .unwrap_or_else(|| panic!("no cpu hierarchy line in {text}"));
        assert_eq!(
            cpu_line.rsplit(':').next(),
            Some(rel.as_str()),
            "thread {:?}: {text}",
            t.file_name()
        );
    }
    assert!(Path::new(&decoy).is_dir(), "the decoy cgroup was touched");
    // Each setting as asked and as the kernel holds it.
    let held = &ready["vm"]["cgroup"]["files"][file];
    assert_eq!(held["asked"], held["held"], "{held}");
    let out = tinyvr(&["vm", "down", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
    assert!(!cgroup_left(&name), "the VM's cgroup is left");
}

#[test]
fn deadline_reservation_on_the_emulator_thread() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let (name, cfg) = router('h', "", "");
    let dir = Scratch::new("vm-dl");
    let _down = Down::new("vm", &name);
    let out = up(
        &dir.file("router.toml", &cfg),
        &["--sched", "emulator=deadline:20000/100000/100000"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready: Value = serde_json::from_slice(&out.stdout).unwrap();
    let emu = ready["vm"]["qemu_pid"].to_string();
    let chrt = sh(&format!("chrt -p {emu}"));
    assert!(chrt.contains("SCHED_DEADLINE"), "{chrt}");
    // chrt reads the reservation back with sched_getattr (ns); /proc/<pid>/sched
    // shows the policy (6 = SCHED_DEADLINE).
    assert!(
        chrt.contains("runtime/deadline/period parameters: 20000000/100000000/100000000"),
        "{chrt}"
    );
    let sched = std::fs::read_to_string(format!("/proc/{emu}/sched")).unwrap();
    assert!(
        sched
            .lines()
            .any(|l| l.starts_with("policy") && l.trim_end().ends_with(" 6")),
        "{sched}"
    );
    let out = tinyvr(&["vm", "down", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
    assert!(!cgroup_left(&name));
}

#[test]
fn bad_placement_fails_cleanly() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let (name, cfg) = router('i', "", "");
    let dir = Scratch::new("vm-badsched");
    let f = dir.file("router.toml", &cfg);
    let off = offline_cpu();
    let (aff, set) = (format!("vcpu={off}"), off.to_string());
    let (aff_err, set_err) = (
        format!("cpu {off} is not online"),
        format!("CPU {off} is not online"),
    );
    let mut cases = vec![
        (
            vec!["--sched", "vcpu=deadline:300000/200000/200000"],
            "runtime (300000) <= deadline (200000)",
        ),
        (vec!["--affinity", aff.as_str()], aff_err.as_str()),
        (vec!["--cpuset", set.as_str()], set_err.as_str()),
    ];
    if !Path::new("/dev/vhost-net").exists() {
        // Only a host without vhost-net has a VM without vhost threads.
        cases.push((
            vec!["--sched", "vhost=fifo:5"],
            "vhost threads were asked for, but this vm has none",
        ));
    } else {
        eprintln!(
            "note: vhost placement without vhost threads: not checked, this host has vhost-net"
        );
    }
    for (args, want) in cases {
        let _down = Down::new("vm", &name);
        let out = up(&f, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{args:?}: want {want:?}, got {err}"
        );
        assert_eq!(leftovers(&name), Vec::<String>::new(), "{args:?}");
        assert!(!cgroup_left(&name), "{args:?} left a cgroup");
        assert!(
            !sh("pgrep -af qemu-system || true").contains(&name),
            "{args:?} left qemu running"
        );
    }
}

#[test]
fn two_vms_run_at_once() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let dir = Scratch::new("vm-two");
    // One config, two instances (--name): every host-side name differs.
    let (base, cfg) = router('j', "", "");
    let f = dir.file("router.toml", &cfg);
    let routers: Vec<(String, PathBuf)> = ['a', 'b']
        .iter()
        .map(|&t| (format!("{base}{t}"), f.clone()))
        .collect();
    let _down: Vec<Down> = routers.iter().map(|(n, _)| Down::new("vm", n)).collect();
    // Both start together: names, taps, namespaces, cgroups, QMP sockets
    // and console logs must not collide.
    // The second keeps qemu's own memory defaults: faulted in, THP allowed.
    let memory: [&[&str]; 2] = [&[], &["--prealloc", "off", "--thp", "on"]];
    let outs: Vec<Output> = std::thread::scope(|s| {
        let hs: Vec<_> = routers
            .iter()
            .zip(memory)
            .map(|((n, p), m)| {
                s.spawn(move || up(p, &[&["--topology", "--name", n.as_str()][..], m].concat()))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (o, thp) in outs.iter().zip(["0", "1"]) {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ready: Value = serde_json::from_slice(&o.stdout).unwrap();
        check_ready(&ready);
        // Memory as the kernel shows it, not as tinyvr reports it.
        let pid = ready["vm"]["qemu_pid"].as_u64().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in {status}"))
                .trim()
                .to_string()
        };
        assert_eq!(field("THP_enabled:"), thp, "{}", ready["vm"]["memory"]);
        assert_eq!(ready["vm"]["memory"]["thp"], thp == "1");
        let rss_kb: u64 = field("RssAnon:").trim_end_matches(" kB").parse().unwrap();
        if thp == "0" {
            assert_eq!(ready["vm"]["memory"]["prealloc"], true);
            assert!(
                rss_kb >= 128 * 1024,
                "preallocated, yet RssAnon {rss_kb} kB"
            );
        }
    }
    for (name, _) in &routers {
        let (src, snk, dev) = (
            format!("{name}-src"),
            format!("{name}-snk"),
            format!("{name}-out0"),
        );
        let before = link_stat(&snk, &dev, "rx", "packets");
        udp_send_paced(&src, "10.2.0.2:9".parse().unwrap(), 1_000, 18, Some(2_000));
        std::thread::sleep(std::time::Duration::from_millis(700));
        assert_eq!(
            link_stat(&snk, &dev, "rx", "packets") - before,
            1_000,
            "{name}"
        );
    }
    for (name, _) in &routers {
        let out = tinyvr(&["vm", "down", name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(leftovers(name), Vec::<String>::new());
    }
}

#[test]
fn a_users_bridge_is_used_and_survives_down() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let dir = Scratch::new("vm-bridge");
    let (name, cfg) = router(
        'm',
        "[interface.host]\nkind = \"bridge\"\nbridge = \"BR\"",
        "",
    );
    let br = format!("{name}-ub");
    let f = dir.file("router.toml", &cfg.replace("BR", &br));
    let _theirs = HostLinks(vec![br.clone()]);
    run(Command::new("ip").args(["link", "add", &br, "type", "bridge"]));
    let index = sh(&format!("cat /sys/class/net/{br}/ifindex"));
    let _down = Down::new("vm", &name);
    let out = up(&f, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The VM's tap joined the user's bridge.
    let tap = format!("{name}-in0");
    assert_eq!(
        sh(&format!("basename $(readlink /sys/class/net/{tap}/master)")).trim(),
        br
    );
    let out = tinyvr(&["vm", "down", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sh(&format!("cat /sys/class/net/{br}/ifindex")),
        index,
        "the user's bridge was removed or replaced"
    );
    assert!(!Path::new(&format!("/sys/class/net/{tap}")).exists());
    assert!(!Path::new(&format!("/run/tinyvr/{name}.json")).exists());
}

/// `tinyvr vm up` stopped by `signal` after `delay_ms` (or finished by
/// then, then taken down): nothing of it is left, no qemu runs. Returns
/// whether the signal landed before up finished.
fn stop_up_at(name: &str, f: &Path, delay_ms: u64, signal: &str) -> bool {
    // TCG on any host: its boot is slow enough to be stopped mid-way.
    let mut child = Command::new(bin("tinyvr"))
        .args(["vm", "up", f.to_str().unwrap(), "--image"])
        .arg(image())
        .args(["--topology", "--accel", "tcg"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_millis(delay_ms);
    while std::time::Instant::now() < end && child.try_wait().unwrap().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let midway = child.try_wait().unwrap().is_none();
    if midway {
        run(Command::new("kill").args([signal, &child.id().to_string()]));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if midway && signal == "-INT" {
        // Ctrl-C: up ends through its error path and removes what it made.
        assert!(
            !out.status.success() && err.contains("interrupted"),
            "{err}"
        );
    } else {
        // kill -9 (or up had finished): `down` removes it; the record's
        // lock died with the killed up. (Not gc: it would also collect the
        // stale router another test of this file makes.) A guest killed
        // mid-boot cannot take the power button yet: a short timeout.
        let out = tinyvr(&["vm", "down", name, "--timeout", "3"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains(&format!("no router named {name} is up")),
            "after {delay_ms} ms: {err}"
        );
    }
    assert_eq!(leftovers(name), Vec::<String>::new(), "after {delay_ms} ms");
    assert!(!cgroup_left(name), "after {delay_ms} ms: a cgroup is left");
    assert!(
        !sh("pgrep -af qemu-system || true").contains(&format!("{name}.")),
        "after {delay_ms} ms: qemu still runs"
    );
    midway
}

#[test]
fn kill_9_of_up_then_down_leaves_nothing() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let dir = Scratch::new("vm-kill");
    let (name, cfg) = router('n', "", "");
    let f = dir.file("router.toml", &cfg);
    let _down = Down::new("vm", &name);
    // Early (plumbing), mid-boot (qemu running, no READY yet), after READY.
    let midway = [30u64, 800, 20_000]
        .iter()
        .filter(|&&d| stop_up_at(&name, &f, d, "-9"))
        .count();
    assert!(midway >= 2, "only {midway} kills landed before up finished");
}

#[test]
fn ctrl_c_during_boot_removes_everything() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let dir = Scratch::new("vm-int");
    let (name, cfg) = router('o', "", "");
    let f = dir.file("router.toml", &cfg);
    let _down = Down::new("vm", &name);
    assert!(
        stop_up_at(&name, &f, 800, "-INT"),
        "the VM was READY within 800 ms: nothing was interrupted"
    );
}

#[test]
fn a_vm_router_forwards_through_its_generated_routes_after_link_flaps() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    // 20,000 generated routes via the sink. Each NIC's carrier goes down
    // and up (QMP set_link: a host tap going down does not drop the
    // guest's carrier); the init counts its kernel's table after every
    // link change and prints it on the console (TINYVR-HELD), and traffic
    // to generated prefixes is forwarded again.
    let (name, cfg) = router('p', "", "");
    let cfg = format!(
        "{cfg}\n[[route_range]]\nfirst = \"16.0.0.0/24\"\ncount = 20000\nvia = \"10.2.0.2\"\n"
    );
    let dir = Scratch::new("vm-flap");
    let _down = Down::new("vm", &name);
    let out = up(&dir.file("router.toml", &cfg), &["--topology"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ready["routes"], 20_000);
    assert_eq!(
        ready["held"]["routes"], 20_000,
        "counted by the guest after READY"
    );
    let (src, snk, dev) = (
        format!("{name}-src"),
        format!("{name}-snk"),
        format!("{name}-out0"),
    );
    let mut qmp = tinyvr_qemu::qmp::Qmp::connect(
        Path::new(&format!("/run/tinyvr/{name}.qmp")),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let console = format!("/run/tinyvr/{name}.console");
    // Complete lines only: the guest may be writing the last one.
    let held_lines = || -> Vec<Value> {
        let text = std::fs::read_to_string(&console).unwrap();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete
            .lines()
            .filter_map(|l| l.trim_end().strip_prefix("TINYVR-HELD "))
            .filter_map(|j| serde_json::from_str::<Value>(j).ok())
            .collect()
    };
    // Waits for a TINYVR-HELD line newer than the first `n`, with at least
    // `events` link events seen (counting 20,000 routes takes the guest a
    // few hundred ms under TCG, on top of the 200 ms it lets a change settle).
    let wait_line = |n: usize, events: u64| -> Value {
        let t = std::time::Instant::now();
        loop {
            let lines = held_lines();
            if let Some(l) = lines
                .iter()
                .skip(n)
                .find(|l| l["link_events"].as_u64().unwrap() >= events)
            {
                return l.clone();
            }
            assert!(
                t.elapsed() < std::time::Duration::from_secs(5),
                "no TINYVR-HELD line after {n} with {events} events: {lines:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    for nic in ["n1", "n0"] {
        let before = held_lines();
        let events = before
            .last()
            .map_or(0, |l| l["link_events"].as_u64().unwrap());
        qmp.execute(
            "set_link",
            Some(serde_json::json!({"name": nic, "up": false})),
        )
        .unwrap_or_else(|e| panic!("set_link {nic} off: {e}"));
        let down = wait_line(before.len(), events + 1);
        assert_eq!(down["when"], "change", "{down}");
        let n = held_lines().len();
        qmp.execute(
            "set_link",
            Some(serde_json::json!({"name": nic, "up": true})),
        )
        .unwrap_or_else(|e| panic!("set_link {nic} on: {e}"));
        let back = std::time::Instant::now();
        // A count taken after carrier came back, with the whole table,
        // within a second (the guest waits 200 ms for a change to settle,
        // then counts 20,000 routes under TCG).
        let up = wait_line(n, events + 2);
        let took = back.elapsed();
        eprintln!("after {nic} came back: read back in {took:?}");
        assert!(
            took < std::time::Duration::from_secs(1),
            "after flapping {nic}: the whole table was reported {took:?} after carrier returned"
        );
        assert_eq!(up["routes"], 20_000, "after flapping {nic}: {up}");
        // Generated routes survive carrier loss: no read-back since READY,
        // including the one taken while carrier was gone, found any missing.
        for l in [&down, &up] {
            assert_eq!(l["departures"], 0, "after flapping {nic}: {l}");
            assert!(l["missing"].is_null(), "after flapping {nic}: {l}");
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        for dst in ["16.0.5.1:9", "16.78.31.1:9"] {
            let before = link_stat(&snk, &dev, "rx", "packets");
            udp_send_paced(&src, dst.parse().unwrap(), 500, 18, Some(2_000));
            std::thread::sleep(std::time::Duration::from_millis(700));
            let got = link_stat(&snk, &dev, "rx", "packets") - before;
            assert_eq!(
                got, 500,
                "after flapping {nic}: to {dst} the sink counted {got}"
            );
        }
    }
    drop(qmp);
    let out = tinyvr(&["vm", "down", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn vm_xml_is_a_valid_libvirt_domain_and_names_what_it_cannot_carry() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    require!(
        has_cmd("virt-xml-validate") && has_cmd("xmllint"),
        "needs virt-xml-validate and xmllint (scripts/setup installs libvirt-clients, libxml2-utils)"
    );
    let dir = Scratch::new("vm-xml");
    let (_, cfg) = router('x', "", "");
    let f = dir.file("router.toml", &cfg);
    let img = image().to_str().unwrap();
    let xml = |more: &[&str]| {
        let mut a = vec!["vm", "xml", f.to_str().unwrap(), "--image", img];
        a.extend_from_slice(more);
        tinyvr(&a)
    };
    for more in [
        vec![],
        vec!["--topology", "--datapath", "macvtap", "--cpus", "2"],
        vec![
            "--affinity",
            "vcpu=1",
            "--affinity",
            "emulator=0",
            "--sched",
            "vcpu=fifo:10",
            "--cpu-weight",
            "200",
            "--cpu-max",
            "50000 100000",
            "--cpuset",
            "0-1",
        ],
    ] {
        let out = xml(&more);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.file("domain.xml", &String::from_utf8_lossy(&out.stdout));
        let v = Command::new("virt-xml-validate")
            .arg(&path)
            .arg("domain")
            .output()
            .unwrap();
        assert!(
            v.status.success(),
            "{more:?}: {}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        if more.contains(&"fifo:10") || more.contains(&"vcpu=fifo:10") {
            assert!(err.contains("RT budget"), "{err}");
        }
    }
    // Fixed when qemu starts, so refused rather than lost.
    let out = xml(&["--thp", "off"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--thp off"));
    // ...and then --guest-config writes no file either.
    let guest = dir.0.join("guest.toml");
    let out = xml(&["--thp", "off", "--guest-config", guest.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        !guest.exists(),
        "a refused vm xml wrote {}",
        guest.display()
    );
    // Given, it is written, and the XML names it by its absolute path.
    let out = xml(&["--guest-config", guest.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let abs = std::fs::canonicalize(&guest).unwrap();
    assert!(
        text.contains(&format!("file='{}'", abs.display())),
        "{text}"
    );
    // A second time it is refused: the file is not tinyvr's to overwrite.
    let out = xml(&["--guest-config", guest.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--guest-config"));
    // Nothing was created.
    assert_eq!(
        leftovers(&format!("v{}x", std::process::id() % 100_000)),
        Vec::<String>::new()
    );
}
