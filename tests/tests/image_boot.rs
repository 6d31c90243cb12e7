//! The image: built by `tinyvr image build`, booted by hand with qemu
//! (-kernel, -initrd, -fw_cfg, as the README shows) under TCG, checked on
//! the serial console, powered down through QMP. Also reproducibility, size
//! budgets and the build's bad inputs.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};
use tinyvr_tests::*;

/// Builds the image once per test process into target/tinyvr-test-image.
fn image() -> &'static Path {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| built_image("tinyvr-test-image"))
}

fn can_boot() -> Option<&'static str> {
    if !is_root() {
        return Some("needs root (image build writes the kernel cache)");
    }
    if !has_cmd("qemu-system-x86_64") {
        return Some("needs qemu-system-x86_64 (scripts/setup installs it)");
    }
    if !Path::new(tinyvr_image::kernel::DEFAULT_SOURCE).exists() {
        return Some("needs linux-source-6.1 (scripts/setup installs it)");
    }
    None
}

struct Vm {
    child: Child,
    lines: mpsc::Receiver<String>,
    console: Vec<String>,
    qmp: PathBuf,
    _dir: Scratch,
}

impl Vm {
    /// Starts qemu the way the README does, with two virtio NICs on
    /// unconnected hub ports (no traffic leaves them).
    fn boot(config: &str) -> Vm {
        let dir = Scratch::new("vm");
        let cfg = dir.file("router.toml", config);
        let qmp = dir.0.join("qmp.sock");
        let img = image();
        let mut child = qemu_by_hand(
            &img.join("bzImage"),
            &img.join("initramfs.cpio.gz"),
            "console=ttyS0 tinyvr.log=info",
            &cfg,
        )
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting qemu");
        let (tx, rx) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(l);
                }
            });
        }
        Vm {
            child,
            lines: rx,
            console: Vec::new(),
            qmp,
            _dir: dir,
        }
    }

    /// Waits for a console line containing `what`; returns it.
    fn wait_for(&mut self, what: &str, secs: u64) -> Option<String> {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if let Some(l) = self.console.iter().find(|l| l.contains(what)) {
                return Some(l.clone());
            }
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.console.push(l.trim_end_matches('\r').to_string());
            }
        }
        None
    }

    fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().unwrap() {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                    self.console.push(l);
                }
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn tail(&self) -> String {
        self.console
            .iter()
            .rev()
            .take(30)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const GOOD: &str = r#"name = "vm1"
[[interface]]
name = "in0"
mac = "52:54:00:00:01:01"
addresses = ["10.1.0.1/24"]
[[interface]]
name = "out0"
driver = "virtio_net"
index = 1
addresses = ["10.2.0.1/24"]
[[route]]
dest = "10.9.0.0/16"
via = "10.2.0.2"
[[neighbor]]
ip = "10.2.0.2"
mac = "02:00:00:00:02:02"
dev = "out0"
"#;

#[test]
fn boots_to_ready_and_powers_down_through_qmp() {
    require!(can_boot().is_none(), can_boot().unwrap_or(""));
    let t = Instant::now();
    let mut vm = Vm::boot(GOOD);
    let line = vm
        .wait_for("TINYVR-READY", 15)
        .unwrap_or_else(|| panic!("no READY within 15 s:\n{}", vm.tail()));
    let wall = t.elapsed();
    let ready: Value = serde_json::from_str(line.split_once("TINYVR-READY ").unwrap().1).unwrap();
    assert_eq!(ready["platform"], "vm");
    assert_eq!(ready["interfaces"][0]["name"], "in0");
    assert_eq!(ready["interfaces"][0]["mac"], "52:54:00:00:01:01");
    assert_eq!(ready["interfaces"][1]["name"], "out0");
    assert_eq!(
        ready["interfaces"][1]["mac"], "52:54:00:00:02:01",
        "index 1 in PCI order is the second NIC"
    );
    assert_eq!(ready["routes"], 1);
    assert!(ready["uptime_ms"].as_f64().unwrap() > 0.0);
    eprintln!(
        "READY after {:?} wall, guest uptime {} ms",
        wall, ready["uptime_ms"]
    );

    let mut q = tinyvr_qemu::qmp::Qmp::connect(&vm.qmp, Duration::from_secs(5)).unwrap();
    q.execute("system_powerdown", None).unwrap();
    let st = vm.wait_exit(20).unwrap_or_else(|| {
        panic!(
            "qemu still running 20 s after system_powerdown:\n{}",
            vm.tail()
        )
    });
    assert!(st.success(), "qemu exit {st}");
    let console = vm.console.join("\n");
    assert!(
        console.contains("ACPI power button pressed"),
        "{}",
        vm.tail()
    );
    assert!(console.contains("shutting down"), "{}", vm.tail());
}

#[test]
fn bad_config_reports_the_field_and_powers_off() {
    require!(can_boot().is_none(), can_boot().unwrap_or(""));
    let bad = GOOD.replace("via = \"10.2.0.2\"", "via = \"10.7.0.2\"");
    let mut vm = Vm::boot(&bad);
    let line = vm
        .wait_for("TINYVR-ERROR", 15)
        .unwrap_or_else(|| panic!("no ERROR within 15 s:\n{}", vm.tail()));
    assert!(
        line.contains("route[0].via: gateway 10.7.0.2 is outside every connected subnet"),
        "{line}"
    );
    let st = vm
        .wait_exit(15)
        .unwrap_or_else(|| panic!("qemu did not power off by itself:\n{}", vm.tail()));
    assert!(st.success(), "qemu exit {st}");
    assert!(
        !vm.console.join("\n").contains("Kernel panic"),
        "{}",
        vm.tail()
    );
}

#[test]
fn two_builds_are_byte_identical_and_within_budget() {
    require!(can_boot().is_none(), can_boot().unwrap_or(""));
    let first = image();
    let second = workspace().join("target/tinyvr-test-image-2");
    let t = Instant::now();
    run(Command::new(bin("tinyvr"))
        .args(["image", "build", "--out"])
        .arg(&second));
    eprintln!("warm build: {:?}", t.elapsed());
    for f in ["initramfs.cpio.gz", "rootfs.tar", "bzImage"] {
        let a = std::fs::read(first.join(f)).unwrap();
        let b = std::fs::read(second.join(f)).unwrap();
        assert!(a == b, "{f} differs between two builds");
    }
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(second.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["budgets"]["initramfs_ok"], true, "{}", m["budgets"]);
    assert_eq!(m["budgets"]["bzimage_ok"], true, "{}", m["budgets"]);
    assert!(
        m["kernel"]["cached"].as_bool().unwrap(),
        "the second build rebuilt the kernel"
    );
    // The rootfs directory is the same tree.
    assert!(second.join("rootfs/init").is_file());
    assert_eq!(
        std::fs::read_link(second.join("rootfs/sbin/init")).unwrap(),
        Path::new("/init")
    );
    let _ = std::fs::remove_dir_all(&second);
}

#[test]
fn bad_build_inputs_fail_and_leave_no_output() {
    require!(is_root(), "needs root");
    let dir = Scratch::new("badimg");
    let out = dir.0.join("out");
    let tinyvr = bin("tinyvr");
    let init = dir.file("fake-init", "#!/bin/sh\n");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--kernel-source", "/nonexistent/linux.tar.xz"],
            "kernel source /nonexistent/linux.tar.xz does not exist",
        ),
        (
            &["--kernel", "/nonexistent/bzImage"],
            "--kernel /nonexistent/bzImage: no such file",
        ),
        (
            &["--add", "/nonexistent/bird:/usr/sbin/bird"],
            "/nonexistent/bird does not exist",
        ),
    ];
    for (args, want) in cases {
        let o = Command::new(&tinyvr)
            .args(["image", "build", "--init"])
            .arg(&init)
            .arg("--out")
            .arg(&out)
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(want),
            "{args:?}: want {want:?}, got {err}"
        );
        assert!(!out.exists(), "{args:?} left an output directory");
        let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().contains("tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{args:?} left {leftovers:?}");
    }
}

#[test]
fn a_fragment_option_that_does_not_survive_is_named() {
    require!(can_boot().is_none(), can_boot().unwrap_or(""));
    let dir = Scratch::new("frag");
    // CONFIG_IXGBEVF needs PCI_MSI; this fragment turns PCI off.
    dir.file("bad.config", "# test: a VF driver without PCI\nCONFIG_64BIT=y\nCONFIG_NET=y\nCONFIG_NETDEVICES=y\nCONFIG_ETHERNET=y\nCONFIG_NET_VENDOR_INTEL=y\nCONFIG_IXGBEVF=y\n# CONFIG_PCI is not set\n");
    let cache = dir.0.join("cache");
    let e = tinyvr_image::kernel::build(
        Path::new(tinyvr_image::kernel::DEFAULT_SOURCE),
        &dir.0,
        &cache,
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("did not survive") && msg.contains("CONFIG_IXGBEVF=y"),
        "{msg}"
    );
}
