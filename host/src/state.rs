//! What tinyvr created for a router, in /run/tinyvr/<name>.json, written
//! after every step so that `down` (and `gc`) can remove it all even after
//! the tool was killed halfway.

use crate::{links, netns, HostError};
use serde::{Deserialize, Serialize};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

pub const DIR: &str = "/run/tinyvr";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// A named network namespace.
    Netns { name: String },
    /// A link tinyvr created, in namespace `netns` (None: the host's).
    Link { name: String, netns: Option<String> },
    /// A host device moved into a namespace; goes back under its old name.
    Moved {
        name: String,
        netns: String,
        back_as: String,
    },
    /// A file tinyvr wrote (the effective router config).
    File { path: PathBuf },
    /// An LXC container and its directory (config, rootfs copy, logs).
    Container { name: String, lxcpath: PathBuf },
    /// A process to kill if it still runs, identified by pid and start time
    /// (so a recycled pid is never hit).
    Process { pid: u32, starttime: u64 },
    /// cgroup directories with this name in any hierarchy (v1 or v2).
    Cgroups { dir_names: Vec<String> },
}

/// True for a process that exists and is not a zombie (a killed owner whose
/// parent has not reaped it yet is gone for our purposes).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

/// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks.
pub fn starttime(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its ')'.
    s.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Every directory named one of `names` below /sys/fs/cgroup, deepest first.
fn cgroup_dirs(names: &[String]) -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, names: &[String], depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if depth < 4 {
                    walk(&p, names, depth + 1, out);
                }
                if names.iter().any(|n| e.file_name().to_string_lossy() == *n) {
                    out.push(p);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(std::path::Path::new("/sys/fs/cgroup"), names, 0, &mut out);
    out
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub name: String,
    pub platform: String,
    /// A process whose death means the router is gone (qemu, lxc-start).
    pub owner_pid: Option<u32>,
    pub resources: Vec<Resource>,
}

pub fn path(name: &str) -> PathBuf {
    PathBuf::from(DIR).join(format!("{name}.json"))
}

impl State {
    /// Starts a record; fails if one exists (the router is up, or a stale
    /// record needs `tinyvr ... down` first).
    pub fn create(name: &str, platform: &str) -> Result<State, HostError> {
        if path(name).exists() {
            return Err(HostError::Other(format!(
                "a router named {name} is already up (state in {}): take it down first",
                path(name).display()
            )));
        }
        let s = State {
            name: name.into(),
            platform: platform.into(),
            owner_pid: None,
            resources: vec![],
        };
        s.save()?;
        Ok(s)
    }

    pub fn load(name: &str) -> Result<State, HostError> {
        let p = path(name);
        let text = std::fs::read_to_string(&p).map_err(|e| {
            HostError::io(format!("no router named {name} is up ({})", p.display()), e)
        })?;
        serde_json::from_str(&text).map_err(|e| HostError::Other(format!("{}: {e}", p.display())))
    }

    pub fn save(&self) -> Result<(), HostError> {
        std::fs::create_dir_all(DIR).map_err(|e| HostError::io(format!("creating {DIR}"), e))?;
        let p = path(&self.name);
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self).unwrap())
            .map_err(|e| HostError::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &p).map_err(|e| HostError::io(format!("writing {}", p.display()), e))
    }

    /// Records a resource (before it is created, so a crash in between
    /// still leaves a record; removing what is not there is a no-op).
    pub fn add(&mut self, r: Resource) -> Result<(), HostError> {
        self.resources.push(r);
        self.save()
    }

    /// Removes everything, newest first, and then the record. Keeps going
    /// past failures and reports them all at the end.
    pub fn teardown(self) -> Result<(), HostError> {
        let mut errors = Vec::new();
        for r in self.resources.iter().rev() {
            if let Err(e) = remove(r) {
                errors.push(format!("{r:?}: {e}"));
            }
        }
        let _ = std::fs::remove_file(path(&self.name));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(HostError::Other(format!(
                "removing {}: {}",
                self.name,
                errors.join("; ")
            )))
        }
    }
}

fn remove(r: &Resource) -> Result<(), HostError> {
    match r {
        Resource::Process { pid, starttime: t } => {
            if starttime(*pid) == Some(*t) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while starttime(*pid) == Some(*t) && std::time::Instant::now() < end {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            Ok(())
        }
        Resource::Cgroups { dir_names } => {
            // A cgroup can be removed once its last process is gone; that
            // may take a moment after a kill.
            let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let left: Vec<PathBuf> = cgroup_dirs(dir_names)
                    .into_iter()
                    .filter(|d| std::fs::remove_dir(d).is_err())
                    .collect();
                if left.is_empty() {
                    return Ok(());
                }
                if std::time::Instant::now() > end {
                    return Err(HostError::Other(format!("cgroups still busy: {left:?}")));
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Resource::Container { name, lxcpath } => {
            let dir = lxcpath.join(name);
            if !dir.exists() {
                return Ok(());
            }
            // Normally stopped already by `down`; this is the crash path.
            let _ = std::process::Command::new("lxc-stop")
                .args(["-k", "-n", name, "-P"])
                .arg(lxcpath)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            std::fs::remove_dir_all(&dir)
                .map_err(|e| HostError::io(format!("removing {}", dir.display()), e))
        }
        Resource::File { path } => match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(HostError::io(format!("removing {}", path.display()), e))
            }
            _ => Ok(()),
        },
        Resource::Netns { name } => netns::delete(name),
        Resource::Link { name, netns: ns } => {
            if ns.as_deref().is_some_and(|n| !netns::exists(n)) {
                return Ok(()); // went with its namespace
            }
            let mut nl = netns::socket(ns.as_deref())?;
            links::delete(&mut nl, name)
        }
        Resource::Moved {
            name,
            netns: ns,
            back_as,
        } => {
            if !netns::exists(ns) {
                return Ok(());
            }
            let mut nl = netns::socket(Some(ns))?;
            if links::index(&mut nl, name)?.is_none() {
                return Ok(());
            }
            // The tool itself runs in the host namespace (only helper threads enter others).
            let host = std::fs::File::open("/proc/self/ns/net")
                .map_err(|e| HostError::io("opening the host namespace", e))?;
            links::move_to(&mut nl, name, host.as_raw_fd(), Some(back_as))
        }
    }
}

/// Routers whose state file exists, with their owner's liveness.
pub fn list() -> Vec<(State, bool)> {
    let Ok(rd) = std::fs::read_dir(DIR) else {
        return vec![];
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(name) = n.strip_suffix(".json") {
            if let Ok(s) = State::load(name) {
                let alive = s.owner_pid.is_none_or(is_alive);
                out.push((s, alive));
            }
        }
    }
    out
}
