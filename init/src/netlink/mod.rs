//! A thin synchronous rtnetlink client: build messages with
//! netlink-packet-route ([`msg`]), send them on a `netlink_sys::Socket`, and
//! turn the kernel's NACKs into errors that name the object. Bulk route
//! installs live in [`bulk`].

pub mod bulk;
pub mod msg;
mod socket;

pub use socket::Socket;

use netlink_packet_route::RouteNetlinkMessage;
use std::fmt;

/// What the kernel (or the socket) said no to, and about what.
#[derive(Debug, thiserror::Error)]
pub struct NlError {
    /// The object and the action, e.g. "adding route 10.9.0.0/16 via 10.2.0.2".
    pub what: String,
    /// The errno (positive), 0 when the failure was not the kernel's answer.
    pub errno: i32,
    /// The kernel's extended ACK message, when it gave one.
    pub detail: Option<String>,
}

impl NlError {
    pub fn io(what: impl Into<String>, e: std::io::Error) -> Self {
        NlError {
            what: what.into(),
            errno: e.raw_os_error().unwrap_or(0),
            detail: if e.raw_os_error().is_none() {
                Some(e.to_string())
            } else {
                None
            },
        }
    }
}

impl fmt::Display for NlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.what)?;
        if self.errno != 0 {
            write!(f, "{}", std::io::Error::from_raw_os_error(self.errno))?;
            if let Some(d) = &self.detail {
                write!(f, " ({d})")?;
            }
            Ok(())
        } else {
            f.write_str(self.detail.as_deref().unwrap_or("failed"))
        }
    }
}

/// One netlink message as it goes on the wire: a header with `flags` and
/// `seq` (the length filled in), then `msg`.
pub fn encode(flags: u16, seq: u32, msg: RouteNetlinkMessage) -> Vec<u8> {
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
    let mut hdr = NetlinkHeader::default();
    hdr.flags = flags;
    hdr.sequence_number = seq;
    let mut nl = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(msg));
    nl.finalize();
    let mut buf = vec![0; nl.buffer_len()];
    nl.serialize(&mut buf);
    buf
}

/// Request flags, spelt once.
pub mod flags {
    use netlink_packet_core::*;
    /// Create, or replace what is there: re-applying a config is safe.
    pub const CREATE_REPLACE: u16 = NLM_F_CREATE | NLM_F_REPLACE;
    /// Create; an identical object already there is an EEXIST the caller may accept.
    pub const CREATE_EXCL: u16 = NLM_F_CREATE | NLM_F_EXCL;
    pub const DUMP: u16 = NLM_F_DUMP;
    pub const NONE: u16 = 0;
}

/// The seam between the apply code and the kernel, so tests can record the
/// exact messages without root.
pub trait Netlink {
    /// Sends one request and waits for its ACK; returns the messages the
    /// kernel answered with (the entries of a dump).
    fn request(
        &mut self,
        what: &dyn Fn() -> String,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NlError>;

    /// Like [`Netlink::request`], but hands every reply to `each` as raw
    /// bytes (netlink header included) instead of decoding it. The generic
    /// decoder is the costliest code on a TCG guest's boot path, and a
    /// link dump needs three fields of each reply. The default re-encodes
    /// what `request` decoded, so fakes only implement `request`.
    fn request_raw(
        &mut self,
        what: &dyn Fn() -> String,
        msg: RouteNetlinkMessage,
        flags: u16,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<(), NlError> {
        for m in self.request(what, msg, flags)? {
            each(&encode(0, 0, m));
        }
        Ok(())
    }

    /// Sends pre-encoded messages without per-message ACKs, then waits for a
    /// final ACK; returns `(index, errno, detail)` for every message the
    /// kernel refused. `encode(i, seq, buf)` appends message `i` to `buf`.
    fn bulk(
        &mut self,
        count: usize,
        encode: &mut dyn FnMut(usize, u32, &mut Vec<u8>),
    ) -> Result<Vec<(usize, i32, Option<String>)>, NlError>;
}
