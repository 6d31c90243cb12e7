//! Any bytes through the config parser and validator: errors are fine,
//! panics are not (overflow included: the fuzz build checks it). Route
//! ranges that validate are also expanded at both ends, and a valid config
//! must come back unchanged from the TOML the host tools write for it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = tinyvr_config::load(text) {
        for r in &cfg.route_ranges {
            let _ = r.prefix(0);
            let _ = r.prefix(r.count - 1);
        }
        for r in &cfg.routes {
            let _ = r.dest_prefix();
        }
        for i in &cfg.interfaces {
            for c in [&i.rps_cpus, &i.xps_cpus].into_iter().flatten() {
                let _ = c.to_mask();
            }
        }
        let _ = cfg.route_count();
        let _ = cfg.default_sysctls().count();
        let again = tinyvr_config::load(&cfg.to_toml())
            .unwrap_or_else(|e| panic!("a valid config is refused after to_toml: {e}"));
        assert_eq!(again, cfg, "to_toml round trip");
    }
});
