//! The real [`Netlink`]: a NETLINK_ROUTE socket with extended ACKs.

use super::{Netlink, NlError};
use netlink_packet_core::{
    Emitable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, SocketAddr};

const NLMSGERR_ATTR_MSG: u16 = 1;
/// How much to put in one sendmsg in bulk mode. Bigger batches save
/// syscalls; the socket buffers are sized to hold one.
const BATCH_BYTES: usize = 256 * 1024;
/// Larger than any datagram the kernel sends on a route socket (dump
/// batches are at most 32 KiB); small enough to allocate quickly on a slow
/// (TCG) guest.
const RECV_BUF: usize = 64 * 1024;

pub struct Socket {
    sock: netlink_sys::Socket,
    seq: u32,
    rbuf: Vec<u8>,
}

impl Socket {
    pub fn open() -> Result<Socket, NlError> {
        let err = |e| NlError::io("opening a netlink route socket", e);
        let mut sock = netlink_sys::Socket::new(NETLINK_ROUTE).map_err(err)?;
        sock.bind_auto().map_err(err)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(err)?;
        // Extended ACKs carry the kernel's reason; capped ACKs keep error
        // replies small (header only, not the whole request echoed back).
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        // Room for a burst of error replies in bulk mode (best effort: the
        // FORCE variant needs CAP_NET_ADMIN, the plain one is capped by rmem_max).
        set_buf(&sock, libc::SO_RCVBUFFORCE, 32 << 20)
            .or_else(|_| set_buf(&sock, libc::SO_RCVBUF, 32 << 20))
            .ok();
        set_buf(&sock, libc::SO_SNDBUFFORCE, 4 * BATCH_BYTES)
            .or_else(|_| set_buf(&sock, libc::SO_SNDBUF, 4 * BATCH_BYTES))
            .ok();
        Ok(Socket {
            sock,
            seq: 1,
            rbuf: vec![0; RECV_BUF],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Receives one datagram into the buffer and returns its length.
    fn recv(&mut self) -> std::io::Result<usize> {
        self.sock.recv(&mut &mut self.rbuf[..], 0)
    }

    fn recv_nowait(&mut self) -> std::io::Result<Option<usize>> {
        match self.sock.recv(&mut &mut self.rbuf[..], libc::MSG_DONTWAIT) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn set_buf(sock: &netlink_sys::Socket, opt: libc::c_int, size: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let v = size as libc::c_int;
    // SAFETY: setsockopt with a valid fd and a pointer to a c_int of the stated size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            &v as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One raw netlink message in a received datagram.
struct Raw<'a> {
    kind: u16,
    seq: u32,
    bytes: &'a [u8],
}

fn split(buf: &[u8]) -> impl Iterator<Item = Raw<'_>> {
    let mut off = 0;
    std::iter::from_fn(move || {
        if off + 16 > buf.len() {
            return None;
        }
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        if len < 16 || off + len > buf.len() {
            return None;
        }
        let raw = Raw {
            kind: u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap()),
            seq: u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap()),
            bytes: &buf[off..off + len],
        };
        off += (len + 3) & !3;
        Some(raw)
    })
}

/// Decodes an NLMSG_ERROR body: (errno as a positive number, ext-ack text).
/// With capped ACKs the body is the error code, the echoed request header,
/// then the extended-ACK attributes.
pub(crate) fn parse_error(msg: &[u8]) -> (i32, Option<String>) {
    let body = &msg[16..];
    if body.len() < 4 {
        return (libc::EPROTO, None);
    }
    let code = i32::from_ne_bytes(body[..4].try_into().unwrap());
    let mut detail = None;
    let flags = u16::from_ne_bytes(msg[6..8].try_into().unwrap());
    // NLM_F_CAPPED = 0x100, NLM_F_ACK_TLVS = 0x200 on error messages.
    if flags & 0x200 != 0 {
        let echoed = if flags & 0x100 != 0 {
            16
        } else {
            body.get(4..8)
                .map_or(16, |b| u32::from_ne_bytes(b.try_into().unwrap()) as usize)
        };
        let mut tlvs = body.get(4 + ((echoed + 3) & !3)..).unwrap_or(&[]);
        while tlvs.len() >= 4 {
            let len = u16::from_ne_bytes([tlvs[0], tlvs[1]]) as usize;
            let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]);
            if len < 4 || len > tlvs.len() {
                break;
            }
            if kind == NLMSGERR_ATTR_MSG {
                let text = &tlvs[4..len];
                let text = text.split(|&b| b == 0).next().unwrap_or(&[]);
                detail = Some(String::from_utf8_lossy(text).into_owned());
            }
            tlvs = &tlvs[((len + 3) & !3).min(tlvs.len())..];
        }
    }
    (code.saturating_abs(), detail)
}

