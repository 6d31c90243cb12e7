//! Test frames: Ethernet + IPv4 + UDP with a payload that carries a
//! sequence number, a send timestamp and a sample mark. Pure functions.

use std::net::Ipv4Addr;

pub const ETH: usize = 14;
pub const IP: usize = 20;
pub const UDP: usize = 8;
/// Offset of the payload: seq (u64 LE), timestamp ns (u64 LE), mark (u8).
pub const PAYLOAD: usize = ETH + IP + UDP;
pub const SEQ: usize = PAYLOAD;
pub const STAMP: usize = PAYLOAD + 8;
pub const MARK: usize = PAYLOAD + 16;
/// The mark a sampled packet carries (the latency receiver's filter).
pub const SAMPLED: u8 = 0x5a;
/// Destination ports flows use: 1024..65535.
pub const PORTS: u32 = 65535 - 1024 + 1;
pub const SRC_PORT: u16 = 9000;

#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
}

/// Flow `i` of `n` over `addrs` destinations starting at `base`: the
/// address cycles fastest, then the port.
pub fn flow(base: Ipv4Addr, addrs: u32, i: u32) -> (Ipv4Addr, u16) {
    let a = u32::from(base) + i % addrs;
    (Ipv4Addr::from(a), (1024 + i / addrs) as u16)
}

/// Builds the frame of `len` bytes as the socket sends it (the frame size
/// minus the FCS), addressed to flow (`dst`, `port`).
pub fn build(e: &Endpoints, len: usize, dst: Ipv4Addr, port: u16) -> Vec<u8> {
    assert!(len >= 60, "frames are at least 60 bytes without FCS");
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&e.dst_mac);
    f[6..12].copy_from_slice(&e.src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[ETH..ETH + IP];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((len - ETH) as u16).to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&e.src_ip.octets());
    let udp = ETH + IP;
    f[udp..udp + 2].copy_from_slice(&SRC_PORT.to_be_bytes());
    f[udp + 4..udp + 6].copy_from_slice(&((len - ETH - IP) as u16).to_be_bytes());
    // UDP checksum 0: none, which IPv4 allows.
    set_dst(&mut f, dst, port);
    f
}

/// Points a frame at another flow and fixes the IP header checksum.
pub fn set_dst(f: &mut [u8], dst: Ipv4Addr, port: u16) {
    f[ETH + 16..ETH + 20].copy_from_slice(&dst.octets());
    f[ETH + IP + 2..ETH + IP + 4].copy_from_slice(&port.to_be_bytes());
    f[ETH + 10..ETH + 12].copy_from_slice(&[0, 0]);
    let c = checksum(&f[ETH..ETH + IP]);
    f[ETH + 10..ETH + 12].copy_from_slice(&c.to_be_bytes());
}

/// Writes the sequence number, the send time and the sample mark.
#[inline]
pub fn stamp(f: &mut [u8], seq: u64, ns: u64, sampled: bool) {
    f[SEQ..SEQ + 8].copy_from_slice(&seq.to_le_bytes());
    f[STAMP..STAMP + 8].copy_from_slice(&ns.to_le_bytes());
    f[MARK] = if sampled { SAMPLED } else { 0 };
}

/// (seq, send time) of a received frame, if it is one of ours with the
/// sample mark.
pub fn read_stamp(f: &[u8]) -> Option<(u64, u64)> {
    read_any(f).filter(|s| s.2).map(|(seq, ns, _)| (seq, ns))
}

/// (seq, send time, sampled) of any IPv4 frame long enough to be ours.
pub fn read_any(f: &[u8]) -> Option<(u64, u64, bool)> {
    if f.len() <= MARK || f[12..14] != [0x08, 0x00] {
        return None;
    }
    let seq = u64::from_le_bytes(f[SEQ..SEQ + 8].try_into().ok()?);
    let ns = u64::from_le_bytes(f[STAMP..STAMP + 8].try_into().ok()?);
    Some((seq, ns, f[MARK] == SAMPLED))
}

/// What a receiver keeps of a frame: the headers and the stamp.
pub const SNAP: u32 = (MARK + 1) as u32;

/// The Internet checksum (RFC 1071).
pub fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A classic BPF program accepting only frames with the sample mark, for
/// the latency receiver (so unsampled packets never reach user space).
pub fn sample_filter() -> Vec<libc::sock_filter> {
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    vec![
        op(0x30, 0, 0, MARK as u32),    // ldb [MARK]
        op(0x15, 0, 1, SAMPLED as u32), // jeq #SAMPLED, accept, drop
        op(0x06, 0, 0, SNAP),           // ret #SNAP
        op(0x06, 0, 0, 0),              // ret #0
    ]
}

/// A classic BPF program accepting every IPv4 UDP frame, truncated to the
/// stamp, for the sequence receiver (the sink's device carries only the
/// offered load: IPv6 is off and the neighbours are permanent).
pub fn udp_filter() -> Vec<libc::sock_filter> {
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    vec![
        op(0x28, 0, 0, 12),               // ldh [12]: ethertype
        op(0x15, 0, 3, 0x0800),           // IPv4, else drop
        op(0x30, 0, 0, (ETH + 9) as u32), // ldb [23]: protocol
        op(0x15, 0, 1, 17),               // UDP, else drop
        op(0x06, 0, 0, SNAP),             // ret #SNAP
        op(0x06, 0, 0, 0),                // ret #0
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends() -> Endpoints {
        Endpoints {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: "10.1.0.2".parse().unwrap(),
        }
    }

    #[test]
    fn a_64_byte_frame_is_60_bytes_with_a_valid_ip_header() {
        let f = build(&ends(), 60, "10.2.0.2".parse().unwrap(), 1024);
        assert_eq!(f.len(), 60);
        assert_eq!(checksum(&f[ETH..ETH + IP]), 0, "header checksum verifies");
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 46, "IP total length");
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 26, "UDP length");
        const { assert!(MARK < 60, "the payload fits the smallest frame") };
    }

    #[test]
    fn redirecting_keeps_the_checksum_valid() {
        let mut f = build(&ends(), 60, "10.2.0.2".parse().unwrap(), 1024);
        set_dst(&mut f, "10.9.1.7".parse().unwrap(), 4000);
        assert_eq!(checksum(&f[ETH..ETH + IP]), 0);
        assert_eq!(&f[30..34], &[10, 9, 1, 7]);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 4000);
    }

    #[test]
    fn known_checksum() {
        // The header from RFC 1071's worked example family (Wikipedia's).
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
    }

    #[test]
    fn stamps_round_trip_and_only_sampled_frames_read() {
        let mut f = build(&ends(), 60, "10.2.0.2".parse().unwrap(), 1024);
        stamp(&mut f, 42, 123_456_789, false);
        assert_eq!(read_stamp(&f), None);
        stamp(&mut f, 43, 987, true);
        assert_eq!(read_stamp(&f), Some((43, 987)));
    }

    #[test]
    fn flows_cycle_addresses_then_ports() {
        let base = "10.9.0.0".parse().unwrap();
        assert_eq!(flow(base, 256, 0), ("10.9.0.0".parse().unwrap(), 1024));
        assert_eq!(flow(base, 256, 255), ("10.9.0.255".parse().unwrap(), 1024));
        assert_eq!(flow(base, 256, 256), ("10.9.0.0".parse().unwrap(), 1025));
    }
}
