//! `tinyvr vm up|down|argv`: the VM platform.

use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;
use tinyvr_qemu::platform::{self, Up};

#[derive(clap::Args)]
pub struct UpArgs {
    /// Router config (TOML).
    config: PathBuf,
    /// Instance name (default: the router's name; 1 to 8 characters):
    /// every host-side name derives from it, so one config can run as
    /// several routers at once.
    #[arg(long)]
    name: Option<String>,
    /// Directory with bzImage and initramfs.cpio.gz (from `tinyvr image build`).
    #[arg(long, default_value = "out")]
    image: PathBuf,
    /// Also create <name>-src and <name>-snk namespaces and put the taps of
    /// the first and second interface into them.
    #[arg(long)]
    topology: bool,
    /// With --topology, how the source and sink reach the VM: `bridge`
    /// (a veth and a bridge in the source namespace in front of the in tap,
    /// as a NIC's traffic would), `tap` (the generator writes into the tap
    /// itself) or `macvtap` (a macvtap in bridge mode on a veth from each
    /// end; its queue is where overload drops).
    #[arg(long, default_value = "bridge", value_parser = ["bridge", "tap", "macvtap"], requires = "topology")]
    datapath: String,
    /// Do not boot: wait for a migration stream at this URI (tcp:0:PORT
    /// or tcp:ADDR:PORT), the receiving end of `vm migrate --to`. The config
    /// must be the migrating router's (same interfaces and MACs).
    #[arg(long, value_parser = tinyvr_qemu::migrate::parse_tcp_uri)]
    incoming: Option<String>,
    /// auto (KVM only when /dev/kvm opens and the CPU has vmx/svm), kvm or tcg.
    #[arg(long, default_value = "auto")]
    accel: String,
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// Guest memory in MB.
    #[arg(long, default_value_t = 128)]
    memory: u32,
    /// Preallocate guest memory when qemu starts (on) or let the guest
    /// fault it in on first touch (off).
    #[arg(long, default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    prealloc: bool,
    /// Transparent huge pages for qemu's memory: auto (off under TCG, the
    /// host's policy under KVM), on or off.
    #[arg(long, default_value = "auto")]
    thp: tinyvr_qemu::memory::Thp,
    /// Show the guest console on this terminal too (it is always logged).
    #[arg(long)]
    console: bool,
    /// Seconds to wait for TINYVR-READY.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: String,
    /// CPU affinity per thread class: vcpu=CPUS, vhost=CPUS, emulator=CPUS (repeatable).
    #[arg(long = "affinity", value_name = "CLASS=CPUS", value_parser = tinyvr_qemu::sched::parse_affinity)]
    affinity: Vec<(tinyvr_qemu::sched::Class, tinyvr_config::CpuList)>,
    /// Scheduling per thread class: CLASS=other, CLASS=fifo:PRIO, CLASS=rr:PRIO,
    /// CLASS=deadline:RUNTIME/DEADLINE/PERIOD in µs (repeatable).
    #[arg(long = "sched", value_name = "CLASS=POLICY", value_parser = tinyvr_qemu::sched::parse_sched)]
    sched: Vec<(tinyvr_qemu::sched::Class, tinyvr_qemu::sched::Policy)>,
    #[command(flatten)]
    resources: crate::resources::ResourceArgs,
    /// RT budget of the VM's cgroup in µs per second (default 100000 with fifo/rr).
    #[arg(long)]
    rt_runtime: Option<u64>,
    /// Start the VM through libvirtd (default URI qemu:///system) as a
    /// transient domain, instead of running qemu itself; `down` stops it
    /// through libvirt. The libvirtd must run on this host; another URI
    /// is given as --libvirt=URI.
    #[arg(long, value_name = "URI", num_args = 0..=1, require_equals = true, default_missing_value = tinyvr_host::libvirt::DEFAULT_URI)]
    libvirt: Option<String>,
}

fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{s:?}: expected on or off")),
    }
}

