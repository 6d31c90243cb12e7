//! Router VMs through a real libvirtd (Debian 12's libvirt 9.0, started by
//! scripts/setup when no service manager does): `vm up --libvirt` boots,
//! forwards, pins and schedules as asked (read back from /proc), agrees
//! with `vm xml` field by field (`virsh dumpxml`), and `down` leaves no
//! domain, tap, cgroup or RT budget; a domain defined straight from `vm
//! xml` boots and pins; bad input and a killed `up` leave nothing.

use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tinyvr_tests::*;

const URI: &str = "qemu:///system";

/// One libvirt test at a time: they read the shared `machine` cgroup's RT
/// budget, and libvirtd serialises domain starts anyway.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one() -> std::sync::MutexGuard<'static, ()> {
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

fn can_run() -> Option<&'static str> {
    if let Some(why) = vm_can_run() {
        return Some(why);
    }
    if !has_cmd("virsh") || !has_cmd("xmllint") {
        return Some(
            "needs virsh and xmllint (scripts/setup installs libvirt-clients, libxml2-utils)",
        );
    }
    libvirtd_missing()
}

fn tinyvr(args: &[&str]) -> Output {
    Command::new(bin("tinyvr")).args(args).output().unwrap()
}

fn virsh(args: &[&str]) -> Output {
    Command::new("virsh")
        .args(["-q", "-c", URI])
        .args(args)
        .output()
        .unwrap()
}

fn router(tag: char) -> (String, String) {
    router_with(tag, "")
}

/// A router whose in0 also carries `in_host` (an `[interface.host]` line).
fn router_with(tag: char, in_host: &str) -> (String, String) {
    let name = format!("l{}{tag}", std::process::id() % 100_000);
    let cfg = format!(
        "name = \"{name}\"\n[[interface]]\nname = \"in0\"\nmac = \"52:54:00:00:01:01\"\naddresses = [\"10.1.0.1/24\"]\n{in_host}\n\
         [[interface]]\nname = \"out0\"\nmac = \"52:54:00:00:02:01\"\naddresses = [\"10.2.0.1/24\"]\n\
         [sysctl]\n\"net.ipv6.conf.in0.disable_ipv6\" = 1\n\"net.ipv6.conf.out0.disable_ipv6\" = 1\n"
    );
    (name, cfg)
}

/// The RT budget of libvirt's shared `machine` cgroup (v1 with RT group
/// scheduling), None elsewhere.
fn machine_rt() -> Option<String> {
    std::fs::read_to_string("/sys/fs/cgroup/cpu/machine/cpu.rt_runtime_us")
        .ok()
        .map(|s| s.trim().to_string())
}

fn rt_group_host() -> bool {
    Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists()
}

/// libvirt cgroup directories of a domain `name` that are still there.
fn libvirt_cgroups(name: &str) -> String {
    sh(&format!(
        "find /sys/fs/cgroup -maxdepth 4 -type d -name 'qemu-*-{name}.*' 2>/dev/null || true"
    ))
}

/// (CPUs allowed, policy, RT priority) of a thread, from /proc.
fn proc_sched(pid: u64, tid: u64) -> (String, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
    let cpus = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
    // Fields after the command (which may hold spaces): rt_priority is the
    // 40th field, policy the 41st.
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    (
        cpus,
        rest[41 - 3].parse().unwrap(),
        rest[40 - 3].parse().unwrap(),
    )
}

