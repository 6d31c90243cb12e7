//! The qemu command line of a router VM: a pure function of the VM spec,
//! unit-tested for every backend and option.

use std::path::PathBuf;
use tinyvr_config::{MacAddr, PciAddr};

use crate::accel::Accel;

#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// A tap device by name.
    Tap { ifname: String },
    /// Already-open tap file descriptors (macvtap's /dev/tapN), one per queue.
    Fds { fds: Vec<i32> },
    /// A VF passed through with vfio-pci.
    Vfio { pci: PciAddr },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Nic {
    pub mac: MacAddr,
    pub backend: Backend,
    pub vhost: bool,
    pub queues: u32,
    pub rx_queue_size: Option<u32>,
    pub tx_queue_size: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VmSpec {
    pub name: String,
    pub qemu: String,
    pub accel: Accel,
    pub machine: String,
    pub cpus: u32,
    pub memory_mb: u32,
    /// Allocate (and zero) all guest memory when qemu starts, not on the
    /// guest's first touch of each page.
    pub prealloc: bool,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
    pub config: PathBuf,
    pub console_log: PathBuf,
    /// Also show the console on qemu's stdio.
    pub console_stdio: bool,
    pub qmp: PathBuf,
    pub pidfile: PathBuf,
    pub nics: Vec<Nic>,
}

/// A value placed inside one of qemu's `key=value,...` option strings
/// (QemuOpts and keyval alike): a comma in it is written twice, qemu's one
/// escape ("-fw_cfg name=z,string=a,,b" gives the string "a,b"). Every
/// name and path formatted into such a string goes through here; values
/// qemu takes as a whole argument (`-kernel`, `-initrd`, `-append`,
/// `-pidfile`) must not, or the doubled comma would reach the file name.
/// Values are always given with their key (`path=`, `guest=`): an implied
/// first key (`-qmp unix:PATH`, `-name NAME`) is cut at the first '=' too,
/// which has no escape.
pub fn opt_value(v: &str) -> String {
    v.replace(',', ",,")
}

/// A path as an option value; see [`opt_value`].
fn opt_path(p: &std::path::Path) -> String {
    opt_value(&p.display().to_string())
}

pub fn argv(s: &VmSpec) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|x| x.to_string()));
    push(&[
        &s.qemu,
        "-name",
        &format!("guest={},debug-threads=on", opt_value(&s.name)),
    ]);
    let accel = match s.accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    // The machine type is the implied first key: kept so (the tests and
    // users read `-machine pc,accel=...`), a fixed name without '='.
    let mut machine = format!("{},accel={accel}", opt_value(&s.machine));
    if s.prealloc {
        machine += &format!(",memory-backend={RAM_BACKEND}");
    }
    push(&["-machine", &machine]);
    // KVM passes the host CPU through; TCG emulates the most it can.
    push(&["-cpu", if s.accel == Accel::Kvm { "host" } else { "max" }]);
    push(&["-smp", &s.cpus.to_string()]);
    for m in memory_args(s.memory_mb, s.prealloc) {
        push(&[&m]);
    }
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]);
    let con = if s.console_stdio {
        format!(
            "stdio,id=con,signal=off,logfile={}",
            opt_path(&s.console_log)
        )
    } else {
        format!("file,id=con,path={}", opt_path(&s.console_log))
    };
    push(&["-chardev", &con, "-serial", "chardev:con"]);
    push(&[
        "-kernel",
        &s.kernel.display().to_string(),
        "-initrd",
        &s.initrd.display().to_string(),
    ]);
    push(&["-append", &s.append]);
    push(&[
        "-fw_cfg",
        &format!("name=opt/tinyvr/config,file={}", opt_path(&s.config)),
    ]);
    // QMP on a socket chardev, not `-qmp unix:PATH`: there the path is an
    // implied key, and a path with '=' in it cannot be written at all.
    push(&[
        "-chardev",
        &format!("socket,id=qmp,path={},server=on,wait=off", opt_path(&s.qmp)),
        "-mon",
        "chardev=qmp,mode=control",
    ]);
    // A whole argument: qemu writes the file named by it as it is.
    push(&["-pidfile", &s.pidfile.display().to_string()]);
    for (i, n) in s.nics.iter().enumerate() {
        let id = format!("n{i}");
        let mut netdev = match &n.backend {
            Backend::Vfio { pci } => {
                let host = opt_value(pci.as_str());
                push(&["-device", &format!("vfio-pci,host={host},id={id}")]);
                continue;
            }
            Backend::Tap { ifname } => {
                // A kernel interface name may hold a comma.
                let ifname = opt_value(ifname);
                format!("tap,id={id},ifname={ifname},script=no,downscript=no")
            }
            Backend::Fds { fds } if fds.len() == 1 => format!("tap,id={id},fd={}", fds[0]),
            Backend::Fds { fds } => {
                let list: Vec<String> = fds.iter().map(|f| f.to_string()).collect();
                format!("tap,id={id},fds={}", list.join(":"))
            }
        };
        netdev += if n.vhost { ",vhost=on" } else { ",vhost=off" };
        if n.queues > 1 && matches!(n.backend, Backend::Tap { .. }) {
            netdev += &format!(",queues={}", n.queues);
        }
        let mut dev = format!("virtio-net-pci,netdev={id},mac={}", n.mac);
        if n.queues > 1 {
            // One MSI-X vector per queue of each pair, plus config and control.
            dev += &format!(",mq=on,vectors={}", 2 * n.queues + 2);
        }
        if let Some(q) = n.rx_queue_size {
            dev += &format!(",rx_queue_size={q}");
        }
        if let Some(q) = n.tx_queue_size {
            dev += &format!(",tx_queue_size={q}");
        }
        push(&["-netdev", &netdev, "-device", &dev]);
    }
    a
}

