//! Services: processes started after READY and restarted with back-off
//! when they exit. Each gets exactly the capabilities it asks for.

use super::caps;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};
use tinyvr_config::Service;

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A service that ran this long was healthy: its back-off starts over.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

pub struct Supervised {
    pub spec: Service,
    pub pid: Option<i32>,
    started: Instant,
    backoff: Duration,
    /// When to start it again, after it exited.
    pub restart_at: Option<Instant>,
}

impl Supervised {
    pub fn new(spec: Service) -> Self {
        Supervised {
            spec,
            pid: None,
            started: Instant::now(),
            backoff: BACKOFF_MIN,
            restart_at: Some(Instant::now()),
        }
    }

    pub fn start(&mut self) {
        self.restart_at = None;
        self.started = Instant::now();
        // Both masks are computed here, before fork: the child only makes syscalls.
        let asked = caps::asked(&self.spec);
        let held = match caps::permitted() {
            Ok(m) => m,
            Err(e) => {
                log::error!("service {}: reading capabilities: {e}", self.spec.name);
                self.schedule();
                return;
            }
        };
        let mut cmd = Command::new(&self.spec.exec[0]);
        cmd.args(&self.spec.exec[1..]);
        // SAFETY: both make raw syscalls on stack values only, which is
        // what is allowed between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                super::supervise::unblock_all_in_child()?;
                caps::confine(asked, held)
            })
        };
        match cmd.spawn() {
            Ok(child) => {
                self.pid = Some(child.id() as i32);
                log::info!("service {} started, pid {}", self.spec.name, child.id());
                // Dropping Child does not wait: the reaper collects its status.
            }
            Err(e) => {
                log::error!(
                    "service {}: starting {} with capabilities {asked:016x}: {e}",
                    self.spec.name,
                    self.spec.exec[0]
                );
                self.schedule();
            }
        }
    }

    /// Notes an exit and picks the next start time.
    pub fn exited(&mut self, how: &str) {
        log::warn!("service {} (pid {:?}) {how}", self.spec.name, self.pid);
        self.pid = None;
        if self.started.elapsed() >= HEALTHY_AFTER {
            self.backoff = BACKOFF_MIN;
        }
        self.schedule();
    }

    fn schedule(&mut self) {
        log::info!("service {}: restart in {:?}", self.spec.name, self.backoff);
        self.restart_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}
