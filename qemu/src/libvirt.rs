//! The libvirt domain XML of a router VM (`tinyvr vm xml`): everything
//! libvirt can express, element for element, from the same plan `vm up`
//! makes (machine, accelerator, NICs, placement, cgroup). What libvirt
//! cannot carry is listed (stderr and an XML comment) or, when it is fixed
//! when qemu starts, refused. Pure: unit-tested without libvirt.

use crate::argv::VmSpec;
use crate::sched::{Class, Placement, Policy};
use tinyvr_config::{HostLink, MacvlanMode, RouterConfig};
use tinyvr_host::cgroup::{shares_for_weight, Resources};

/// What the domain is built from besides the planned qemu spec.
pub struct Extra<'a> {
    pub placement: &'a Placement,
    pub resources: &'a Resources,
    pub rt_runtime_us: Option<u64>,
    /// THP asked off explicitly (`--thp off`): only PR_SET_THP_DISABLE
    /// before exec does that.
    pub thp_off: bool,
    /// `--thp auto` where `vm up` would turn THP off (TCG): under libvirt
    /// the host's policy applies instead, which is listed, not hidden.
    pub thp_auto_off: bool,
    /// The emulator binary, absolute (libvirt needs a path).
    pub emulator: String,
    /// The file holding the router config the guest reads (fw_cfg
    /// `opt/tinyvr/config`), absolute. Not inline: libvirt 9.0 hands an
    /// inline entry to qemu's `-fw_cfg string=` with its commas unescaped,
    /// and a TOML array's comma then ends the option (seen here).
    pub config_file: String,
    /// The domain's UUID, when tinyvr starts it (`vm up --libvirt`): how
    /// tinyvr tells its domain from another of the same name.
    pub uuid: Option<String>,
    /// For `vm up --libvirt`: taps (also bridged ones) are made by tinyvr
    /// and handed over by name, and FIFO/RR are applied by tinyvr after
    /// start (libvirt's cgroups have no RT budget when it would set them).
    pub launched: bool,
    /// The host's cgroups are v2: libvirt writes `<shares>` straight into
    /// cpu.weight there (1–10000), and into cpu.shares on v1.
    pub cgroup_v2: bool,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

fn mode(m: MacvlanMode) -> &'static str {
    match m {
        MacvlanMode::Bridge => "bridge",
        MacvlanMode::Vepa => "vepa",
        MacvlanMode::Private => "private",
        MacvlanMode::Passthru => "passthrough",
    }
}

/// A PCI address `DDDD:BB:SS.F` as libvirt's attributes.
fn pci_attrs(a: &str) -> Option<String> {
    let (dom, rest) = a.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (slot, func) = rest.split_once('.')?;
    Some(format!(
        "domain='0x{dom}' bus='0x{bus}' slot='0x{slot}' function='0x{func}'"
    ))
}

