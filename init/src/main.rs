//! tinyvr-init: the PID 1 of the tinyvr image, and its apply-only mode.
//!
//!   tinyvr-init                  PID 1 (VM or container); refused as any other pid
//!   tinyvr-init --config FILE    PID 1 with an explicit config file
//!   tinyvr-init --apply FILE     configure the current network namespace and exit
//!   tinyvr-init --check FILE     validate a config and exit
//!   tinyvr-init --watch FILE     follow the current namespace's router: a
//!                                TINYVR-HELD line after every change (the
//!                                owner of a `tinyvr netns` router)
//!   tinyvr-init --burn THREADS MB
//!                                burn CPU and memory bandwidth for ever (the
//!                                service of a router-less neighbour)

use nix::sys::signalfd::SignalFd;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tinyvr_config::sysctl_scope;
use tinyvr_init::check::{check_file, Pid1Ms, Ready};
use tinyvr_init::pid1::console::{self, ERROR, READY};
use tinyvr_init::pid1::source::{self, Cmdline, OnError};
use tinyvr_init::pid1::{caps, mounts, power, services::Supervised, supervise, Platform};
use tinyvr_init::{apply, netlink};

const RCU_EXPEDITED: &str = "/sys/kernel/rcu_expedited";

const USAGE: &str =
    "usage: tinyvr-init [--config FILE] | --apply FILE | --check FILE | --watch FILE | --burn THREADS MB | --version";

#[derive(Debug, PartialEq)]
enum Mode {
    Init(Option<PathBuf>),
    Apply(PathBuf),
    Check(PathBuf),
    Watch(PathBuf),
    Burn(tinyvr_init::burn::Burn),
    Version,
}

/// What to do, from the arguments and the process's own pid: the PID 1
/// duties (mounting over /run and /tmp, signalling every process at
/// shutdown) belong to PID 1 alone.
fn parse_args(args: &[String], pid: u32) -> Result<Mode, String> {
    let file = |i: usize| {
        args.get(i + 1)
            .map(PathBuf::from)
            .ok_or(format!("{} needs a FILE\n{USAGE}", args[i]))
    };
    let mode = match args.first().map(String::as_str) {
        None => Mode::Init(None),
        Some("--config") => Mode::Init(Some(file(0)?)),
        Some("--apply") => return Ok(Mode::Apply(file(0)?)),
        Some("--check") => return Ok(Mode::Check(file(0)?)),
        Some("--watch") => return Ok(Mode::Watch(file(0)?)),
        Some("--burn") => return tinyvr_init::burn::Burn::parse_words(&args[1..]).map(Mode::Burn),
        Some("--version") => return Ok(Mode::Version),
        // The kernel passes unknown command-line words to init: ignore them as PID 1.
        Some(_) if pid == 1 => Mode::Init(None),
        Some(other) => return Err(format!("unknown argument {other:?}\n{USAGE}")),
    };
    if pid != 1 {
        return Err(format!(
            "tinyvr-init runs as PID 1 only, and this is pid {pid}: as PID 1 it mounts over /run and /tmp and signals every process at shutdown.\n\
             To configure the current network namespace and exit: tinyvr-init --apply FILE\n\
             To validate a config: tinyvr-init --check FILE"
        ));
    }
    Ok(mode)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args, std::process::id()) {
        Ok(Mode::Init(explicit)) => {
            // A backstop: PID 1 must never unwind out of main (the kernel
            // would panic); pid1 catches what it can report better itself.
            let _ = std::panic::catch_unwind(|| pid1(explicit.as_deref()));
            power::finish(Platform::detect(), OnError::Poweroff, 1)
        }
        Ok(Mode::Check(f)) => std::process::exit(check(&f)),
        Ok(Mode::Apply(f)) => std::process::exit(apply_only(&f)),
        Ok(Mode::Watch(f)) => std::process::exit(watch(&f)),
        Ok(Mode::Burn(b)) => {
            eprintln!("{}", b.run());
            std::process::exit(1)
        }
        Ok(Mode::Version) => println!("tinyvr-init {}", env!("CARGO_PKG_VERSION")),
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    }
}

