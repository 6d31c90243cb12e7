//! Interface counters for SIGHUP, from /proc/net/dev.

pub fn dump() -> Vec<String> {
    match procfs::net::dev_status() {
        Ok(devs) => {
            let mut names: Vec<_> = devs.keys().cloned().collect();
            names.sort();
            names
                .iter()
                .map(|n| {
                    let d = &devs[n];
                    format!(
                        "counters {n}: rx_packets={} rx_bytes={} rx_dropped={} rx_errors={} tx_packets={} tx_bytes={} tx_dropped={} tx_errors={}",
                        d.recv_packets, d.recv_bytes, d.recv_drop, d.recv_errs, d.sent_packets, d.sent_bytes, d.sent_drop, d.sent_errs
                    )
                })
                .collect()
        }
        Err(e) => vec![format!("counters: reading /proc/net/dev: {e}")],
    }
}
