//! `tinyvr lxc up|down|config`: the container platform.

use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;
use tinyvr_lxc::platform::{self, Up, DEFAULT_LXCPATH};

#[derive(clap::Args)]
pub struct UpArgs {
    /// Router config (TOML).
    config: PathBuf,
    /// Instance name (default: the router's name; 1 to 8 characters):
    /// every host-side name derives from it, so one config can run as
    /// several routers at once.
    #[arg(long)]
    name: Option<String>,
    /// The image's rootfs directory (from `tinyvr image build`).
    #[arg(long, default_value = "out/rootfs")]
    rootfs: PathBuf,
    /// Also create <name>-src and <name>-snk namespaces wired to the
    /// router's first and second interface.
    #[arg(long)]
    topology: bool,
    /// With --topology: `veth` (a veth pair to each end) or `macvlan` (a
    /// macvlan in bridge mode on a veth from each end).
    #[arg(long, default_value = "veth", value_parser = ["veth", "macvlan"], requires = "topology")]
    datapath: String,
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
    /// Migrate a container router with CRIU (checkpoint and restore on
    /// this host). Where criu cannot checkpoint, exits 77 with
    /// "skipped: <why>".
    Migrate {
        name: String,
        /// Restore on this host (the only target).
        #[arg(long, required = true)]
        local: bool,
        #[arg(long, default_value = DEFAULT_LXCPATH)]
        lxcpath: PathBuf,
    },
    /// LXC's network up hook (run by LXC, not by hand): puts a veth's host
    /// end into its namespace with its MAC.
    #[command(hide = true)]
    NetUp {
        #[arg(long)]
        netns: Option<String>,
        #[arg(long)]
        mac: Option<tinyvr_config::MacAddr>,
        /// What LXC appends: container name, "net", "up", type, host device.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        lxc_args: Vec<String>,
    },
}

fn up_opts<'a>(a: &'a UpArgs, cfg: &'a tinyvr_config::RouterConfig) -> Up<'a> {
    Up {
        config: cfg,
        name: a.name.clone(),
        rootfs: a.rootfs.clone(),
        topology: a.topology,
        datapath: tinyvr_host::topology::Datapath::parse(&a.datapath, false)
            .expect("clap checked the name"),
        resources: a.resources.resources(),
        lxcpath: a.lxcpath.clone(),
        timeout: Duration::from_secs(a.timeout),
    }
}

pub fn run(cmd: LxcCmd) -> Result<()> {
    match cmd {
        LxcCmd::Up(a) => {
            let cfg = tinyvr_host::topology::read(&a.config)?;
            println!("{}", platform::up(&up_opts(&a, &cfg))?)
        }
        LxcCmd::Config(a) => {
            let cfg = tinyvr_host::topology::read(&a.config)?;
            print!("{}", platform::render(&up_opts(&a, &cfg))?)
        }
        LxcCmd::Migrate {
            name,
            local: _,
            lxcpath,
        } => {
            if let Err(why) = platform::migrate_local(&name, &lxcpath)? {
                return Err(crate::bench::Skipped(why).into());
            }
        }
        LxcCmd::NetUp {
            netns,
            mac,
            lxc_args,
        } => platform::net_up(
            netns.as_deref(),
            mac.as_ref(),
            lxc_args.last().map(String::as_str),
        )?,
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
