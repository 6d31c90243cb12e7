//! `tinyvr netns up|down`: the baseline platform.

use anyhow::{Context, Result};
use std::path::PathBuf;
use tinyvr_host::platform_netns::{self, Up};

#[derive(clap::Subcommand)]
pub enum NetnsCmd {
    /// Create a namespace and apply the router config in it; prints the READY json.
    Up {
        /// Router config (TOML).
        config: PathBuf,
        /// Namespace name (default: the router's name).
        #[arg(long)]
        name: Option<String>,
        /// Also create <name>-src and <name>-snk namespaces wired to the
        /// router's first and second interface, with addresses, routes and
        /// permanent neighbours.
        #[arg(long)]
        topology: bool,
    },
    /// Remove everything `up` created (also after a crash).
    Down { name: String },
}

/// The tinyvr-init next to this binary (cargo puts them side by side).
pub fn init_binary() -> Result<PathBuf> {
    let me = std::env::current_exe().context("finding the tinyvr binary")?;
    let p = me.with_file_name("tinyvr-init");
    anyhow::ensure!(
        p.is_file(),
        "{} not found: build it with `cargo build -p tinyvr-init`",
        p.display()
    );
    Ok(p)
}

pub fn run(cmd: NetnsCmd) -> Result<()> {
    match cmd {
        NetnsCmd::Up {
            config,
            name,
            topology,
        } => {
            let ready = platform_netns::up(&Up {
                config: &config,
                name,
                topology,
                init: init_binary()?,
            })?;
            println!("{ready}");
        }
        NetnsCmd::Down { name } => platform_netns::down(&name)?,
    }
    Ok(())
}

/// `tinyvr gc`: removes routers whose owner process is gone.
pub fn gc() -> Result<()> {
    for (s, alive) in tinyvr_host::state::list() {
        if !alive {
            println!(
                "removing {} ({}; owner {:?} is gone)",
                s.name, s.platform, s.owner_pid
            );
            s.teardown()?;
        }
    }
    Ok(())
}
