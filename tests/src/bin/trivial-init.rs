//! The boot benchmark's baseline PID 1: mounts /proc, prints the guest
//! uptime on one line and powers off. Whatever tinyvr-init takes beyond
//! this is what tinyvr adds to a boot.

use std::io::Write;

fn main() {
    let _ = nix::mount::mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    let up = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let secs: f64 = up
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1.0);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "TRIVIAL-READY {{\"uptime_ms\":{}}}", secs * 1000.0);
    let _ = out.flush();
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
