//! Reading and validating a config file, shared by `tinyvr-init --check`,
//! `--apply` and the host CLI so they all report the same errors.

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

/// The READY line's description of what was applied.
pub fn ready_json(
    cfg: &RouterConfig,
    report: &crate::apply::Report,
    extra: serde_json::Value,
) -> serde_json::Value {
    let steps: serde_json::Map<String, serde_json::Value> = report
        .steps_ms
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::json!(v)))
        .collect();
    let mut j = serde_json::json!({
        "name": cfg.name,
        "version": env!("CARGO_PKG_VERSION"),
        "steps_ms": steps,
        "interfaces": report.interfaces,
        "addresses": report.addresses,
        "routes": report.routes,
        "rules": report.rules,
        "neighbors": report.neighbors,
        "sysctls": report.sysctls,
    });
    if let (Some(o), serde_json::Value::Object(e)) = (j.as_object_mut(), extra) {
        o.extend(e);
    }
    j
}
