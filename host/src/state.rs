//! What tinyvr created for a router, in /run/tinyvr/<name>.json, so that
//! `down` (and `gc`) can remove it all even after the tool was killed
//! halfway — and nothing else.
//!
//! Ownership rules, all decided here:
//! - an entry is written as an *intent* before the object is made and gets
//!   its identity (namespace inode, link ifindex, file or cgroup inode,
//!   process start time) only once the kernel said it made it; an intent
//!   is never acted on, so an object that already existed is never touched;
//! - removal checks that identity first: a name now held by something else
//!   is left alone;
//! - the state file is created exclusively and locked while `up` or `down`
//!   works on it, so of two `up`s of one name exactly one proceeds;
//! - what could not be removed stays in the file for `down` or `gc` to retry.

use crate::{links, netns, HostError};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tinyvr_config::MacAddr;

pub const DIR: &str = "/run/tinyvr";
/// Written into every state file; `gc` and `down` act on nothing else.
pub const SCHEMA: &str = "tinyvr-state/2";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// A named network namespace (id: its inode).
    Netns { name: String },
    /// A link tinyvr created, in namespace `netns` (None: the host's); id:
    /// its ifindex there.
    Link { name: String, netns: Option<String> },
    /// A host device moved into a namespace; goes back under its old name
    /// (id: its ifindex in `netns`).
    Moved {
        name: String,
        netns: String,
        back_as: String,
    },
    /// A file tinyvr wrote (id: its inode).
    File { path: PathBuf },
    /// An LXC container's directory (config, rootfs copy, logs); id: the
    /// directory's inode.
    Container { name: String, lxcpath: PathBuf },
    /// A process to end if it still runs (id: its start time, so a
    /// recycled pid is never hit).
    Process { pid: u32 },
    /// A cgroup directory tinyvr made (id: its inode).
    Cgroup { path: PathBuf },
    /// cgroups LXC makes for a container, by directory name; recorded only
    /// after checking that none by these names existed (id: 1).
    LxcCgroups { dir_names: Vec<String> },
    /// The MAC tinyvr gave VF `vf` of the host's PF `pf` (id: the PF's
    /// ifindex); `down` puts `was` back if the VF still has `set`.
    VfMac {
        pf: String,
        vf: u32,
        was: MacAddr,
        set: MacAddr,
    },
    /// A libvirt domain tinyvr created (transient: `virsh create`), at
    /// `uri` as `name`; identified by the UUID tinyvr gave it (id: 1,
    /// recorded before the create, so a crash during it leaves nothing
    /// unrecorded).
    Domain {
        uri: String,
        name: String,
        uuid: String,
    },
    /// RT budget (µs) tinyvr added to a cgroup it did not make (libvirt's
    /// `machine`); taken back off on down (id: 1).
    RtBudget { path: PathBuf, added: u64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub what: Resource,
    /// What identifies the object beyond its name once tinyvr made it;
    /// None: only intended (never removed).
    pub id: Option<u64>,
}

/// The process that runs `up` for a router until it returns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Proc {
    pub pid: u32,
    pub starttime: u64,
}

impl Proc {
    pub fn me() -> Option<Proc> {
        let pid = std::process::id();
        starttime(pid).map(|starttime| Proc { pid, starttime })
    }
    pub fn alive(&self) -> bool {
        starttime(self.pid) == Some(self.starttime) && is_alive(self.pid)
    }
}

/// True for a process that exists and is not a zombie (a killed owner whose
/// parent has not reaped it yet is gone for our purposes).
pub fn is_alive(pid: u32) -> bool {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .is_ok_and(|s| s.state != 'Z')
}

/// When the process started, in clock ticks since boot (/proc/<pid>/stat).
pub fn starttime(pid: u32) -> Option<u64> {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .ok()
        .map(|s| s.starttime)
}

