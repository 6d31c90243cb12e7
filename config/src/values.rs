//! Small value types that parse from the strings users write, with errors
//! that quote the value and say what was expected.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Deserialize any `FromStr<Err = String>` type from a TOML string.
macro_rules! deserialize_from_str {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

/// Linux's IFNAMSIZ less the terminating NUL.
pub const IFNAME_MAX: usize = 15;

/// A kernel interface name: 1 to 15 bytes, no `/`, `:` or white space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfName(String);

impl IfName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IfName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("expected an interface name, got an empty string".into());
        }
        if s.len() > IFNAME_MAX {
            return Err(format!(
                "interface name {s:?} is {} bytes, the kernel allows at most {IFNAME_MAX}",
                s.len()
            ));
        }
        if s == "." || s == ".." || s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
            return Err(format!(
                "interface name {s:?} is not allowed: no '/', ':', white space, '.' or '..'"
            ));
        }
        Ok(IfName(s.to_string()))
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
deserialize_from_str!(IfName);

/// An Ethernet MAC address, `52:54:00:00:01:01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected a MAC address like 52:54:00:00:01:01, got {s:?}");
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}
deserialize_from_str!(MacAddr);

/// A PCI address `domain:bus:slot.function`, normalised to `0000:00:04.0`
/// (the form sysfs uses); `00:04.0` is taken as domain 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PciAddr(String);

impl PciAddr {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PciAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected a PCI address like 0000:00:04.0, got {s:?}");
        let full = if s.matches(':').count() == 1 {
            format!("0000:{s}")
        } else {
            s.to_string()
        };
        let (dbs, func) = full.rsplit_once('.').ok_or_else(bad)?;
        let f: Vec<&str> = dbs.split(':').collect();
        let hex = |p: &str, len: usize| p.len() == len && p.chars().all(|c| c.is_ascii_hexdigit());
        if f.len() != 3 || !hex(f[0], 4) || !hex(f[1], 2) || !hex(f[2], 2) {
            return Err(bad());
        }
        let slot = u8::from_str_radix(f[2], 16).map_err(|_| bad())?;
        if slot > 0x1f || func.len() != 1 || !matches!(func.as_bytes()[0], b'0'..=b'7') {
            return Err(bad());
        }
        Ok(PciAddr(full.to_ascii_lowercase()))
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
deserialize_from_str!(PciAddr);

/// An IP prefix. As an interface address (`10.1.0.1/24`) the host part is
/// the address; as a route destination the host part must be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    pub fn max_len(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }
    /// The address with the host bits cleared.
    pub fn network(&self) -> IpAddr {
        from_bits(self.addr, to_bits(self.addr) & mask(self.addr, self.len))
    }
    pub fn has_host_bits(&self) -> bool {
        self.network() != self.addr
    }
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && to_bits(ip) & mask(ip, self.len) == to_bits(self.network())
    }
}

/// The address as an integer, so prefixes can be counted and stepped.
pub fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The inverse of [`to_bits`] in the family of `like`.
pub fn from_bits(like: IpAddr, bits: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((bits as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(bits.into()),
    }
}

/// The netmask of a /`len` in the family of `like`, as an integer. Every
/// shift stays below 128: /0 is no shift at all, /32 and /128 shift by 96
/// and 0, and a length past the family's width (only a `Prefix` built in
/// code can have one) counts as the full width.
fn mask(like: IpAddr, len: u8) -> u128 {
    let width: u32 = if like.is_ipv4() { 32 } else { 128 };
    let len = u32::from(len).min(width);
    if len == 0 {
        return 0;
    }
    (u128::MAX << (128 - len)) >> (128 - width)
}

impl FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected an IP prefix like 10.1.0.0/24 or fd00::/64, got {s:?}");
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        let p = Prefix { addr, len };
        if len > p.max_len() {
            return Err(format!(
                "prefix length {len} in {s:?} is longer than {}",
                p.max_len()
            ));
        }
        Ok(p)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}
deserialize_from_str!(Prefix);

/// A list of CPUs as Linux writes it: `0-3,6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<u32>);

/// CPU numbers above this are rejected; far more than any host here.
const CPU_MAX: u32 = 4095;

impl CpuList {
    /// The hex mask sysfs files like `rps_cpus` take: 32-bit words separated
    /// by commas, most significant first.
    pub fn to_mask(&self) -> String {
        let top = self.0.iter().copied().max().unwrap_or(0);
        let mut words = vec![0u32; top as usize / 32 + 1];
        for &c in &self.0 {
            words[c as usize / 32] |= 1 << (c % 32);
        }
        let parts: Vec<String> = words.iter().rev().map(|w| format!("{w:08x}")).collect();
        parts.join(",")
    }

