//! tinyvr: the host tools. Each subcommand lives in its own module.

mod check;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tinyvr",
    version,
    about = "Repeatable virtual-router experiments: one router config, run as a VM, an LXC container or a bare namespace"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate router configs and print every mistake with its field path.
    Check {
        /// Router config files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { files } => check::run(&files),
    }
}
