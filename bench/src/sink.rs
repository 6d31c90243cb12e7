//! The sink's receiver: a packet socket on the sink's device that sees
//! only sampled frames (a BPF filter drops the rest in the kernel), or
//! every frame when sequence numbers are tracked, with the kernel's
//! receive timestamp of each.

use crate::frame;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn errno(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn setopt<T>(fd: &OwnedFd, level: i32, opt: i32, v: &T, what: &str) -> Result<(), String> {
    // SAFETY: v is a live value of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            v as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as u32,
        )
    };
    if r != 0 {
        return Err(errno(what));
    }
    Ok(())
}

/// Opens the receiver on `dev` (the calling thread's namespace): sampled
/// frames only, or with `every` all of them.
pub fn open(dev: &str, every: bool) -> Result<OwnedFd, String> {
    let proto = (libc::ETH_P_IP as u16).to_be() as i32;
    // SAFETY: plain socket(2); owned right away.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(errno("socket(AF_PACKET) for latency"));
    }
    // SAFETY: fd was just returned by socket(2).
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let filter = if every {
        frame::udp_filter()
    } else {
        frame::sample_filter()
    };
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    setopt(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &prog,
        "SO_ATTACH_FILTER",
    )?;
    let one: libc::c_int = 1;
    setopt(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_TIMESTAMPNS,
        &one,
        "SO_TIMESTAMPNS",
    )?;
    if every {
        // Room for bursts: a frame the socket drops would count as lost
        // (the drops are read back and reported with the counts).
        let size: libc::c_int = 32 << 20;
        setopt(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size,
            "SO_RCVBUFFORCE",
        )?;
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    setopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv, "SO_RCVTIMEO")?;
    let name = std::ffi::CString::new(dev).map_err(|_| format!("device {dev:?}"))?;
    // SAFETY: NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(errno(&format!("sink device {dev}")));
    }
    // SAFETY: zeroed sockaddr_ll, then filled.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto as u16;
    sll.sll_ifindex = index as i32;
    // SAFETY: sll is a sockaddr_ll of the size given.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    } != 0
    {
        return Err(errno(&format!("binding the latency receiver to {dev}")));
    }
    Ok(fd)
}

/// What a receiver saw until it was stopped.
#[derive(Default)]
pub struct Received {
    /// One-way latencies of the sampled frames, ns (kernel receive time
    /// minus the send time the generator wrote; one host, one clock).
    pub latencies: Vec<u64>,
    /// The kernel receive time of each of `latencies` (CLOCK_REALTIME ns).
    pub latency_rx_ns: Vec<u64>,
    /// Every frame's sequence number, when tracked.
    pub seq: Option<crate::seq::Tracker>,
    /// Frames the socket itself dropped (its buffer full): with any, the
    /// sequence counts overstate the loss. None: could not be read.
    pub socket_dropped: Option<u64>,
}

/// Receives until `stop`; with `track`, every frame's sequence number.
pub fn receive(fd: OwnedFd, stop: Arc<AtomicBool>, track: bool) -> Received {
    let mut out = Received {
        seq: track.then(crate::seq::Tracker::default),
        ..Default::default()
    };
    let mut buf = [0u8; 128];
    let mut ctl = [0u64; 16];
    while !stop.load(Ordering::Relaxed) {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: zeroed msghdr, then pointed at live buffers.
        let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl.as_mut_ptr() as *mut libc::c_void;
        m.msg_controllen = std::mem::size_of_val(&ctl);
        // SAFETY: m describes live buffers.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut m, libc::MSG_TRUNC) };
        if n < 0 {
            continue; // timeout: look at `stop` again
        }
        let Some((seq, sent, sampled)) = frame::read_any(&buf[..(n as usize).min(buf.len())])
        else {
            continue;
        };
        let Some(rx) = rx_time(&m) else { continue };
        if let Some(t) = &mut out.seq {
            t.arrive(seq, rx);
        }
        if sampled && rx >= sent {
            out.latencies.push(rx - sent);
            out.latency_rx_ns.push(rx);
        }
    }
    out.socket_dropped = socket_drops(&fd);
    out
}

/// The kernel's receive timestamp in a received message's control data, ns.
fn rx_time(m: &libc::msghdr) -> Option<u64> {
    // SAFETY: walking the control messages the kernel wrote for `m`.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(m) };
    while !c.is_null() {
        // SAFETY: c points into m's control buffer, as CMSG_* guarantee.
        unsafe {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(m, c);
        }
    }
    None
}

/// PACKET_STATISTICS: frames the socket dropped since it was opened.
fn socket_drops(fd: &OwnedFd) -> Option<u64> {
    let mut st = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: st is a tpacket_stats of the length given.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut st as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    (r == 0).then_some(st.tp_drops as u64)
}
