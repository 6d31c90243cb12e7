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
        /// With --topology: `veth` (a veth pair to each end) or `macvlan`
        /// (a macvlan in bridge mode on a veth from each end).
        #[arg(long, default_value = "veth", value_parser = ["veth", "macvlan"], requires = "topology")]
        datapath: String,
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
            datapath,
        } => {
            let ready = platform_netns::up(&Up {
                config: &tinyvr_host::topology::read(&config)?,
                name,
                topology,
                datapath: tinyvr_host::topology::Datapath::parse(&datapath, false)
                    .expect("clap checked the name"),
                init: init_binary()?,
            })?;
            println!("{ready}");
        }
        NetnsCmd::Down { name } => platform_netns::down(&name)?,
    }
    Ok(())
}

/// `tinyvr gc`: removes routers whose `up` died halfway or whose owner
/// process (qemu, lxc-start) is gone; touches only state files of its own
/// schema, and keeps what it could not remove for the next run.
pub fn gc() -> Result<()> {
    let mut failed = 0;
    tinyvr_host::state::sweep();
    for s in tinyvr_host::state::list() {
        let s = match s {
            Ok(s) => s,
            Err(e) => {
                eprintln!("gc: {e}: left alone");
                continue;
            }
        };
        if !s.stale() {
            continue;
        }
        // Taking the lock: a router being brought up right now is not stale.
        let s = match tinyvr_host::state::State::load(&s.name) {
            Ok(s) if s.stale() => s,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("gc: {e}");
                continue;
            }
        };
        println!(
            "removing {} ({}; {})",
            s.name,
            s.platform,
            match (s.builder, s.owner_pid) {
                (Some(b), _) if !b.alive() => format!("its up (pid {}) died halfway", b.pid),
                (_, Some(p)) => format!("owner {p} is gone"),
                _ => "stale".into(),
            }
        );
        if let Err(e) = s.teardown() {
            eprintln!("gc: {e}");
            failed += 1;
        }
    }
    tinyvr_host::state::sweep();
    anyhow::ensure!(
        failed == 0,
        "{failed} router(s) could not be removed completely"
    );
    Ok(())
}
