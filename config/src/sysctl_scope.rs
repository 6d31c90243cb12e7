//! Which sysctls belong to one network namespace. The baseline
//! (`tinyvr-init --apply`) and a container run on the host's kernel: a
//! sysctl outside the namespace changes the host for everyone, so only a VM
//! may set one.
//!
//! The lists follow Linux 6.1: `net_core_table` (host-wide) against
//! `netns_core_table` in net/core/sysctl_net_core.c, and the tables each
//! subsystem registers for the initial namespace only. A key a later kernel
//! moved into the namespace (net.core.rmem_max in 6.x) still counts as
//! host-wide here: the safe side on either kernel.

use crate::{ConfigError, Errors, RouterConfig};

/// Why a host-wide sysctl is refused outside a VM.
pub const NOT_PER_NETNS: &str = "not per network namespace: the baseline and a container share the host kernel; only a VM may set it";

/// Subtrees whose keys are per network namespace, but for [`HOST_WIDE`].
const PER_NETNS_TREES: &[&str] = &[
    "net.ipv4.",
    "net.ipv6.",
    "net.netfilter.",
    "net.bridge.",
    "net.mpls.",
    "net.mptcp.",
    "net.unix.",
];

/// The per-namespace part of net.core: `netns_core_table` and xfrm's
/// (net/xfrm/xfrm_sysctl.c). Everything else there is host-wide.
const NET_CORE_PER_NETNS: &[&str] = &[
    "net.core.somaxconn",
    "net.core.txrehash",
    "net.core.xfrm_aevent_etime",
    "net.core.xfrm_aevent_rseqth",
    "net.core.xfrm_larval_drop",
    "net.core.xfrm_acq_expires",
];

/// The per-namespace part of net.ipv4.route (`ipv4_route_netns_table`);
/// the garbage collection and redirect keys are host-wide.
const IPV4_ROUTE_PER_NETNS: &[&str] = &[
    "net.ipv4.route.flush",
    "net.ipv4.route.min_pmtu",
    "net.ipv4.route.mtu_expires",
    "net.ipv4.route.min_adv_mss",
];

/// Host-wide keys inside [`PER_NETNS_TREES`]: registered for the initial
/// namespace only, or read-only elsewhere because they are shared.
const HOST_WIDE: &[&str] = &[
    // net/ipv4/sysctl_net_ipv4.c `ipv4_table`
    "net.ipv4.tcp_max_orphans",
    "net.ipv4.inet_peer_threshold",
    "net.ipv4.inet_peer_minttl",
    "net.ipv4.inet_peer_maxttl",
    "net.ipv4.tcp_mem",
    "net.ipv4.tcp_low_latency",
    "net.ipv4.cipso_cache_enable",
    "net.ipv4.cipso_cache_bucket_size",
    "net.ipv4.cipso_rbm_optfmt",
    "net.ipv4.cipso_rbm_strictvalid",
    "net.ipv4.tcp_available_ulp",
    "net.ipv4.udp_mem",
    "net.ipv4.fib_sync_mem",
    // `ipv4_net_table` entries with no per-namespace data
    "net.ipv4.tcp_available_congestion_control",
    "net.ipv4.tcp_allowed_congestion_control",
    // net/ipv4/ip_fragment.c, net/ipv6/reassembly.c
    "net.ipv4.ipfrag_secret_interval",
    "net.ipv6.ip6frag_secret_interval",
    // net/ipv6/sysctl_net_ipv6.c `ipv6_rotable`
    "net.ipv6.mld_max_msf",
    "net.ipv6.mld_qrv",
    "net.ipv6.calipso_cache_enable",
    "net.ipv6.calipso_cache_bucket_size",
    // net/netfilter: read-only outside the initial namespace, or global
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_expect_max",
    "net.netfilter.nf_conntrack_buckets",
    "net.netfilter.nf_log_all_netns",
];

/// Host-wide subtrees inside [`PER_NETNS_TREES`]: the ARP and NDP tables'
/// defaults and garbage collection are one table for all namespaces.
const HOST_WIDE_TREES: &[&str] = &["net.ipv4.neigh.default.", "net.ipv6.neigh.default."];

/// True when `key` (dotted, as in `[sysctl]`) is per network namespace in
/// Linux 6.1, so setting it in a namespace leaves the host alone. Unknown
/// keys outside the listed subtrees (every `kernel.*`) count as host-wide.
pub fn is_per_netns(key: &str) -> bool {
    if let Some(route) = key.strip_prefix("net.ipv4.route.") {
        return !route.is_empty() && IPV4_ROUTE_PER_NETNS.contains(&key);
    }
    if key.starts_with("net.core.") {
        return NET_CORE_PER_NETNS.contains(&key);
    }
    PER_NETNS_TREES
        .iter()
        .any(|t| key.len() > t.len() && key.starts_with(t))
        && !HOST_WIDE.contains(&key)
        && !HOST_WIDE_TREES.iter().any(|t| key.starts_with(t))
}

