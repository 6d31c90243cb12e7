//! The ACPI power button, as qemu's `system_powerdown` presses it: an evdev
//! device named "Power Button" that reports KEY_POWER.

use std::fs::File;
use std::io::Read;
use std::path::Path;

const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// struct input_event on 64-bit: timeval (16) + type (2) + code (2) + value (4).
const EVENT_SIZE: usize = 24;

/// Opens every input device that calls itself a power button.
pub fn open_power_buttons() -> Vec<File> {
    let Ok(dir) = std::fs::read_dir("/sys/class/input") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("event") {
            continue;
        }
        let dev_name = std::fs::read_to_string(e.path().join("device/name")).unwrap_or_default();
        if dev_name.trim() == "Power Button" {
            match File::open(Path::new("/dev/input").join(&name)) {
                Ok(f) => out.push(f),
                Err(err) => log::warn!("power button /dev/input/{name}: {err}"),
            }
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
