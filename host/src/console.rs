//! Waiting for a router's READY line on its console log, shared by the
//! platforms whose router runs in another process (LXC, qemu).

use crate::HostError;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// True when `cmd` is an executable on the PATH.
pub fn have(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The rest of the first complete line that starts with `tag`. A line
/// still being written (no newline yet) does not count: qemu and LXC write
/// the console in chunks, and half a READY line is not valid JSON.
fn tagged<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(tag))
}

/// Every complete line of `log` tagged `tag`, parsed (later lines last).
pub fn all_tagged(log: &Path, tag: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix(tag))
        .filter_map(|j| serde_json::from_str(j.trim()).ok())
        .collect()
}

/// Waits up to `timeout` for the first line of `log` tagged `tag`.
pub fn wait_tagged(log: &Path, tag: &str, timeout: Duration) -> Option<serde_json::Value> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = all_tagged(log, tag).into_iter().next() {
            return Some(v);
        }
        if t0.elapsed() > timeout || crate::interrupt::interrupted() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `log` until the router prints TINYVR-READY (its json) or
/// TINYVR-ERROR (its message, as the error), `owner` exits (`on_exit`
/// explains it) or `timeout` passes. `what` names the router in errors.
pub fn wait_ready(
    log: &Path,
    owner: &mut Child,
    timeout: Duration,
    what: &str,
    on_exit: &dyn Fn(std::process::ExitStatus) -> String,
) -> Result<serde_json::Value, HostError> {
    let mut exited = || owner.try_wait().ok().flatten().map(on_exit);
    wait_ready_while(log, &mut exited, timeout, what)
}

/// As [`wait_ready`] for a router whose process is not our child (a
/// libvirt domain's qemu): `exited` says why it is gone, None while it
/// runs.
pub fn wait_ready_while(
    log: &Path,
    exited: &mut dyn FnMut() -> Option<String>,
    timeout: Duration,
    what: &str,
) -> Result<serde_json::Value, HostError> {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(j) = tagged(&text, "TINYVR-READY ") {
            return serde_json::from_str(j)
                .map_err(|e| HostError::Other(format!("{what}: bad READY line: {e}")));
        }
        if let Some(j) = tagged(&text, "TINYVR-ERROR ") {
            let v: serde_json::Value = serde_json::from_str(j).unwrap_or_default();
            return Err(HostError::Other(format!(
                "{what}: {}",
                v["error"].as_str().unwrap_or(j)
            )));
        }
        if let Some(why) = exited() {
            return Err(HostError::Other(format!(
                "{what}: {why}; console:\n{}",
                tail(&text, 15)
            )));
        }
        if crate::interrupt::interrupted() {
            return Err(HostError::Other(format!(
                "{what}: interrupted before READY"
            )));
        }
        if t0.elapsed() > timeout {
            return Err(HostError::Other(format!(
                "no TINYVR-READY from {what} within {timeout:?}; console:\n{}",
                tail(&text, 15)
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_complete_lines_count() {
        assert_eq!(
            super::tagged("boot\nTINYVR-READY {\"a\":", "TINYVR-READY "),
            None
        );
        assert_eq!(
            super::tagged("boot\nTINYVR-READY {}\r\nmore", "TINYVR-READY "),
            Some("{}")
        );
    }
}