/// Where LXC makes a container's cgroups: directly below the root of each
/// hierarchy (/sys/fs/cgroup on v2, /sys/fs/cgroup/<controller> and
/// .../unified on a hybrid). Only there: a container of the same name
/// deeper in the tree (a user's, under user.slice) is not ours.
pub fn lxc_cgroup_paths(names: &[String]) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut roots = vec![root.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(root) {
        // A hierarchy root is a mount point: another device than its parent.
        let dev = std::fs::metadata(root).map(|m| m.dev()).ok();
        roots.extend(rd.flatten().map(|e| e.path()).filter(|p| {
            std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && Some(m.dev()) != dev)
        }));
    }
    roots
        .iter()
        .flat_map(|r| names.iter().map(move |n| r.join(n)))
        .filter(|p| p.is_dir())
        .collect()
}

/// Checks a router instance name before it becomes part of paths and
/// device names: the config's router-name rule (no '/', '.', spaces).
pub fn check_name(flag: &str, n: &str) -> Result<(), HostError> {
    tinyvr_config::router_name(n).map_err(|rule| HostError::Other(format!("{flag} {n:?}: {rule}")))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    pub schema: String,
    pub name: String,
    pub platform: String,
    /// The `up` still building this router; cleared when it succeeds. A
    /// dead builder marks a half-made router for `gc`.
    pub builder: Option<Proc>,
    /// A process whose death means the router is gone (qemu, lxc-start).
    pub owner_pid: Option<u32>,
    /// Set when a teardown starts: a router whose removal did not finish
    /// is stale whatever its owner (`gc` retries it).
    #[serde(default)]
    pub tearing_down: bool,
    pub resources: Vec<Entry>,
    /// The lock on <name>.lock, held while this value lives.
    #[serde(skip)]
    lock: Option<File>,
}

pub fn path(name: &str) -> PathBuf {
    PathBuf::from(DIR).join(format!("{name}.json"))
}

fn lock_path(name: &str) -> PathBuf {
    PathBuf::from(DIR).join(format!("{name}.lock"))
}

/// /run/tinyvr, root's only: made 0700, and refused if it is a symlink or
/// not root's.
pub fn ensure_dir() -> Result<(), HostError> {
    match std::fs::create_dir(DIR) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(HostError::io(format!("creating {DIR}"), e)),
    }
    let m = std::fs::symlink_metadata(DIR).map_err(|e| HostError::io(DIR, e))?;
    if !m.is_dir() || m.uid() != 0 {
        return Err(HostError::Other(format!(
            "{DIR} is not a directory owned by root: refusing to keep router state there"
        )));
    }
    if m.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(DIR, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| HostError::io(format!("chmod 0700 {DIR}"), e))?;
    }
    Ok(())
}

fn open_private(p: &Path, create_new: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW);
    if create_new {
        o.create_new(true);
    } else {
        o.create(true);
    }
    o.open(p)
}

/// Takes the per-router lock without waiting.
fn lock(name: &str) -> Result<File, HostError> {
    let p = lock_path(name);
    // A lock file is removed (under its lock) when its router is gone: a
    // file opened just before that is no longer the one at the path, so
    // the lock taken on it is checked against the path and taken anew.
    for _ in 0..3 {
        let f = open_private(&p, false)
            .map_err(|e| HostError::io(format!("opening {}", p.display()), e))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(HostError::Other(format!(
                "router {name} is being brought up or taken down by another tinyvr right now ({} is locked)",
                p.display()
            )));
        }
        let held = f.metadata().map(|m| m.ino()).ok();
        if held.is_some() && held == inode(&p) {
            return Ok(f);
        }
    }
    Err(HostError::Other(format!(
        "router {name}: its lock file {} keeps being replaced",
        p.display()
    )))
}

