//! `tinyvr check`: the same validation and messages as the init.

use std::path::PathBuf;
use std::process::ExitCode;
use tinyvr_init::check::check_file;

pub fn run(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        match check_file(f) {
            Ok(cfg) => println!(
                "{}: ok ({} interfaces, {} routes)",
                f.display(),
                cfg.interfaces.len(),
                cfg.route_count()
            ),
            Err(lines) => {
                ok = false;
                lines.iter().for_each(|l| eprintln!("{l}"));
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
