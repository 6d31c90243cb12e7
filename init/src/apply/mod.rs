//! Applies a validated router config to the current network namespace, in
//! a fixed order of named steps, each timed for the READY report:
//! links (find, rename, MTU) → sysctls → up (loopback too) → addresses → neighbours →
//! routes → route ranges → rules → queues. Sysctls come before links go up,
//! so per-interface ones hold from the first packet; links are up before
//! routes because the kernel refuses gateway routes over a device that is
//! down.

mod links;

use crate::netlink::{flags, msg, Netlink, NlError};
use crate::sysfs::{self, SysfsError};
use netlink_packet_route::RouteNetlinkMessage as M;
use serde::Serialize;
use std::time::{Duration, Instant};
use tinyvr_config::{IfName, RouteKind, RouterConfig};

pub use links::{LinkInfo, MatchError};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Netlink(#[from] NlError),
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
    #[error(transparent)]
    Match(#[from] MatchError),
}

/// What was done, for the READY line.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// (step, milliseconds) in order.
    pub steps_ms: Vec<(String, f64)>,
    pub interfaces: Vec<IfaceReport>,
    pub addresses: usize,
    pub routes: u64,
    pub rules: usize,
    pub neighbors: usize,
    pub sysctls: usize,
    /// Every sysctl and queue mask written: what was asked, and what the
    /// kernel held when read back (a difference fails the apply).
    pub settings: std::collections::BTreeMap<String, Setting>,
}

#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct Setting {
    pub asked: String,
    /// None: the kernel does not let it be read (write-only sysctl).
    pub held: Option<String>,
}

#[derive(Debug, Serialize, Clone)]
pub struct IfaceReport {
    pub name: String,
    pub mac: String,
    pub ifindex: u32,
    /// Ring sizes as the driver reports them (in a VM: the virtqueues).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rings: Option<crate::rings::Rings>,
}

struct Steps<'a> {
    report: &'a mut Report,
}

impl Steps<'_> {
    fn run<T>(
        &mut self,
        name: &str,
        f: impl FnOnce() -> Result<T, ApplyError>,
    ) -> Result<T, ApplyError> {
        let t = Instant::now();
        let r = f()?;
        self.report
            .steps_ms
            .push((name.to_string(), ms(t.elapsed())));
        log::debug!("{name}: {:.1} ms", ms(t.elapsed()));
        Ok(r)
    }
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Accepts EEXIST from a create-exclusive request: the same object is there.
fn tolerate_exists(r: Result<Vec<M>, NlError>) -> Result<(), NlError> {
    match r {
        Err(e) if e.errno == libc::EEXIST => Ok(()),
        other => other.map(|_| ()),
    }
}

