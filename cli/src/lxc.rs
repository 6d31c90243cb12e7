//! `tinyvr lxc up|down|config`: the container platform.

use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;
use tinyvr_lxc::platform::{self, Up, DEFAULT_LXCPATH};

#[derive(clap::Args)]
pub struct UpArgs {
    /// Router config (TOML).
    config: PathBuf,
    /// The image's rootfs directory (from `tinyvr image build`).
    #[arg(long, default_value = "out/rootfs")]
    rootfs: PathBuf,
    /// Also create <name>-src and <name>-snk namespaces wired to the
    /// router's first and second interface.
    #[arg(long)]
    topology: bool,
    #[command(flatten)]
    resources: crate::resources::ResourceArgs,
    /// Where container directories live.
    #[arg(long, default_value = DEFAULT_LXCPATH)]
    lxcpath: PathBuf,
    /// Seconds to wait for TINYVR-READY.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

#[derive(clap::Subcommand)]
pub enum LxcCmd {
    /// Start the router in an LXC container; prints the READY json.
    Up(UpArgs),
    /// Stop the container (SIGPWR, then SIGKILL after --timeout) and remove
    /// everything `up` created.
    Down {
        name: String,
        #[arg(long, default_value = DEFAULT_LXCPATH)]
        lxcpath: PathBuf,
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Print the LXC config `up` would write.
    Config(UpArgs),
}

fn up_opts(a: &UpArgs) -> Up<'_> {
    Up {
        config: &a.config,
        rootfs: a.rootfs.clone(),
        topology: a.topology,
        resources: a.resources.resources(),
        lxcpath: a.lxcpath.clone(),
        timeout: Duration::from_secs(a.timeout),
    }
}

pub fn run(cmd: LxcCmd) -> Result<()> {
    match cmd {
        LxcCmd::Up(a) => println!("{}", platform::up(&up_opts(&a))?),
        LxcCmd::Config(a) => print!("{}", platform::render(&up_opts(&a))?),
        LxcCmd::Down {
            name,
            lxcpath,
            timeout,
        } => {
            for note in platform::down(&name, &lxcpath, Duration::from_secs(timeout))? {
                eprintln!("{name}: {note}");
            }
        }
    }
    Ok(())
}
