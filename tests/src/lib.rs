//! Helpers for tests that touch the real kernel: namespaces that remove
//! themselves, `ip -json` readers, the project's binaries, and loud skips.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub mod bad_cases;

/// Skips the calling test when a requirement is missing: says so on stderr
/// and in `target/tinyvr-skipped.txt` (the test script prints that file).
/// Under CI (CI=true) a missing requirement fails instead.
#[macro_export]
macro_rules! require {
    ($cond:expr, $why:expr) => {
        if !$cond {
            $crate::skip(module_path!(), $why);
            return;
        }
    };
}

pub fn skip(test: &str, why: &str) {
    let line = format!("skipped: {test}: {why}");
    if std::env::var("CI").is_ok_and(|v| v == "true")
        && std::env::var_os("TINYVR_ALLOW_SKIP").is_none()
    {
        panic!("{line} (CI=true: a skip is a failure here)");
    }
    eprintln!("{line}");
    let f = workspace().join("target/tinyvr-skipped.txt");
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(f)
        .and_then(|mut f| {
            use std::io::Write;
            writeln!(f, "{line}")
        });
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}

extern "C" {
    fn geteuid() -> u32;
}

/// A fresh scratch directory under target/ (not /tmp: PID 1 tests mount a
/// tmpfs over /tmp in their own mount namespace). Removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        // PID 1 tests mount a fresh /tmp and /run: a checkout under either
        // keeps its scratch files elsewhere so the init still sees them.
        let ws = workspace();
        let base = if ws.starts_with("/tmp") || ws.starts_with("/run") {
            PathBuf::from("/var/tmp/tinyvr-scratch")
        } else {
            ws.join("target/tinyvr-scratch")
        };
        let p = base.join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    /// Writes a file in the directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn has_cmd(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Path to a workspace binary, built (debug) once per test process.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let p = build_bin(name);
    built.push((name.to_string(), p.clone()));
    p
}

fn build_bin(name: &str) -> PathBuf {
    build(name, false)
}

