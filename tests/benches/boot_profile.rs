//! Where tinyvr-init's boot time goes under TCG. qemu translates guest code
//! the first time it runs, and on a TCG guest that, not the work itself,
//! is most of the init's start-to-READY. This boots the image once with
//! qemu's `-d in_asm` log (every translated block) and counts the guest
//! instructions translated between the init's exec and READY, by
//! function: the init's from its unstripped build, the kernel's from the
//! System.map kept in the kernel cache.
//!
//!   cargo bench -p tinyvr-tests --bench boot_profile [-- TOP]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tinyvr_tests::*;

/// Guest addresses at or above this are the kernel's.
const KERNEL_BASE: u64 = 0xffff_8000_0000_0000;

/// A sorted symbol table: start address and name.
struct Symbols(Vec<(u64, String)>);

impl Symbols {
    /// From `nm` or System.map lines: "ADDR TYPE NAME", code symbols only.
    fn parse(text: &str) -> Symbols {
        let mut v: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ' ');
                let addr = u64::from_str_radix(f.next()?, 16).ok()?;
                let kind = f.next()?;
                let name = f.next()?;
                "tTwW".contains(kind).then(|| (addr, name.to_string()))
            })
            .collect();
        v.sort();
        Symbols(v)
    }

    fn name(&self, addr: u64) -> &str {
        match self.0.partition_point(|(a, _)| *a <= addr) {
            0 => "?",
            i => &self.0[i - 1].1,
        }
    }

    fn addr(&self, name: &str) -> Option<u64> {
        self.0.iter().find(|(_, n)| n == name).map(|(a, _)| *a)
    }
}

/// Translated blocks from an `-d in_asm` log: (first address, instructions).
fn blocks(log: &Path) -> Vec<(u64, usize)> {
    let text = std::fs::read_to_string(log).expect("in_asm log");
    let mut out: Vec<(u64, usize)> = Vec::new();
    let mut open = false;
    for line in text.lines() {
        if line.starts_with("IN:") {
            open = true;
        } else if let Some(hex) = line.strip_prefix("0x").and_then(|l| l.split(':').next()) {
            let Ok(addr) = u64::from_str_radix(hex, 16) else {
                continue;
            };
            if open {
                out.push((addr, 0));
                open = false;
            }
            if let Some(b) = out.last_mut() {
                b.1 += 1;
            }
        }
    }
    out
}

fn top(counts: HashMap<String, usize>, n: usize) -> Vec<(String, usize)> {
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

/// The crate of a demangled Rust symbol; C code (libc) has no path.
fn crate_of(sym: &str) -> &str {
    let s = sym.trim_start_matches(['<', '&', '(', '[', ' ']);
    let s = s.strip_prefix("mut ").unwrap_or(s);
    match s.find("::") {
        Some(i) if s[..i].chars().all(|c| c.is_alphanumeric() || c == '_') => &s[..i],
        _ => "libc and other C",
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("TOP"))
        .unwrap_or(25);
    if !is_root() || !has_cmd("qemu-system-x86_64") || !has_cmd("nm") {
        eprintln!("skipped: boot_profile: needs root, qemu-system-x86_64 and nm (scripts/setup installs them)");
        std::process::exit(0);
    }
    let dir = Scratch::new("bootprof");
    let img = workspace().join("target/tinyvr-bench-image");
    run(Command::new(bin("tinyvr"))
        .args(["image", "build", "--out"])
        .arg(&img));
    // The same build as the image's init, with its symbols kept.
    let target_dir = workspace().join("target/unstripped");
    run(
        Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
            .current_dir(workspace())
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env("CARGO_PROFILE_RELEASE_STRIP", "false")
            .args(["build", "--quiet", "--release", "--target"])
            .args([
                "x86_64-unknown-linux-gnu",
                "-p",
                "tinyvr-init",
                "--target-dir",
            ])
            .arg(&target_dir),
    );
    let init = target_dir.join("x86_64-unknown-linux-gnu/release/tinyvr-init");
    let user = Symbols::parse(&String::from_utf8_lossy(
        &run(Command::new("nm").args(["-C", "--defined-only"]).arg(&init)).stdout,
    ));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(img.join("manifest.json")).unwrap()).unwrap();
    let map =
        PathBuf::from(manifest["kernel"]["bzimage"].as_str().unwrap()).with_file_name("System.map");
    let kernel = std::fs::read_to_string(&map)
        .ok()
        .map(|t| Symbols::parse(&t));
    if kernel.is_none() {
        println!(
            "note: no {} (a kernel cached before it was kept): kernel code is one bucket; \
             remove the cache entry to rebuild it with its symbols",
            map.display()
        );
    }
    let ird = dir.0.join("init.cpio.gz");
    tinyvr_image::tree::Tree::router(std::fs::read(&init).unwrap())
        .write_cpio_gz(&ird, 0)
        .unwrap();
    let cfg = dir.file("router.toml", BOOT_ROUTER);
    let log = dir.0.join("in_asm.log");

    // norandmaps: the static-PIE init loads at one address, found from _start.
    let mut child = KillOnDrop(
        qemu_by_hand(
            &img.join("bzImage"),
            &ird,
            "console=ttyS0 quiet norandmaps tinyvr.log=warn",
            &cfg,
        )
        .args(["-d", "in_asm", "-D"])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu"),
    );
    let ready = BufReader::new(child.0.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("TINYVR-READY"));
    drop(child);
    assert!(ready, "no TINYVR-READY line");

    let tbs = blocks(&log);
    let exec = tbs
        .iter()
        .position(|(a, _)| (0x1000..KERNEL_BASE).contains(a) && *a > 0xffff_ffff)
        .expect("no user-space block: did the init run?");
    let base = tbs[exec].0 - user.addr("_start").expect("_start in the init");
    let (mut u, mut k) = (HashMap::new(), HashMap::new());
    let mut crates: HashMap<String, usize> = HashMap::new();
    let (mut u_total, mut k_total) = (0, 0);
    for &(addr, insns) in &tbs[exec..] {
        if addr >= KERNEL_BASE {
            k_total += insns;
            let name = kernel.as_ref().map_or("kernel", |s| s.name(addr));
            *k.entry(name.to_string()).or_default() += insns;
        } else {
            u_total += insns;
            let name = user.name(addr.wrapping_sub(base));
            *crates.entry(crate_of(name).to_string()).or_default() += insns;
            *u.entry(name.to_string()).or_default() += insns;
        }
    }
    let boot: usize = tbs[..exec].iter().map(|b| b.1).sum();
    println!(
        "guest instructions translated: {boot} before the init's exec (firmware and kernel boot);"
    );
    println!(
        "from exec to READY: {u_total} in the init (start-up included), {k_total} in the kernel"
    );
    println!("\ninit, by crate:");
    for (c, i) in top(crates, n) {
        println!("{i:>8}  {c}");
    }
    println!("\ninit, by function:");
    for (f, i) in top(u, n) {
        println!("{i:>8}  {}", f.chars().take(140).collect::<String>());
    }
    println!("\nkernel, by function:");
    for (f, i) in top(k, n) {
        println!("{i:>8}  {f}");
    }
    println!(
        "RESULT translated from exec to READY: init {u_total}, kernel {k_total} guest instructions"
    );
}
