//! Installs generated routes in bulk: one template message per range,
//! patched in place per route (destination and sequence number), many per
//! sendmsg, no per-route ACK. Errors still come back, each tagged with the
//! sequence number of the route it refused.
//!
//! Each route carries its own gateway and device rather than pointing at a
//! shared nexthop object: the kernel flushes a nexthop object and all its
//! routes when the device loses carrier, and a router's table must survive
//! a flap of its links.

use super::msg;
use super::{flags, Netlink, NlError};
use netlink_packet_core::NLM_F_REQUEST;
use netlink_packet_route::RouteNetlinkMessage;
use tinyvr_config::{values::to_bits, RouteRange};

/// Offsets in an encoded route message (nlmsghdr 16 + rtmsg 12 + rtattr 4):
/// the destination attribute is always first (see `msg::route_base`).
const SEQ_OFFSET: usize = 8;
const DST_OFFSET: usize = 16 + 12 + 4;

/// The encoded form of route 0 of a range, with the flags of the request.
pub fn template(r: &RouteRange, oif: Option<u32>, delete: bool) -> Vec<u8> {
    let m = msg::range_route(r, 0, oif);
    let (inner, fl) = if delete {
        (RouteNetlinkMessage::DelRoute(m), flags::NONE)
    } else {
        (RouteNetlinkMessage::NewRoute(m), flags::CREATE_REPLACE)
    };
    super::encode(NLM_F_REQUEST | fl, 0, inner)
}

/// Appends route `i` of the range to `out`, from the template.
pub fn encode(r: &RouteRange, tpl: &[u8], i: u32, seq: u32, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(tpl);
    let m = &mut out[start..];
    m[SEQ_OFFSET..SEQ_OFFSET + 4].copy_from_slice(&seq.to_ne_bytes());
    let bits = to_bits(r.prefix(i).addr);
    if r.first.is_ipv4() {
        m[DST_OFFSET..DST_OFFSET + 4].copy_from_slice(&(bits as u32).to_be_bytes());
    } else {
        m[DST_OFFSET..DST_OFFSET + 16].copy_from_slice(&bits.to_be_bytes());
    }
}

/// Installs every route of range number `n` of the config; `oif` is the
/// device of its gateway. On any refusal the whole range is removed again,
/// so a range is either fully there or not at all.
pub fn install(
    nl: &mut dyn Netlink,
    n: usize,
    r: &RouteRange,
    oif: Option<u32>,
) -> Result<u32, NlError> {
    let what = || format!("adding route_range[{n}] {} x {}", r.first, r.count);
    let tpl = template(r, oif, false);
    let failed = nl.bulk(r.count as usize, &mut |i, seq, out| {
        encode(r, &tpl, i as u32, seq, out)
    })?;
    if let Some((i, errno, detail)) = failed.first().cloned() {
        // Best effort: routes that were refused are not there to delete.
        let del = template(r, oif, true);
        let _ = nl.bulk(r.count as usize, &mut |i, seq, out| {
            encode(r, &del, i as u32, seq, out)
        });
        return Err(NlError {
            what: format!(
                "{} (route {i}: {}; {} refused in all, range removed)",
                what(),
                r.prefix(i as u32),
                failed.len()
            ),
            errno,
            detail,
        });
    }
    Ok(r.count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges() -> Vec<RouteRange> {
        tinyvr_config::load(include_str!("../../../examples/router.toml"))
            .unwrap()
            .route_ranges
    }

    /// The patched template must equal a message built from scratch.
    #[test]
    fn patched_template_equals_a_fresh_message() {
        for r in ranges() {
            let tpl = template(&r, Some(3), false);
            for i in [0, 1, 57, r.count - 1] {
                let mut got = Vec::new();
                encode(&r, &tpl, i, 1000 + i, &mut got);
                let inner = RouteNetlinkMessage::NewRoute(msg::range_route(&r, i, Some(3)));
                let want =
                    crate::netlink::encode(NLM_F_REQUEST | flags::CREATE_REPLACE, 1000 + i, inner);
                assert_eq!(got, want, "route {i} of {}", r.first);
            }
        }
    }

    /// A fake kernel that refuses one index, to check the rollback.
    struct Refuse {
        refuse: usize,
        sent: Vec<Vec<u8>>,
    }

    impl Netlink for Refuse {
        fn request(
            &mut self,
            _: &dyn Fn() -> String,
            _: RouteNetlinkMessage,
            _: u16,
        ) -> Result<Vec<RouteNetlinkMessage>, NlError> {
            unreachable!()
        }
        fn bulk(
            &mut self,
            count: usize,
            encode: &mut dyn FnMut(usize, u32, &mut Vec<u8>),
        ) -> Result<Vec<(usize, i32, Option<String>)>, NlError> {
            let mut buf = Vec::new();
            for i in 0..count {
                encode(i, i as u32, &mut buf);
            }
            self.sent.push(buf);
            // Call 1 sends the routes, call 2 removes them again.
            Ok(if self.sent.len() == 1 {
                vec![(self.refuse, libc::ENETUNREACH, None)]
            } else {
                vec![]
            })
        }
    }

    #[test]
    fn a_refused_route_removes_the_whole_range() {
        let r = &ranges()[0];
        let mut nl = Refuse {
            refuse: 5,
            sent: vec![],
        };
        let e = install(&mut nl, 0, r, Some(3)).unwrap_err();
        assert_eq!(e.errno, libc::ENETUNREACH);
        assert!(
            e.what
                .contains("route_range[0] 16.0.0.0/24 x 1000 (route 5: 16.0.5.0/24"),
            "{}",
            e.what
        );
        assert_eq!(nl.sent.len(), 2, "the routes, then their removal");
        // RTM_DELROUTE is 25, at bytes 4..6 of each message.
        assert_eq!(u16::from_ne_bytes([nl.sent[1][4], nl.sent[1][5]]), 25);
    }
}
