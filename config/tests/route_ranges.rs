//! Route ranges at every prefix length of both families: a range that
//! exactly fills what is left of the address space is accepted and expands
//! to its last prefix, one more is refused with the field named and the
//! room there is. Run in release too (`cargo test --release`): there
//! overflow wraps silently instead of panicking.

use std::net::IpAddr;
use tinyvr_config::{load, values::from_bits, values::to_bits, Prefix};
use tinyvr_tests::bad_cases::BASE;

/// Prefixes counted back from the end of the space (fewer when the length
/// has fewer): large enough that the step times the count is real work.
const TAIL: u128 = 70_000;

fn with_range(first: &str, count: u64, via: &str) -> String {
    format!("{BASE}\n[[route_range]]\nfirst = \"{first}\"\ncount = {count}\nvia = \"{via}\"\n")
}

/// The last `k` prefixes of length `len` in the family of `like`: the first
/// of them and `k`.
fn tail(like: IpAddr, len: u32) -> (Prefix, u128) {
    let width = if like.is_ipv4() { 32 } else { 128 };
    let step = width - len;
    // The index of the last prefix of this length: 2^len - 1.
    let last = if len == 0 {
        0
    } else {
        u128::MAX >> (128 - len)
    };
    let k = last.min(TAIL - 1) + 1;
    let idx = last - (k - 1);
    // idx is 0 whenever len is 0, so the shift is below 128 when it happens.
    let bits = if idx == 0 { 0 } else { idx << step };
    let first = Prefix {
        addr: from_bits(like, bits),
        len: len as u8,
    };
    (first, k)
}

