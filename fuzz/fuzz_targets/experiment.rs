//! Any bytes through the experiment parser and its checks: errors are fine,
//! panics are not. The router config the shipped experiments name sits
//! next to the file, as in experiments/, so the checks past loading it
//! (rates, frames against its MTU, placement) are reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use tinyvr_bench::experiment::{load, Experiment};

const ROUTER: &str = include_str!("../../experiments/router.toml");

/// Where the experiment "is": a directory holding only `router.toml`.
fn experiment_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join("tinyvr-fuzz-experiment");
        std::fs::create_dir_all(&dir).expect("creating the fuzz directory");
        std::fs::write(dir.join("router.toml"), ROUTER).expect("writing router.toml");
        dir.join("experiment.toml")
    })
}

/// `load` reads every router's config file: keep the fuzzer inside the
/// directory above, away from /dev/zero, FIFOs and the like.
fn configs_stay_inside(text: &str) -> bool {
    let Ok(exp) = toml::from_str::<Experiment>(text) else {
        // Not a valid experiment: `load` fails before reading any file.
        return true;
    };
    exp.routers.iter().all(|r| {
        r.config
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if !configs_stay_inside(text) {
        return;
    }
    if let Ok(l) = load(text, experiment_path(), &[0, 1]) {
        for f in &l.frames {
            let _ = f.pattern();
        }
        let _ = tinyvr_bench::experiment::flow_capacity(l.exp.traffic.dst.as_ref());
    }
});