impl State {
    /// Starts a record, exclusively: fails without touching anything if a
    /// router of this name is up, half up, or being brought up.
    pub fn create(name: &str, platform: &str) -> Result<State, HostError> {
        check_name("router name", name)?;
        ensure_dir()?;
        let lock = lock(name)?;
        let s = State {
            schema: SCHEMA.into(),
            name: name.into(),
            platform: platform.into(),
            builder: Proc::me(),
            owner_pid: None,
            tearing_down: false,
            resources: vec![],
            lock: Some(lock),
        };
        // Written whole to a temporary file, then linked into place: the
        // link fails if the name is taken, so creation is exclusive and a
        // state file is never seen half written.
        let p = path(name);
        let tmp = s.write_tmp()?;
        let linked = std::fs::hard_link(&tmp, &p);
        let _ = std::fs::remove_file(&tmp);
        linked.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                HostError::Other(format!(
                    "a router named {name} is already up (state in {}): take it down first (tinyvr ... down {name}, or tinyvr gc if its owner is gone), or pick another --name",
                    p.display()
                ))
            } else {
                HostError::io(format!("creating {}", p.display()), e)
            }
        })?;
        Ok(s)
    }

    /// Reads a router's record and takes its lock.
    pub fn load(name: &str) -> Result<State, HostError> {
        check_name("router name", name)?;
        let p = path(name);
        if std::fs::symlink_metadata(&p).is_err() {
            return Err(HostError::Other(format!(
                "no router named {name} is up (no {})",
                p.display()
            )));
        }
        let lock = lock(name)?;
        let mut s = read(&p)?;
        if s.name != name {
            return Err(HostError::Other(format!(
                "{}: holds router {:?}, not {name}",
                p.display(),
                s.name
            )));
        }
        s.lock = Some(lock);
        Ok(s)
    }

    /// This record, if it is a router of `platform`.
    pub fn of_platform(self, platform: &str) -> Result<State, HostError> {
        if self.platform != platform {
            return Err(HostError::Other(format!(
                "router {} runs on {}, not {platform}",
                self.name, self.platform
            )));
        }
        Ok(self)
    }

    /// Writes the record to <name>.json.tmp (under the lock) and returns its path.
    fn write_tmp(&self) -> Result<PathBuf, HostError> {
        let tmp = path(&self.name).with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = open_private(&tmp, true)
            .map_err(|e| HostError::io(format!("creating {}", tmp.display()), e))?;
        f.write_all(
            serde_json::to_string_pretty(self)
                .expect("state serializes")
                .as_bytes(),
        )
        .map_err(|e| HostError::io(format!("writing {}", tmp.display()), e))?;
        Ok(tmp)
    }

    pub fn save(&self) -> Result<(), HostError> {
        let p = path(&self.name);
        let tmp = self.write_tmp()?;
        std::fs::rename(&tmp, &p).map_err(|e| HostError::io(format!("writing {}", p.display()), e))
    }

    /// Records that tinyvr is about to make `r`; returns the entry's
    /// index for [`State::made`].
    pub fn intend(&mut self, r: Resource) -> Result<usize, HostError> {
        self.resources.push(Entry { what: r, id: None });
        self.save()?;
        Ok(self.resources.len() - 1)
    }

    /// Marks entry `i` as made, with the identity the kernel gave it.
    pub fn made(&mut self, i: usize, id: u64) -> Result<(), HostError> {
        self.resources[i].id = Some(id);
        self.save()
    }

    /// Entry `i` turned out not to be ours after all (its making failed
    /// after the identity was recorded): back to a mere intent.
    pub fn unmark(&mut self, i: usize) -> Result<(), HostError> {
        self.resources[i].id = None;
        self.save()
    }

    /// Entry `i` moved to namespace `ns` (a tap moved after it was made),
    /// where the kernel gave it `id`.
    pub fn relocate(&mut self, i: usize, ns: Option<String>, id: u64) -> Result<(), HostError> {
        if let Resource::Link { netns, .. } = &mut self.resources[i].what {
            *netns = ns;
        }
        self.made(i, id)
    }

    /// Records an object already made (a process just spawned); returns
    /// the entry's index.
    pub fn add_made(&mut self, r: Resource, id: u64) -> Result<usize, HostError> {
        self.resources.push(Entry {
            what: r,
            id: Some(id),
        });
        self.save()?;
        Ok(self.resources.len() - 1)
    }

    /// Records a process just spawned, by its start time (a process that
    /// is gone already has nothing to end).
    pub fn add_process(&mut self, pid: u32) -> Result<(), HostError> {
        match starttime(pid) {
            Some(t) => self.add_made(Resource::Process { pid }, t).map(|_| ()),
            None => self.save(),
        }
    }

    /// Writes a file that must not exist yet (mode 0600), recorded as made.
    pub fn write_new(&mut self, path: &Path, text: &str) -> Result<(), HostError> {
        self.create_file(path)?
            .write_all(text.as_bytes())
            .map_err(|e| HostError::io(format!("writing {}", path.display()), e))
    }

    /// Creates a file that must not exist yet (mode 0600), recorded as
    /// made; returns it open for writing.
    pub fn create_file(&mut self, path: &Path) -> Result<File, HostError> {
        let e = self.intend(Resource::File { path: path.into() })?;
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| HostError::io(format!("creating {}", path.display()), e))?;
        self.made(e, file_id(path)?)?;
        Ok(f)
    }

    /// A migrated VM's destination takes this router's place: the entries
    /// `replaced` picks (the source's qemu, its macvtaps, its run files)
    /// are removed, newest first; then every entry of `dest` joins this
    /// record, its run files renamed from `<dest>.*` to `<name>.*` (qemu
    /// keeps its open files; a socket answers at its new path), its owner
    /// becomes this router's, and `dest`'s own record is deleted.
    pub fn hand_over(
        &mut self,
        mut dest: State,
        replaced: impl Fn(&Resource) -> bool,
    ) -> Result<(), HostError> {
        let (old, keep): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.resources)
            .into_iter()
            .partition(|e| replaced(&e.what));
        self.resources = keep;
        let mut errors = Vec::new();
        for e in old.into_iter().rev() {
            let Some(id) = e.id else { continue };
            match remove(&e.what, id) {
                Ok(Removal::Done) => {}
                Ok(Removal::NotOurs(why)) => log::warn!("{why}: left alone"),
                Err(err) => {
                    errors.push(format!("{}: {err}", describe(&e.what)));
                    self.resources.push(e);
                }
            }
        }
        // What is recorded from here on is the router's.
        self.save()?;
        let from = format!("{}.", dest.name);
        for mut e in std::mem::take(&mut dest.resources) {
            if let Resource::File { path: p } = &mut e.what {
                let renamed = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix(&from))
                    .filter(|_| p.parent() == Some(Path::new(DIR)))
                    .map(|rest| PathBuf::from(DIR).join(format!("{}.{rest}", self.name)));
                if let Some(to) = renamed {
                    if e.id.is_some() {
                        match std::fs::rename(&*p, &to) {
                            Ok(()) => {}
                            // Gone already (qemu unlinks a socket it accepted on).
                            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                            Err(err) => {
                                errors.push(format!(
                                    "renaming {} to {}: {err}",
                                    p.display(),
                                    to.display()
                                ));
                                self.resources.push(e);
                                continue;
                            }
                        }
                    }
                    *p = to;
                }
            }
            self.resources.push(e);
        }
        self.owner_pid = dest.owner_pid;
        self.save()?;
        let _ = std::fs::remove_file(path(&dest.name));
        let _ = std::fs::remove_file(lock_path(&dest.name));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(HostError::Other(format!(
                "router {}: handing over to {}: {} (kept in the record)",
                self.name,
                dest.name,
                errors.join("; ")
            )))
        }
    }

    /// A host link this record made was renamed from `old` to `new`.
    pub fn renamed_link(&mut self, old: &str, new: &str) -> Result<(), HostError> {
        for e in &mut self.resources {
            if let Resource::Link { name, netns: None } = &mut e.what {
                if name == old {
                    *name = new.to_string();
                }
            }
        }
        self.save()
    }

    /// Removes a file this record made and drops its entry.
    pub fn forget_file(&mut self, p: &Path) -> Result<(), HostError> {
        let Some(i) = self
            .resources
            .iter()
            .position(|e| matches!(&e.what, Resource::File { path } if path == p))
        else {
            return Ok(());
        };
        let e = self.resources.remove(i);
        if let Some(id) = e.id {
            if let Err(err) = remove(&e.what, id) {
                self.resources.push(e);
                self.save()?;
                return Err(err);
            }
        }
        self.save()
    }

    /// `up` succeeded: the router no longer depends on its builder.
    pub fn finish(mut self) -> Result<(), HostError> {
        self.builder = None;
        self.save()
    }

    /// Removes what tinyvr made, newest first. Entries that were only
    /// intended, or whose name now belongs to another object, are left
    /// alone (and dropped from the record); entries whose removal failed
    /// stay in the record, which is kept, and the error names them all.
    pub fn teardown(mut self) -> Result<(), HostError> {
        self.tearing_down = true;
        self.save()?;
        let mut errors = Vec::new();
        let mut kept = Vec::new();
        // Namespaces that still hold something that could not be removed
        // or moved back (a phys device returns to the host under the name
        // it has in there if its namespace goes first): kept too.
        let mut busy: Vec<String> = Vec::new();
        // Containers are stopped through their monitor first (killing
        // lxc-start would orphan the container), then processes end: their
        // cgroups and devices are free only then.
        for e in &self.resources {
            if let (Resource::Container { name, lxcpath }, Some(id)) = (&e.what, e.id) {
                if inode(&lxcpath.join(name)) == Some(id) {
                    stop_container(name, lxcpath);
                }
            }
        }
        // libvirt domains likewise go first (through libvirt, never by
        // pid): their taps, cgroups and RT budget are free only then. A
        // failure here is reported with the entry below.
        for e in &self.resources {
            if let (Resource::Domain { uri, name, uuid }, Some(_)) = (&e.what, e.id) {
                let _ = crate::libvirt::remove(uri, name, uuid);
            }
        }
        let (procs, rest): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.resources)
            .into_iter()
            .partition(|e| matches!(e.what, Resource::Process { .. }));
        for e in procs.into_iter().rev().chain(rest.into_iter().rev()) {
            let id = match e.id {
                Some(id) => id,
                // Files qemu makes in tinyvr's own directory (console, QMP
                // socket, pid file) before it could be recorded: nobody
                // else writes there, and the name is this router's.
                None if self.own_run_file(&e.what) => match &e.what {
                    Resource::File { path } => match inode(path) {
                        Some(i) => i,
                        None => continue,
                    },
                    _ => continue,
                },
                None => continue,
            };
            if let Resource::Netns { name } = &e.what {
                if busy.contains(name) {
                    errors.push(format!(
                        "{}: kept, it still holds what could not be removed",
                        describe(&e.what)
                    ));
                    kept.push(e);
                    continue;
                }
            }
            match remove(&e.what, id) {
                Ok(Removal::Done) => {}
                Ok(Removal::NotOurs(why)) => log::warn!("{why}: left alone"),
                Err(err) => {
                    errors.push(format!("{}: {err}", describe(&e.what)));
                    match &e.what {
                        Resource::Moved { netns, .. } => busy.push(netns.clone()),
                        Resource::Link { netns: Some(n), .. } => busy.push(n.clone()),
                        _ => {}
                    }
                    kept.push(e);
                }
            }
        }
        if errors.is_empty() {
            let _ = std::fs::remove_file(path(&self.name));
            let _ = std::fs::remove_file(lock_path(&self.name));
            return Ok(());
        }
        kept.reverse();
        self.resources = kept;
        self.save()?;
        Err(HostError::Other(format!(
            "removing router {}: {} (kept in {}: `down {}` or `tinyvr gc` retries)",
            self.name,
            errors.join("; "),
            path(&self.name).display(),
            self.name
        )))
    }

    /// A file of this router's in /run/tinyvr (0700, tinyvr's alone, and
    /// the router's name is held by this record's lock).
    fn own_run_file(&self, r: &Resource) -> bool {
        matches!(r, Resource::File { path }
            if path.parent() == Some(Path::new(DIR))
                && path.file_name().and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{}.", self.name))))
    }

    /// A state whose builder or owner died: what `gc` removes.
    pub fn stale(&self) -> bool {
        self.tearing_down
            || self.builder.is_some_and(|b| !b.alive())
            || self.owner_pid.is_some_and(|p| !is_alive(p))
    }
}