/// The domain XML and the settings libvirt cannot carry (each a line for
/// stderr, also in the XML comment); an error names a setting that must
/// not be lost silently (fixed when qemu starts).
pub fn domain_xml(
    s: &VmSpec,
    cfg: &RouterConfig,
    x: &Extra,
) -> Result<(String, Vec<String>), String> {
    if x.thp_off {
        return Err("--thp off: libvirt cannot disable THP for qemu alone (it needs PR_SET_THP_DISABLE before exec); use --thp auto or on with libvirt".into());
    }
    let mut notes = Vec::new();
    if x.thp_auto_off {
        notes.push("THP: `vm up` turns it off for qemu under TCG (--thp auto); libvirt cannot (PR_SET_THP_DISABLE before exec), so this domain's qemu has the host's THP policy; give tinyvr's own qemu --thp on to compare like with like".into());
    }
    let mut o = Vec::new();
    let kind = match s.accel {
        crate::accel::Accel::Kvm => "kvm",
        crate::accel::Accel::Tcg => "qemu",
    };
    o.push(format!("<domain type='{kind}'>"));
    o.push(format!("  <name>{}</name>", esc(&s.name)));
    if let Some(u) = &x.uuid {
        o.push(format!("  <uuid>{}</uuid>", esc(u)));
    }
    o.push(format!("  <memory unit='MiB'>{}</memory>", s.memory_mb));
    if s.prealloc {
        o.push("  <memoryBacking>\n    <allocation mode='immediate'/>\n  </memoryBacking>".into());
    }
    match &x.resources.cpuset {
        Some(c) => o.push(format!(
            "  <vcpu placement='static' cpuset='{}'>{}</vcpu>",
            esc(c),
            s.cpus
        )),
        None => o.push(format!("  <vcpu placement='static'>{}</vcpu>", s.cpus)),
    }
    let mut tune = Vec::new();
    if let Some(c) = x.placement.affinity_of(Class::Vcpu) {
        for v in 0..s.cpus {
            tune.push(format!("    <vcpupin vcpu='{v}' cpuset='{c}'/>"));
        }
    }
    if let Some(c) = x.placement.affinity_of(Class::Emulator) {
        tune.push(format!("    <emulatorpin cpuset='{c}'/>"));
    }
    let sched = |p: Policy| match p {
        Policy::Fifo { priority } => Some(format!("scheduler='fifo' priority='{priority}'")),
        Policy::Rr { priority } => Some(format!("scheduler='rr' priority='{priority}'")),
        _ => None,
    };
    for (class, elem) in [
        (Class::Vcpu, "vcpusched"),
        (Class::Emulator, "emulatorsched"),
    ] {
        match x.placement.policy_of(class) {
            Some(Policy::Deadline { .. }) => notes.push(format!(
                "{class:?} SCHED_DEADLINE: libvirt has no deadline scheduler; `vm up --libvirt` applies it after start"
            )
            .to_lowercase()),
            Some(p) if x.launched && p.is_rt() => notes.push(format!(
                "{class:?} {p:?}: applied by tinyvr after start, once the domain's cgroups have an RT budget"
            ).to_lowercase()),
            Some(p) => {
                if let Some(a) = sched(p) {
                    let vcpus = if class == Class::Vcpu {
                        format!(" vcpus='0-{}'", s.cpus - 1)
                    } else {
                        String::new()
                    };
                    tune.push(format!("    <{elem}{vcpus} {a}/>"));
                }
            }
            None => {}
        }
    }
    if x.placement.affinity_of(Class::Vhost).is_some()
        || x.placement.policy_of(Class::Vhost).is_some()
    {
        notes.push("vhost thread placement/scheduling: libvirt has no element for vhost workers; `vm up --libvirt` applies it after start".into());
    }
    if let Some(w) = x.resources.cpu_weight {
        let shares = if x.cgroup_v2 { w } else { shares_for_weight(w) };
        tune.push(format!("    <shares>{shares}</shares>"));
    }
    if let Some(m) = &x.resources.cpu_max {
        let mut p = m.split_whitespace();
        if let (Some(q), Some(per)) = (p.next(), p.next()) {
            tune.push(format!("    <global_period>{per}</global_period>"));
            if q != "max" {
                tune.push(format!("    <global_quota>{q}</global_quota>"));
            }
        }
    }
    if !tune.is_empty() {
        o.push("  <cputune>".into());
        o.extend(tune);
        o.push("  </cputune>".into());
    }
    if x.placement.wants_rt() || x.rt_runtime_us.is_some() {
        notes.push("the VM cgroup's RT budget (cpu.rt_runtime_us): libvirt's cgroups get none, so FIFO/RR through plain libvirt fails on hosts with RT group scheduling (\"Cannot set scheduler parameters\"); `vm up --libvirt` gives the budget and applies the policies after start".into());
    }
    o.push("  <sysinfo type='fwcfg'>".into());
    o.push(format!(
        "    <entry name='opt/tinyvr/config' file='{}'/>",
        esc(&x.config_file)
    ));
    o.push("  </sysinfo>".into());
    o.push("  <os>".into());
    o.push(format!(
        "    <type arch='x86_64' machine='{}'>hvm</type>",
        esc(&s.machine)
    ));
    o.push(format!(
        "    <kernel>{}</kernel>",
        esc(&s.kernel.display().to_string())
    ));
    o.push(format!(
        "    <initrd>{}</initrd>",
        esc(&s.initrd.display().to_string())
    ));
    o.push(format!("    <cmdline>{}</cmdline>", esc(&s.append)));
    o.push("  </os>".into());
    o.push("  <features>\n    <acpi/>\n  </features>".into());
    // The CPU `vm up` gives (-cpu host / -cpu max); without it libvirt
    // starts qemu64, and TCG then forwards at another rate.
    o.push(match s.accel {
        crate::accel::Accel::Kvm => "  <cpu mode='host-passthrough' check='none'/>".into(),
        crate::accel::Accel::Tcg => "  <cpu mode='maximum' check='none'/>".into(),
    });
    o.push("  <on_reboot>destroy</on_reboot>".into());
    // qemu runs as root, as `vm up` runs it, and libvirt relabels (chowns)
    // none of the user's files: the image, the config, the console.
    o.push("  <seclabel type='static' model='dac' relabel='no'>\n    <label>+0:+0</label>\n  </seclabel>".into());
    o.push("  <devices>".into());
    o.push(format!("    <emulator>{}</emulator>", esc(&x.emulator)));
    for (i, (ifc, nic)) in cfg.interfaces.iter().zip(&s.nics).enumerate() {
        let host_name = ifc.host_name(&cfg.name);
        let (head, source) = match &ifc.host {
            // tinyvr made the tap (and the bridge) and hands it over.
            Some(HostLink::Bridge { .. }) if x.launched => (
                "ethernet".to_string(),
                format!("      <target dev='{}' managed='no'/>", esc(&host_name)),
            ),
            None | Some(HostLink::Tap { .. }) => (
                "ethernet".to_string(),
                format!("      <target dev='{}' managed='no'/>", esc(&host_name)),
            ),
            Some(HostLink::Bridge { bridge, .. }) => {
                let b = bridge
                    .as_ref()
                    .map_or(format!("{}-br{i}", cfg.name), |b| b.to_string());
                (
                    "bridge".into(),
                    format!("      <source bridge='{}'/>", esc(&b)),
                )
            }
            // tinyvr made the macvtap: libvirt opens its /dev/tapN
            // (`type='direct'` would make a second one of its own).
            Some(HostLink::Macvtap { .. }) if x.launched => (
                "ethernet".to_string(),
                format!("      <target dev='{}' managed='no'/>", esc(&host_name)),
            ),
            Some(HostLink::Macvtap {
                parent, mode: m, ..
            }) => (
                "direct".into(),
                format!(
                    "      <source dev='{}' mode='{}'/>",
                    esc(parent.as_str()),
                    mode(*m)
                ),
            ),
            Some(HostLink::Vfio { pci }) => {
                let a = pci_attrs(pci.as_str())
                    .ok_or_else(|| format!("interface[{i}].host.pci {:?}", pci.as_str()))?;
                // managed='no': the VF stays bound as tinyvr found it
                // (vfio-pci); libvirt must not rebind host devices.
                o.push("    <interface type='hostdev' managed='no'>".into());
                o.push(format!(
                    "      <source>\n        <address type='pci' {a}/>\n      </source>"
                ));
                if ifc.mac.is_some() {
                    o.push(format!("      <mac address='{}'/>", nic.mac));
                }
                o.push("    </interface>".into());
                continue;
            }
            Some(other) => {
                return Err(format!(
                    "interface[{i}].host: {other:?} is not a VM backend"
                ))
            }
        };
        o.push(format!("    <interface type='{head}'>"));
        o.push(source);
        o.push(format!("      <mac address='{}'/>", nic.mac));
        o.push("      <model type='virtio'/>".into());
        let mut d = format!(
            "      <driver name='{}'",
            if nic.vhost { "vhost" } else { "qemu" }
        );
        if nic.queues > 1 {
            d += &format!(" queues='{}'", nic.queues);
        }
        if let Some(r) = nic.rx_queue_size {
            d += &format!(" rx_queue_size='{r}'");
        }
        if let Some(t) = nic.tx_queue_size {
            // qemu takes a tx size above 256 only for vhost-user backends.
            if t > 256 {
                return Err(format!(
                    "interface[{i}] ({}): tx_queue_size {t}: qemu takes above 256 only for vhost-user, which libvirt would refuse at start",
                    ifc.name
                ));
            }
            d += &format!(" tx_queue_size='{t}'");
        }
        o.push(d + "/>");
        o.push("    </interface>".into());
        let qlen = match &ifc.host {
            Some(
                HostLink::Tap { nic, .. }
                | HostLink::Bridge { nic, .. }
                | HostLink::Macvtap { nic, .. },
            ) => nic.txqueuelen,
            _ => None,
        };
        if let Some(q) = qlen {
            notes.push(format!(
                "interface[{i}] ({}): host txqueuelen {q}: libvirt has no element for it; `vm up --libvirt` sets it on the host device after start",
                ifc.name
            ));
        }
    }
    o.push("    <serial type='file'>".into());
    o.push(format!(
        "      <source path='{}'/>",
        esc(&s.console_log.display().to_string())
    ));
    o.push("      <target port='0'/>\n    </serial>".into());
    // The equivalent of -nodefaults: no USB, balloon or graphics.
    o.push("    <controller type='usb' model='none'/>".into());
    o.push("    <memballoon model='none'/>".into());
    o.push("  </devices>".into());
    o.push("</domain>".into());
    let mut xml = String::new();
    if !notes.is_empty() {
        xml += "<!-- tinyvr: settings libvirt cannot carry:\n";
        for n in &notes {
            xml += &format!("     - {}\n", n.replace("--", "- -"));
        }
        xml += "-->\n";
    }
    xml += &o.join("\n");
    xml.push('\n');
    Ok((xml, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::argv::{Backend, Nic};
    use crate::sched::{parse_affinity, parse_sched};
    use std::path::PathBuf;
    use tinyvr_config::{MacAddr, VirtioNic};

    fn spec(cpus: u32) -> VmSpec {
        let nic = |k: u8, vhost| Nic {
            mac: MacAddr([0x52, 0x54, 0, 0, 0, k]),
            backend: Backend::Fds { fds: vec![3] },
            vhost,
            queues: 1,
            rx_queue_size: Some(1024),
            tx_queue_size: None,
        };
        VmSpec {
            name: "vr1".into(),
            qemu: "qemu-system-x86_64".into(),
            accel: crate::accel::Accel::Tcg,
            machine: "pc-i440fx-7.2".into(),
            cpus,
            memory_mb: 128,
            prealloc: true,
            kernel: PathBuf::from("/img/bzImage"),
            initrd: PathBuf::from("/img/initramfs.cpio.gz"),
            append: "console=ttyS0 tinyvr.log=info".into(),
            config: PathBuf::from("/run/tinyvr/vr1.toml"),
            console_log: PathBuf::from("/run/tinyvr/vr1.console"),
            console_stdio: false,
            qmp: PathBuf::from("/run/tinyvr/vr1.qmp"),
            pidfile: PathBuf::from("/run/tinyvr/vr1.pid"),
            nics: vec![nic(1, false), nic(2, true)],
        }
    }

    fn cfg() -> RouterConfig {
        let mut c = tinyvr_config::load(
            "name = \"vr1\"\n[[interface]]\nname = \"in0\"\n[[interface]]\nname = \"out0\"\n",
        )
        .unwrap();
        c.interfaces[1].host = Some(HostLink::Macvtap {
            parent: "eth1".parse().unwrap(),
            mode: MacvlanMode::Bridge,
            nic: VirtioNic {
                txqueuelen: Some(50),
                ..Default::default()
            },
        });
        c
    }

    fn extra<'a>(p: &'a Placement, r: &'a Resources) -> Extra<'a> {
        Extra {
            placement: p,
            resources: r,
            rt_runtime_us: None,
            thp_off: false,
            thp_auto_off: false,
            emulator: "/usr/bin/qemu-system-x86_64".into(),
            config_file: "/run/tinyvr/vr1.toml".into(),
            uuid: None,
            launched: false,
            cgroup_v2: false,
        }
    }

    #[test]
    fn carries_what_libvirt_can_express() {
        let mut p = Placement::default();
        p.affinity.push(parse_affinity("vcpu=1").unwrap());
        p.affinity.push(parse_affinity("emulator=0").unwrap());
        p.sched.push(parse_sched("vcpu=fifo:10").unwrap());
        let r = Resources {
            cpu_weight: Some(200),
            cpu_max: Some("50000 100000".into()),
            cpuset: Some("0-1".into()),
        };
        let (x, notes) = domain_xml(&spec(2), &cfg(), &extra(&p, &r)).unwrap();
        for want in [
            "<domain type='qemu'>",
            "<allocation mode='immediate'/>",
            "<vcpu placement='static' cpuset='0-1'>2</vcpu>",
            "<vcpupin vcpu='1' cpuset='1'/>",
            "<emulatorpin cpuset='0'/>",
            "<vcpusched vcpus='0-1' scheduler='fifo' priority='10'/>",
            "<shares>2048</shares>",
            "<global_period>100000</global_period>",
            "<global_quota>50000</global_quota>",
            "<entry name='opt/tinyvr/config' file='/run/tinyvr/vr1.toml'/>",
            "<seclabel type='static' model='dac' relabel='no'>",
            "<type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>",
            "<cmdline>console=ttyS0 tinyvr.log=info</cmdline>",
            "<interface type='ethernet'>",
            "<target dev='vr1-in0' managed='no'/>",
            "<driver name='qemu' rx_queue_size='1024'/>",
            "<interface type='direct'>",
            "<source dev='eth1' mode='bridge'/>",
            "<driver name='vhost' rx_queue_size='1024'/>",
            "<source path='/run/tinyvr/vr1.console'/>",
            "<memballoon model='none'/>",
            "<controller type='usb' model='none'/>",
            "<cpu mode='maximum' check='none'/>",
        ] {
            assert!(x.contains(want), "{want} missing:\n{x}");
        }
        // Lists what it cannot carry, in the XML too.
        assert!(notes.iter().any(|n| n.contains("RT budget")), "{notes:?}");
        assert!(
            notes.iter().any(|n| n.contains("txqueuelen 50")),
            "{notes:?}"
        );
        assert!(x.starts_with("<!-- tinyvr: settings libvirt cannot carry:"));
        // On cgroup v2 libvirt writes <shares> into cpu.weight as it is.
        let mut e = extra(&p, &r);
        e.cgroup_v2 = true;
        let (x, _) = domain_xml(&spec(2), &cfg(), &e).unwrap();
        assert!(x.contains("<shares>200</shares>"), "{x}");
    }

    #[test]
    fn refuses_what_would_be_lost_at_start() {
        let (p, r) = (Placement::default(), Resources::default());
        let mut e = extra(&p, &r);
        e.thp_auto_off = true;
        let (_, notes) = domain_xml(&spec(1), &cfg(), &e).unwrap();
        assert!(notes.iter().any(|n| n.starts_with("THP:")), "{notes:?}");
        e.thp_off = true;
        assert!(domain_xml(&spec(1), &cfg(), &e)
            .unwrap_err()
            .starts_with("--thp off"));
        let mut s = spec(1);
        s.nics[0].tx_queue_size = Some(1024);
        let e = extra(&p, &r);
        assert!(domain_xml(&s, &cfg(), &e)
            .unwrap_err()
            .contains("tx_queue_size 1024"));
        let mut p = Placement::default();
        p.sched
            .push(parse_sched("vcpu=deadline:70000/200000/200000").unwrap());
        let (_, notes) = domain_xml(&spec(1), &cfg(), &extra(&p, &r)).unwrap();
        assert!(
            notes.iter().any(|n| n.contains("sched_deadline")),
            "{notes:?}"
        );
    }

    #[test]
    fn launched_by_tinyvr_hands_over_taps_and_applies_rt_itself() {
        let mut p = Placement::default();
        p.sched.push(parse_sched("vcpu=fifo:10").unwrap());
        let r = Resources::default();
        let mut c = cfg();
        c.interfaces[0].host = Some(HostLink::Bridge {
            bridge: None,
            nic: VirtioNic::default(),
        });
        let mut e = extra(&p, &r);
        let (plain, _) = domain_xml(&spec(1), &c, &e).unwrap();
        assert!(plain.contains("<source bridge='vr1-br0'/>"), "{plain}");
        assert!(plain.contains("<vcpusched"), "{plain}");
        e.launched = true;
        e.uuid = Some("6f1c7b9e-0000-4000-8000-000000000001".into());
        let (x, notes) = domain_xml(&spec(1), &c, &e).unwrap();
        assert!(x.contains("<uuid>6f1c7b9e-0000-4000-8000-000000000001</uuid>"));
        assert!(x.contains("<target dev='vr1-in0' managed='no'/>"), "{x}");
        // The macvtap tinyvr made is handed over too, not remade.
        assert!(x.contains("<target dev='vr1-out0' managed='no'/>"), "{x}");
        assert!(!x.contains("type='direct'"), "{x}");
        assert!(!x.contains("<vcpusched"), "{x}");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("applied by tinyvr after start")),
            "{notes:?}"
        );
    }

    #[test]
    fn escapes_and_maps_vf_addresses() {
        assert_eq!(esc("a<b>&'\""), "a&lt;b&gt;&amp;&apos;&quot;");
        assert_eq!(
            pci_attrs("0000:3b:02.1").as_deref(),
            Some("domain='0x0000' bus='0x3b' slot='0x02' function='0x1'")
        );
    }
}
