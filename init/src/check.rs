//! Reading and validating a config file, shared by `tinyvr-init --check`,
//! `--apply` and the host CLI so they all report the same errors.

use crate::apply::{IfaceReport, Report};
use serde::Serialize;
use std::path::Path;
use tinyvr_config::RouterConfig;

/// Loads a config file; on failure, one line per mistake, each naming the file.
pub fn check_file(path: &Path) -> Result<RouterConfig, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    tinyvr_config::load(&text).map_err(|errs| {
        errs.0
            .iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect()
    })
}

/// The READY line: what was applied, how long it took, where. A typed
/// struct serialized in one pass, not a `serde_json::Value` tree: building
/// the tree was a tenth of the init's time on a TCG guest.
#[derive(Debug, Serialize)]
pub struct Ready<'a> {
    pub name: &'a str,
    pub version: &'static str,
    #[serde(serialize_with = "in_order")]
    pub steps_ms: &'a [(String, f64)],
    pub interfaces: &'a [IfaceReport],
    pub addresses: usize,
    pub routes: u64,
    /// Routes per table (by number), as the config asks.
    pub routes_by_table: std::collections::BTreeMap<u32, u64>,
    pub rules: usize,
    pub neighbors: usize,
    pub sysctls: usize,
    /// Each sysctl and queue mask: asked, and held as read back.
    pub settings: &'a std::collections::BTreeMap<String, crate::apply::Setting>,
    /// "vm", "container" or "netns".
    pub platform: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<usize>,
    /// PID 1: from the init's start to READY.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_ms: Option<f64>,
    /// PID 1: its phases before the apply steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid1_ms: Option<Pid1Ms>,
    /// A VM: guest time since kernel start (boot-to-ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<f64>,
    /// `--apply`: from start to READY.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<f64>,
}

/// What PID 1 does before the apply steps, in order.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Pid1Ms {
    pub mounts: f64,
    /// Command line, logging, power button.
    pub setup: f64,
    /// Reading and validating the config.
    pub config: f64,
    /// Opening the netlink socket.
    pub netlink: f64,
}

fn in_order<S: serde::Serializer>(steps: &&[(String, f64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(steps.iter().map(|(k, v)| (k, v)))
}

impl<'a> Ready<'a> {
    /// The fields every mode shares; the caller adds its own.
    pub fn new(cfg: &'a RouterConfig, report: &'a Report, platform: &'static str) -> Self {
        Ready {
            name: &cfg.name,
            version: env!("CARGO_PKG_VERSION"),
            steps_ms: &report.steps_ms,
            interfaces: &report.interfaces,
            addresses: report.addresses,
            routes: report.routes,
            routes_by_table: cfg.routes_by_table(),
            rules: report.rules,
            neighbors: report.neighbors,
            sysctls: report.sysctls,
            settings: &report.settings,
            platform,
            config_source: None,
            services: None,
            init_ms: None,
            pid1_ms: None,
            uptime_ms: None,
            total_ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_keeps_its_fields_and_step_order() {
        let cfg = tinyvr_config::load("name = \"r1\"").unwrap();
        let report = Report {
            steps_ms: vec![("links".into(), 1.5), ("sysctl".into(), 0.25)],
            interfaces: vec![IfaceReport {
                name: "in0".into(),
                mac: "52:54:00:00:01:01".into(),
                ifindex: 2,
                rings: Some(crate::rings::Rings {
                    rx: 1024,
                    tx: 256,
                    queues: Some(1),
                }),
            }],
            routes: 3,
            ..Default::default()
        };
        let mut ready = Ready::new(&cfg, &report, "vm");
        ready.init_ms = Some(42.0);
        let line = serde_json::to_string(&ready).unwrap();
        // Steps in the order they ran, as an object.
        assert!(
            line.contains(r#""steps_ms":{"links":1.5,"sysctl":0.25}"#),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["name"], "r1");
        assert_eq!(v["platform"], "vm");
        assert_eq!(v["interfaces"][0]["mac"], "52:54:00:00:01:01");
        assert_eq!(v["interfaces"][0]["rings"]["rx"], 1024);
        assert_eq!(v["routes"], 3);
        assert_eq!(v["init_ms"], 42.0);
        // What a mode does not measure is left out, not null.
        assert!(v.get("uptime_ms").is_none() && v.get("total_ms").is_none());
    }
}
