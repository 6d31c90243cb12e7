//! tinyvr-init: the PID 1 of the tinyvr image, and its apply-only mode.
//!
//!   tinyvr-init                  PID 1 (VM or container)
//!   tinyvr-init --config FILE    PID 1 with an explicit config file
//!   tinyvr-init --apply FILE     configure the current network namespace and exit
//!   tinyvr-init --check FILE     validate a config and exit

use std::path::{Path, PathBuf};
use std::time::Instant;
use tinyvr_init::check::{check_file, Pid1Ms, Ready};
use tinyvr_init::pid1::console::{self, ERROR, READY};
use tinyvr_init::pid1::source::{self, Cmdline, OnError};
use tinyvr_init::pid1::{caps, mounts, power, services::Supervised, supervise, Platform};
use tinyvr_init::{apply, netlink};

const RCU_EXPEDITED: &str = "/sys/kernel/rcu_expedited";

const USAGE: &str = "usage: tinyvr-init [--config FILE] | --apply FILE | --check FILE | --version";

enum Mode {
    Init(Option<PathBuf>),
    Apply(PathBuf),
    Check(PathBuf),
}

fn parse_args(args: &[String]) -> Result<Mode, String> {
    let file = |i: usize| {
        args.get(i + 1)
            .map(PathBuf::from)
            .ok_or(format!("{} needs a FILE\n{USAGE}", args[i]))
    };
    match args.first().map(String::as_str) {
        None => Ok(Mode::Init(None)),
        Some("--config") => Ok(Mode::Init(Some(file(0)?))),
        Some("--apply") => Ok(Mode::Apply(file(0)?)),
        Some("--check") => Ok(Mode::Check(file(0)?)),
        Some("--version") => Err(format!("tinyvr-init {}", env!("CARGO_PKG_VERSION"))),
        // The kernel passes unknown command-line words to init: ignore them as PID 1.
        Some(_) if std::process::id() == 1 => Ok(Mode::Init(None)),
        Some(other) => Err(format!("unknown argument {other:?}\n{USAGE}")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(Mode::Init(explicit)) => pid1(explicit.as_deref()),
        Ok(Mode::Check(f)) => std::process::exit(check(&f)),
        Ok(Mode::Apply(f)) => std::process::exit(apply_only(&f)),
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(if msg.starts_with("tinyvr-init ") {
                0
            } else {
                2
            });
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
    let cfg = match check_file(path) {
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
    let cfg = &configured.cfg;
    // Capabilities go before READY is printed, so whoever acts on READY
    // already sees the reduced set.
    let keep = caps::keep_set(cfg.services.iter().any(|s| s.net_admin));
    if let Err(e) = caps::drop_all_but(&keep) {
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

    let mut services: Vec<Supervised> = cfg.services.iter().cloned().map(Supervised::new).collect();
    let stop = supervise::run(&mut sfd, &mut services, &mut buttons);
    log::info!("shutting down ({stop:?})");
    supervise::stop_everything(&mut services);
    power::finish(platform, OnError::Poweroff, 0)
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
