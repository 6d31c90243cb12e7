//! The few fields the read-back needs, taken straight from raw rtnetlink
//! replies (a decoder per message would dominate a million-route dump).

/// The nlmsghdr before every family header.
pub const HDR: usize = 16;

pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The attributes (type, payload) of one message, starting `family_hdr`
/// bytes after the nlmsghdr; stops at the first malformed one.
pub fn attrs(b: &[u8], family_hdr: usize) -> Attrs<'_> {
    let end = u32_at(b, 0).map_or(b.len(), |l| (l as usize).min(b.len()));
    Attrs {
        b: &b[..end],
        at: HDR + family_hdr,
    }
}

pub struct Attrs<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let len = u16_at(self.b, self.at)? as usize;
        // The top two bits are the nested and byte-order flags.
        let kind = u16_at(self.b, self.at + 2)? & 0x3fff;
        if len < 4 || self.at + len > self.b.len() {
            return None;
        }
        let value = &self.b[self.at + 4..self.at + len];
        self.at += len.next_multiple_of(4);
        Some((kind, value))
    }
}

/// An address attribute as an integer (IPv4 or IPv6, network order).
pub fn bits(v: &[u8]) -> Option<u128> {
    match v.len() {
        4 => Some(u128::from(u32::from_be_bytes(v.try_into().ok()?))),
        16 => Some(u128::from_be_bytes(v.try_into().ok()?)),
        _ => None,
    }
}

pub fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

/// A NUL-terminated string attribute.
pub fn str_of(v: &[u8]) -> &str {
    let v = v.split(|&c| c == 0).next().unwrap_or_default();
    std::str::from_utf8(v).unwrap_or_default()
}
