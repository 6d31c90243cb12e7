//! `tinyvr-init --watch FILE`: the owner of a namespace router after
//! `tinyvr netns up`. A netns router has no PID 1 of its own; this process
//! stays in the router's namespace and does what a VM's or container's
//! init does after READY: it reads the kernel back after every link,
//! address, route or rule change and on SIGHUP, and prints a TINYVR-HELD
//! line each time (with its departures since it started). The host records
//! it as the router's owner, so `down` ends it and `gc` treats a router
//! whose watcher died like one whose qemu died.

use super::{Log, Watch, HELD};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tinyvr_config::RouterConfig;

static HUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hup(_: libc::c_int) {
    HUP.store(true, Ordering::Relaxed);
}

/// Follows the router's kernel until the process is ended (SIGTERM).
pub fn follow(cfg: &RouterConfig, out: &mut dyn Write) -> Result<(), String> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        sigaction(
            Signal::SIGHUP,
            &SigAction::new(
                SigHandler::Handler(on_hup),
                SaFlags::empty(),
                SigSet::empty(),
            ),
        )
    }
    .map_err(|e| format!("SIGHUP handler: {e}"))?;
    let mut watch = Watch::open().map_err(|e| format!("watching link changes: {e}"))?;
    let mut log = Log::new(cfg);
    let report = |log: &mut Log, when: &'static str, events: u64, out: &mut dyn Write| {
        let line = match log.read_back(when, events) {
            Ok(r) => format!("{HELD} {}", serde_json::to_string(&r).expect("serializes")),
            Err(e) => format!("TINYVR-LOG reading back what the kernel holds: {e}"),
        };
        // A closed output ends the watcher: nobody can read it any more.
        writeln!(out, "{line}").and_then(|()| out.flush())
    };
    report(&mut log, "ready", 0, out).map_err(|e| e.to_string())?;
    loop {
        let timeout = watch.due.map_or(Duration::from_secs(3600), |t| {
            t.saturating_duration_since(Instant::now())
        });
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let polled = {
            let mut fds = [nix::poll::PollFd::new(
                watch.fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let t = nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX);
            nix::poll::poll(&mut fds, t)
        };
        match polled {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("waiting for link changes: {e}")),
        }
        watch.drain();
        if HUP.swap(false, Ordering::Relaxed) {
            report(&mut log, "SIGHUP", watch.events, out).map_err(|e| e.to_string())?;
        }
        if watch.due.is_some_and(|t| t <= Instant::now()) {
            watch.due = None;
            report(&mut log, "change", watch.events, out).map_err(|e| e.to_string())?;
        }
    }
}