/// Builds a workspace binary in the given profile and returns its path.
pub fn build(name: &str, release: bool) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace())
        .args(["build", "--quiet", "--bin", name]);
    if release {
        cmd.arg("--release");
    }
    let st = cmd.status().expect("running cargo build");
    assert!(st.success(), "cargo build --bin {name} failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    target
        .join(if release { "release" } else { "debug" })
        .join(name)
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn sh(script: &str) -> String {
    String::from_utf8(run(Command::new("sh").args(["-ec", script])).stdout).unwrap()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace named `tvt<pid>-<n>`, deleted (with every link in it)
/// when dropped, also when the test panics.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let name = format!(
            "tvt{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        Netns { name }
    }

    /// `ip -n NS ARGS` as a command.
    pub fn ip(&self, args: &[&str]) -> Output {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// `ip -json -n NS ARGS`, parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let out = run(Command::new("ip")
            .arg("-json")
            .arg("-n")
            .arg(&self.name)
            .args(args));
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Value::Array(vec![]);
        }
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip -json {args:?}: {e}: {text}"))
    }

    /// A command run inside the namespace (`ip netns exec`, which also
    /// remounts /sys for it).
    pub fn exec(&self, prog: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(prog);
        c
    }

    pub fn read(&self, path: &str) -> String {
        let out = run(self.exec("cat").arg(path));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Everything `ip` shows of the namespace, to compare before and after.
    pub fn snapshot(&self) -> Value {
        serde_json::json!({
            "links": self.ip_json(&["link", "show"]),
            "addr": self.ip_json(&["addr", "show"]),
            "route4": self.ip_json(&["-4", "route", "show", "table", "all"]),
            "route6": self.ip_json(&["-6", "route", "show", "table", "all"]),
            "rule4": self.ip_json(&["-4", "rule", "show"]),
            "rule6": self.ip_json(&["-6", "rule", "show"]),
            "neigh": self.ip_json(&["neigh", "show"]),
        })
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Parses the JSON of the line starting with `tag` in some output.
pub fn tagged_json(output: &str, tag: &str) -> Option<Value> {
    output.lines().find_map(|l| l.strip_prefix(tag)).map(|j| {
        serde_json::from_str(j.trim()).unwrap_or_else(|e| panic!("bad {tag} json: {e}: {j}"))
    })
}

/// Sends `count` UDP datagrams of `payload` bytes from inside namespace
/// `ns` to `dst` (a thread that enters the namespace; the socket stays there).
pub fn udp_send(ns: &str, dst: std::net::SocketAddr, count: u32, payload: usize) {
    udp_send_paced(ns, dst, count, payload, None)
}

/// As [`udp_send`], at most `pps` datagrams per second when given (a VM
/// under TCG forwards far less than a socket can send).
pub fn udp_send_paced(
    ns: &str,
    dst: std::net::SocketAddr,
    count: u32,
    payload: usize,
    pps: Option<u32>,
) {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let buf = vec![0u8; payload];
        let start = std::time::Instant::now();
        for i in 0..count {
            if let Some(r) = pps {
                let due = std::time::Duration::from_secs_f64(i as f64 / r as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            // A full socket buffer is a local drop, not a network one: retry.
            while let Err(e) = s.send_to(&buf, dst) {
                assert_eq!(e.raw_os_error(), Some(105), "sending: {e}"); // ENOBUFS
                std::thread::yield_now();
            }
        }
    })
    .join()
    .unwrap();
}

/// A link's counter from `ip -s -json link` in namespace `ns`.
pub fn link_stat(ns: &str, dev: &str, dir: &str, what: &str) -> u64 {
    let out = run(Command::new("ip").args(["-n", ns, "-s", "-json", "link", "show", "dev", dev]));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["stats64"][dir][what]
        .as_u64()
        .unwrap_or_else(|| panic!("no stats64.{dir}.{what} for {dev} in {ns}: {v}"))
}

/// Names of namespaces, host links and tinyvr state files that start with `prefix`.
pub fn leftovers(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ns = run(Command::new("ip").args(["netns", "list"]));
    for l in String::from_utf8_lossy(&ns.stdout).lines() {
        let n = l.split_whitespace().next().unwrap_or("");
        if n.starts_with(prefix) {
            out.push(format!("netns {n}"));
        }
    }
    let links = run(Command::new("ip").args(["-json", "link", "show"]));
    let v: Value = serde_json::from_slice(&links.stdout).unwrap();
    for l in v.as_array().unwrap() {
        let n = l["ifname"].as_str().unwrap_or("");
        if n.starts_with(prefix) {
            out.push(format!("link {n}"));
        }
    }
    if let Ok(rd) = std::fs::read_dir("/run/tinyvr") {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(prefix) {
                out.push(format!("state /run/tinyvr/{n}"));
            }
        }
    }
    out
}

/// Takes a router down when dropped, also when the test panics before its
/// own `down` (then a no-op: the state file is gone).
pub struct Down {
    pub platform: &'static str,
    pub name: String,
}

impl Down {
    pub fn new(platform: &'static str, name: &str) -> Down {
        Down {
            platform,
            name: name.to_string(),
        }
    }
}

impl Drop for Down {
    fn drop(&mut self) {
        if Path::new(&format!("/run/tinyvr/{}.json", self.name)).exists() {
            let _ = Command::new(bin("tinyvr"))
                .args([self.platform, "down", &self.name])
                .output();
        }
    }
}

/// Host links a test made itself, deleted when dropped (a veth pair goes
/// with either end).
pub struct HostLinks(pub Vec<String>);

impl Drop for HostLinks {
    fn drop(&mut self) {
        for l in &self.0 {
            let _ = Command::new("ip").args(["link", "del", l]).output();
        }
    }
}

/// A child process (qemu, mostly) killed and reaped when this is dropped,
/// so a benchmark that panics halfway leaves no guest running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A two-interface router with a route and a neighbour, matching the two
/// NICs [`qemu_by_hand`] gives a guest: the boot benchmarks' config.
pub const BOOT_ROUTER: &str = r#"name = "boot"
[[interface]]
name = "in0"
mac = "52:54:00:00:01:01"
addresses = ["10.1.0.1/24"]
[[interface]]
name = "out0"
mac = "52:54:00:00:02:01"
addresses = ["10.2.0.1/24"]
[[route]]
dest = "10.9.0.0/16"
via = "10.2.0.2"
[[neighbor]]
ip = "10.2.0.2"
mac = "02:00:00:00:02:02"
dev = "out0"
"#;

/// qemu booting a tinyvr kernel the way the README does it by hand: TCG,
/// serial console on stdio, the config by fw_cfg, and two virtio NICs
/// (MACs 52:54:00:00:01:01 and :02:01) on unconnected hub ports, so no
/// packet leaves them. Callers add what else they need (QMP, pipes).
pub fn qemu_by_hand(kernel: &Path, initrd: &Path, append: &str, config: &Path) -> Command {
    qemu_by_hand_with(kernel, initrd, append, config, true)
}

/// [`qemu_by_hand`], with guest memory as `tinyvr vm up` sets it under TCG
/// (`tuned`: preallocated, no THP for qemu) or as qemu does by default.
pub fn qemu_by_hand_with(
    kernel: &Path,
    initrd: &Path,
    append: &str,
    config: &Path,
    tuned: bool,
) -> Command {
    let machine = match tuned {
        true => format!("pc,memory-backend={}", tinyvr_qemu::argv::RAM_BACKEND),
        false => "pc".into(),
    };
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-accel", "tcg", "-machine", &machine]);
    c.args(["-smp", "1", "-nodefaults", "-display", "none", "-no-reboot"])
        .args(["-serial", "stdio", "-monitor", "none"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", append])
        .arg("-fw_cfg")
        .arg(format!("name=opt/tinyvr/config,file={}", config.display()));
    c.args(tinyvr_qemu::argv::memory_args(128, tuned));
    if tuned {
        // SAFETY: only prctl between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            c.pre_exec(tinyvr_qemu::memory::disable_thp);
        }
    }
    for (i, mac) in ["52:54:00:00:01:01", "52:54:00:00:02:01"]
        .iter()
        .enumerate()
    {
        c.args([
            "-netdev",
            &format!("hubport,id=n{i},hubid={i}"),
            "-device",
            &format!("virtio-net-pci,netdev=n{i},mac={mac}"),
        ]);
    }
    c
}

/// The image, built once per test process with `tinyvr image build` into
/// `target/<dir>` (the kernel comes from the cache after the first build).
pub fn built_image(dir: &str) -> PathBuf {
    let out = workspace().join("target").join(dir);
    run(Command::new(bin("tinyvr"))
        .args(["image", "build", "--out"])
        .arg(&out));
    out
}

/// The image the VM tests boot, built once per test process.
pub fn vm_image() -> &'static Path {
    static I: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    I.get_or_init(|| built_image("tinyvr-vm-image"))
}

/// Why a libvirt test cannot run here, if it cannot: no libvirtd
/// answers at qemu:///system.
pub fn libvirtd_missing() -> Option<&'static str> {
    let ok = std::process::Command::new("virsh")
        .args(["-q", "-c", "qemu:///system", "uri"])
        .output()
        .is_ok_and(|o| o.status.success());
    (!ok).then_some("needs a libvirtd at qemu:///system (scripts/setup installs libvirt-daemon-system and starts it)")
}

