//! Loss by sequence number at the sink: every frame the generator offers
//! carries its sequence number (0, 1, 2, ... per trial and generator), so
//! the sink can say which frames never came, which came twice or out of
//! order, and the longest stretch without any frame — what a link
//! counter cannot (a migration's downtime, a burst lost at a full queue).

use serde::Serialize;

/// What the sink saw of one generator's sequence.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SeqStats {
    /// Distinct sequence numbers received.
    pub received: u64,
    /// Offered and never received.
    pub lost: u64,
    /// Received again after their first arrival.
    pub duplicates: u64,
    /// Arrived after a higher sequence number had.
    pub reordered: u64,
    /// The longest run of consecutive lost sequence numbers.
    pub longest_loss_run: u64,
    /// The first lost ranges, `[first, last]` inclusive (at most 16).
    pub lost_ranges: Vec<[u64; 2]>,
    /// The longest time between two consecutive arrivals (kernel receive
    /// timestamps), µs: a traffic-side downtime.
    pub longest_gap_us: f64,
    /// When that gap began, ms after the first arrival.
    pub longest_gap_at_ms: f64,
}

const RANGES: usize = 16;

/// Feeds arrivals in the order they came; [`Tracker::finish`] compares
/// with what was offered.
#[derive(Debug, Default)]
pub struct Tracker {
    seen: Vec<u64>,
    received: u64,
    duplicates: u64,
    reordered: u64,
    max: Option<u64>,
    first_ns: Option<u64>,
    last_ns: Option<u64>,
    gap_ns: u64,
    gap_at_ns: u64,
}

impl Tracker {
    /// One arrival: sequence number and kernel receive time (ns).
    pub fn arrive(&mut self, seq: u64, rx_ns: u64) {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if w >= self.seen.len() {
            self.seen.resize(w + 1, 0);
        }
        if self.seen[w] & (1 << b) != 0 {
            self.duplicates += 1;
        } else {
            self.seen[w] |= 1 << b;
            self.received += 1;
        }
        match self.max {
            Some(m) if seq < m => self.reordered += 1,
            _ => self.max = Some(seq),
        }
        let first = *self.first_ns.get_or_insert(rx_ns);
        if let Some(last) = self.last_ns {
            if rx_ns > last && rx_ns - last > self.gap_ns {
                self.gap_ns = rx_ns - last;
                self.gap_at_ns = last - first;
            }
        }
        self.last_ns = Some(self.last_ns.map_or(rx_ns, |l| l.max(rx_ns)));
    }

    /// Against `offered` frames (sequence numbers 0..offered).
    pub fn finish(&self, offered: u64) -> SeqStats {
        let mut lost = 0;
        let (mut run, mut longest) = (0u64, 0u64);
        let mut ranges: Vec<[u64; 2]> = Vec::new();
        for s in 0..offered {
            let (w, b) = ((s / 64) as usize, s % 64);
            let got = self.seen.get(w).is_some_and(|x| x & (1 << b) != 0);
            if got {
                run = 0;
                continue;
            }
            lost += 1;
            run += 1;
            longest = longest.max(run);
            match ranges.last_mut() {
                Some(r) if r[1] + 1 == s => r[1] = s,
                _ => {
                    if ranges.len() < RANGES {
                        ranges.push([s, s]);
                    }
                }
            }
        }
        SeqStats {
            received: self.received,
            lost,
            duplicates: self.duplicates,
            reordered: self.reordered,
            longest_loss_run: longest,
            lost_ranges: ranges,
            longest_gap_us: self.gap_ns as f64 / 1e3,
            longest_gap_at_ms: self.gap_at_ns as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_losses_runs_duplicates_reordering_and_the_longest_gap() {
        let mut t = Tracker::default();
        // 0..10 at 1 ms, then 10..=14 lost, a 50 ms silence, 15..20 back,
        // 3 again and 17 before 16.
        for s in 0..10u64 {
            t.arrive(s, s * 1_000_000);
        }
        t.arrive(3, 9_500_000);
        for (k, s) in [15u64, 17, 16, 18, 19].into_iter().enumerate() {
            t.arrive(s, 59_500_000 + k as u64 * 1_000_000);
        }
        let s = t.finish(22);
        assert_eq!(s.received, 15);
        assert_eq!(s.lost, 7, "10..=14, 20, 21");
        assert_eq!(s.lost_ranges, vec![[10, 14], [20, 21]]);
        assert_eq!(s.longest_loss_run, 5);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.reordered, 2, "3 after 9, 16 after 17");
        assert_eq!(s.longest_gap_us, 50_000.0);
        assert_eq!(s.longest_gap_at_ms, 9.5);
    }

    #[test]
    fn nothing_received_is_all_lost_in_one_run() {
        let s = Tracker::default().finish(5);
        assert_eq!((s.received, s.lost, s.longest_loss_run), (0, 5, 5));
        assert_eq!(s.longest_gap_us, 0.0);
    }

    #[test]
    fn ranges_stop_at_sixteen_but_every_loss_counts() {
        let mut t = Tracker::default();
        for s in (0..100u64).step_by(2) {
            t.arrive(s, s);
        }
        let s = t.finish(100);
        assert_eq!(s.lost, 50);
        assert_eq!(s.lost_ranges.len(), 16);
        assert_eq!(s.lost_ranges[0], [1, 1]);
    }
}
