//! The packet generator: AF_PACKET, `sendmmsg` in batches with
//! PACKET_QDISC_BYPASS (the frames go straight to the driver, as trafgen
//! and pktgen do), evenly paced to a target rate or as fast as it goes,
//! on a thread that has entered the source namespace.

use crate::experiment::{FlowOrder, FrameSpec, FCS};
use crate::frame::{self, Endpoints};
use serde::Serialize;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tinyvr_config::CpuList;

/// linux/if_packet.h; not in every libc release.
const PACKET_QDISC_BYPASS: libc::c_int = 20;
/// Frames per sendmmsg when unpaced (and the most when paced).
const MAX_BATCH: usize = 64;
/// How far behind schedule the generator still catches up (sending the
/// missed batches back to back); beyond it the lost time is given up.
const CATCH_UP: Duration = Duration::from_millis(10);
/// The part of a wait spent spinning: about what a timer wakeup can be late.
const SPIN: Duration = Duration::from_micros(20);

#[derive(Debug, Clone)]
pub struct Spec {
    pub netns: String,
    pub dev: String,
    pub ends: Endpoints,
    pub dst_base: Ipv4Addr,
    pub dst_addrs: u32,
    pub flows: u32,
    pub order: FlowOrder,
    pub frame: FrameSpec,
    /// None: as fast as possible.
    pub pps: Option<u64>,
    pub duration: Duration,
    pub cpus: Option<CpuList>,
    /// Mark one packet in this many for the latency receiver (0: none).
    pub sample_every: u32,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sent {
    pub packets: u64,
    /// On the wire, counting the FCS (RFC 2544 frame sizes).
    pub bytes: u64,
    pub secs: f64,
    /// Frames the device dropped as they were sent (sendmmsg stopped at
    /// them): the generator's own count; a trial takes the device's
    /// tx_dropped counter as the truth.
    pub refused: u64,
    /// CPU time of the generator thread, seconds.
    pub cpu_secs: f64,
    /// Sequence numbers used: frames 0..sequences were offered.
    pub sequences: u64,
}

impl Sent {
    pub fn pps(&self) -> f64 {
        self.packets as f64 / self.secs.max(1e-9)
    }
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn errno(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// A raw packet socket bound to `dev` for sending only (protocol 0: the
/// kernel hands it nothing back), bypassing the qdisc.
fn open(dev: &str) -> Result<OwnedFd, String> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(errno("socket(AF_PACKET)"));
    }
    // SAFETY: fd was just returned by socket(2).
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(dev).map_err(|_| format!("device {dev:?}"))?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(errno(&format!("generator device {dev}")));
    }
    let one: libc::c_int = 1;
    let sndbuf: libc::c_int = 4 << 20;
    // SAFETY: valid option pointers and lengths.
    unsafe {
        if libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_QDISC_BYPASS,
            &one as *const _ as *const libc::c_void,
            4,
        ) != 0
        {
            return Err(errno("PACKET_QDISC_BYPASS"));
        }
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            &sndbuf as *const _ as *const libc::c_void,
            4,
        );
    }
    // SAFETY: zeroed sockaddr_ll is a valid starting point.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = index as i32;
    // SAFETY: sll is a sockaddr_ll of the size given.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        return Err(errno(&format!("binding to {dev}")));
    }
    Ok(fd)
}

/// Picks flows in the order asked: round-robin or xorshift-random.
struct Flows {
    n: u32,
    next: u32,
    rng: u64,
    random: bool,
}

impl Flows {
    fn pick(&mut self) -> u32 {
        if self.random {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            (self.rng % self.n as u64) as u32
        } else {
            let i = self.next;
            self.next = if i + 1 == self.n { 0 } else { i + 1 };
            i
        }
    }
}

pub fn pin(cpus: &CpuList) -> Result<(), String> {
    let mut set = nix::sched::CpuSet::new();
    for &c in &cpus.0 {
        set.set(c as usize).map_err(|e| format!("CPU {c}: {e}"))?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| format!("pinning the generator to {cpus}: {e}"))
}