/// Why the VM tests cannot run here, if they cannot.
pub fn vm_can_run() -> Option<&'static str> {
    if !is_root() {
        return Some("needs root");
    }
    if !has_cmd("qemu-system-x86_64") {
        return Some("needs qemu-system-x86_64 (scripts/setup installs it)");
    }
    if !Path::new(tinyvr_image::kernel::DEFAULT_SOURCE).exists() {
        return Some("needs linux-source-6.1 to build the image (scripts/setup installs it)");
    }
    None
}

/// Whether this host can run a KVM guest, read independently of tinyvr:
/// /dev/kvm opens read-write and the CPU flags have vmx or svm. Tests
/// assert the accelerator tinyvr picks for the host they find.
pub fn host_has_kvm() -> bool {
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    dev && cpu
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// A CPU number this host does not have online (one past the highest
/// online CPU), for tests of the "not online" error on any host.
pub fn offline_cpu() -> u32 {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    online
        .trim()
        .split(',')
        .filter_map(|r| r.rsplit('-').next()?.parse::<u32>().ok())
        .max()
        .map_or(1, |m| m + 1)
}

/// A router named `name` with the two interfaces the topology wires (in0
/// 10.1.0.1/24 to the source, out0 10.2.0.1/24 to the sink); `extra` is
/// appended.
pub fn two_nic_config(name: &str, extra: &str) -> String {
    format!(
        r#"name = "{name}"
[[interface]]
name = "in0"
addresses = ["10.1.0.1/24"]
[[interface]]
name = "out0"
addresses = ["10.2.0.1/24"]
{extra}"#
    )
}
