//! The way down: what PID 1 does at the end, by platform.

use super::source::OnError;
use super::Platform;
use nix::sys::reboot::{reboot, RebootMode};

/// Ends the system: power off / halt / reboot in a VM, exit in a container.
/// Never returns; PID 1 of a VM must not exit (the kernel would panic).
pub fn finish(platform: Platform, how: OnError, code: i32) -> ! {
    nix::unistd::sync();
    if platform == Platform::Container {
        log::info!("exiting with status {code}");
        std::process::exit(code);
    }
    let mode = match how {
        OnError::Poweroff => RebootMode::RB_POWER_OFF,
        OnError::Halt => RebootMode::RB_HALT_SYSTEM,
        OnError::Reboot => RebootMode::RB_AUTOBOOT,
    };
    log::info!("{how:?}");
    let Err(e) = reboot(mode);
    log::error!("reboot({mode:?}) failed: {e}; waiting forever");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
