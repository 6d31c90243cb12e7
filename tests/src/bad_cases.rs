//! A table of config mistakes, one per validation rule, each with the field
//! path it must name and a piece of the message. Shared by the parser's unit
//! tests and the apply tests that check nothing was touched.

pub const BASE: &str = r#"
name = "vr1"
[[interface]]
name = "in0"
addresses = ["10.1.0.1/24", "fd00:1::1/64"]
[[interface]]
name = "out0"
addresses = ["10.2.0.1/24"]
"#;

/// (what is appended to BASE, expected path, a piece of the message)
pub const CASES: &[(&str, &str, &str)] = &[
    // parsing: syntax, unknown keys, wrong types, bad values
    ("[[route]\n", "", "TOML syntax"),
    ("colour = \"red\"", "interface[1].colour", "unknown field"),
    ("[[route]]\ndest = \"10.9.0.0/16\"\nvia = \"10.2.0.2\"\ngateway = \"x\"", "route[0].gateway", "unknown field"),
    ("[[interface]]\nname = \"x\"\nmtu = \"big\"", "interface[2].mtu", "invalid type"),
    ("[[interface]]\nname = \"x\"\nmac = \"52:54:00:zz:01:01\"", "interface[2].mac", "MAC address"),
    ("[[interface]]\nname = \"x\"\npci = \"00:04\"", "interface[2].pci", "PCI address"),
    ("[[interface]]\nname = \"x\"\naddresses = [\"10.3.0.1\"]", "interface[2].addresses[0]", "IP prefix"),
    ("[[interface]]\nname = \"x\"\naddresses = [\"10.3.0.1/33\"]", "interface[2].addresses[0]", "longer than 32"),
    ("[[interface]]\nname = \"x\"\nrps_cpus = \"3-1\"", "interface[2].rps_cpus", "CPU list"),
    ("[[interface]]\nname = \"averyveryverylongname\"", "interface[2].name", "at most 15"),
    ("[[interface]]\nname = \"a/b\"", "interface[2].name", "not allowed"),
    ("[[route]]\ndest = \"10.9.0.0/16\"\nvia = \"10.2.0.300\"", "route[0].via", "invalid"),
    ("[[route]]\ndest = \"nowhere\"\nvia = \"10.2.0.2\"", "route[0].dest", "or \"default\""),
    ("[[route]]\ndest = \"10.9.0.0/16\"\nvia = \"10.2.0.2\"\nkind = \"anycast\"", "route[0].kind", "unknown variant"),
    // router name
    ("", "name", "not a router name"),
    // interfaces
    ("[[interface]]\nname = \"in0\"", "interface[2].name", "used by an earlier interface"),
    ("[[interface]]\nname = \"x\"\nmac = \"01:00:5e:00:00:01\"", "interface[2].mac", "multicast"),
    ("[[interface]]\nname = \"x\"\nmac = \"02:00:00:00:00:01\"\n[[interface]]\nname = \"y\"\nmac = \"02:00:00:00:00:01\"", "interface[3].mac", "earlier interface"),
    ("[[interface]]\nname = \"x\"\nindex = 1", "interface[2].index", "set driver"),
    ("[[interface]]\nname = \"x\"\nmtu = 40", "interface[2].mtu", "68 to 65535"),
    ("[[interface]]\nname = \"x\"\nmtu = 1000\naddresses = [\"fd00:5::1/64\"]", "interface[2].mtu", "IPv6 minimum"),
    ("[[interface]]\nname = \"x\"\naddresses = [\"10.1.0.1/24\"]", "interface[2].addresses[0]", "assigned twice"),
    ("[[interface]]\nname = \"x\"\naddresses = [\"10.5.0.1/0\"]", "interface[2].addresses[0]", "prefix length 0"),
    ("[[interface]]\nname = \"lo\"", "interface[2].name", "loopback"),
    ("[[interface]]\nname = \"x\"\nhost = { kind = \"veth\", netns = \"a/b\" }", "interface[2].host.netns", "not a namespace name"),
    ("[[interface]]\nname = \"x\"\nhost = { kind = \"veth\", netns = \"n\", bridge = \"br0\" }", "interface[2].host.bridge", "give netns or bridge"),
    ("[[interface]]\nname = \"long-iface-name\"", "interface[2].host.peer", "over 15"),
    ("[[interface]]\nname = \"x\"\nhost = { kind = \"tunnel\" }", "interface[2].host.kind", "unknown variant"),
    ("[[interface]]\nname = \"x\"\nhost = { kind = \"macvlan\" }", "interface[2].host.parent", "missing field `parent`"),
    ("[[interface]]\nname = \"x\"\nhost = { kind = \"tap\", queues = 32 }", "interface[2].host.queues", "1 to 16"),
    ("[[interface]]\nname = \"x\"\nhost = { kind = \"bridge\", rx_queue_size = 300 }", "interface[2].host.rx_queue_size", "256, 512 or 1024"),
    ("[[interface]]\nname = \"x\"\nhost = { kind = \"tap\", tx_queue_size = 1024 }", "interface[2].host.tx_queue_size", "caps the tx virtqueue at 256"),
    ("[[interface]]\nname = \"x\"\nhost = { kind = \"veth\", netns = \"a b\" }", "interface[2].host.netns", "not a namespace name"),
    ("[[interface]]\nname = \"x\"\nhost = { kind = \"macvtap\", parent = \"eth1\", vhost = \"maybe\" }", "interface[2].host", "unknown variant `maybe`"),
    ("[[interface]]\nname = \"x\"\nhost = { kind = \"vfio\", pci = \"01:10\" }", "interface[2].host", "expected a PCI address like 0000:00:04.0, got \"01:10\""),
    // routes
    ("[[route]]\ndest = \"10.9.0.1/16\"\nvia = \"10.2.0.2\"", "route[0].dest", "host bits"),
    ("[[route]]\ndest = \"10.9.0.0/16\"\nvia = \"10.2.0.2\"\ndev = \"eth9\"", "route[0].dev", "names no [[interface]]"),
    ("[[route]]\ndest = \"10.9.0.0/16\"\nvia = \"10.7.0.2\"", "route[0].via", "outside every connected subnet"),
    ("[[route]]\ndest = \"10.9.0.0/16\"\nvia = \"10.1.0.2\"\ndev = \"out0\"", "route[0].via", "connected subnet of out0"),
    ("[[route]]\ndest = \"10.9.0.0/16\"\nvia = \"fd00:1::2\"", "route[0].via", "family"),
    ("[[route]]\ndest = \"10.9.0.0/16\"", "route[0]", "needs via, nexthops or dev"),
    ("[[route]]\ndest = \"10.9.0.0/16\"\nvia = \"10.2.0.2\"\nnexthops = [{ via = \"10.1.0.2\" }]", "route[0].nexthops", "not both"),
    ("[[route]]\ndest = \"10.9.0.0/16\"\nnexthops = [{ via = \"10.1.0.2\", weight = 0 }]", "route[0].nexthops[0].weight", "1 to 256"),
    ("[[route]]\ndest = \"10.9.0.0/16\"\nnexthops = [{ via = \"10.1.0.2\", dev = \"nope\" }]", "route[0].nexthops[0].dev", "names no"),
    ("[[route]]\ndest = \"10.9.0.0/16\"\nkind = \"blackhole\"\nvia = \"10.2.0.2\"", "route[0]", "takes no via"),
    ("[[route]]\ndest = \"10.9.0.0/16\"\nvia = \"10.2.0.2\"\ntable = 255", "route[0].table", "reserved"),
    ("[[route]]\ndest = \"10.9.0.0/16\"\nvia = \"10.2.0.2\"\n[[route]]\ndest = \"10.9.0.0/16\"\nvia = \"10.1.0.2\"", "route[1].dest", "given twice"),
    ("[[route]]\ndest = \"10.9.0.0/16\"\nvia = \"192.0.2.1\"\nonlink = true", "route[0].via", "needs a dev"),
    ("[[route]]\ndest = \"fd00:9::/48\"\nvia = \"fe80::1\"", "route[0].via", "link-local gateway"),
    ("[[route]]\ndest = \"10.9.0.0/16\"\nvia = \"10.2.0.2\"\nsrc = \"10.7.7.7\"", "route[0].src", "not an address of any interface"),
    // route ranges
    ("[[route_range]]\nfirst = \"255.255.0.0/24\"\ncount = 1000\nvia = \"10.2.0.2\"", "route_range[0].count", "past the end of the address space (room for 256)"),
    ("[[route_range]]\nfirst = \"16.0.0.0/24\"\ncount = 0\nvia = \"10.2.0.2\"", "route_range[0].count", "at least 1"),
    ("[[route_range]]\nfirst = \"16.0.0.1/24\"\ncount = 10\nvia = \"10.2.0.2\"", "route_range[0].first", "host bits"),
    ("[[route_range]]\nfirst = \"16.0.0.0/24\"\ncount = 10\nvia = \"10.99.0.2\"", "route_range[0].via", "outside every connected subnet"),
    ("[[route_range]]\nfirst = \"16.0.0.0/24\"\ncount = 10", "route_range[0]", "needs via or dev"),
    ("[[route_range]]\nfirst = \"16.0.0.0/24\"\ncount = 10\ndev = \"x9\"", "route_range[0].dev", "names no"),
    ("[[route_range]]\nfirst = \"16.0.0.0/24\"\ncount = 10\nvia = \"10.2.0.2\"\n[[route]]\ndest = \"16.0.9.0/24\"\nvia = \"10.1.0.2\"", "route[0].dest", "also generated by route_range[0]"),
    ("[[route_range]]\nfirst = \"16.0.0.0/24\"\ncount = 10\nvia = \"10.2.0.2\"\n[[route_range]]\nfirst = \"16.0.9.0/24\"\ncount = 2\nvia = \"10.1.0.2\"", "route_range[1].first", "overlap route_range[0]"),
    ("[[route]]\ndest = \"fd00:9::/48\"\nvia = \"fd00:1::2\"\n[[route]]\ndest = \"fd00:9::/48\"\nvia = \"fd00:1::3\"\nmetric = 1024", "route[1].dest", "metric 1024 is given twice"),
    // rules
    ("[[rule]]\nfrom = \"10.1.0.0/24\"\nto = \"fd00::/8\"\ntable = 100", "rule[0].to", "family"),
    ("[[rule]]\nfrom = \"10.1.0.0/24\"\ntable = 100\npriority = 32766", "rule[0].priority", "1 to 32765"),
    ("[[rule]]\nfrom = \"10.1.0.0/24\"\ntable = 0", "rule[0].table", "reserved"),
    ("[[rule]]\niif = \"eth7\"\ntable = 100", "rule[0].iif", "names no"),
    ("[[rule]]\nfrom = \"10.1.0.5/24\"\ntable = 100", "rule[0].from", "host bits"),
    ("[[rule]]\nfrom = \"10.1.0.0/24\"", "rule[0].table", "missing field"),
    ("[[rule]]\nfrom = \"10.1.0.0/24\"\ntable = 100\n[[rule]]\nfrom = \"10.1.0.0/24\"\ntable = 100", "rule[1]", "same rule as rule[0]"),
    // neighbours
    ("[[neighbor]]\nip = \"10.2.0.2\"\nmac = \"02:00:00:00:02:02\"\ndev = \"eth3\"", "neighbor[0].dev", "names no"),
    ("[[neighbor]]\nip = \"10.2.0.2\"\nmac = \"ff:ff:ff:ff:ff:ff\"\ndev = \"out0\"", "neighbor[0].mac", "multicast"),
    ("[[neighbor]]\nip = \"10.2.0.2\"\nmac = \"02:00:00:00:02:02\"\ndev = \"out0\"\n[[neighbor]]\nip = \"10.2.0.2\"\nmac = \"02:00:00:00:02:03\"\ndev = \"out0\"", "neighbor[1].ip", "given twice"),
    ("[[neighbor]]\nip = \"10.2.0.2\"\ndev = \"out0\"", "neighbor[0].mac", "missing field `mac`"),
    // sysctls
    ("[sysctl]\n\"vm.swappiness\" = 1", "sysctl.\"vm.swappiness\"", "under net. or kernel."),
    ("[sysctl]\n\"net..core\" = 1", "sysctl.\"net..core\"", "no empty parts"),
    ("[sysctl]\n\"net/core/x\" = 1", "sysctl.\"net/core/x\"", "'/'"),
    ("[sysctl]\n\"net.core.x\" = \"\"", "sysctl.\"net.core.x\"", "non-empty line"),
    // services
    ("[[service]]\nname = \"bird\"\nexec = []", "service[0].exec", "empty list"),
    ("[[service]]\nname = \"bird\"\nexec = [\"bird\"]", "service[0].exec[0]", "absolute path"),
    ("[[service]]\nname = \"a\"\nexec = [\"/a\"]\n[[service]]\nname = \"a\"\nexec = [\"/a\"]", "service[1].name", "earlier service"),
    // init
    ("[init]\ninterface_timeout_ms = 0", "init.interface_timeout_ms", "1 to 600000"),
];

/// The full text of case `extra` (the empty case breaks the router name).
pub fn text(extra: &str) -> String {
    if extra.is_empty() {
        BASE.replace("name = \"vr1\"", "name = \"1-bad name\"")
    } else {
        format!("{BASE}\n{extra}\n")
    }
}
