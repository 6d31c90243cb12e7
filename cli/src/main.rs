//! tinyvr: the host tools. Each subcommand lives in its own module.

mod bench;
mod check;
mod image;
mod lxc;
mod netns;
mod resources;
mod vm;

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
    /// Build the guest image.
    #[command(subcommand)]
    Image(ImageCmd),
    /// The baseline platform: a router in a bare network namespace.
    #[command(subcommand)]
    Netns(netns::NetnsCmd),
    /// The container platform: the image's rootfs under LXC.
    #[command(subcommand)]
    Lxc(lxc::LxcCmd),
    /// The VM platform: the image under qemu (KVM where the CPU has it, TCG otherwise).
    #[command(subcommand)]
    Vm(vm::VmCmd),
    /// Run an experiment: offered load through routers, measured (see experiments/).
    Bench(bench::BenchArgs),
    /// Build the image if needed and compare one router on each platform
    /// (baseline namespace, LXC, VM): a table and plots in a few minutes.
    Demo(bench::DemoArgs),
    /// Remove routers whose owning process (qemu, lxc-start) is gone.
    Gc,
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Build bzImage, initramfs.cpio.gz, rootfs/, rootfs.tar and manifest.json.
    Build(image::BuildArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = std::env::var("TINYVR_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(log::LevelFilter::Info);
    let _ = simplelog::TermLogger::init(
        level,
        simplelog::Config::default(),
        simplelog::TerminalMode::Stderr,
        simplelog::ColorChoice::Never,
    );
    if matches!(cli.cmd, Cmd::Netns(_) | Cmd::Lxc(_) | Cmd::Vm(_)) {
        // Ctrl-C ends an `up` through its error path: what it made is removed.
        tinyvr_host::interrupt::catch_signals();
    }
    let result = match cli.cmd {
        Cmd::Check { files } => return check::run(&files),
        Cmd::Image(ImageCmd::Build(a)) => image::build(a),
        Cmd::Netns(c) => netns::run(c),
        Cmd::Lxc(c) => lxc::run(c),
        Cmd::Vm(c) => vm::run(c),
        Cmd::Bench(a) => bench::bench(a),
        Cmd::Demo(a) => bench::demo(a),
        Cmd::Gc => netns::gc(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<bench::Skipped>() => {
            eprintln!("tinyvr: {e:#}");
            ExitCode::from(bench::SKIP)
        }
        Err(e) => {
            eprintln!("tinyvr: {e:#}");
            ExitCode::FAILURE
        }
    }
}
