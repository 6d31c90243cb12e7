//! libvirt through `virsh`: the CLI Debian's libvirt-clients ships, so
//! tinyvr links no libvirt library and a host without libvirt loses only
//! `--libvirt`. Every call names its URI; a domain is always addressed by
//! the UUID tinyvr gave it, so a domain of the same name that tinyvr did
//! not make is never touched.

use crate::HostError;
use std::process::Command;

/// The URI `--libvirt` means when none is given.
pub const DEFAULT_URI: &str = "qemu:///system";

/// Runs `virsh -c URI ARGS`: Ok(Ok(stdout)) or Ok(Err(stderr)) when
/// virsh ran and failed. In the C locale: its messages are matched.
fn run(uri: &str, args: &[&str]) -> Result<Result<String, String>, HostError> {
    run_with(uri, args, |_| {})
}

fn run_with(
    uri: &str,
    args: &[&str],
    more: impl FnOnce(&mut Command),
) -> Result<Result<String, String>, HostError> {
    let mut c = Command::new("virsh");
    c.args(["-q", "-c", uri]).args(args).env("LC_ALL", "C");
    more(&mut c);
    let out = c.output().map_err(|e| {
        HostError::io(
            "running virsh (install libvirt-clients: scripts/setup does)",
            e,
        )
    })?;
    Ok(if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    })
}

fn failed(uri: &str, args: &[&str], e: String) -> HostError {
    HostError::Other(format!("virsh -c {uri} {}: {e}", args.join(" ")))
}

/// Runs `virsh -c URI ARGS`; its stdout, or an error with its stderr.
pub fn virsh(uri: &str, args: &[&str]) -> Result<String, HostError> {
    run(uri, args)?.map_err(|e| failed(uri, args, e))
}

/// `virsh create FILE` in a process group of its own: a Ctrl-C at the
/// terminal reaches tinyvr only, which lets the create finish (libvirtd
/// would finish it anyway) and then removes the domain, instead of losing
/// track of it. Other virsh calls stay in tinyvr's group, so a Ctrl-C
/// still ends one that hangs on an unresponsive libvirtd.
pub fn create(uri: &str, file: &str) -> Result<String, HostError> {
    use std::os::unix::process::CommandExt;
    let args = ["create", file];
    run_with(uri, &args, |c| {
        c.process_group(0);
    })?
    .map_err(|e| failed(uri, &args, e))
}

/// A query about one domain: None when libvirt says there is no such
/// domain, an error for anything else (libvirtd down, no permission), so
/// an unreachable libvirtd never reads as "gone".
fn about_domain(uri: &str, args: &[&str]) -> Result<Option<String>, HostError> {
    match run(uri, args)? {
        Ok(out) => Ok(Some(out)),
        Err(e) if no_such_domain(&e) => Ok(None),
        Err(e) => Err(failed(uri, args, e)),
    }
}

/// virsh's words (C locale) for a lookup that found no domain: libvirt
/// 9.0 prints only "failed to get domain"; any other cause (access
/// denied, a dropped connection) adds its own line, and is an error.
fn no_such_domain(stderr: &str) -> bool {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    !lines.is_empty()
        && lines
            .iter()
            .all(|l| l.starts_with("error: failed to get domain") || l.contains("Domain not found"))
}

/// The UUID of the domain called `name` at `uri`, None when there is none.
pub fn uuid_of(uri: &str, name: &str) -> Result<Option<String>, HostError> {
    about_domain(uri, &["domuuid", name])
}

/// Is the domain with this UUID still there (running or defined)?
pub fn exists(uri: &str, uuid: &str) -> Result<bool, HostError> {
    Ok(about_domain(uri, &["domname", uuid])?.is_some())
}

/// Removes the domain tinyvr created at `uri` as `name` with `uuid`:
/// destroyed (a transient domain is then gone) and, should it have been
/// made persistent since, undefined. A domain of that name with another
/// UUID is someone else's: Ok(Some(why)) and left alone.
pub fn remove(uri: &str, name: &str, uuid: &str) -> Result<Option<String>, HostError> {
    // A `virsh create` that outlived a killed `up` may still be on its way
    // (libvirtd finishes it whatever happens to the client): wait for it,
    // or the domain would appear after its record is gone.
    let xml = std::path::Path::new(crate::state::DIR).join(format!("{name}.xml"));
    let end = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while creating(&xml) && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    match uuid_of(uri, name)? {
        None if !exists(uri, uuid)? => return Ok(None),
        Some(u) if u != uuid => {
            return Ok(Some(format!(
                "libvirt domain {name} at {uri} has UUID {u}, not the {uuid} tinyvr created"
            )))
        }
        _ => {}
    }
    if virsh(uri, &["domstate", uuid])
        .is_ok_and(|s| s.starts_with("running") || s.starts_with("paused"))
    {
        virsh(uri, &["destroy", uuid])?;
    }
    if exists(uri, uuid)? {
        virsh(uri, &["undefine", uuid])?;
    }
    Ok(None)
}

/// Is a `virsh ... create XML` of this file running (on this host)?
fn creating(xml: &std::path::Path) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let Ok(c) = std::fs::read(e.path().join("cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
        args.first().is_some_and(|a| a.ends_with(b"virsh"))
            && args.iter().any(|a| *a == b"create")
            && args.contains(&xml.as_os_str().as_encoded_bytes())
    })
}

/// The host name the libvirtd at `uri` runs on.
pub fn hostname(uri: &str) -> Result<String, HostError> {
    virsh(uri, &["hostname"])
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_missing_domain_reads_as_absent() {
        // libvirt 9.0's words, seen here.
        assert!(super::no_such_domain("error: failed to get domain 'x'\n"));
        assert!(super::no_such_domain(
            "error: failed to get domain 'x'\nerror: Domain not found: no domain with matching name 'x'"
        ));
        assert!(!super::no_such_domain(
            "error: failed to get domain 'x'\nerror: access denied: 'virDomainLookupByName'"
        ));
        assert!(!super::no_such_domain(
            "error: failed to get domain 'x'\nerror: End of file while reading data: Input/output error"
        ));
        assert!(!super::no_such_domain(""));
        assert!(!super::no_such_domain(
            "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory"
        ));
    }
}
