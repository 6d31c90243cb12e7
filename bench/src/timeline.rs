//! The forwarded rate over a trial in fixed bins: a thread in the sink's
//! namespace reads the sink device's receive counter every bin (10 ms)
//! from /proc/thread-self/net/dev, on the generator's CPUs so it takes
//! nothing from a router's. What a mean hides — a stall, a ramp, a
//! neighbour's burst — shows here.

use serde::Serialize;
use std::io::{Read, Seek};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tinyvr_config::CpuList;

pub const BIN: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timeline {
    pub bin_ms: f64,
    /// Packets per second received at the sink in each bin, from the
    /// sampler's start (just before the generator's).
    pub forwarded_pps: Vec<f64>,
}

/// (seconds since start, counter) samples to per-bin rates. Pure.
pub fn rates(samples: &[(f64, u64)]) -> Vec<f64> {
    samples
        .windows(2)
        .map(|w| {
            let dt = (w[1].0 - w[0].0).max(1e-9);
            (w[1].1.saturating_sub(w[0].1) as f64 / dt).round()
        })
        .collect()
}

/// (seconds since start, rx_packets) as the sampler read them.
type Samples = Vec<(f64, u64)>;

pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Result<Samples, String>>>,
}

/// A trial that fails before [`Sampler::finish`] still ends its sampler.
impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Sampler {
    /// Starts sampling `dev`'s rx_packets in namespace `ns`.
    pub fn start(ns: &str, dev: &str, cpus: Option<CpuList>) -> Result<Sampler, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, dev) = (stop.clone(), dev.to_string());
        let handle = crate::gen::spawn_in(ns, move || {
            if let Some(c) = &cpus {
                crate::gen::pin(c)?;
            }
            let mut f = std::fs::File::open("/proc/thread-self/net/dev")
                .map_err(|e| format!("opening /proc/net/dev: {e}"))?;
            let mut text = String::new();
            let mut read = |f: &mut std::fs::File| -> Result<u64, String> {
                text.clear();
                f.rewind().map_err(|e| e.to_string())?;
                f.read_to_string(&mut text).map_err(|e| e.to_string())?;
                Ok(crate::counters::parse(&text)
                    .get(&dev)
                    .map_or(0, |l| l.rx_packets))
            };
            let t0 = Instant::now();
            let mut out = vec![(0.0, read(&mut f)?)];
            let mut next = t0 + BIN;
            while !s.load(Ordering::Relaxed) {
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
                out.push((t0.elapsed().as_secs_f64(), read(&mut f)?));
                next += BIN;
                // Behind by more than a bin (a descheduled sampler): start
                // again from now rather than sampling back to back.
                if next + BIN < Instant::now() {
                    next = Instant::now() + BIN;
                }
            }
            Ok(out)
        })?;
        Ok(Sampler {
            stop,
            handle: Some(handle),
        })
    }

    pub fn finish(mut self) -> Result<Timeline, String> {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self
            .handle
            .take()
            .expect("finished once")
            .join()
            .map_err(|_| "the rate sampler panicked".to_string())??;
        Ok(Timeline {
            bin_ms: BIN.as_secs_f64() * 1e3,
            forwarded_pps: rates(&samples),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counter_samples_become_rates_per_bin() {
        let s = [(0.0, 100), (0.01, 1100), (0.02, 1100), (0.031, 3300)];
        assert_eq!(super::rates(&s), vec![100_000.0, 0.0, 200_000.0]);
    }
}