fn describe(r: &Resource) -> String {
    match r {
        Resource::Netns { name } => format!("network namespace {name}"),
        Resource::Link { name, netns } => {
            format!(
                "link {name} in {}",
                netns.as_deref().unwrap_or("the host namespace")
            )
        }
        Resource::Moved { name, netns, .. } => format!("device {name} moved into {netns}"),
        Resource::File { path } => format!("file {}", path.display()),
        Resource::Container { name, lxcpath } => {
            format!("container {name} in {}", lxcpath.display())
        }
        Resource::Process { pid } => format!("process {pid}"),
        Resource::Cgroup { path } => format!("cgroup {}", path.display()),
        Resource::LxcCgroups { dir_names } => format!("LXC cgroups {dir_names:?}"),
        Resource::VfMac { pf, vf, was, .. } => {
            format!("MAC of VF {vf} of {pf} (to go back to {was})")
        }
        Resource::Domain { uri, name, uuid } => {
            format!("libvirt domain {name} ({uuid}) at {uri}")
        }
        Resource::RtBudget { path, added } => {
            format!("{added} µs of RT budget added to {}", path.display())
        }
    }
}

enum Removal {
    Done,
    NotOurs(String),
}

/// For an object identified by its inode: Some(what to do instead of
/// removing it) when it is gone already or `p` now names something else.
fn gone_or_foreign(p: &Path, id: u64, what: &str) -> Option<Removal> {
    match inode(p) {
        None => Some(Removal::Done),
        Some(i) if i != id => Some(Removal::NotOurs(format!(
            "{what} {} is not the one tinyvr made",
            p.display()
        ))),
        Some(_) => None,
    }
}