impl Netlink for Socket {
    fn request(
        &mut self,
        what: &dyn Fn() -> String,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        let mut out = Vec::new();
        let mut bad = None;
        self.request_raw(what, msg, flags, &mut |raw| {
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw) {
                Ok(m) => {
                    if let NetlinkPayload::InnerMessage(inner) = m.payload {
                        out.push(inner);
                    }
                }
                Err(e) => {
                    bad.get_or_insert(format!("undecodable reply: {e}"));
                }
            }
        })?;
        match bad {
            None => Ok(out),
            Some(detail) => Err(NlError {
                what: what(),
                errno: 0,
                detail: Some(detail),
            }),
        }
    }

    fn request_raw(
        &mut self,
        what: &dyn Fn() -> String,
        msg: RouteNetlinkMessage,
        flags: u16,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<(), NlError> {
        let seq = self.next_seq();
        let buf = super::encode(NLM_F_REQUEST | NLM_F_ACK | flags, seq, msg);
        self.sock
            .send(&buf, 0)
            .map_err(|e| NlError::io(what(), e))?;

        loop {
            let n = self.recv().map_err(|e| NlError::io(what(), e))?;
            let mut finished = false;
            for raw in split(&self.rbuf[..n]) {
                if raw.seq != seq {
                    continue; // a late reply to an earlier request
                }
                match raw.kind {
                    NLMSG_ERROR => {
                        let (errno, detail) = parse_error(raw.bytes);
                        if errno != 0 {
                            return Err(NlError {
                                what: what(),
                                errno,
                                detail,
                            });
                        }
                        finished = true;
                    }
                    NLMSG_DONE => finished = true,
                    _ => each(raw.bytes),
                }
            }
            // A dump ends with DONE (the kernel sends no ACK after a dump
            // that started); a plain request ends with its ACK.
            if finished {
                return Ok(());
            }
        }
    }

    fn bulk(
        &mut self,
        count: usize,
        encode: &mut dyn FnMut(usize, u32, &mut Vec<u8>),
    ) -> Result<Vec<(usize, i32, Option<String>)>, NlError> {
        let base = self.seq.wrapping_add(1);
        let mut failed = Vec::new();
        let mut buf = Vec::with_capacity(BATCH_BYTES + 4096);
        let io = |e| NlError::io("sending a batch of routes", e);
        let mut i = 0;
        while i < count {
            buf.clear();
            while i < count && buf.len() < BATCH_BYTES {
                encode(i, base.wrapping_add(i as u32), &mut buf);
                i += 1;
            }
            self.sock.send(&buf, 0).map_err(io)?;
            // Collect refusals as they come so the receive queue never fills.
            while let Some(n) = self.recv_nowait().map_err(io)? {
                collect_errors(&self.rbuf[..n], base, count, &mut failed);
            }
        }
        self.seq = base.wrapping_add(count as u32);
        // A final ACKed request: the kernel handles a socket's messages in
        // order, so once its ACK arrives every earlier error has been queued.
        let barrier = self.next_seq();
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_ACK;
        hdr.sequence_number = barrier;
        hdr.message_type = netlink_packet_core::NLMSG_NOOP;
        hdr.length = 16;
        let mut raw = [0u8; 16];
        hdr.emit(&mut raw);
        self.sock.send(&raw, 0).map_err(io)?;
        loop {
            let n = self.recv().map_err(io)?;
            let done = split(&self.rbuf[..n]).any(|r| r.seq == barrier && r.kind == NLMSG_ERROR);
            collect_errors(&self.rbuf[..n], base, count, &mut failed);
            if done {
                return Ok(failed);
            }
        }
    }
}

fn collect_errors(
    buf: &[u8],
    base: u32,
    count: usize,
    out: &mut Vec<(usize, i32, Option<String>)>,
) {
    for raw in split(buf) {
        let idx = raw.seq.wrapping_sub(base) as usize;
        if raw.kind == NLMSG_ERROR && idx < count {
            let (errno, detail) = parse_error(raw.bytes);
            if errno != 0 {
                out.push((idx, errno, detail));
            }
        }
    }
}