fn check(path: &Path) -> i32 {
    match check_file(path) {
        Ok(cfg) => {
            println!(
                "{}: ok ({} interfaces, {} routes)",
                path.display(),
                cfg.interfaces.len(),
                cfg.route_count()
            );
            0
        }
        Err(lines) => {
            lines.iter().for_each(|l| eprintln!("{l}"));
            1
        }
    }
}

/// Follows the router in the current namespace until ended.
fn watch(path: &Path) -> i32 {
    let cfg = match check_file(path) {
        Ok(c) => c,
        Err(lines) => {
            lines.iter().for_each(|l| eprintln!("{l}"));
            return 1;
        }
    };
    match tinyvr_init::held::follow::follow(&cfg, &mut std::io::stdout().lock()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tinyvr-init --watch: {e}");
            1
        }
    }
}

fn error_json(stage: &str, message: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut j = serde_json::json!({ "stage": stage, "error": message });
    if let (Some(o), serde_json::Value::Object(e)) = (j.as_object_mut(), extra) {
        o.extend(e);
    }
    j
}

/// The non-virtualised baseline: same validation and apply, no PID 1 duties.
fn apply_only(path: &Path) -> i32 {
    let level = std::env::var("TINYVR_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(log::LevelFilter::Warn);
    console::init_logging(level);
    let t = Instant::now();
    // The namespace shares the host's kernel: refuse host-wide sysctls
    // before touching anything.
    let checked = check_file(path).and_then(|cfg| {
        sysctl_scope::check_per_netns(&cfg)
            .map(|()| cfg)
            .map_err(|errs| {
                errs.0
                    .iter()
                    .map(|e| format!("{}: {e}", path.display()))
                    .collect()
            })
    });
    let cfg = match checked {
        Ok(c) => c,
        Err(lines) => {
            console::emit(
                ERROR,
                &error_json("config", &lines.join("; "), serde_json::json!({})),
            );
            return 1;
        }
    };
    let result = netlink::Socket::open()
        .map_err(apply::ApplyError::from)
        .and_then(|mut nl| apply::apply(&cfg, &mut nl));
    match result {
        Ok(report) => {
            let mut ready = Ready::new(&cfg, &report, "netns");
            ready.total_ms = Some(apply::ms(t.elapsed()));
            console::emit(READY, &ready);
            0
        }
        Err(e) => {
            console::emit(
                ERROR,
                &error_json(
                    "apply",
                    &e.to_string(),
                    serde_json::json!({ "name": cfg.name }),
                ),
            );
            1
        }
    }
}

/// A fatal error before READY: report it on one line, then act on
/// `tinyvr.on_error` (a container exits non-zero). Never returns.
fn fatal(platform: Platform, on_error: OnError, stage: &str, message: &str) -> ! {
    log::error!("{stage}: {message}");
    console::emit(
        ERROR,
        &error_json(
            stage,
            message,
            serde_json::json!({ "platform": platform.as_str() }),
        ),
    );
    power::finish(platform, on_error, 1)
}

/// Guest time since the kernel started, to the microsecond.
fn uptime_ms() -> Option<f64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    Some(apply::ms(std::time::Duration::new(
        t.tv_sec() as u64,
        t.tv_nsec() as u32,
    )))
}