/// The id of the preallocated RAM backend; `-machine` names it as its
/// `memory-backend`.
pub const RAM_BACKEND: &str = "ram0";

/// Guest memory: `-m`, and with `prealloc` a RAM backend that qemu fills
/// when it starts, so no host page fault lands inside the guest's boot or
/// a trial.
pub fn memory_args(memory_mb: u32, prealloc: bool) -> Vec<String> {
    let mut a = vec!["-m".to_string(), memory_mb.to_string()];
    if prealloc {
        a.push("-object".into());
        a.push(format!(
            "memory-backend-ram,id={RAM_BACKEND},size={memory_mb}M,prealloc=on"
        ));
    }
    a
}

/// A deterministic MAC for interface `index` of router `name`, for
/// interfaces whose config gives none: locally administered, stable.
pub fn derived_mac(name: &str, index: usize) -> MacAddr {
    let h = name
        .bytes()
        .fold(0x811c9dc5u32, |h, b| {
            (h ^ b as u32).wrapping_mul(0x01000193)
        })
        .to_be_bytes();
    MacAddr([0x52, 0x54, h[0], h[1], h[2], index as u8])
}

/// The machine type `alias` stands for in `qemu -machine help`'s output
/// (`pc  Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)`).
/// Pure.
pub fn alias_target(help: &str, alias: &str) -> Option<String> {
    help.lines().find_map(|l| {
        let rest = l.strip_prefix(alias)?;
        if !rest.starts_with(' ') {
            return None;
        }
        let t = rest.split("(alias of ").nth(1)?.split(')').next()?;
        Some(t.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(nics: Vec<Nic>) -> VmSpec {
        VmSpec {
            name: "vr1".into(),
            qemu: "qemu-system-x86_64".into(),
            accel: Accel::Tcg,
            machine: "pc".into(),
            cpus: 2,
            memory_mb: 128,
            prealloc: false,
            kernel: "/img/bzImage".into(),
            initrd: "/img/initramfs.cpio.gz".into(),
            append: "console=ttyS0".into(),
            config: "/run/tinyvr/vr1.toml".into(),
            console_log: "/run/tinyvr/vr1.console".into(),
            console_stdio: false,
            qmp: "/run/tinyvr/vr1.qmp".into(),
            pidfile: "/run/tinyvr/vr1.pid".into(),
            nics,
        }
    }

    fn nic(backend: Backend) -> Nic {
        Nic {
            mac: "52:54:00:00:01:01".parse().unwrap(),
            backend,
            vhost: false,
            queues: 1,
            rx_queue_size: None,
            tx_queue_size: None,
        }
    }

    /// The value following `flag`, for each occurrence.
    fn values<'a>(a: &'a [String], flag: &str) -> Vec<&'a str> {
        a.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn base_command_line() {
        let a = argv(&spec(vec![]));
        assert_eq!(a[0], "qemu-system-x86_64");
        assert_eq!(values(&a, "-machine"), ["pc,accel=tcg"]);
        assert_eq!(values(&a, "-cpu"), ["max"]);
        assert_eq!(values(&a, "-smp"), ["2"]);
        assert_eq!(values(&a, "-m"), ["128"]);
        for f in ["-nodefaults", "-no-user-config", "-no-reboot"] {
            assert!(a.iter().any(|x| x == f), "{f} missing");
        }
        assert_eq!(
            values(&a, "-chardev"),
            [
                "file,id=con,path=/run/tinyvr/vr1.console",
                "socket,id=qmp,path=/run/tinyvr/vr1.qmp,server=on,wait=off"
            ]
        );
        assert_eq!(values(&a, "-serial"), ["chardev:con"]);
        assert_eq!(values(&a, "-mon"), ["chardev=qmp,mode=control"]);
        assert!(values(&a, "-qmp").is_empty());
        assert_eq!(
            values(&a, "-fw_cfg"),
            ["name=opt/tinyvr/config,file=/run/tinyvr/vr1.toml"]
        );
        assert_eq!(values(&a, "-pidfile"), ["/run/tinyvr/vr1.pid"]);
        assert_eq!(values(&a, "-name"), ["guest=vr1,debug-threads=on"]);
    }

    #[test]
    fn commas_in_option_values_are_doubled() {
        assert_eq!(opt_value("a,b,,c"), "a,,b,,,,c");
        assert_eq!(opt_value("plain=path"), "plain=path");
        let mut n = nic(Backend::Tap {
            ifname: "t,1".into(),
        });
        n.vhost = true;
        let mut s = spec(vec![n]);
        s.name = "v,r".into();
        s.config = "/tmp/a,b/config.toml".into();
        s.console_log = "/tmp/a,b/vr1.console".into();
        s.qmp = "/tmp/a,b/vr1.qmp".into();
        s.pidfile = "/tmp/a,b/vr1.pid".into();
        s.kernel = "/tmp/a,b/bzImage".into();
        s.initrd = "/tmp/a,b/initramfs.cpio.gz".into();
        let a = argv(&s);
        assert_eq!(
            values(&a, "-fw_cfg"),
            ["name=opt/tinyvr/config,file=/tmp/a,,b/config.toml"]
        );
        assert_eq!(
            values(&a, "-chardev"),
            [
                "file,id=con,path=/tmp/a,,b/vr1.console",
                "socket,id=qmp,path=/tmp/a,,b/vr1.qmp,server=on,wait=off"
            ]
        );
        assert_eq!(values(&a, "-name"), ["guest=v,,r,debug-threads=on"]);
        assert_eq!(
            values(&a, "-netdev"),
            ["tap,id=n0,ifname=t,,1,script=no,downscript=no,vhost=on"]
        );
        // Whole arguments, not option strings: as they are.
        assert_eq!(values(&a, "-pidfile"), ["/tmp/a,b/vr1.pid"]);
        assert_eq!(values(&a, "-kernel"), ["/tmp/a,b/bzImage"]);
        assert_eq!(values(&a, "-initrd"), ["/tmp/a,b/initramfs.cpio.gz"]);
        s.console_stdio = true;
        assert_eq!(
            values(&argv(&s), "-chardev")[0],
            "stdio,id=con,signal=off,logfile=/tmp/a,,b/vr1.console"
        );
    }

    #[test]
    fn the_versioned_machine_behind_an_alias() {
        let help = "Supported machines are:\nmicrovm              microvm (i386)\npc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)\npc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (default)\n";
        assert_eq!(alias_target(help, "pc").as_deref(), Some("pc-i440fx-7.2"));
        assert_eq!(alias_target(help, "microvm"), None);
        assert_eq!(alias_target(help, "q35"), None);
    }

    #[test]
    fn preallocated_memory_is_the_machines_backend() {
        let mut s = spec(vec![]);
        s.prealloc = true;
        let a = argv(&s);
        assert_eq!(values(&a, "-machine"), ["pc,accel=tcg,memory-backend=ram0"]);
        assert_eq!(values(&a, "-m"), ["128"]);
        assert_eq!(
            values(&a, "-object"),
            ["memory-backend-ram,id=ram0,size=128M,prealloc=on"]
        );
        assert!(values(&argv(&spec(vec![])), "-object").is_empty());
    }

    #[test]
    fn kvm_and_console_on_stdio() {
        let mut s = spec(vec![]);
        s.accel = Accel::Kvm;
        s.console_stdio = true;
        let a = argv(&s);
        assert_eq!(values(&a, "-machine"), ["pc,accel=kvm"]);
        assert_eq!(values(&a, "-cpu"), ["host"]);
        assert_eq!(
            values(&a, "-chardev")[0],
            "stdio,id=con,signal=off,logfile=/run/tinyvr/vr1.console"
        );
    }

    #[test]
    fn tap_with_vhost_multiqueue_and_queue_sizes() {
        let mut n = nic(Backend::Tap {
            ifname: "vr1-in0".into(),
        });
        n.vhost = true;
        n.queues = 4;
        n.rx_queue_size = Some(1024);
        n.tx_queue_size = Some(256);
        let a = argv(&spec(vec![n]));
        assert_eq!(
            values(&a, "-netdev"),
            ["tap,id=n0,ifname=vr1-in0,script=no,downscript=no,vhost=on,queues=4"]
        );
        assert_eq!(values(&a, "-device"), ["virtio-net-pci,netdev=n0,mac=52:54:00:00:01:01,mq=on,vectors=10,rx_queue_size=1024,tx_queue_size=256"]);
    }

    #[test]
    fn macvtap_fds_and_vfio() {
        let a = argv(&spec(vec![
            nic(Backend::Fds { fds: vec![3] }),
            nic(Backend::Fds { fds: vec![4, 5] }),
            nic(Backend::Vfio {
                pci: "0000:01:10.0".parse().unwrap(),
            }),
        ]));
        assert_eq!(
            values(&a, "-netdev"),
            ["tap,id=n0,fd=3,vhost=off", "tap,id=n1,fds=4:5,vhost=off"]
        );
        let dev = values(&a, "-device");
        assert_eq!(dev[2], "vfio-pci,host=0000:01:10.0,id=n2");
        assert_eq!(dev.len(), 3);
    }

    #[test]
    fn derived_macs_are_stable_and_distinct() {
        assert_eq!(derived_mac("vr1", 0), derived_mac("vr1", 0));
        assert_ne!(derived_mac("vr1", 0), derived_mac("vr1", 1));
        assert_ne!(derived_mac("vr1", 0), derived_mac("vr2", 0));
        assert!(!derived_mac("vr1", 0).is_multicast());
    }
}
