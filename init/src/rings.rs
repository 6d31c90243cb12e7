//! A NIC's ring sizes as its driver reports them (what `ethtool -g` shows),
//! read with the SIOCETHTOOL ioctl. In a VM these are virtio-net's
//! virtqueue sizes: READY carries them so the host can compare them with
//! the `rx_queue_size`/`tx_queue_size` it asked qemu for.

use serde::Serialize;
use std::os::fd::AsRawFd;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rings {
    pub rx: u32,
    pub tx: u32,
    /// Queue pairs in use (combined channels, what `ethtool -l` shows);
    /// None where the driver does not report channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queues: Option<u32>,
}

const ETHTOOL_GRINGPARAM: u32 = 0x10;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// struct ethtool_channels (include/uapi/linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct Channels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// struct ethtool_ringparam (include/uapi/linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct RingParam {
    cmd: u32,
    rx_max_pending: u32,
    rx_mini_max_pending: u32,
    rx_jumbo_max_pending: u32,
    tx_max_pending: u32,
    rx_pending: u32,
    rx_mini_pending: u32,
    rx_jumbo_pending: u32,
    tx_pending: u32,
}

/// Reads ring sizes through one unbound datagram socket (SIOCETHTOOL
/// needs a socket, not an address): one socket call for all the NICs, on
/// PID 1's way to READY.
pub struct Reader(Option<std::os::fd::OwnedFd>);

impl Reader {
    pub fn open() -> Reader {
        use std::os::fd::FromRawFd;
        // SAFETY: socket(2) returns a new fd we then own, or -1.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        // SAFETY: fd is a fresh descriptor nobody else owns.
        Reader((fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    /// The current rx/tx ring sizes of `ifname` and its queue pairs, or
    /// None when the driver has no rings to report (loopback, a tun device).
    pub fn read(&self, ifname: &str) -> Option<Rings> {
        let mut rp = RingParam {
            cmd: ETHTOOL_GRINGPARAM,
            ..Default::default()
        };
        self.ethtool(ifname, (&mut rp as *mut RingParam).cast())?;
        let mut ch = Channels {
            cmd: ETHTOOL_GCHANNELS,
            ..Default::default()
        };
        let queues = self
            .ethtool(ifname, (&mut ch as *mut Channels).cast())
            .map(|()| ch.combined_count);
        Some(Rings {
            rx: rp.rx_pending,
            tx: rp.tx_pending,
            queues,
        })
    }

    /// One SIOCETHTOOL request on `ifname`; `data` is the command's struct.
    fn ethtool(&self, ifname: &str, data: *mut libc::c_void) -> Option<()> {
        let sock = self.0.as_ref()?;
        // SAFETY: ifreq is plain data; zeroed is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        if ifname.len() >= req.ifr_name.len() {
            return None;
        }
        for (d, s) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
            *d = s as libc::c_char;
        }
        req.ifr_ifru.ifru_data = data.cast();
        // SAFETY: SIOCETHTOOL reads the ifreq and fills the command struct
        // it points to; both are the caller's and alive for the call.
        let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
        (r == 0).then_some(())
    }
}