    /// Reads a mask back as sysfs prints it (`3`, `00000002,00000001`):
    /// the CPUs set, ascending. None if it is not such a mask.
    pub fn from_mask(mask: &str) -> Option<CpuList> {
        let mut cpus = Vec::new();
        for (i, word) in mask.trim().rsplit(',').enumerate() {
            let w = u32::from_str_radix(word, 16).ok()?;
            cpus.extend(
                (0..32)
                    .filter(|b| w & (1 << b) != 0)
                    .map(|b| i as u32 * 32 + b),
            );
        }
        cpus.sort_unstable();
        Some(CpuList(cpus))
    }

    /// The same CPUs, whatever order or repeats the list was written with.
    pub fn same_cpus(&self, other: &CpuList) -> bool {
        let norm = |c: &CpuList| {
            let mut v = c.0.clone();
            v.sort_unstable();
            v.dedup();
            v
        };
        norm(self) == norm(other)
    }
}

impl FromStr for CpuList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected a CPU list like \"0-3,6\", got {s:?}");
        let mut cpus = Vec::new();
        for part in s.split(',') {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim().parse(), b.trim().parse()),
                None => (part.trim().parse(), part.trim().parse()),
            };
            let (lo, hi): (u32, u32) = (lo.map_err(|_| bad())?, hi.map_err(|_| bad())?);
            if lo > hi || hi > CPU_MAX {
                return Err(bad());
            }
            cpus.extend(lo..=hi);
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(CpuList(cpus))
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: Vec<String> = self.0.iter().map(|c| c.to_string()).collect();
        f.write_str(&s.join(","))
    }
}
deserialize_from_str!(CpuList);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_network_and_contains() {
        let p: Prefix = "10.1.2.3/16".parse().unwrap();
        assert_eq!(p.network().to_string(), "10.1.0.0");
        assert!(p.has_host_bits());
        assert!(p.contains("10.1.200.1".parse().unwrap()));
        assert!(!p.contains("10.2.0.1".parse().unwrap()));
        assert!(!p.contains("fd00::1".parse().unwrap()));
        let z: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(z.contains("1.2.3.4".parse().unwrap()));
        let v6: Prefix = "fd00:1::1/64".parse().unwrap();
        assert_eq!(v6.network().to_string(), "fd00:1::");
        assert!(v6.contains("fd00:1::99".parse().unwrap()));
    }

    #[test]
    fn masks_at_both_ends_of_each_family() {
        let v4: IpAddr = "10.0.0.0".parse().unwrap();
        let v6: IpAddr = "fd00::".parse().unwrap();
        assert_eq!(mask(v4, 0), 0);
        assert_eq!(mask(v4, 1), 0x8000_0000);
        assert_eq!(mask(v4, 32), u32::MAX as u128);
        assert_eq!(mask(v6, 0), 0);
        assert_eq!(mask(v6, 1), 1 << 127);
        assert_eq!(mask(v6, 127), u128::MAX - 1);
        assert_eq!(mask(v6, 128), u128::MAX);
        // Longer than the family (only a Prefix built in code): the full width.
        assert_eq!(mask(v4, 200), u32::MAX as u128);
        assert_eq!(mask(v6, 255), u128::MAX);
        let p = Prefix { addr: v4, len: 40 };
        assert!(!p.has_host_bits());
        assert!(p.contains(v4));
        for s in ["::/0", "::/128", "0.0.0.0/0", "255.255.255.255/32"] {
            let p: Prefix = s.parse().unwrap();
            assert!(!p.has_host_bits(), "{s}");
            assert!(p.contains(p.addr), "{s}");
        }
    }

    #[test]
    fn cpu_list_mask() {
        let c: CpuList = "0-1".parse().unwrap();
        assert_eq!(c.to_mask(), "00000003");
        let c: CpuList = "0,33".parse().unwrap();
        assert_eq!(c.to_mask(), "00000002,00000001");
        assert_eq!(CpuList::from_mask("00000002,00000001\n"), Some(c.clone()));
        assert_eq!(CpuList::from_mask("3"), Some(CpuList(vec![0, 1])));
        assert_eq!(CpuList::from_mask("0"), Some(CpuList(vec![])));
        assert_eq!(CpuList::from_mask("x"), None);
        assert!(CpuList(vec![33, 0, 0]).same_cpus(&c));
        assert!("3-1".parse::<CpuList>().is_err());
        assert!("x".parse::<CpuList>().is_err());
    }

    #[test]
    fn mac_and_pci() {
        let m: MacAddr = "52:54:00:AB:01:01".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:01:01");
        assert!("52:54:00:ab:01".parse::<MacAddr>().is_err());
        assert!("52:54:00:ab:01:1".parse::<MacAddr>().is_err());
        let p: PciAddr = "00:04.0".parse().unwrap();
        assert_eq!(p.as_str(), "0000:00:04.0");
        assert!("0000:00:04".parse::<PciAddr>().is_err());
        assert!("0000:00:20.0".parse::<PciAddr>().is_err());
    }

    #[test]
    fn ifname_limits() {
        assert!("out0".parse::<IfName>().is_ok());
        assert!("a23456789012345".parse::<IfName>().is_ok());
        assert!("a234567890123456".parse::<IfName>().is_err());
        assert!("a/b".parse::<IfName>().is_err());
    }
}
