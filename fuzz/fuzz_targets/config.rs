//! Any bytes through the config parser and validator: errors are fine,
//! panics are not. Route ranges that validate are also expanded at both ends.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = tinyvr_config::load(text) {
        for r in &cfg.route_ranges {
            let _ = r.prefix(0);
            let _ = r.prefix(r.count - 1);
        }
        for r in &cfg.routes {
            let _ = r.dest_prefix();
        }
        let _ = cfg.to_toml();
        let _ = cfg.route_count();
    }
});