/// Refuses a config for a platform on the host's kernel (the baseline, a
/// container) when its `[sysctl]` holds a key that is not per network
/// namespace: one error per key, naming the field. The router defaults the
/// init adds are all per namespace.
pub fn check_per_netns(cfg: &RouterConfig) -> Result<(), Errors> {
    let errs: Vec<ConfigError> = cfg
        .sysctl
        .keys()
        .filter(|k| !is_per_netns(k))
        .map(|k| ConfigError::new(format!("sysctl.{k:?}"), NOT_PER_NETNS))
        .collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Errors(errs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_by_scope() {
        let table: &[(&str, bool)] = &[
            ("net.ipv4.ip_forward", true),
            ("net.ipv4.conf.all.rp_filter", true),
            ("net.ipv4.conf.in0.forwarding", true),
            ("net.ipv4.tcp_rmem", true),
            ("net.ipv4.ip_local_port_range", true),
            ("net.ipv4.icmp_ratelimit", true),
            ("net.ipv4.fib_multipath_hash_policy", true),
            ("net.ipv4.ipfrag_high_thresh", true),
            ("net.ipv4.neigh.in0.gc_stale_time", true),
            ("net.ipv4.route.min_pmtu", true),
            ("net.ipv4.route.flush", true),
            ("net.ipv6.conf.all.forwarding", true),
            ("net.ipv6.conf.default.disable_ipv6", true),
            ("net.ipv6.route.max_size", true),
            ("net.ipv6.route.gc_thresh", true),
            ("net.ipv6.icmp.ratelimit", true),
            ("net.ipv6.neigh.out0.base_reachable_time_ms", true),
            ("net.core.somaxconn", true),
            ("net.core.xfrm_acq_expires", true),
            ("net.netfilter.nf_conntrack_tcp_timeout_established", true),
            ("net.unix.max_dgram_qlen", true),
            // host-wide in 6.1
            ("net.core.netdev_max_backlog", false),
            ("net.core.rmem_max", false),
            ("net.core.wmem_max", false),
            ("net.core.busy_poll", false),
            ("net.core.busy_read", false),
            ("net.core.rps_sock_flow_entries", false),
            ("net.core.dev_weight", false),
            ("net.core.netdev_budget", false),
            ("net.core.default_qdisc", false),
            ("net.core.bpf_jit_enable", false),
            ("net.ipv4.tcp_mem", false),
            ("net.ipv4.udp_mem", false),
            ("net.ipv4.tcp_max_orphans", false),
            ("net.ipv4.tcp_allowed_congestion_control", false),
            ("net.ipv4.ipfrag_secret_interval", false),
            ("net.ipv4.route.gc_thresh", false),
            ("net.ipv4.route.max_size", false),
            ("net.ipv4.route.redirect_load", false),
            ("net.ipv4.neigh.default.gc_thresh3", false),
            ("net.ipv6.neigh.default.gc_thresh1", false),
            ("net.ipv6.mld_max_msf", false),
            ("net.netfilter.nf_conntrack_max", false),
            ("net.netfilter.nf_conntrack_buckets", false),
            ("net.nf_conntrack_max", false),
            ("net.sctp.sctp_mem", false),
            ("kernel.printk", false),
            ("kernel.hostname", false),
            // a subtree alone is no key
            ("net.ipv4.", false),
            ("net.ipv4.route.", false),
        ];
        let wrong: Vec<_> = table
            .iter()
            .filter(|(k, want)| is_per_netns(k) != *want)
            .collect();
        assert!(wrong.is_empty(), "misclassified: {wrong:?}");
    }

    #[test]
    fn router_defaults_are_per_netns() {
        let all = crate::ROUTER_SYSCTLS
            .iter()
            .chain(crate::ROUTER_SYSCTLS_IPV6)
            .chain(crate::NO_IPV6_SYSCTLS);
        for (k, _) in all {
            assert!(is_per_netns(k), "{k}");
        }
    }

    #[test]
    fn config_errors_name_each_host_wide_key() {
        let cfg = crate::load(
            "name = \"r1\"\n[sysctl]\n\"net.ipv4.tcp_rmem\" = \"4096 87380 6291456\"\n\"kernel.printk\" = \"4\"\n\"net.core.netdev_max_backlog\" = 5000\n",
        )
        .unwrap();
        let errs = check_per_netns(&cfg).unwrap_err();
        let shown: Vec<String> = errs.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                format!("sysctl.\"kernel.printk\": {NOT_PER_NETNS}"),
                format!("sysctl.\"net.core.netdev_max_backlog\": {NOT_PER_NETNS}"),
            ]
        );
        let ok = crate::load("name = \"r1\"\n[sysctl]\n\"net.core.somaxconn\" = 1024\n").unwrap();
        assert_eq!(check_per_netns(&ok), Ok(()));
    }
}
