//! The one lifecycle every platform (netns, LXC, VM) goes through, so the
//! ownership rules of [`crate::state`] are applied in one place:
//!
//! - `up` takes the router's name exclusively (a second `up` of that name
//!   fails before it makes anything), runs the platform's steps, each of
//!   which records what it makes, and on any failure removes exactly that;
//! - `down` takes the record's lock, lets the platform stop its processes
//!   gently, then removes what the record says tinyvr made, keeping what
//!   could not be removed for a retry.

use crate::state::State;
use crate::HostError;

/// Brings router `name` up on `platform` through `steps`.
pub fn up<T>(
    name: &str,
    platform: &str,
    steps: impl FnOnce(&mut State) -> Result<T, HostError>,
) -> Result<T, HostError> {
    up_with(name, platform, true, steps)
}

/// As [`up`]; with `interruptible` false a Ctrl-C that came during the
/// steps does not undo them once they succeeded (a migration's
/// destination, which by then runs the guest: the steps handle Ctrl-C
/// themselves while undoing is still possible).
pub fn up_with<T>(
    name: &str,
    platform: &str,
    interruptible: bool,
    steps: impl FnOnce(&mut State) -> Result<T, HostError>,
) -> Result<T, HostError> {
    let mut state = State::create(name, platform)?;
    let r = steps(&mut state).and_then(|v| {
        // Ctrl-C during the last steps: the user no longer wants it up.
        if interruptible && crate::interrupt::interrupted() {
            Err(HostError::Other(format!("router {name}: interrupted")))
        } else {
            Ok(v)
        }
    });
    match r {
        Ok(v) => {
            state.finish()?;
            Ok(v)
        }
        Err(e) => {
            if let Err(t) = state.teardown() {
                log::error!("{t}");
            }
            Err(e)
        }
    }
}

/// Takes router `name` down: `stop` ends its processes the platform's way
/// (and returns notes for the user), then everything recorded is removed.
pub fn down(
    name: &str,
    platform: &str,
    stop: impl FnOnce(&State) -> Vec<String>,
) -> Result<Vec<String>, HostError> {
    let state = State::load(name)?;
    if let Some(b) = state
        .builder
        .filter(|b| b.alive() && b.pid != std::process::id())
    {
        return Err(HostError::Other(format!(
            "router {name} is still being brought up by pid {}: wait for it, or stop it first",
            b.pid
        )));
    }
    if state.platform != platform {
        return Err(HostError::Other(format!(
            "router {name} runs on {}, not {platform}: use tinyvr {} down {name}",
            state.platform, state.platform
        )));
    }
    let notes = stop(&state);
    state.teardown()?;
    Ok(notes)
}