#[derive(clap::Subcommand)]
pub enum VmCmd {
    /// Boot the router VM; prints the READY json with the VM's settings.
    Up(UpArgs),
    /// Power the VM off through QMP (kill after --timeout) and remove
    /// everything `up` created.
    Down {
        name: String,
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Print the qemu command line `up` would run.
    Argv(UpArgs),
    /// Print the libvirt domain XML for what `up` would start (settings
    /// libvirt cannot carry are listed on stderr and in an XML comment);
    /// with --libvirt, exactly what `vm up --libvirt` would create.
    Xml {
        #[command(flatten)]
        up: UpArgs,
        /// Write the guest's effective router config to this new file and
        /// have the domain read it (for a domain defined by hand); without
        /// it the XML names /run/tinyvr/<name>.toml, which `vm up
        /// --libvirt` writes.
        #[arg(long)]
        guest_config: Option<PathBuf>,
    },
    /// Live-migrate a running router VM to a new qemu on this host
    /// (--local); its NICs must be macvtaps (datapath macvtap). Prints what
    /// QMP measured and what was read back.
    Migrate {
        name: String,
        /// Migrate to a new qemu on this host.
        #[arg(long, conflicts_with = "to", required_unless_present = "to")]
        local: bool,
        /// Migrate to a qemu waiting at tcp:HOST:PORT (`tinyvr vm up
        /// CONFIG --incoming tcp:0:PORT` there, from the same config); the
        /// router and everything of it on this host go once it completed.
        #[arg(long, value_parser = tinyvr_qemu::migrate::parse_tcp_uri)]
        to: Option<String>,
        /// The longest pause qemu may plan for the final copy, ms.
        #[arg(long, default_value_t = 300)]
        downtime_limit: u64,
        /// Migration bandwidth cap, MB/s (default: qemu's).
        #[arg(long)]
        bandwidth: Option<u64>,
        /// Seconds before an unfinished migration is cancelled.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Post-copy: switch to the destination at once and let it fetch
        /// the memory it faults on (needs userfaultfd).
        #[arg(long)]
        postcopy: bool,
    },
}

fn opts<'a>(a: &'a UpArgs, cfg: &'a tinyvr_config::RouterConfig) -> Up<'a> {
    Up {
        config: cfg,
        name: a.name.clone(),
        image: a.image.clone(),
        topology: a.topology,
        datapath: tinyvr_host::topology::Datapath::parse(&a.datapath, true)
            .expect("clap checked the name"),
        incoming: a.incoming.clone(),
        accel: a.accel.clone(),
        cpus: a.cpus,
        memory_mb: a.memory,
        prealloc: a.prealloc,
        thp: a.thp,
        console: a.console,
        timeout: Duration::from_secs(a.timeout),
        qemu: a.qemu.clone(),
        placement: tinyvr_qemu::sched::Placement {
            affinity: a.affinity.clone(),
            sched: a.sched.clone(),
        },
        resources: a.resources.resources(),
        rt_runtime_us: a.rt_runtime,
        libvirt: a.libvirt.clone(),
    }
}

pub fn run(cmd: VmCmd) -> Result<()> {
    match cmd {
        VmCmd::Up(a) => {
            let cfg = tinyvr_host::topology::read(&a.config)?;
            println!("{}", platform::up(&opts(&a, &cfg))?)
        }
        VmCmd::Argv(a) => {
            let cfg = tinyvr_host::topology::read(&a.config)?;
            let (argv, why) = platform::dry_run(&opts(&a, &cfg))?;
            eprintln!("# {why}");
            println!(
                "{}",
                argv.iter()
                    .map(|x| if x.contains(' ') {
                        format!("'{x}'")
                    } else {
                        x.clone()
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        VmCmd::Migrate {
            name,
            local: _,
            to,
            downtime_limit,
            bandwidth,
            timeout,
            postcopy,
        } => {
            let m = tinyvr_qemu::migrate::Migrate {
                name,
                downtime_limit_ms: downtime_limit,
                bandwidth_mbps: bandwidth,
                timeout: Duration::from_secs(timeout),
                postcopy,
            };
            let report = match &to {
                Some(uri) => tinyvr_qemu::migrate::remote(&m, uri)?,
                None => tinyvr_qemu::migrate::local(&m)?,
            };
            println!("{report}")
        }
        VmCmd::Xml {
            up: a,
            guest_config,
        } => {
            let cfg = tinyvr_host::topology::read(&a.config)?;
            let (xml, notes) = platform::domain_xml(&opts(&a, &cfg), guest_config.as_deref())?;
            for n in notes {
                eprintln!("# not in the XML: {n}");
            }
            print!("{xml}");
        }
        VmCmd::Down { name, timeout } => {
            for note in platform::down(&name, Duration::from_secs(timeout))? {
                eprintln!("{name}: {note}");
            }
        }
    }
    Ok(())
}
