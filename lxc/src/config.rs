//! The LXC config tinyvr writes for a router: pure text from the router
//! config and the resource settings, unit-tested without root.

use tinyvr_config::{HostLink, MacvlanMode, RouterConfig};
pub use tinyvr_host::cgroup::{shares_for_weight, Cgroup, Resources};

fn mode(m: MacvlanMode) -> &'static str {
    match m {
        MacvlanMode::Bridge => "bridge",
        MacvlanMode::Vepa => "vepa",
        MacvlanMode::Private => "private",
        MacvlanMode::Passthru => "passthru",
    }
}

/// The container's config file; `dir` is the container's directory
/// (rootfs/ and console.log live in it); `hook` is the tinyvr binary, which
/// LXC runs as each veth's `script.up` to put its host end where the config
/// says (`netns`, `peer_mac`) before the container's init starts.
pub fn generate(cfg: &RouterConfig, dir: &str, res: &Resources, cg: Cgroup, hook: &str) -> String {
    let mut c = Vec::new();
    let mut kv = |k: &str, v: &str| c.push(format!("{k} = {v}"));
    kv("lxc.uts.name", &cfg.name);
    kv("lxc.rootfs.path", &format!("dir:{dir}/rootfs"));
    // The init's console (READY/ERROR lines, log) goes to a file the host
    // tools read; lxc-start does not copy it to its own stdout unless that
    // is a terminal.
    kv("lxc.console.logfile", &format!("{dir}/console.log"));
    // tinyvr-init is PID 1 and finds the config in the rootfs.
    kv("lxc.init.cmd", "/sbin/init");
    // proc and sys from LXC (the init skips what is mounted); a small /dev.
    kv("lxc.mount.auto", "proc:mixed sys:mixed");
    kv("lxc.autodev", "1");
    kv("lxc.tty.max", "0");
    kv("lxc.pty.max", "0");
    // lxc-stop's halt signal; the init shuts down cleanly on SIGPWR.
    kv("lxc.signal.halt", "SIGPWR");
    // No AppArmor profile: the image has nothing to confine, and hosts
    // without AppArmor would refuse to start the container.
    kv("lxc.apparmor.profile", "unconfined");
    // Hooks get their facts (LXC_NET_PEER: a veth's host end) in the
    // environment, not as arguments.
    kv("lxc.hook.version", "1");
    if cfg.interfaces.is_empty() {
        // A network namespace of its own with only loopback: without any
        // lxc.net entry the container would share the host's, and its init
        // would set the router sysctls there.
        kv("lxc.net.0.type", "empty");
    }
    for (i, ifc) in cfg.interfaces.iter().enumerate() {
        let n = format!("lxc.net.{i}");
        let host = ifc.host_name(&cfg.name);
        match &ifc.host {
            None | Some(HostLink::Veth { .. }) => {
                kv(&format!("{n}.type"), "veth");
                kv(&format!("{n}.veth.pair"), &host);
                if let Some(HostLink::Veth {
                    bridge,
                    netns,
                    peer_mac,
                    ..
                }) = &ifc.host
                {
                    if let Some(b) = bridge {
                        kv(&format!("{n}.link"), b.as_str());
                    }
                    if netns.is_some() || peer_mac.is_some() {
                        // The host end is moved (and given its MAC) as soon
                        // as LXC makes it: the router's carrier never drops
                        // after its init has configured it.
                        let mut cmd = format!("{hook} lxc net-up");
                        if let Some(ns) = netns {
                            cmd += &format!(" --netns {ns}");
                        }
                        if let Some(m) = peer_mac {
                            cmd += &format!(" --mac {m}");
                        }
                        kv(&format!("{n}.script.up"), &cmd);
                    }
                }
            }
            Some(HostLink::Macvlan { parent, mode: m }) => {
                kv(&format!("{n}.type"), "macvlan");
                kv(&format!("{n}.link"), parent.as_str());
                kv(&format!("{n}.macvlan.mode"), mode(*m));
            }
            // VM backends are refused before a config is generated (topology::load).
            Some(
                HostLink::Tap { .. }
                | HostLink::Macvtap { .. }
                | HostLink::Bridge { .. }
                | HostLink::Vfio { .. },
            ) => {}
            Some(HostLink::Phys { device }) => {
                kv(&format!("{n}.type"), "phys");
                kv(&format!("{n}.link"), device.as_str());
            }
        }
        // The device enters the container under its final name.
        kv(&format!("{n}.name"), ifc.name.as_str());
        if let Some(m) = ifc.mac {
            kv(&format!("{n}.hwaddr"), &m.to_string());
        }
    }
    match cg {
        Cgroup::V2 => {
            if let Some(w) = res.cpu_weight {
                kv("lxc.cgroup2.cpu.weight", &w.to_string());
            }
            if let Some(m) = &res.cpu_max {
                kv("lxc.cgroup2.cpu.max", m);
            }
            if let Some(s) = &res.cpuset {
                kv("lxc.cgroup2.cpuset.cpus", s);
            }
        }
        Cgroup::V1 => {
            if let Some(w) = res.cpu_weight {
                kv("lxc.cgroup.cpu.shares", &shares_for_weight(w).to_string());
            }
            if let Some(m) = &res.cpu_max {
                let mut p = m.split_whitespace();
                if let (Some(q), Some(per)) = (p.next(), p.next()) {
                    kv(
                        "lxc.cgroup.cpu.cfs_quota_us",
                        if q == "max" { "-1" } else { q },
                    );
                    kv("lxc.cgroup.cpu.cfs_period_us", per);
                }
            }
            if let Some(s) = &res.cpuset {
                kv("lxc.cgroup.cpuset.cpus", s);
            }
        }
    }
    c.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOOK: &str = "/usr/bin/tinyvr";

    #[test]
    fn a_router_without_interfaces_gets_an_empty_namespace_not_the_hosts() {
        let mut r = tinyvr_config::load(include_str!("../../examples/router.toml")).unwrap();
        r.interfaces.clear();
        r.routes.clear();
        r.route_ranges.clear();
        r.rules.clear();
        r.neighbors.clear();
        let c = generate(&r, "/d", &Resources::default(), Cgroup::V2, "/t");
        let net: Vec<&str> = c.lines().filter(|l| l.starts_with("lxc.net.")).collect();
        assert_eq!(net, ["lxc.net.0.type = empty"]);
    }

    #[test]
    fn a_veth_end_in_a_namespace_is_moved_by_lxc_s_up_hook() {
        let mut r = cfg("");
        r.interfaces[1].host = Some(HostLink::Veth {
            peer: None,
            peer_mac: Some("02:74:00:00:00:0b".parse().unwrap()),
            netns: Some("c1-snk".into()),
            bridge: None,
        });
        let text = generate(&r, "/r", &Resources::default(), Cgroup::V2, HOOK);
        for line in [
            "lxc.net.1.script.up = /usr/bin/tinyvr lxc net-up --netns c1-snk --mac 02:74:00:00:00:0b",
            "lxc.hook.version = 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("lxc.net.0.script.up"), "{text}");
    }

    fn cfg(extra: &str) -> RouterConfig {
        tinyvr_config::load(&format!(
            "name = \"c1\"\n[[interface]]\nname = \"in0\"\nmac = \"02:00:00:00:01:01\"\naddresses = [\"10.1.0.1/24\"]\n[[interface]]\nname = \"out0\"\naddresses = [\"10.2.0.1/24\"]\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn veth_interfaces_and_v2_resources() {
        let res = Resources {
            cpu_weight: Some(200),
            cpu_max: Some("50000 100000".into()),
            cpuset: Some("1".into()),
        };
        let text = generate(&cfg(""), "/var/lib/tinyvr/lxc/c1", &res, Cgroup::V2, HOOK);
        for line in [
            "lxc.rootfs.path = dir:/var/lib/tinyvr/lxc/c1/rootfs",
            "lxc.console.logfile = /var/lib/tinyvr/lxc/c1/console.log",
            "lxc.init.cmd = /sbin/init",
            "lxc.signal.halt = SIGPWR",
            "lxc.net.0.type = veth",
            "lxc.net.0.veth.pair = c1-in0",
            "lxc.net.0.name = in0",
            "lxc.net.0.hwaddr = 02:00:00:00:01:01",
            "lxc.net.1.veth.pair = c1-out0",
            "lxc.cgroup2.cpu.weight = 200",
            "lxc.cgroup2.cpu.max = 50000 100000",
            "lxc.cgroup2.cpuset.cpus = 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn macvlan_phys_bridge_and_v1() {
        let c = cfg("").interfaces.len();
        assert_eq!(c, 2);
        let mut r = cfg("");
        r.interfaces[0].host = Some(HostLink::Macvlan {
            parent: "eth1".parse().unwrap(),
            mode: MacvlanMode::Vepa,
        });
        r.interfaces[1].host = Some(HostLink::Phys {
            device: "enp1s0f0v0".parse().unwrap(),
        });
        let res = Resources {
            cpu_weight: Some(50),
            cpu_max: Some("max 100000".into()),
            cpuset: None,
        };
        let text = generate(&r, "/r", &res, Cgroup::V1, HOOK);
        for line in [
            "lxc.net.0.type = macvlan",
            "lxc.net.0.link = eth1",
            "lxc.net.0.macvlan.mode = vepa",
            "lxc.net.1.type = phys",
            "lxc.net.1.link = enp1s0f0v0",
            "lxc.net.1.name = out0",
            "lxc.cgroup.cpu.shares = 512",
            "lxc.cgroup.cpu.cfs_quota_us = -1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let mut b = cfg("");
        b.interfaces[0].host = Some(HostLink::Veth {
            peer: None,
            peer_mac: None,
            netns: None,
            bridge: Some("br0".parse().unwrap()),
        });
        assert!(generate(&b, "/r", &Resources::default(), Cgroup::V2, HOOK)
            .contains("lxc.net.0.link = br0"));
    }
}