#[test]
fn every_prefix_length_fills_the_space_exactly() {
    let families: [(IpAddr, u32, &str); 2] = [
        ("0.0.0.0".parse().unwrap(), 32, "10.2.0.2"),
        ("::".parse().unwrap(), 128, "fd00:1::2"),
    ];
    let mut failures = Vec::new();
    for (like, width, via) in families {
        for len in 0..=width {
            let (first, k) = tail(like, len);
            let k = u64::try_from(k).unwrap();
            match load(&with_range(&first.to_string(), k, via)) {
                Ok(cfg) => {
                    let r = &cfg.route_ranges[0];
                    assert_eq!(r.prefix(0), first);
                    let last = r.prefix(u32::try_from(k - 1).unwrap());
                    let top = if like.is_ipv4() {
                        u128::from(u32::MAX)
                    } else {
                        u128::MAX
                    };
                    // The last prefix is the last of the space: all ones in
                    // its network bits (none at /0, where the shift would
                    // be the whole width).
                    let s = width - len;
                    let want = if len == 0 { 0 } else { (top >> s) << s };
                    if to_bits(last.addr) != want || last.len != first.len {
                        failures.push(format!("{first} x {k}: last prefix {last}"));
                    }
                }
                Err(e) => failures.push(format!("{first} x {k} refused: {e}")),
            }
            match load(&with_range(&first.to_string(), k + 1, via)) {
                Ok(_) => failures.push(format!("{first} x {} accepted", k + 1)),
                Err(e) => {
                    let want = format!("run past the end of the address space (room for {k})");
                    let hit =
                        e.0.iter()
                            .any(|e| e.path == "route_range[0].count" && e.message.contains(&want));
                    if !hit {
                        failures.push(format!("{first} x {}: {e}", k + 1));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_whole_space_at_zero_length_holds_one_prefix() {
    for (first, via) in [("::/0", "fd00:1::2"), ("0.0.0.0/0", "10.2.0.2")] {
        let cfg = load(&with_range(first, 1, via)).unwrap();
        assert_eq!(cfg.route_ranges[0].prefix(0).to_string(), first);
    }
    // What `tinyvr check` prints for it (and what the README quotes).
    let e = load(&with_range("::/0", 2, "fd00:1::2")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "route_range[0].count: 2 prefixes of length /0 starting at ::/0 run past the end of the address space (room for 1)"
    );
    let e = load(&with_range("0.0.0.0/0", 2, "10.2.0.2")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "route_range[0].count: 2 prefixes of length /0 starting at 0.0.0.0/0 run past the end of the address space (room for 1)"
    );
}

#[test]
fn ranges_from_the_bottom_fit_while_the_space_is_larger_than_a_count() {
    // 2^32 - 1 prefixes, the largest count, fit from the start of any space
    // that holds at least that many.
    let last = u128::from(u32::MAX - 1);
    for (first, via, want) in [
        ("0.0.0.0/32", "10.2.0.2", last),
        ("::/32", "fd00:1::2", last << 96),
        ("::/128", "fd00:1::2", last),
    ] {
        let cfg = load(&with_range(first, u64::from(u32::MAX), via)).unwrap();
        let p = cfg.route_ranges[0].prefix(u32::MAX - 1);
        assert_eq!(to_bits(p.addr), want, "{first}: {p}");
    }
    // /31 holds 2^31.
    let e = load(&with_range("0.0.0.0/31", u64::from(u32::MAX), "10.2.0.2")).unwrap_err();
    assert!(e.to_string().contains("(room for 2147483648)"), "{e}");
}

#[test]
fn a_prefix_with_host_bits_is_named_and_does_not_overflow() {
    // Host bits are an error of their own; the room is counted from the
    // address as written and nothing wraps.
    let e = load(&with_range("ffff::1/0", 1, "fd00:1::2")).unwrap_err();
    assert_eq!(e.first().path, "route_range[0].first");
    let e = load(&with_range("255.255.255.255/1", 2, "10.2.0.2")).unwrap_err();
    let paths: Vec<&str> = e.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["route_range[0].first", "route_range[0].count"]);
}

#[test]
#[should_panic(expected = "past the end of the address space")]
fn expanding_past_a_validated_range_panics_instead_of_wrapping() {
    let cfg = load(&with_range("::/0", 1, "fd00:1::2")).unwrap();
    cfg.route_ranges[0].prefix(1);
}

#[test]
fn nexthop_ids_of_every_range_stay_in_their_block() {
    // A bounded number of ranges: 65536 fit.
    let mut cfg = load(&with_range("16.0.0.0/24", 1, "10.2.0.2")).unwrap();
    let r = cfg.route_ranges[0].clone();
    // Disjoint: one /24 each, 16.0.0.0 up to 16.255.255.0.
    cfg.route_ranges = (0..1u32 << 16)
        .map(|i| {
            let mut r = r.clone();
            r.first = format!("16.{}.{}.0/24", i >> 8, i & 255).parse().unwrap();
            r
        })
        .collect();
    cfg.validate().unwrap();
    let mut more = cfg.route_ranges[0].clone();
    more.first = "17.0.0.0/24".parse().unwrap();
    cfg.route_ranges.push(more);
    let e = cfg.validate().unwrap_err();
    assert_eq!(e.first().path, "route_range");
    assert!(e.first().message.contains("at most 65536"), "{e}");
}

/// `index_of` answers membership by arithmetic, at both ends of a range,
/// between its prefixes, and across table/metric/length/family; ranges that
/// share a prefix overlap, neighbours do not.
#[test]
fn membership_and_overlap_by_arithmetic() {
    let text = format!(
        "{BASE}\n[[route_range]]\nfirst = \"16.0.0.0/24\"\ncount = 1000\nvia = \"10.2.0.2\"\n\
         [[route_range]]\nfirst = \"fd00:9::/64\"\ncount = 3\nvia = \"fd00:1::2\"\n"
    );
    let cfg = load(&text).unwrap();
    let (v4, v6) = (&cfg.route_ranges[0], &cfg.route_ranges[1]);
    let p = |s: &str| s.parse::<Prefix>().unwrap();
    assert_eq!(v4.index_of(254, &p("16.0.0.0/24"), 0), Some(0));
    assert_eq!(v4.index_of(254, &p("16.0.3.0/24"), 0), Some(3));
    assert_eq!(v4.index_of(254, &p("16.3.231.0/24"), 0), Some(999));
    assert_eq!(v4.index_of(254, &p("16.3.232.0/24"), 0), None, "one past");
    assert_eq!(
        v4.index_of(254, &p("15.255.255.0/24"), 0),
        None,
        "one before"
    );
    assert_eq!(v4.index_of(254, &p("16.0.3.0/25"), 0), None, "length");
    assert_eq!(v4.index_of(100, &p("16.0.3.0/24"), 0), None, "table");
    assert_eq!(v4.index_of(254, &p("16.0.3.0/24"), 5), None, "metric");
    // The kernel stores an IPv6 route without a metric at 1024.
    assert_eq!(v6.index_of(254, &p("fd00:9:0:2::/64"), 1024), Some(2));
    assert_eq!(v6.index_of(254, &p("fd00:9:0:2::/64"), 0), None);
    let mut other = v4.clone();
    other.first = p("16.3.231.0/24");
    assert!(v4.overlaps(&other) && other.overlaps(v4));
    other.first = p("16.3.232.0/24");
    assert!(!v4.overlaps(&other) && !other.overlaps(v4));
}

/// An overlap is found whatever the ranges' order in the file, and only
/// within one table: a range inside a long earlier one is named, a range
/// past its end and the same prefixes in another table are not.
#[test]
fn overlapping_ranges_are_named_in_any_order() {
    let range = |first: &str, count: u32, table: u32| {
        format!("[[route_range]]\nfirst = \"{first}\"\ncount = {count}\nvia = \"10.2.0.2\"\ntable = {table}\n")
    };
    let text = [
        BASE.to_string(),
        range("16.0.200.0/24", 1, 100),
        range("16.0.0.0/24", 100, 100),
        range("16.0.50.0/24", 1, 100),
        range("16.0.50.0/24", 1, 101),
    ]
    .join("\n");
    let e = load(&text).unwrap_err();
    let got: Vec<_> =
        e.0.iter()
            .map(|e| (e.path.as_str(), e.message.as_str()))
            .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "route_range[2].first");
    assert!(got[0].1.contains("overlap route_range[1]'s"), "{got:?}");
}
