//! NDR and PDR found together in one search, in the spirit of RFC 2544's
//! binary search and MLRsearch (RFC 9935 draft lineage): one interval per
//! loss ratio (0 for the NDR, `pdr_loss` for the PDR), narrowed with the
//! same trials, each trial's result applied to both; then a confirming
//! trial at each rate found and one a resolution step above the NDR.

use serde::Serialize;

/// What a search needs from a trial: offered and received at a rate.
pub trait Trial {
    /// Runs a trial at `pps`; returns the measured loss ratio.
    fn run(&mut self, pps: u64) -> Result<f64, String>;
}

impl<F: FnMut(u64) -> Result<f64, String>> Trial for F {
    fn run(&mut self, pps: u64) -> Result<f64, String> {
        self(pps)
    }
}

/// How many times a failed confirmation sends the search back down.
const RECONFIRMS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
struct Interval {
    /// Highest rate seen meeting the loss ratio (a lower bound).
    lo: u64,
    /// Lowest rate seen failing it (an upper bound).
    hi: u64,
    lo_seen: bool,
}

impl Interval {
    fn narrow(&mut self, pps: u64, loss: f64, allowed: f64) {
        if loss <= allowed {
            if pps >= self.lo {
                self.lo = pps;
                self.lo_seen = true;
            }
        } else if pps < self.hi {
            self.hi = pps;
        }
        if self.lo >= self.hi {
            // A noisy pass above a fail: trust the fail.
            self.lo = self.hi.saturating_sub(1);
        }
    }
    fn done(&self, res: u64) -> bool {
        self.hi - self.lo <= res
    }
    fn next(&self) -> u64 {
        self.lo + (self.hi - self.lo) / 2
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Found {
    pub ndr_pps: u64,
    pub pdr_pps: u64,
    /// Every trial, in order: (rate, loss ratio).
    pub trials: Vec<(u64, f64)>,
    /// The confirming trial at the NDR (loss ratio; 0 confirms it).
    pub ndr_confirm_loss: f64,
    /// The confirming trial at the PDR.
    pub pdr_confirm_loss: f64,
    /// One resolution step above the NDR, and its loss ratio there (a
    /// found NDR is only credible if this one loses).
    pub above_pps: u64,
    pub above_loss: f64,
}

/// Searches [min, max] for the NDR and the PDR.
pub fn ndr_pdr(
    t: &mut dyn Trial,
    min: u64,
    max: u64,
    res: u64,
    pdr_loss: f64,
) -> Result<Found, String> {
    let mut trials = Vec::new();
    let mut run = |pps: u64, trials: &mut Vec<(u64, f64)>| -> Result<f64, String> {
        let l = t.run(pps)?;
        trials.push((pps, l));
        Ok(l)
    };
    let fresh = Interval {
        lo: min,
        hi: max + 1,
        lo_seen: false,
    };
    let (mut ndr, mut pdr) = (fresh, fresh);
    // The top first: a router that takes max loses nothing to search.
    let l = run(max, &mut trials)?;
    ndr.narrow(max, l, 0.0);
    pdr.narrow(max, l, pdr_loss);
    let (mut ndr_confirm_loss, mut pdr_confirm_loss) = (f64::NAN, f64::NAN);
    for _ in 0..=RECONFIRMS {
        while !(ndr.done(res) && pdr.done(res)) {
            // The wider interval drives; its trial narrows both.
            let pick = if !pdr.done(res) && (ndr.done(res) || pdr.hi - pdr.lo > ndr.hi - ndr.lo) {
                pdr.next()
            } else {
                ndr.next()
            };
            let l = run(pick, &mut trials)?;
            ndr.narrow(pick, l, 0.0);
            pdr.narrow(pick, l, pdr_loss);
        }
        // Narrowing ends without a passing rate when the capacity is
        // within a resolution step of min: the floor itself is then tried,
        // or a router that passes there would have no NDR at all.
        let nothing_passed = !ndr.lo_seen || !pdr.lo_seen;
        if nothing_passed && trials.iter().all(|(p, _)| *p != min) {
            let l = run(min, &mut trials)?;
            ndr.narrow(min, l, 0.0);
            pdr.narrow(min, l, pdr_loss);
        }
        // A rate is only reported once a trial of its own confirms it; a
        // failed confirmation is an upper bound like any other, and the
        // search goes on below it from the best rate that passed there.
        let mut settled = true;
        for (which, allowed) in [(0, 0.0), (1, pdr_loss)] {
            let iv = if which == 0 { ndr } else { pdr };
            if !iv.lo_seen {
                continue;
            }
            let l = run(iv.lo, &mut trials)?;
            if which == 0 {
                ndr_confirm_loss = l;
            } else {
                pdr_confirm_loss = l;
            }
            ndr.narrow(iv.lo, l, 0.0);
            pdr.narrow(iv.lo, l, pdr_loss);
            if l > allowed {
                settled = false;
                let fallback = |hi: u64, allowed: f64| {
                    trials
                        .iter()
                        .filter(|(p, x)| *p < hi && *x <= allowed)
                        .map(|(p, _)| *p)
                        .max()
                };
                for (iv, allowed) in [(&mut ndr, 0.0), (&mut pdr, pdr_loss)] {
                    if iv.lo_seen && iv.lo >= iv.hi.saturating_sub(1) {
                        match fallback(iv.hi, allowed) {
                            Some(p) => iv.lo = p,
                            None => {
                                iv.lo = min;
                                iv.lo_seen = false;
                            }
                        }
                    }
                }
            }
        }
        if settled {
            break;
        }
    }
    let ndr_pps = if ndr.lo_seen { ndr.lo } else { 0 };
    let pdr_pps = if pdr.lo_seen { pdr.lo } else { 0 };
    let above_pps = ndr_pps + res;
    let above_loss = if ndr_pps > 0 && above_pps <= max {
        run(above_pps, &mut trials)?
    } else {
        f64::NAN
    };
    Ok(Found {
        ndr_pps,
        pdr_pps,
        trials,
        ndr_confirm_loss,
        pdr_confirm_loss,
        above_pps,
        above_loss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A router that forwards up to `cap` pps and loses the rest.
    fn router(cap: u64) -> impl FnMut(u64) -> Result<f64, String> {
        move |pps| {
            Ok(if pps <= cap {
                0.0
            } else {
                (pps - cap) as f64 / pps as f64
            })
        }
    }

    #[test]
    fn finds_capacity_within_resolution() {
        let f = ndr_pdr(&mut router(123_000), 1000, 500_000, 1000, 0.005).unwrap();
        assert!(f.ndr_pps <= 123_000 && f.ndr_pps + 1000 >= 123_000, "{f:?}");
        // PDR: loss <= 0.5% up to cap / 0.995.
        let pdr_cap = (123_000f64 / 0.995) as u64;
        assert!(f.pdr_pps <= pdr_cap && f.pdr_pps + 1000 >= pdr_cap, "{f:?}");
        assert_eq!(f.ndr_confirm_loss, 0.0);
        assert!(f.pdr_confirm_loss <= 0.005);
        assert!(f.above_loss > 0.0, "one step above the NDR loses");
        assert!(f.trials.len() < 30, "{} trials", f.trials.len());
    }

    #[test]
    fn a_router_faster_than_max_needs_one_trial_and_confirmations() {
        let f = ndr_pdr(&mut router(1_000_000), 1000, 200_000, 1000, 0.005).unwrap();
        assert_eq!((f.ndr_pps, f.pdr_pps), (200_000, 200_000));
        assert_eq!(f.trials.len(), 3);
        assert!(f.above_loss.is_nan(), "nothing above max is tried");
    }

    #[test]
    fn a_failed_confirmation_sends_the_search_below_it() {
        // Forwards 90k; between 90k and 100k a first trial passes by luck
        // and a second at the same rate loses.
        let mut seen = std::collections::HashSet::new();
        let mut lucky = 0;
        let mut flaky = |pps: u64| -> Result<f64, String> {
            if pps > 90_000 && pps <= 100_000 {
                if seen.insert(pps) {
                    lucky += 1;
                    return Ok(0.0);
                }
                return Ok(0.01);
            }
            Ok(if pps <= 90_000 { 0.0 } else { 0.5 })
        };
        let f = ndr_pdr(&mut flaky, 1000, 200_000, 2000, 0.0).unwrap();
        assert!(lucky > 0, "the search never met the lucky band: {f:?}");
        assert!(f.ndr_pps <= 90_000 && f.ndr_pps + 2000 >= 90_000, "{f:?}");
        assert_eq!(f.ndr_confirm_loss, 0.0, "{f:?}");
    }

    #[test]
    fn a_capacity_within_a_step_of_min_still_gets_its_ndr() {
        let f = ndr_pdr(&mut router(1500), 1000, 200_000, 4000, 0.005).unwrap();
        assert_eq!((f.ndr_pps, f.ndr_confirm_loss), (1000, 0.0), "{f:?}");
        assert_eq!(f.above_pps, 5000);
        assert!(f.above_loss > 0.0, "{f:?}");
    }

    #[test]
    fn a_router_that_always_loses_has_no_ndr() {
        let f = ndr_pdr(&mut |_| Ok(0.5), 1000, 200_000, 1000, 0.005).unwrap();
        assert_eq!((f.ndr_pps, f.pdr_pps), (0, 0));
        assert!(f.ndr_confirm_loss.is_nan());
    }
}
