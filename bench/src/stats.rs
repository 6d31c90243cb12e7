//! Summary statistics over repetitions, and Jain's fairness index.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n - 1).
    pub sd: f64,
    /// Half-width of the confidence interval of the mean (Student's t).
    pub ci: f64,
    pub confidence: f64,
    pub min: f64,
    pub max: f64,
}

/// Two-sided Student's t quantiles for 1..=30 degrees of freedom.
const T95: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];
const T99: [f64; 30] = [
    63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250, 3.169, 3.106, 3.055, 3.012,
    2.977, 2.947, 2.921, 2.898, 2.878, 2.861, 2.845, 2.831, 2.819, 2.807, 2.797, 2.787, 2.779,
    2.771, 2.763, 2.756, 2.750,
];

/// The t quantile for `df` degrees of freedom; past 30 the table's last
/// row slightly overstates it (conservative), and past 120 the normal.
pub fn t_quantile(confidence: f64, df: usize) -> f64 {
    let (table, z) = if confidence >= 0.99 {
        (&T99, 2.576)
    } else {
        (&T95, 1.960)
    };
    match df {
        0 => f64::NAN,
        1..=30 => table[df - 1],
        31..=120 => table[29],
        _ => z,
    }
}

pub fn summarize(xs: &[f64], confidence: f64) -> Summary {
    let n = xs.len();
    let mean = xs.iter().sum::<f64>() / n.max(1) as f64;
    let sd = if n > 1 {
        (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    let ci = if n > 1 {
        t_quantile(confidence, n - 1) * sd / (n as f64).sqrt()
    } else {
        0.0
    };
    Summary {
        n,
        mean,
        sd,
        ci,
        confidence,
        min: xs.iter().cloned().fold(f64::INFINITY, f64::min),
        max: xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    }
}

/// Jain's fairness index (Σx)² / (n·Σx²): 1 when all are equal, 1/n when
/// one takes everything. None when there is nothing to share.
pub fn jain(xs: &[f64]) -> Option<f64> {
    let s: f64 = xs.iter().sum();
    let s2: f64 = xs.iter().map(|x| x * x).sum();
    (s2 > 0.0).then(|| s * s / (xs.len() as f64 * s2))
}

/// Percentiles of sorted latency samples (ns) and an HDR-style histogram:
/// buckets with a fixed relative precision (two significant digits).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// (bucket lower bound in µs, count), buckets growing ~1% each.
    pub histogram: Vec<(f64, u64)>,
}

pub fn latency(mut ns: Vec<u64>) -> Option<Latency> {
    if ns.is_empty() {
        return None;
    }
    ns.sort_unstable();
    let us = |v: u64| v as f64 / 1000.0;
    let pct = |p: f64| us(ns[((ns.len() as f64 * p).ceil() as usize).clamp(1, ns.len()) - 1]);
    let mut hist: Vec<(f64, u64)> = Vec::new();
    for &v in &ns {
        let b = bucket(v);
        match hist.last_mut() {
            Some((lo, c)) if *lo == b => *c += 1,
            _ => hist.push((b, 1)),
        }
    }
    Some(Latency {
        samples: ns.len(),
        min_us: us(ns[0]),
        mean_us: ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1000.0,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        max_us: us(*ns.last().unwrap()),
        histogram: hist,
    })
}

/// Lower bound (µs) of the bucket holding `ns`: two significant digits.
fn bucket(ns: u64) -> f64 {
    if ns < 100 {
        return ns as f64 / 1000.0;
    }
    let mag = 10u64.pow(ns.ilog10() - 1);
    (ns / mag * mag) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_interval_by_hand() {
        // 10, 12, 14: mean 12, sd 2, t(0.975, 2) = 4.303, ci = 4.303*2/√3.
        let s = summarize(&[10.0, 12.0, 14.0], 0.95);
        assert_eq!(s.mean, 12.0);
        assert!((s.sd - 2.0).abs() < 1e-12);
        assert!((s.ci - 4.303 * 2.0 / 3f64.sqrt()).abs() < 1e-9, "{}", s.ci);
        let s = summarize(&[10.0, 12.0, 14.0], 0.99);
        assert!((s.ci - 9.925 * 2.0 / 3f64.sqrt()).abs() < 1e-9);
        let one = summarize(&[5.0], 0.95);
        assert_eq!((one.mean, one.sd, one.ci), (5.0, 0.0, 0.0));
    }

    #[test]
    fn jain_by_hand() {
        assert_eq!(jain(&[1.0, 1.0, 1.0, 1.0]), Some(1.0));
        assert_eq!(jain(&[1.0, 0.0, 0.0, 0.0]), Some(0.25));
        // (1+2+3)^2 / (3 * (1+4+9)) = 36/42
        assert!((jain(&[1.0, 2.0, 3.0]).unwrap() - 36.0 / 42.0).abs() < 1e-12);
        assert_eq!(jain(&[0.0, 0.0]), None);
    }

    #[test]
    fn percentiles_and_histogram() {
        let ns: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        let l = latency(ns).unwrap();
        assert_eq!((l.min_us, l.max_us), (1.0, 1000.0));
        assert_eq!(l.p50_us, 500.0);
        assert_eq!(l.p99_us, 990.0);
        assert_eq!(l.p999_us, 999.0);
        assert_eq!(l.histogram.iter().map(|b| b.1).sum::<u64>(), 1000);
        assert_eq!(bucket(123_456), 120.0);
        assert!(latency(vec![]).is_none());
    }
}