pub fn apply(cfg: &RouterConfig, nl: &mut dyn Netlink) -> Result<Report, ApplyError> {
    let mut report = Report::default();
    let mut steps = Steps {
        report: &mut report,
    };
    let timeout = Duration::from_millis(cfg.init.interface_timeout_ms);

    let links: Vec<LinkInfo> = steps.run("links", || links::prepare(cfg, nl, timeout))?;
    // Validation guarantees every device a route or neighbour names is an
    // interface; after `prepare` each link carries its config name.
    let ifindex = |n: &IfName| {
        links
            .iter()
            .find(|l| l.name == n.as_str())
            .map(|l| l.index)
            .expect("validated: every dev names an interface")
    };

    let mut settings = std::collections::BTreeMap::new();
    let sysctls = steps.run("sysctl", || {
        let asked = cfg
            .default_sysctls()
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let asked = asked.chain(cfg.sysctl.iter().map(|(k, v)| (k.clone(), v.to_string())));
        let mut n = 0;
        for (k, v) in asked {
            let held = sysfs::write_sysctl(&k, &v)?;
            settings.insert(format!("sysctl {k}"), Setting { asked: v, held });
            n += 1;
        }
        Ok(n)
    })?;

    steps.run("up", || Ok(links::set_up(cfg, nl, &links)?))?;

    let addresses = steps.run("addresses", || {
        let mut n = 0;
        for ifc in &cfg.interfaces {
            for a in &ifc.addresses {
                let m = M::NewAddress(msg::address(ifindex(&ifc.name), a));
                nl.request(
                    &|| format!("adding address {a} to {}", ifc.name),
                    m,
                    flags::CREATE_REPLACE,
                )?;
                n += 1;
            }
        }
        Ok(n)
    })?;

    let neighbors = steps.run("neighbors", || {
        for n in &cfg.neighbors {
            let m = M::NewNeighbour(msg::neighbor(ifindex(&n.dev), n));
            nl.request(
                &|| format!("adding neighbour {} lladdr {} dev {}", n.ip, n.mac, n.dev),
                m,
                flags::CREATE_REPLACE,
            )?;
        }
        Ok(cfg.neighbors.len())
    })?;

    steps.run("routes", || {
        // Routes without a gateway first: a gateway route may depend on them.
        let mut order: Vec<_> = cfg.routes.iter().collect();
        order.sort_by_key(|r| {
            r.kind == RouteKind::Unicast && (r.via.is_some() || !r.nexthops.is_empty())
        });
        for r in order {
            let m = M::NewRoute(msg::route(r, &ifindex));
            nl.request(&|| describe_route(r), m, flags::CREATE_REPLACE)?;
        }
        Ok(())
    })?;

    let generated = steps.run("route_ranges", || {
        let mut total = 0u64;
        for (n, r) in cfg.route_ranges.iter().enumerate() {
            let dev = r
                .dev
                .as_ref()
                .or_else(|| r.via.and_then(|v| cfg.connected_dev(v)));
            total += crate::netlink::bulk::install(nl, n, r, dev.map(ifindex))? as u64;
        }
        Ok(total)
    })?;

    let rules = steps.run("rules", || {
        let mut n = 0;
        for r in &cfg.rules {
            let (v4, v6) = r.families();
            for fam in [true, false]
                .into_iter()
                .filter(|&f| if f { v4 } else { v6 })
            {
                let m = M::NewRule(msg::rule(r, fam));
                tolerate_exists(nl.request(
                    &|| format!("adding rule {r:?}"),
                    m,
                    flags::CREATE_EXCL,
                ))?;
                n += 1;
            }
        }
        Ok(n)
    })?;

    steps.run("queues", || {
        for ifc in &cfg.interfaces {
            let masks = [
                ("rx", "rps_cpus", &ifc.rps_cpus),
                ("tx", "xps_cpus", &ifc.xps_cpus),
            ];
            for (prefix, file, cpus) in masks {
                let Some(cpus) = cpus else { continue };
                for (queue, held) in
                    sysfs::write_queue_masks(ifc.name.as_str(), prefix, file, cpus)?
                {
                    settings.insert(
                        format!("{} {queue} {file}", ifc.name),
                        Setting {
                            asked: cpus.to_string(),
                            held: Some(held.to_string()),
                        },
                    );
                }
            }
        }
        Ok(())
    })?;

    let rings = crate::rings::Reader::open();
    report.interfaces = links
        .iter()
        .map(|l| IfaceReport {
            name: l.name.clone(),
            mac: l.mac(),
            ifindex: l.index,
            rings: rings.read(&l.name),
        })
        .collect();
    report.addresses = addresses;
    report.neighbors = neighbors;
    report.routes = cfg.routes.len() as u64 + generated;
    report.rules = rules;
    report.sysctls = sysctls;
    report.settings = settings;
    Ok(report)
}

fn describe_route(r: &tinyvr_config::Route) -> String {
    let mut s = format!("adding route {}", r.dest);
    if r.kind != RouteKind::Unicast {
        s = format!("adding {:?} route {}", r.kind, r.dest).to_lowercase();
    }
    if let Some(v) = r.via {
        s += &format!(" via {v}");
    }
    for nh in &r.nexthops {
        s += &format!(" nexthop via {}", nh.via);
    }
    if let Some(d) = &r.dev {
        s += &format!(" dev {d}");
    }
    if let Some(t) = r.table {
        s += &format!(" table {t}");
    }
    s
}
