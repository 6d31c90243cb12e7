//! Life after READY: one single-threaded loop over a signalfd and the power
//! buttons. It reaps every zombie, restarts services, dumps counters on
//! SIGHUP and shuts down on SIGTERM, SIGINT, SIGPWR (LXC's halt), SIGUSR1,
//! SIGUSR2 or the ACPI power button.

use super::services::Supervised;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::fs::File;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// How long services get between SIGTERM and SIGKILL at shutdown.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub const HANDLED: &[Signal] = &[
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGPWR,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGHUP,
];

pub fn signal_set() -> SigSet {
    let mut s = SigSet::empty();
    for &sig in HANDLED {
        s.add(sig);
    }
    s
}

/// Blocks the handled signals so they queue for the signalfd. Done first
/// thing, so a signal during configuration is not lost.
pub fn block_signals() -> nix::Result<SignalFd> {
    let set = signal_set();
    set.thread_block()?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
}

/// Unblocks every signal, for a service's child between fork and exec: a
/// child inherits the init's mask, and std's Command does not reset it (a
/// service would ignore the SIGTERM of a shutdown). Raw calls on stack
/// values only.
pub fn unblock_all_in_child() -> std::io::Result<()> {
    // SAFETY: sigemptyset fills the local set; sigprocmask reads it.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Why the loop ended.
#[derive(Debug)]
pub enum Stop {
    Signal(Signal),
    PowerButton,
}

/// What one reaping pass found.
pub struct Reaped {
    /// (pid, how it ended) for every child collected.
    pub exited: Vec<(i32, String)>,
    /// True when PID 1 has no children left at all (ECHILD).
    pub none_left: bool,
}

/// Reaps every exited child without blocking.
pub fn reap() -> Reaped {
    let mut exited = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                exited.push((pid.as_raw(), format!("exited with status {code}")))
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                exited.push((pid.as_raw(), format!("was killed by {sig}")))
            }
            Ok(WaitStatus::StillAlive) => {
                return Reaped {
                    exited,
                    none_left: false,
                }
            }
            Err(nix::Error::ECHILD) => {
                return Reaped {
                    exited,
                    none_left: true,
                }
            }
            Err(_) => {
                return Reaped {
                    exited,
                    none_left: false,
                }
            }
            Ok(_) => {}
        }
    }
}

/// Reads the table back and prints a TINYVR-HELD line (`when` says why).
pub fn report_held(log: &mut crate::held::Log, when: &'static str, link_events: u64) {
    match log.read_back(when, link_events) {
        Ok(report) => super::console::emit(crate::held::HELD, &report),
        Err(e) => log::warn!("reading back what the kernel holds: {e}"),
    }
}

pub fn run(
    sfd: &mut SignalFd,
    services: &mut [Supervised],
    buttons: &mut [File],
    mut watch: Option<&mut crate::held::Watch>,
    held: &mut crate::held::Log,
) -> Stop {
    loop {
        let now = Instant::now();
        for s in services.iter_mut() {
            if s.restart_at.is_some_and(|t| t <= now) {
                s.start();
            }
        }
        if let Some(w) = watch.as_deref_mut() {
            if w.due.is_some_and(|t| t <= now) {
                w.due = None;
                report_held(held, "change", w.events);
            }
        }
        let next = services
            .iter()
            .filter_map(|s| s.restart_at)
            .chain(watch.as_deref().and_then(|w| w.due))
            .min();
        let timeout = match next {
            Some(t) => PollTimeout::try_from(
                t.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(60_000) as i32
                    + 1,
            )
            .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let (sig_ready, pressed, linked) = {
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            fds.extend(
                buttons
                    .iter()
                    .map(|b| PollFd::new(b.as_fd(), PollFlags::POLLIN)),
            );
            if let Some(w) = watch.as_deref() {
                fds.push(PollFd::new(w.fd(), PollFlags::POLLIN));
            }
            if let Err(e) = poll(&mut fds, timeout) {
                if e != nix::Error::EINTR {
                    log::error!("poll: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN));
            let sig_ready = ready(&fds[0]);
            let pressed: Vec<usize> = fds[1..1 + buttons.len()]
                .iter()
                .enumerate()
                .filter(|(_, f)| ready(f))
                .map(|(i, _)| i)
                .collect();
            let linked = watch.is_some() && fds.last().is_some_and(ready);
            (sig_ready, pressed, linked)
        };
        if linked {
            if let Some(w) = watch.as_deref_mut() {
                w.drain();
            }
        }
        for i in pressed {
            if super::acpi::pressed(&mut buttons[i]) {
                log::info!("ACPI power button pressed");
                return Stop::PowerButton;
            }
        }
        if !sig_ready {
            continue;
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            match sig {
                Signal::SIGCHLD => {
                    for (pid, how) in reap().exited {
                        match services.iter_mut().find(|s| s.pid == Some(pid)) {
                            Some(s) => s.exited(&how),
                            None => log::debug!("reaped pid {pid}: {how}"),
                        }
                    }
                }
                Signal::SIGHUP => {
                    // Lets the tests see a panic after READY end the init cleanly.
                    #[cfg(debug_assertions)]
                    if std::env::var_os("TINYVR_TEST_PANIC_ON_SIGHUP").is_some() {
                        panic!("TINYVR_TEST_PANIC_ON_SIGHUP is set");
                    }
                    for line in super::counters::dump() {
                        log::info!("{line}");
                    }
                    report_held(held, "SIGHUP", watch.as_deref().map_or(0, |w| w.events));
                }
                other => {
                    log::info!("received {other}");
                    return Stop::Signal(other);
                }
            }
        }
    }
}

/// TERM everything, wait a bounded time while reaping, KILL what is left.
/// Every user process is PID 1's descendant (orphans are re-parented to
/// it), so "no children left" means done; kill(-1) alone cannot tell,
/// since in a VM it also reaches kernel threads, which never exit.
pub fn stop_everything(services: &mut [Supervised]) {
    for s in services.iter_mut() {
        s.restart_at = None;
    }
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if reap().none_left {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    log::warn!("processes still running after {STOP_GRACE:?}: sending SIGKILL");
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(1);
    while !reap().none_left && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}
