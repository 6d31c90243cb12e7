//! Console output: log lines through simplelog, and the two machine-readable
//! lines host tools wait for. Every line is one write(2), so lines from the
//! init and its services never interleave mid-line.

use std::io::{LineWriter, Write};

pub const READY: &str = "TINYVR-READY";
pub const ERROR: &str = "TINYVR-ERROR";

/// Logs to stderr (the console), one write per line.
pub fn init_logging(level: log::LevelFilter) {
    let cfg = simplelog::ConfigBuilder::new()
        .set_time_level(log::LevelFilter::Off)
        .set_target_level(log::LevelFilter::Off)
        .set_thread_level(log::LevelFilter::Off)
        .build();
    let out = LineWriter::new(std::io::stderr());
    let _ = simplelog::WriteLogger::init(level, cfg, out);
}

/// Prints `TAG {json}` as a single line on stdout.
pub fn emit(tag: &str, json: &impl serde::Serialize) {
    let json = serde_json::to_string(json).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    let line = format!("{tag} {json}\n");
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}