/// Values of `xpaths` in an XML file, by xmllint.
fn xpath(file: &Path, xpaths: &[String]) -> Vec<String> {
    xpaths
        .iter()
        .map(|x| {
            let o = Command::new("xmllint")
                .args(["--xpath", x])
                .arg(file)
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
        .collect()
}

/// Memory in MiB from a `<memory>` value and unit.
fn mib(v: &str, unit: &str) -> u64 {
    let n: u64 = v.parse().unwrap_or(0);
    match unit {
        "KiB" => n / 1024,
        "MiB" => n,
        "GiB" => n * 1024,
        _ => panic!("unit {unit:?}"),
    }
}

#[test]
fn a_libvirt_router_forwards_pins_fifo_agrees_with_vm_xml_and_leaves_nothing() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let _one = one();
    let dir = Scratch::new("libvirt-up");
    // Macvtaps tinyvr makes and hands over (libvirt must not make its own),
    // and flags that give every compared field a value.
    let (name, cfg) = router_with(
        'a',
        "host = { kind = \"tap\", rx_queue_size = 1024, txqueuelen = 500 }",
    );
    let f = dir.file("router.toml", &cfg);
    let img = vm_image().to_str().unwrap();
    let flags = [
        "--topology",
        "--datapath",
        "macvtap",
        "--prealloc",
        "on",
        "--cpuset",
        "0-1",
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
    ];
    let rt_before = machine_rt();
    let _down = Down::new("vm", &name);
    let mut a = vec!["vm", "up", f.to_str().unwrap(), "--image", img];
    a.extend_from_slice(&flags);
    a.extend_from_slice(&["--libvirt", "--timeout", "180"]);
    let out = tinyvr(&a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vm = &ready["vm"];
    let uuid = vm["libvirt"]["uuid"].as_str().unwrap().to_string();
    assert_eq!(vm["libvirt"]["uri"], URI);
    // libvirt knows the domain by the UUID tinyvr gave it.
    let u = virsh(&["domuuid", &name]);
    assert_eq!(String::from_utf8_lossy(&u.stdout).trim(), uuid);
    assert_eq!(ready["held"]["addresses"], ready["addresses"]);
    let want = if host_has_kvm() { "kvm" } else { "tcg" };
    assert_eq!(vm["accel"], want, "{}", vm["accel_reason"]);

    // Pinning and FIFO read back from /proc, not from tinyvr's json.
    let pid = vm["qemu_pid"].as_u64().unwrap();
    let vcpu = vm["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["class"] == "vcpu")
        .unwrap()["tid"]
        .as_u64()
        .unwrap();
    assert_eq!(proc_sched(pid, vcpu), ("1".to_string(), 1, 10));
    assert_eq!(proc_sched(pid, pid).0, "0", "emulator pinned to CPU 0");
    // The domain's cgroup holds the weight and bandwidth libvirt wrote.
    let files = &vm["cgroup"]["files"];
    if vm["cgroup"]["version"] == "v1" {
        assert_eq!(files["cpu.shares"]["held"], "2048", "{files}");
        assert_eq!(files["cpu.cfs_quota_us"]["held"], "50000", "{files}");
    }

    // Forwards between the topology's namespaces.
    let (src, snk, dev) = (format!("{name}-src"), format!("{name}-snk"), "snk0");
    // The host queue length libvirt has no element for: set by tinyvr on
    // the macvtap after start, read back from sysfs.
    let qlen = std::fs::read_to_string(format!("/sys/class/net/{name}-in0/tx_queue_len")).unwrap();
    assert_eq!(qlen.trim(), "500");
    // The devices libvirt was handed are tinyvr's macvtaps, not its own.
    let macvtaps = sh("ip -o link show type macvtap | cut -d: -f2 | cut -d@ -f1");
    let mut macvtaps: Vec<&str> = macvtaps.split_whitespace().collect();
    macvtaps.retain(|m| m.starts_with(&name) || m.starts_with("macvtap"));
    macvtaps.sort();
    assert_eq!(
        macvtaps,
        [format!("{name}-in0"), format!("{name}-out0")],
        "the host's macvtaps"
    );
    let before = link_stat(&snk, dev, "rx", "packets");
    udp_send_paced(&src, "10.2.0.2:9".parse().unwrap(), 2_000, 18, Some(1_000));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(link_stat(&snk, dev, "rx", "packets") - before, 2_000);

    // What libvirt holds (dumpxml) agrees with what `vm xml` prints for
    // the same flags, field by field.
    let live = dir.file(
        "live.xml",
        &String::from_utf8_lossy(&virsh(&["dumpxml", &uuid]).stdout),
    );
    let mut a = vec!["vm", "xml", f.to_str().unwrap(), "--image", img];
    a.extend_from_slice(&flags);
    a.push("--libvirt");
    let printed = tinyvr(&a);
    assert!(printed.status.success());
    let printed = dir.file("printed.xml", &String::from_utf8_lossy(&printed.stdout));
    let mut fields: Vec<String> = [
        "/domain/@type",
        "/domain/name",
        "/domain/vcpu",
        "/domain/vcpu/@cpuset",
        "/domain/cpu/@mode",
        "/domain/cputune/vcpupin/@vcpu",
        "/domain/cputune/vcpupin/@cpuset",
        "/domain/cputune/emulatorpin/@cpuset",
        "/domain/cputune/shares",
        "/domain/cputune/global_period",
        "/domain/cputune/global_quota",
        "/domain/memoryBacking/allocation/@mode",
        "/domain/sysinfo[@type='fwcfg']/entry/@name",
        "/domain/sysinfo[@type='fwcfg']/entry/@file",
        "/domain/os/type/@machine",
        "/domain/os/kernel",
        "/domain/os/initrd",
        "/domain/os/cmdline",
        "/domain/on_reboot",
        "count(/domain/features/acpi)",
        "/domain/devices/serial/@type",
        "/domain/seclabel[@model='dac']/@relabel",
        "/domain/seclabel[@model='dac']/label",
        "/domain/devices/emulator",
        "/domain/devices/serial/source/@path",
        "/domain/devices/memballoon/@model",
        "/domain/devices/controller[@type='usb']/@model",
        "count(/domain/devices/graphics)",
        "count(/domain/devices/interface)",
    ]
    .iter()
    .map(|x| format!("string({x})"))
    .collect();
    for i in 1..=2 {
        for attr in [
            "@type",
            "target/@dev",
            "target/@managed",
            "mac/@address",
            "model/@type",
            "driver/@name",
            "driver/@queues",
            "driver/@rx_queue_size",
            "driver/@tx_queue_size",
        ] {
            fields.push(format!("string(/domain/devices/interface[{i}]/{attr})"));
        }
    }
    let (p, l) = (xpath(&printed, &fields), xpath(&live, &fields));
    // The flags above give these a value: compared, not both empty.
    for set in [
        "vcpu/@cpuset",
        "cpu/@mode",
        "cputune/shares",
        "global_quota",
        "allocation/@mode",
        "interface[1]/driver/@rx_queue_size",
        "interface[2]/target/@dev",
    ] {
        let k = fields.iter().position(|f| f.contains(set)).unwrap();
        assert!(!p[k].is_empty(), "{}: empty in both", fields[k]);
    }
    for (k, x) in fields.iter().enumerate() {
        assert_eq!(
            p[k], l[k],
            "{x}: vm xml printed {:?}, libvirt holds {:?}",
            p[k], l[k]
        );
    }
    let mem = |file: &Path| {
        let v = xpath(
            file,
            &[
                "string(/domain/memory)".into(),
                "string(/domain/memory/@unit)".into(),
            ],
        );
        mib(&v[0], &v[1])
    };
    assert_eq!(mem(&printed), mem(&live));
    assert_eq!(p[1], name, "the name field was compared");

    // down: ACPI through libvirt, then nothing is left.
    let out = tinyvr(&["vm", "down", &name]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("shut down through ACPI"), "{err}");
    let list = virsh(&["list", "--all", "--name"]);
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&name));
    assert_eq!(leftovers(&name), Vec::<String>::new());
    assert_eq!(libvirt_cgroups(&name), "");
    assert_eq!(machine_rt(), rt_before, "machine's RT budget given back");
    // Where READY says tinyvr added to a shared cgroup's budget (wherever
    // libvirt put it), exactly that was taken back.
    if rt_group_host() {
        let given = vm["cgroup"]["rt_budget"]
            .as_object()
            .expect("an RT budget on an RT-group host");
        let shared: Vec<_> = given
            .iter()
            .filter(|(_, v)| v["added_to_shared"].is_u64())
            .collect();
        assert_eq!(shared.len(), 1, "{given:?}");
        for (dir, v) in shared {
            let now = std::fs::read_to_string(Path::new(dir).join("cpu.rt_runtime_us")).unwrap();
            let was = v["asked"].as_u64().unwrap() - v["added_to_shared"].as_u64().unwrap();
            assert_eq!(now.trim(), was.to_string(), "{dir}");
        }
    }
}

#[test]
fn a_domain_defined_from_vm_xml_boots_and_pins() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let _one = one();
    let dir = Scratch::new("libvirt-xml");
    // No interfaces: a domain by hand gets no taps from tinyvr.
    let name = format!("l{}b", std::process::id() % 100_000);
    let f = dir.file("router.toml", &format!("name = \"{name}\"\n"));
    let console = format!("/run/tinyvr/{name}.console");
    let img = vm_image().to_str().unwrap();
    let xml = |tag: &str, more: &[&str]| {
        let guest = dir.0.join(format!("{tag}.toml"));
        let mut a = vec![
            "vm",
            "xml",
            f.to_str().unwrap(),
            "--image",
            img,
            "--guest-config",
        ];
        a.push(guest.to_str().unwrap());
        a.extend_from_slice(more);
        let out = tinyvr(&a);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            dir.file(&format!("{tag}.xml"), &String::from_utf8_lossy(&out.stdout)),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let cleanup = || {
        let _ = virsh(&["destroy", &name]);
        let _ = std::fs::remove_file(&console);
    };
    cleanup();

    // Pinned vCPU: boots to READY, the pin read back from /proc.
    let (file, _) = xml("pin", &["--affinity", "vcpu=1"]);
    let out = virsh(&["create", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t0 = Instant::now();
    while !std::fs::read_to_string(&console)
        .unwrap_or_default()
        .contains("TINYVR-READY")
        && t0.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&console).unwrap_or_default();
    let pid: u64 = std::fs::read_to_string(format!("/run/libvirt/qemu/{name}.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let vcpu = sh(&format!(
        "grep -l '^CPU 0/' /proc/{pid}/task/*/comm | cut -d/ -f5"
    ));
    let pinned = proc_sched(pid, vcpu.trim().parse().unwrap()).0;
    cleanup();
    assert!(text.contains("TINYVR-READY"), "no READY:\n{text}");
    assert_eq!(pinned, "1");

    // FIFO through plain libvirt: fails where RT group scheduling gives
    // libvirt's cgroups no budget, and the XML says so.
    let (file, text) = xml("fifo", &["--affinity", "vcpu=1", "--sched", "vcpu=fifo:10"]);
    assert!(text.contains("RT budget"), "{text}");
    let out = virsh(&["create", file.to_str().unwrap()]);
    cleanup();
    // The domain's own cgroups are new, with no budget, whatever
    // `machine` holds.
    if rt_group_host() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "FIFO was accepted on an RT-group host"
        );
        assert!(err.contains("Cannot set scheduler parameters"), "{err}");
    } else {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn bad_libvirt_input_fails_before_anything_changes() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let _one = one();
    let dir = Scratch::new("libvirt-bad");
    let (name, cfg) = router('c');
    let f = dir.file("router.toml", &cfg);
    let img = vm_image().to_str().unwrap();
    let up = |more: &[&str]| {
        let mut a = vec![
            "vm",
            "up",
            f.to_str().unwrap(),
            "--image",
            img,
            "--topology",
        ];
        a.extend_from_slice(more);
        tinyvr(&a)
    };
    let cases: [(&[&str], &str); 6] = [
        (
            &["--libvirt=qemu+unix:///system?socket=/nonexistent"],
            "libvirtd does not answer",
        ),
        (&["--libvirt=qemu:///session"], "system instance"),
        (
            &["--libvirt", "--rt-runtime", "50000"],
            "no fifo/rr --sched",
        ),
        (
            &["--libvirt=qemu+ssh://root@elsewhere/system"],
            "names host",
        ),
        (&["--libvirt", "--console"], "--console with --libvirt"),
        (
            &["--libvirt", "--incoming", "tcp:0:4444"],
            "--incoming with --libvirt",
        ),
    ];
    for (more, want) in cases {
        let out = up(more);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{more:?}: {err}"
        );
        assert_eq!(leftovers(&name), Vec::<String>::new(), "{more:?}");
    }
    // A domain of that name that tinyvr did not make: refused, untouched.
    let other = dir.file(
        "other.xml",
        &format!(
            "<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64'>hvm</type></os></domain>"
        ),
    );
    let d = virsh(&["define", other.to_str().unwrap()]);
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    let out = up(&["--libvirt"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let still = virsh(&["domuuid", &name]).status.success();
    let _ = virsh(&["undefine", &name]);
    assert!(
        !out.status.success() && err.contains("tinyvr did not make it"),
        "{err}"
    );
    assert!(still, "the user's domain was touched");
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

/// A `vm up --libvirt` (FIFO, so an RT budget is given) in a process
/// group of its own, as a shell runs a job, caught while its `virsh
/// create` runs.
struct Midway {
    _dir: Scratch,
    name: String,
    rt_before: Option<String>,
    child: std::process::Child,
    creating: bool,
}

fn up_caught_midway(tag: char) -> Midway {
    let dir = Scratch::new(&format!("libvirt-mid-{tag}"));
    let (name, cfg) = router(tag);
    let f = dir.file("router.toml", &cfg);
    let rt_before = machine_rt();
    let child = Command::new(bin("tinyvr"))
        .args(["vm", "up", f.to_str().unwrap(), "--image"])
        .arg(vm_image())
        .args(["--topology", "--libvirt", "--sched", "vcpu=fifo:5"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let creating = wait_for_create(&name);
    Midway {
        _dir: dir,
        name,
        rt_before,
        child,
        creating,
    }
}

/// No domain, host object, libvirt cgroup or RT budget of `m` is left.
fn nothing_left(m: &Midway, err: &str) {
    let list = virsh(&["list", "--all", "--name"]);
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&m.name),
        "a domain is left: {}\n{err}",
        String::from_utf8_lossy(&list.stdout)
    );
    assert_eq!(leftovers(&m.name), Vec::<String>::new(), "{err}");
    assert_eq!(libvirt_cgroups(&m.name), "");
    assert_eq!(machine_rt(), m.rt_before);
}

#[test]
fn kill_9_of_a_libvirt_up_then_down_leaves_nothing() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let _one = one();
    // Killed while libvirt creates the domain (tinyvr's virsh child lives
    // on): down waits for that create and removes the domain it made.
    let mut m = up_caught_midway('d');
    let _down = Down::new("vm", &m.name);
    let midway = m.child.try_wait().unwrap().is_none();
    let _ = m.child.kill();
    let _ = m.child.wait();
    assert!(m.creating, "no virsh create of {} was seen", m.name);
    assert!(midway, "up finished before it could be killed");
    let out = tinyvr(&["vm", "down", &m.name, "--timeout", "3"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    nothing_left(&m, &err);
}

/// Waits (up to 30 s) until tinyvr's `virsh create` of router `name` runs.
fn wait_for_create(name: &str) -> bool {
    let xml = format!("/run/tinyvr/{name}.xml");
    // From /proc, by argv: a pgrep -f through a shell would find itself.
    let running = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            let c = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let args: Vec<String> = c
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args[0].ends_with("virsh") && args.iter().any(|a| a == "create") && args.contains(&xml)
        })
    };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if running() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn ctrl_c_during_a_libvirt_create_leaves_nothing() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let _one = one();
    // Ctrl-C is SIGINT to the job's whole group. virsh is in a group of
    // its own and lives on; up waits for the create, then removes the
    // domain it made, by itself.
    let mut m = up_caught_midway('e');
    let _down = Down::new("vm", &m.name);
    let pgid = nix::unistd::Pid::from_raw(-(m.child.id() as i32));
    nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = m.child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut m.child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(m.creating, "no virsh create of {} was seen", m.name);
    assert!(!status.success(), "up succeeded after Ctrl-C: {err}");
    assert!(
        err.contains("interrupted"),
        "up failed, but not for the Ctrl-C: {err}"
    );
    nothing_left(&m, &err);
}
