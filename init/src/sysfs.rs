//! /proc/sys and /sys/class/net: sysctls, RPS/XPS masks, and what a network
//! device is (driver, PCI address). Reads and writes go through the paths
//! of the current namespace.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{what} ({path}): {source}")]
pub struct SysfsError {
    pub what: String,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

pub fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// Writes a sysctl and reads it back: a value the kernel does not hold
/// (it may clamp or ignore some) is an error naming the key. Returns what
/// the kernel holds; None for a write-only key (a read is refused), taken
/// as written.
pub fn write_sysctl(key: &str, value: &str) -> Result<Option<String>, SysfsError> {
    let path = sysctl_path(key);
    write_only(key, value, &path)?;
    match fs::read_to_string(&path) {
        Ok(held) if !held.split_whitespace().eq(value.split_whitespace()) => Err(SysfsError {
            what: format!(
                "sysctl {key}: {value} was written, the kernel holds {}",
                held.trim()
            ),
            path,
            source: io::Error::from(io::ErrorKind::InvalidData),
        }),
        Ok(held) => Ok(Some(held.trim().to_string())),
        Err(_) => Ok(None),
    }
}

fn write_only(key: &str, value: &str, path: &Path) -> Result<(), SysfsError> {
    let path = path.to_path_buf();
    fs::write(&path, value).map_err(|source| {
        let hint = if source.kind() == io::ErrorKind::NotFound {
            " (no such sysctl here; host-wide ones such as net.core.netdev_max_backlog exist only in the initial network namespace)"
        } else {
            ""
        };
        SysfsError {
            what: format!("setting sysctl {key} = {value}{hint}"),
            path,
            source,
        }
    })
}

/// Writes the mask of `cpus` to every `queues/<prefix>-*/<file>` of a
/// device (`rx`/`rps_cpus` or `tx`/`xps_cpus`) and reads each back: a queue
/// whose mask the kernel did not take as written (it drops CPUs it will not
/// steer to) is an error naming the device, queue and both CPU sets.
/// Returns each queue's name and the CPUs its mask holds.
pub fn write_queue_masks(
    dev: &str,
    prefix: &str,
    file: &str,
    cpus: &tinyvr_config::CpuList,
) -> Result<Vec<(String, tinyvr_config::CpuList)>, SysfsError> {
    let mask = cpus.to_mask();
    let dir = Path::new("/sys/class/net").join(dev).join("queues");
    let err = |what: String, path: PathBuf, source| SysfsError { what, path, source };
    let setting = || format!("setting {file} of {dev} to CPUs {cpus} ({mask})");
    let mut queues = Vec::new();
    for (name, qdir) in queue_dirs(&dir, prefix).map_err(|e| err(setting(), dir.clone(), e))? {
        let path = qdir.join(file);
        fs::write(&path, &mask).map_err(|source| err(setting(), path.clone(), source))?;
        match read_mask(&path).map_err(|source| err(setting(), path.clone(), source))? {
            Ok(held) if held.same_cpus(cpus) => queues.push((name, held)),
            held => {
                let held = held.map_or_else(|t| format!("{t:?}"), |h| format!("CPUs {h}"));
                return Err(err(
                    format!(
                        "{file} of {dev} queue {name}: CPUs {cpus} were written, the kernel holds {held}"
                    ),
                    path,
                    io::Error::from(io::ErrorKind::InvalidData),
                ));
            }
        }
    }
    Ok(queues)
}

/// A mask file as read: its CPUs, or its text when it is not a mask.
pub type Mask = Result<tinyvr_config::CpuList, String>;

/// Each `queues/<prefix>-*/<file>` mask of a device as the kernel holds
/// it, by queue name.
pub fn read_queue_masks(
    dev: &str,
    prefix: &str,
    file: &str,
) -> Result<Vec<(String, Mask)>, SysfsError> {
    let dir = Path::new("/sys/class/net").join(dev).join("queues");
    let err = |path: PathBuf, source| SysfsError {
        what: format!("reading {file} of {dev}"),
        path,
        source,
    };
    queue_dirs(&dir, prefix)
        .map_err(|e| err(dir.clone(), e))?
        .into_iter()
        .map(|(name, q)| {
            let path = q.join(file);
            read_mask(&path)
                .map(|m| (name, m))
                .map_err(|e| err(path, e))
        })
        .collect()
}

/// The `<prefix>-*` queue directories under `dir`, by name, sorted.
fn queue_dirs(dir: &Path, prefix: &str) -> io::Result<Vec<(String, PathBuf)>> {
    let mut q: Vec<(String, PathBuf)> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| n.starts_with(&format!("{prefix}-")))
        .collect();
    q.sort();
    Ok(q)
}

/// A CPU mask file: its CPUs, or its text when it is not a mask.
fn read_mask(path: &Path) -> io::Result<Mask> {
    let text = fs::read_to_string(path)?;
    Ok(tinyvr_config::CpuList::from_mask(&text).ok_or_else(|| text.trim().to_string()))
}

/// The kernel driver bound to a network device (`virtio_net`, `ixgbevf`...).
pub fn driver_of(dev: &str) -> Option<String> {
    let link = fs::read_link(Path::new("/sys/class/net").join(dev).join("device/driver")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// The PCI address of a network device, also for virtio devices whose
/// `device` is a virtio bus node below the PCI function.
pub fn pci_of(dev: &str) -> Option<String> {
    let real = fs::canonicalize(Path::new("/sys/class/net").join(dev).join("device")).ok()?;
    real.ancestors()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .find(|n| n.parse::<tinyvr_config::PciAddr>().is_ok() && n.len() == 12)
}
