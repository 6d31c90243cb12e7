//! Link counters from /proc/net/dev of a namespace: what every hop saw.

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Link {
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

impl Link {
    pub fn since(&self, before: &Link) -> Link {
        Link {
            rx_packets: self.rx_packets.saturating_sub(before.rx_packets),
            rx_dropped: self.rx_dropped.saturating_sub(before.rx_dropped),
            tx_packets: self.tx_packets.saturating_sub(before.tx_packets),
            tx_dropped: self.tx_dropped.saturating_sub(before.tx_dropped),
        }
    }
}

/// Where a hop's namespace is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Ns {
    Named(String),
    /// The namespace of a process (a container's init).
    Pid(u32),
    /// tinyvr's own (the lowers of a macvlan or macvtap datapath).
    Host,
}

/// Parses /proc/net/dev.
pub fn parse(text: &str) -> BTreeMap<String, Link> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            (v.len() >= 16).then(|| {
                (
                    name.trim().to_string(),
                    Link {
                        rx_packets: v[1],
                        rx_dropped: v[3],
                        tx_packets: v[9],
                        tx_dropped: v[11],
                    },
                )
            })
        })
        .collect()
}

pub fn read(ns: &Ns) -> Result<BTreeMap<String, Link>, String> {
    let text = match ns {
        Ns::Host => std::fs::read_to_string("/proc/self/net/dev")
            .map_err(|e| format!("reading /proc/self/net/dev: {e}"))?,
        Ns::Pid(p) => std::fs::read_to_string(format!("/proc/{p}/net/dev"))
            .map_err(|e| format!("reading /proc/{p}/net/dev: {e}"))?,
        Ns::Named(n) => {
            let name = n.clone();
            tinyvr_host::netns::run_in(Some(n), move || {
                std::fs::read_to_string("/proc/thread-self/net/dev").map_err(|e| {
                    tinyvr_host::HostError::io(format!("reading /proc/net/dev in {name}"), e)
                })
            })
            .map_err(|e| e.to_string())?
        }
    };
    Ok(parse(&text))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_proc_net_dev() {
        let t = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n  in0: 6000     100    0    7    0     0          0         0     1200      20    0    3    0     0       0          0\n";
        let m = super::parse(t);
        let l = m["in0"];
        assert_eq!(
            (l.rx_packets, l.rx_dropped, l.tx_packets, l.tx_dropped),
            (100, 7, 20, 3)
        );
    }
}
