//! The ACPI power button, as qemu's `system_powerdown` presses it: an evdev
//! device that reports KEY_POWER.

use std::fs::File;
use std::io::Read;

const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// struct input_event on 64-bit: timeval (16) + type (2) + code (2) + value (4).
const EVENT_SIZE: usize = 24;
/// More event devices than any router guest has.
const MAX_EVENT_DEVICES: usize = 32;

/// Opens every input event device, `/dev/input/event0` up to the first
/// number that does not exist; a KEY_POWER press on any of them powers
/// off. Not looked up by name: the image's kernel has no keyboard or mouse,
/// so the button is all there is, and on a TCG guest reading the input
/// devices table cost more than the button itself.
pub fn open_power_buttons() -> Vec<File> {
    let mut out = Vec::new();
    for n in 0..MAX_EVENT_DEVICES {
        let path = format!("/dev/input/event{n}");
        match File::open(&path) {
            Ok(f) => out.push(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => log::warn!("power button {path}: {e}"),
        }
    }
    out
}

/// Reads what is pending on a button; true when the power key was pressed.
pub fn pressed(f: &mut File) -> bool {
    let mut buf = [0u8; EVENT_SIZE * 8];
    let Ok(n) = f.read(&mut buf) else {
        return false;
    };
    buf[..n].chunks_exact(EVENT_SIZE).any(is_power_press)
}

pub fn is_power_press(ev: &[u8]) -> bool {
    let kind = u16::from_ne_bytes([ev[16], ev[17]]);
    let code = u16::from_ne_bytes([ev[18], ev[19]]);
    let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
    kind == EV_KEY && code == KEY_POWER && value == 1
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_a_key_press() {
        let mut ev = [0u8; 24];
        ev[16..18].copy_from_slice(&1u16.to_ne_bytes());
        ev[18..20].copy_from_slice(&116u16.to_ne_bytes());
        ev[20..24].copy_from_slice(&1i32.to_ne_bytes());
        assert!(super::is_power_press(&ev));
        ev[20..24].copy_from_slice(&0i32.to_ne_bytes());
        assert!(!super::is_power_press(&ev), "key release is not a press");
    }
}