fn pid1(explicit: Option<&Path>) -> ! {
    let t0 = Instant::now();
    let platform = Platform::detect();
    // Until the command line is read, a fatal error powers off (VM) or exits.
    let mut on_error = OnError::Poweroff;
    // Signals queue from here on; none is lost while configuring.
    let mut sfd = match supervise::block_signals() {
        Ok(s) => s,
        Err(e) => fatal(
            platform,
            on_error,
            "signals",
            &format!("setting up the signalfd: {e}"),
        ),
    };
    // A panic is reported like any fatal error; it must never reach the kernel.
    std::panic::set_hook(Box::new(move |info| {
        let msg = format!("internal error: {info}");
        console::emit(
            ERROR,
            &error_json(
                "panic",
                &msg,
                serde_json::json!({ "platform": platform.as_str() }),
            ),
        );
    }));

    let mounted = match mounts::mount_all(platform == Platform::Vm) {
        Ok(m) => m,
        Err(e) => fatal(platform, on_error, "mounts", &e.to_string()),
    };
    let t_mounts = t0.elapsed();
    let cmdline = Cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    console::init_logging(cmdline.log.unwrap_or(log::LevelFilter::Info));
    log::debug!("logging from {:.3} ms", apply::ms(t0.elapsed()));
    on_error = cmdline.on_error.unwrap_or(OnError::Poweroff);
    log::info!(
        "tinyvr-init {} as PID 1 ({platform:?}), mounted {mounted:?}",
        env!("CARGO_PKG_VERSION")
    );
    for p in &cmdline.problems {
        log::warn!("kernel command line: {p}");
    }

    // Open the power button before configuring: a press (qemu's
    // system_powerdown) only reaches readers that have it open, and one may
    // come right after READY.
    let mut buttons = if platform == Platform::Vm {
        tinyvr_init::pid1::acpi::open_power_buttons()
    } else {
        Vec::new()
    };
    log::debug!(
        "{} power button(s) open at {:.3} ms",
        buttons.len(),
        apply::ms(t0.elapsed())
    );
    let phases = (t_mounts, t0.elapsed());
    // Renaming a NIC waits for an RCU grace period, which on a slow
    // one-vCPU guest takes ticks; expedited grace periods make it
    // microseconds. Only while configuring, and only in a VM: the switch is
    // kernel-wide, and expedited grace periods interrupt every CPU.
    let expedite = platform == Platform::Vm && std::fs::write(RCU_EXPEDITED, "1").is_ok();
    let result = std::panic::catch_unwind(|| configure(platform, explicit, &cmdline, phases));
    if expedite {
        let _ = std::fs::write(RCU_EXPEDITED, "0");
    }
    let configured = match result {
        Ok(Ok(v)) => v,
        Ok(Err((stage, msg))) => fatal(platform, on_error, stage, &msg),
        Err(_) => power::finish(platform, on_error, 1), // the hook already reported it
    };
    // A panic from here on is reported by the hook too; then everything
    // stops as at a shutdown, and the init goes down the usual way.
    let served = std::panic::catch_unwind(AssertUnwindSafe(|| {
        serve(platform, on_error, t0, configured, &mut sfd, &mut buttons)
    }));
    if served.is_err() {
        let _ = std::panic::catch_unwind(|| supervise::stop_everything(&mut []));
        power::finish(platform, on_error, 1)
    }
    power::finish(platform, OnError::Poweroff, 0)
}

/// Life after configuring: capabilities, READY, services until a shutdown
/// is asked for, then every process stopped.
fn serve(
    platform: Platform,
    on_error: OnError,
    t0: Instant,
    configured: Configured,
    sfd: &mut SignalFd,
    buttons: &mut [std::fs::File],
) {
    let cfg = &configured.cfg;
    // Capabilities go before READY is printed, so whoever acts on READY
    // already sees the reduced set.
    if let Err(e) = caps::keep(&caps::kept(&cfg.services)) {
        fatal(
            platform,
            on_error,
            "capabilities",
            &format!("dropping capabilities: {e}"),
        );
    }
    let mut ready = Ready::new(cfg, &configured.report, platform.as_str());
    ready.config_source = Some(configured.source.to_string());
    ready.services = Some(cfg.services.len());
    ready.pid1_ms = Some(configured.pid1_ms);
    // Taken last, so they cover everything but printing the line.
    ready.init_ms = Some(apply::ms(t0.elapsed()));
    ready.uptime_ms = if platform == Platform::Vm {
        uptime_ms()
    } else {
        None
    };
    console::emit(READY, &ready);
    drop(configured.netlink);
    // The kernel's own count right after READY, and again after every link
    // change: the host's view into a VM's table (its console).
    let mut watch = tinyvr_init::held::Watch::open()
        .map_err(|e| log::warn!("watching link changes: {e}"))
        .ok();
    let mut held = tinyvr_init::held::Log::new(cfg);
    supervise::report_held(&mut held, "ready", 0);

    let mut services: Vec<Supervised> = cfg.services.iter().cloned().map(Supervised::new).collect();
    let stop = supervise::run(sfd, &mut services, buttons, watch.as_mut(), &mut held);
    log::info!("shutting down ({stop:?})");
    supervise::stop_everything(&mut services);
}