/// Sends on the calling thread (already in the source namespace) until
/// the duration is over or `stop` is set.
pub fn run(s: &Spec, stop: &AtomicBool) -> Result<Sent, String> {
    if let Some(c) = &s.cpus {
        pin(c)?;
    }
    // Wake up when asked, not up to 50 µs later (the default slack).
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let fd = open(&s.dev)?;
    let pattern = s.frame.pattern();
    let max_len = *pattern.iter().max().expect("a pattern") as usize - FCS as usize;
    // One template per size: headers differ only in the length fields.
    let (d0, p0) = frame::flow(s.dst_base, s.dst_addrs, 0);
    let templates: Vec<Vec<u8>> = pattern
        .iter()
        .map(|&n| frame::build(&s.ends, n as usize - FCS as usize, d0, p0))
        .collect();
    let batch = match s.pps {
        // About 20 µs of traffic per batch: even at the microsecond scale
        // a router's queues see, without a syscall per packet.
        Some(r) => ((r / 50_000) as usize).clamp(1, MAX_BATCH),
        None => MAX_BATCH,
    };
    let mut bufs = vec![0u8; batch * max_len];
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(batch);
    for i in 0..batch {
        iov.push(libc::iovec {
            iov_base: bufs[i * max_len..].as_mut_ptr() as *mut libc::c_void,
            iov_len: max_len,
        });
    }
    // SAFETY: zeroed mmsghdr is valid (no name, no control).
    let mut msgs: Vec<libc::mmsghdr> = (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut flows = Flows {
        n: s.flows,
        next: 0,
        rng: 0x9e3779b97f4a7c15,
        random: s.order == FlowOrder::Random,
    };
    let interval = s
        .pps
        .map(|r| Duration::from_secs_f64(batch as f64 / r as f64));
    let cpu0 = thread_cpu_secs();
    let t0 = Instant::now();
    let end = t0 + s.duration;
    let mut deadline = t0;
    let (mut seq, mut sent, mut bytes, mut refused) = (0u64, 0u64, 0u64, 0u64);
    let mut k = 0usize; // position in the size pattern
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if let Some(iv) = interval {
            if deadline > now {
                // Sleep most of the wait (a spinning generator would take
                // the core a router needs), spin the last few microseconds.
                let wait = deadline - now;
                if wait > SPIN {
                    std::thread::sleep(wait - SPIN);
                }
                // Yielding, not busy: other generator threads sharing this
                // CPU (several routers in scale or isolation) get to send.
                while Instant::now() < deadline {
                    std::thread::yield_now();
                }
            } else if now - deadline > CATCH_UP.max(iv * 4) {
                // Fallen far behind (descheduled): do not burst to catch up.
                deadline = now;
            }
            deadline += iv;
        }
        let ts = now_ns();
        for (j, v) in iov.iter_mut().enumerate() {
            let t = &templates[k];
            k = if k + 1 == templates.len() { 0 } else { k + 1 };
            let f = &mut bufs[j * max_len..j * max_len + t.len()];
            f[..frame::PAYLOAD].copy_from_slice(&t[..frame::PAYLOAD]);
            if s.flows > 1 {
                let (d, p) = frame::flow(s.dst_base, s.dst_addrs, flows.pick());
                frame::set_dst(f, d, p);
            }
            let sampled = s.sample_every > 0 && seq % s.sample_every as u64 == 0;
            frame::stamp(f, seq, ts, sampled);
            v.iov_len = t.len();
            seq += 1;
        }
        // Every frame of the batch is offered once. The socket blocks, so
        // a frame the call stops at was dropped by the device (a veth whose
        // receiver's backlog is full, a tap whose queue is): offered and
        // lost at the first hop (the device's tx_dropped counts it), not
        // sent again.
        let mut off = 0;
        while off < batch {
            // SAFETY: msgs[off..batch] point at iovecs into bufs, alive and sized.
            let n = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    msgs[off..].as_mut_ptr(),
                    (batch - off) as u32,
                    0,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::ENOBUFS) => {
                        refused += 1;
                        off += 1;
                    }
                    Some(libc::EINTR) | Some(libc::EAGAIN) if !stop.load(Ordering::Relaxed) => {}
                    Some(libc::EINTR) | Some(libc::EAGAIN) => break,
                    _ => return Err(format!("sendmmsg on {}: {e}", s.dev)),
                }
                continue;
            }
            let n = n as usize;
            sent += n as u64;
            bytes += iov[off..off + n]
                .iter()
                .map(|v| (v.iov_len + FCS as usize) as u64)
                .sum::<u64>();
            off += n;
            if off < batch {
                refused += 1;
                off += 1;
            }
        }
    }
    Ok(Sent {
        packets: sent,
        bytes,
        secs: t0.elapsed().as_secs_f64(),
        refused,
        cpu_secs: thread_cpu_secs() - cpu0,
        sequences: seq,
    })
}

/// Runs `f` on a new thread that has entered namespace `ns`.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<T, String>>, String> {
    let fd = tinyvr_host::netns::open(ns).map_err(|e| e.to_string())?;
    Ok(std::thread::spawn(move || {
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns into {}: {e}", "the namespace"))?;
        f()
    }))
}

/// Starts a generator in its namespace; it stops early when `stop` is set.
pub fn start_with(
    s: Spec,
    stop: &'static AtomicBool,
) -> Result<std::thread::JoinHandle<Result<Sent, String>>, String> {
    let ns = s.netns.clone();
    spawn_in(&ns, move || run(&s, stop))
}
