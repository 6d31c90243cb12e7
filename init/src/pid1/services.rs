//! Services: processes started after READY and restarted with back-off
//! when they exit.

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
        match Command::new(&self.spec.exec[0])
            .args(&self.spec.exec[1..])
            .spawn()
        {
            Ok(child) => {
                self.pid = Some(child.id() as i32);
                log::info!("service {} started, pid {}", self.spec.name, child.id());
                // Dropping Child does not wait: the reaper collects its status.
            }
            Err(e) => {
                log::error!(
                    "service {}: starting {}: {e}",
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