fn inode(p: &Path) -> Option<u64> {
    std::fs::symlink_metadata(p).ok().map(|m| m.ino())
}

/// The identity of a file or directory tinyvr just made.
pub fn file_id(p: &Path) -> Result<u64, HostError> {
    inode(p).ok_or_else(|| HostError::Other(format!("{} vanished after it was made", p.display())))
}

/// Ends a process, waits until it is gone (reaping it when it is our
/// child, as qemu and lxc-start are when `up` ran in this process).
pub fn end_process(pid: u32, t: u64, wait: Duration) -> Result<(), HostError> {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let p = nix::unistd::Pid::from_raw(pid as i32);
    let end = Instant::now() + wait;
    let mut killed = false;
    loop {
        let Ok(st) = procfs::process::Process::new(pid as i32).and_then(|pr| pr.stat()) else {
            return Ok(());
        };
        if st.starttime != t {
            return Ok(()); // the pid was recycled: ours is gone
        }
        if st.state == 'Z' {
            if st.ppid as u32 != std::process::id() {
                return Ok(()); // no longer runs; its own parent reaps it
            }
            let _ = waitpid(p, Some(WaitPidFlag::WNOHANG));
        } else if !killed {
            let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
            killed = true;
        }
        if Instant::now() > end {
            return Err(HostError::Other(format!(
                "process {pid} still there {wait:?} after SIGKILL"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `lxc-stop -k`: normally the container is stopped already by `down`;
/// this is the crash path (a no-op when it is not running).
fn stop_container(name: &str, lxcpath: &Path) {
    let _ = std::process::Command::new("lxc-stop")
        .args(["-k", "-n", name, "-P"])
        .arg(lxcpath)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

fn remove(r: &Resource, id: u64) -> Result<Removal, HostError> {
    match r {
        Resource::Process { pid } => {
            end_process(*pid, id, Duration::from_secs(10))?;
            Ok(Removal::Done)
        }
        Resource::Cgroup { path } => {
            if let Some(r) = gone_or_foreign(path, id, "cgroup") {
                return Ok(r);
            }
            // Removable once its last process is gone; that may take a
            // moment after a kill.
            let end = Instant::now() + Duration::from_secs(5);
            loop {
                match std::fs::remove_dir(path) {
                    Ok(()) => return Ok(Removal::Done),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Removal::Done),
                    Err(e) if Instant::now() > end => {
                        return Err(HostError::io(
                            format!("removing cgroup {}", path.display()),
                            e,
                        ))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        Resource::LxcCgroups { dir_names } => {
            let end = Instant::now() + Duration::from_secs(5);
            loop {
                let left: Vec<PathBuf> = lxc_cgroup_paths(dir_names)
                    .into_iter()
                    .filter(|d| std::fs::remove_dir(d).is_err())
                    .collect();
                if left.is_empty() {
                    return Ok(Removal::Done);
                }
                if Instant::now() > end {
                    return Err(HostError::Other(format!("cgroups still busy: {left:?}")));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Resource::Container { name, lxcpath } => {
            let dir = lxcpath.join(name);
            // Stopped already: teardown stops identified containers first.
            if let Some(r) = gone_or_foreign(&dir, id, "container directory") {
                return Ok(r);
            }
            std::fs::remove_dir_all(&dir)
                .map_err(|e| HostError::io(format!("removing {}", dir.display()), e))?;
            Ok(Removal::Done)
        }
        Resource::File { path } => {
            if let Some(r) = gone_or_foreign(path, id, "file") {
                return Ok(r);
            }
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(HostError::io(format!("removing {}", path.display()), e))
                }
                _ => Ok(Removal::Done),
            }
        }
        Resource::Netns { name } => match netns::inode(name) {
            None => Ok(Removal::Done),
            // Named but never mounted: the namespace itself went with the
            // killed `up`; only its empty name file is left.
            Some(_) if netns::is_unmounted_name(name) => {
                std::fs::remove_file(netns::path(name)).map_err(|e| {
                    HostError::io(format!("removing {}", netns::path(name).display()), e)
                })?;
                Ok(Removal::Done)
            }
            Some(i) if i != id => Ok(Removal::NotOurs(format!(
                "network namespace {name} is not the one tinyvr made (inode {i}, made {id})"
            ))),
            _ => {
                netns::delete(name)?;
                Ok(Removal::Done)
            }
        },
        Resource::Link { name, netns: ns } => {
            if ns.as_deref().is_some_and(|n| !netns::exists(n)) {
                return Ok(Removal::Done); // went with its namespace
            }
            let mut nl = netns::socket(ns.as_deref())?;
            match links::name_of(&mut nl, id as u32)? {
                None => Ok(Removal::Done),
                Some(n) if n != *name => Ok(Removal::NotOurs(format!(
                    "link {id} is now {n}, not the {name} tinyvr made"
                ))),
                Some(_) => {
                    links::delete_index(&mut nl, id as u32, name)?;
                    Ok(Removal::Done)
                }
            }
        }
        Resource::VfMac { pf, vf, was, set } => {
            let mut nl = netns::socket(None)?;
            match links::name_of(&mut nl, id as u32)? {
                Some(n) if n == *pf => {}
                _ => {
                    return Ok(Removal::NotOurs(format!(
                        "PF {pf} (link {id}) is gone or renamed"
                    )))
                }
            }
            match crate::sriov::mac(&mut nl, id as u32, *vf)? {
                Some(m) if m == *set => {
                    crate::sriov::set_mac(&mut nl, id as u32, pf, *vf, was)?;
                    Ok(Removal::Done)
                }
                other => Ok(Removal::NotOurs(format!(
                    "VF {vf} of {pf} has MAC {}, not the {set} tinyvr set",
                    other.map_or("none".into(), |m| m.to_string())
                ))),
            }
        }
        Resource::Domain { uri, name, uuid } => {
            Ok(match crate::libvirt::remove(uri, name, uuid)? {
                None => Removal::Done,
                Some(why) => Removal::NotOurs(why),
            })
        }
        Resource::RtBudget { path, added } => {
            let _lock = crate::cgroup::rt_budget_lock()?;
            let f = path.join("cpu.rt_runtime_us");
            let Ok(now) = std::fs::read_to_string(&f) else {
                return Ok(Removal::Done); // the cgroup went
            };
            let now: u64 = now.trim().parse().unwrap_or(0);
            std::fs::write(&f, now.saturating_sub(*added).to_string()).map_err(|e| {
                HostError::io(format!("giving back RT budget in {}", f.display()), e)
            })?;
            Ok(Removal::Done)
        }
        Resource::Moved {
            name,
            netns: ns,
            back_as,
        } => {
            if !netns::exists(ns) {
                return Ok(Removal::Done);
            }
            let mut nl = netns::socket(Some(ns))?;
            match links::name_of(&mut nl, id as u32)? {
                Some(n) if n == *name => {}
                _ => return Ok(Removal::Done),
            }
            let host = netns::open_or_own(None)?;
            links::move_to(&mut nl, name, host.as_raw_fd(), Some(back_as))?;
            Ok(Removal::Done)
        }
    }
}

/// Reads a state file: a regular file (not a symlink) of this schema.
fn read(p: &Path) -> Result<State, HostError> {
    let m = std::fs::symlink_metadata(p).map_err(|e| HostError::io(p.display().to_string(), e))?;
    if !m.is_file() || m.uid() != 0 {
        return Err(HostError::Other(format!(
            "{} is not a regular file owned by root: not a tinyvr state file",
            p.display()
        )));
    }
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
        .map_err(|e| HostError::io(format!("opening {}", p.display()), e))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut f, &mut text)
        .map_err(|e| HostError::io(format!("reading {}", p.display()), e))?;
    let s: State = serde_json::from_str(&text)
        .map_err(|e| HostError::Other(format!("{}: not a tinyvr state file ({e})", p.display())))?;
    if s.schema != SCHEMA {
        return Err(HostError::Other(format!(
            "{}: schema {:?}, expected {SCHEMA}",
            p.display(),
            s.schema
        )));
    }
    Ok(s)
}

/// Removes what a `tinyvr` killed between taking a router's lock and
/// writing its record leaves: a lock file with no record, a temporary
/// record. Only files whose lock it can take (nobody works on them).
pub fn sweep() {
    let Ok(rd) = std::fs::read_dir(DIR) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let Some(name) = n
            .strip_suffix(".lock")
            .or_else(|| n.strip_suffix(".json.tmp"))
        else {
            continue;
        };
        if check_name("", name).is_err() || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if let Ok(_held) = lock(name) {
            let _ = std::fs::remove_file(path(name).with_extension("json.tmp"));
            if std::fs::symlink_metadata(path(name)).is_err() {
                let _ = std::fs::remove_file(lock_path(name));
            }
        }
    }
}

/// Routers whose state file exists, without taking their locks.
pub fn list() -> Vec<Result<State, HostError>> {
    if std::fs::symlink_metadata(DIR).is_err() {
        return vec![];
    }
    if let Err(e) = ensure_dir() {
        return vec![Err(e)];
    }
    let Ok(rd) = std::fs::read_dir(DIR) else {
        return vec![];
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .map(String::from)
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            check_name("state file", &n)?;
            let s = read(&path(&n))?;
            if s.name != n {
                return Err(HostError::Other(format!(
                    "{}: holds router {:?}",
                    path(&n).display(),
                    s.name
                )));
            }
            Ok(s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_with_their_identity() {
        let e = Entry {
            what: Resource::Link {
                name: "vr1-in0".into(),
                netns: Some("vr1-src".into()),
            },
            id: Some(7),
        };
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(
            j,
            r#"{"kind":"link","name":"vr1-in0","netns":"vr1-src","id":7}"#
        );
        assert_eq!(serde_json::from_str::<Entry>(&j).unwrap(), e);
    }

    #[test]
    fn instance_names_cannot_escape_paths() {
        for bad in ["", "../x", "a/b", "a.b", "toolongname", "1abc", "a b"] {
            let e = check_name("--name", bad).unwrap_err().to_string();
            assert!(e.contains("--name"), "{e}");
        }
        for good in ["a", "vr1", "edge-b_2"] {
            check_name("--name", good).unwrap();
        }
    }
}