type Stage = (&'static str, String);

/// What configuring produced, for the READY line.
struct Configured {
    cfg: tinyvr_config::RouterConfig,
    report: apply::Report,
    source: source::Source,
    pid1_ms: Pid1Ms,
    /// Closed only after READY: closing a netlink socket is kernel work
    /// (and a hash table shrink) that nothing before READY needs.
    netlink: netlink::Socket,
}

fn configure(
    platform: Platform,
    explicit: Option<&Path>,
    cmdline: &Cmdline,
    // (mounts done, setup done) since the init's start: logging, command line, buttons.
    phases: (std::time::Duration, std::time::Duration),
) -> Result<Configured, Stage> {
    let t = Instant::now();
    let (src, text) = source::find(explicit, cmdline, Path::new("/")).map_err(|e| ("config", e))?;
    log::info!("config from {src}");
    log::debug!("config read in {:.3} ms", apply::ms(t.elapsed()));
    let cfg = tinyvr_config::load(&text).map_err(|e| ("config", format!("{src}: {e}")))?;
    // A container shares the host's kernel: host-wide sysctls are refused
    // before anything is applied.
    if platform == Platform::Container {
        sysctl_scope::check_per_netns(&cfg).map_err(|e| ("config", format!("{src}: {e}")))?;
    }
    let config_ms = apply::ms(t.elapsed());
    // Only where the hostname is ours: a VM, or a container with its own UTS namespace.
    if platform == Platform::Vm || std::env::var_os("container").is_some() {
        if let Err(e) = nix::unistd::sethostname(&cfg.name) {
            log::warn!("setting hostname {}: {e}", cfg.name);
        }
    }
    let t = Instant::now();
    let mut nl = netlink::Socket::open().map_err(|e| ("apply", e.to_string()))?;
    let socket_ms = apply::ms(t.elapsed());
    let report = apply::apply(&cfg, &mut nl).map_err(|e| ("apply", e.to_string()))?;
    Ok(Configured {
        cfg,
        report,
        source: src,
        pid1_ms: Pid1Ms {
            mounts: apply::ms(phases.0),
            setup: apply::ms(phases.1 - phases.0),
            config: config_ms,
            netlink: socket_ms,
        },
        netlink: nl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn init_mode_only_as_pid_1() {
        assert_eq!(parse_args(&args(&[]), 1), Ok(Mode::Init(None)));
        assert_eq!(
            parse_args(&args(&["--config", "r.toml"]), 1),
            Ok(Mode::Init(Some("r.toml".into())))
        );
        // Words the kernel passes on are ignored as PID 1 only.
        assert_eq!(parse_args(&args(&["quiet"]), 1), Ok(Mode::Init(None)));
        for a in [&[][..], &["--config", "r.toml"][..]] {
            let e = parse_args(&args(a), 3).unwrap_err();
            assert!(e.contains("PID 1 only, and this is pid 3"), "{e}");
            assert!(
                e.contains("--apply FILE") && e.contains("--check FILE"),
                "{e}"
            );
        }
        assert!(parse_args(&args(&["quiet"]), 3)
            .unwrap_err()
            .contains("unknown argument"));
    }

    #[test]
    fn other_modes_at_any_pid() {
        for pid in [1, 3] {
            assert_eq!(
                parse_args(&args(&["--apply", "r.toml"]), pid),
                Ok(Mode::Apply("r.toml".into()))
            );
            assert_eq!(
                parse_args(&args(&["--check", "r.toml"]), pid),
                Ok(Mode::Check("r.toml".into()))
            );
            assert_eq!(
                parse_args(&args(&["--watch", "r.toml"]), pid),
                Ok(Mode::Watch("r.toml".into()))
            );
            assert_eq!(parse_args(&args(&["--version"]), pid), Ok(Mode::Version));
            assert!(parse_args(&args(&["--apply"]), pid).is_err());
        }
    }
}
