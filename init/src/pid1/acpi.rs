//! The ACPI power button, as qemu's `system_powerdown` presses it: an evdev
//! device named "Power Button" that reports KEY_POWER.

use std::fs::File;
use std::io::Read;
use std::path::Path;

const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// struct input_event on 64-bit: timeval (16) + type (2) + code (2) + value (4).
const EVENT_SIZE: usize = 24;

const INPUT_DEVICES: &str = "/proc/bus/input/devices";

/// Opens every input device that calls itself a power button. One read of
/// the input devices table, not a walk through sysfs: on a TCG guest every
/// file opened on the boot path counts.
pub fn open_power_buttons() -> Vec<File> {
    let table = std::fs::read_to_string(INPUT_DEVICES).unwrap_or_default();
    let mut out = Vec::new();
    for ev in power_button_events(&table) {
        match File::open(Path::new("/dev/input").join(ev)) {
            Ok(f) => out.push(f),
            Err(err) => log::warn!("power button /dev/input/{ev}: {err}"),
        }
    }
    out
}

/// The `eventN` handlers of the devices named "Power Button" in a
/// `/proc/bus/input/devices` table (blocks of `N: Name=".."`,
/// `H: Handlers=kbd event0` lines, separated by blank lines).
pub fn power_button_events(table: &str) -> Vec<&str> {
    table
        .split("\n\n")
        .filter(|block| block.lines().any(|l| l == "N: Name=\"Power Button\""))
        .flat_map(|block| {
            block
                .lines()
                .filter_map(|l| l.strip_prefix("H: Handlers="))
                .flat_map(str::split_whitespace)
                .filter(|h| h.starts_with("event"))
        })
        .collect()
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
    fn finds_the_power_buttons_event_device() {
        let table = "I: Bus=0019 Vendor=0000 Product=0001 Version=0000
N: Name=\"Power Button\"
P: Phys=LNXPWRBN/button/input0
S: Sysfs=/devices/LNXSYSTM:00/LNXPWRBN:00/input/input0
U: Uniq=
H: Handlers=kbd event0 
B: PROP=0
B: EV=3
B: KEY=10000000000000 0

I: Bus=0011 Vendor=0001 Product=0001 Version=ab41
N: Name=\"AT Translated Set 2 keyboard\"
H: Handlers=sysrq kbd event1 leds 
B: EV=120013

I: Bus=0019 Vendor=0000 Product=0001 Version=0000
N: Name=\"Power Button\"
H: Handlers=event2
";
        assert_eq!(super::power_button_events(table), ["event0", "event2"]);
        assert!(super::power_button_events("").is_empty());
    }

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
