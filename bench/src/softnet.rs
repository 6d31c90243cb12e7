//! Which CPU did the receive work: /proc/net/softnet_stat, one line per
//! online CPU (host-wide, every namespace). Read before and after each
//! trial, its deltas say where packets were processed (`processed`), where
//! a full backlog dropped them (`dropped`), and how many arrived through
//! RPS from another CPU (`rps`): the read-back of a router's placement.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Cpu {
    pub cpu: u32,
    /// Packets taken off this CPU's queues (a forwarded packet counts on
    /// each device it is received on: router ingress, then the sink).
    pub processed: u64,
    /// Dropped because this CPU's backlog was full.
    pub dropped: u64,
    /// Times the receive work ran out of budget with work left.
    pub squeezed: u64,
    /// Packets steered here by RPS (IPIs received).
    pub rps: u64,
}

/// Parses softnet_stat. The CPU number is column 13 where the kernel
/// prints it (5.10 and later); before that the line's position.
pub fn parse(text: &str) -> Vec<Cpu> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let c: Vec<u64> = l
                .split_whitespace()
                .map(|w| u64::from_str_radix(w, 16))
                .collect::<Result<_, _>>()
                .ok()?;
            Some(Cpu {
                cpu: c.get(12).map_or(i as u32, |&n| n as u32),
                processed: *c.first()?,
                dropped: *c.get(1)?,
                squeezed: *c.get(2)?,
                rps: c.get(9).copied().unwrap_or(0),
            })
        })
        .collect()
}

pub fn read() -> Result<Vec<Cpu>, String> {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .map(|t| parse(&t))
        .map_err(|e| format!("reading /proc/net/softnet_stat: {e}"))
}

/// Per CPU, what happened between two reads (32-bit counters wrap).
pub fn since(after: &[Cpu], before: &[Cpu]) -> Vec<Cpu> {
    let d = |a: u64, b: u64| (a as u32).wrapping_sub(b as u32) as u64;
    after
        .iter()
        .map(|a| match before.iter().find(|b| b.cpu == a.cpu) {
            Some(b) => Cpu {
                cpu: a.cpu,
                processed: d(a.processed, b.processed),
                dropped: d(a.dropped, b.dropped),
                squeezed: d(a.squeezed, b.squeezed),
                rps: d(a.rps, b.rps),
            },
            None => *a,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_cpu_by_its_number() {
        // 6.18's format: CPU number in column 13; CPU 1 offline here.
        let text = "015942ef 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000010 00000000 00000000 00000000 00000000 00000000\n\
                    00e5bb7d 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000002 00000000 00000000\n";
        let c = parse(text);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0],
            Cpu {
                cpu: 0,
                processed: 0x015942ef,
                dropped: 2,
                squeezed: 0,
                rps: 16
            }
        );
        assert_eq!((c[1].cpu, c[1].squeezed), (2, 1));
        // An older kernel without the column: the line's position.
        let old = parse("00000005 00000000 00000000\n00000007 00000000 00000000\n");
        assert_eq!((old[1].cpu, old[1].processed), (1, 7));
    }

    #[test]
    fn deltas_wrap_with_the_kernels_32_bit_counters() {
        let before = [Cpu {
            cpu: 1,
            processed: 0xffff_fff0,
            ..Default::default()
        }];
        let after = [Cpu {
            cpu: 1,
            processed: 0x10,
            ..Default::default()
        }];
        assert_eq!(since(&after, &before)[0].processed, 0x20);
    }
}
