//! The guest kernel: Debian's linux-source tarball (or a source tree),
//! `tinyconfig` plus the fragments in kernel-config/, `olddefconfig`, a check
//! that every fragment option survived, and a pinned, cached build.

use crate::{sha256_hex, ImageError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const DEFAULT_SOURCE: &str = "/usr/src/linux-source-6.1.tar.xz";
/// Bump when the build recipe changes in a way that changes the output.
const RECIPE: &str = "tinyvr-kernel-recipe-1";

/// What the kernel build produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Kernel {
    pub bzimage: PathBuf,
    pub version: String,
    /// Hash of the build inputs; the cache key.
    pub config_hash: String,
    pub source: String,
    pub cached: bool,
    pub prebuilt: bool,
}

/// The options a fragment sets: `CONFIG_X=v` lines and `# CONFIG_X is not set`.
pub fn fragment_options(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if let Some(rest) = l
                .strip_prefix("# ")
                .and_then(|r| r.strip_suffix(" is not set"))
            {
                return rest
                    .starts_with("CONFIG_")
                    .then(|| (rest.to_string(), "n".to_string()));
            }
            let (k, v) = l.split_once('=')?;
            k.starts_with("CONFIG_")
                .then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Fragment options whose value is not what the final .config has
/// (olddefconfig silently drops options whose dependencies are missing).
pub fn missing_options(fragment: &str, final_config: &str) -> Vec<String> {
    let have = fragment_options(final_config);
    let get = |k: &str| have.iter().find(|(hk, _)| hk == k).map(|(_, v)| v.as_str());
    fragment_options(fragment)
        .into_iter()
        .filter(|(k, v)| match get(k) {
            Some(got) => got != v,
            None => v != "n",
        })
        .map(|(k, v)| format!("{k}={v} (final: {})", get(&k).unwrap_or("unset")))
        .collect()
}

/// The fragments, sorted by file name, with their text.
pub fn fragments(dir: &Path) -> Result<Vec<(PathBuf, String)>, ImageError> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| ImageError::io(dir, e))?;
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "config") {
            let t = std::fs::read_to_string(&p).map_err(|e| ImageError::io(&p, e))?;
            out.push((p, t));
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(ImageError::Kernel(format!(
            "no *.config fragment in {}",
            dir.display()
        )));
    }
    Ok(out)
}

fn tool_version(cmd: &str) -> String {
    Command::new(cmd)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_else(|_| format!("{cmd}: not found"))
}

/// The cache key: source identity, fragments, toolchain, recipe.
pub fn input_hash(source: &Path, frags: &[(PathBuf, String)]) -> Result<String, ImageError> {
    let mut h = Sha256::new();
    h.update(RECIPE);
    if source.is_file() {
        h.update(sha256_hex(
            &std::fs::read(source).map_err(|e| ImageError::io(source, e))?,
        ));
    } else {
        // A source tree is identified by its path and its Makefile (version lines).
        h.update(source.to_string_lossy().as_bytes());
        let mk = source.join("Makefile");
        h.update(std::fs::read(&mk).map_err(|e| ImageError::io(&mk, e))?);
    }
    for (p, t) in frags {
        h.update(p.file_name().unwrap().to_string_lossy().as_bytes());
        h.update(t);
    }
    h.update(tool_version("gcc"));
    h.update(tool_version("make"));
    Ok(format!("{:x}", h.finalize())[..16].to_string())
}

fn run(cmd: &mut Command, log: &Path, what: &str) -> Result<(), ImageError> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| ImageError::io(log, e))?;
    let st = cmd
        .stdout(f.try_clone().map_err(|e| ImageError::io(log, e))?)
        .stderr(f)
        .status()
        .map_err(|e| {
            ImageError::Kernel(format!("{what}: cannot run {:?}: {e}", cmd.get_program()))
        })?;
    if st.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text
        .lines()
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(ImageError::Kernel(format!(
        "{what} failed ({st}); last lines of {}:\n{}",
        log.display(),
        tail.join("\n")
    )))
}

/// Takes the cache's build lock, waiting (and saying so) while another
/// build holds it.
fn lock_cache(cache: &Path) -> Result<std::fs::File, ImageError> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(cache).map_err(|e| ImageError::io(cache, e))?;
    let p = cache.join("build.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| ImageError::io(&p, e))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        log::info!(
            "waiting for another kernel build ({} is locked)",
            p.display()
        );
        // SAFETY: as above.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(ImageError::io(&p, std::io::Error::last_os_error()));
        }
    }
    Ok(f)
}

/// Builds (or takes from the cache) the kernel for these inputs.
pub fn build(source: &Path, frag_dir: &Path, cache: &Path) -> Result<Kernel, ImageError> {
    if !source.exists() {
        return Err(ImageError::Kernel(format!(
            "kernel source {} does not exist: install Debian's linux-source-6.1 (scripts/setup does), or pass --kernel-source PATH or --kernel BZIMAGE",
            source.display()
        )));
    }
    let frags = fragments(frag_dir)?;
    let key = input_hash(source, &frags)?;
    let done = cache.join(&key);
    let bz = done.join("bzImage");
    // One build at a time per cache: they share the fixed build directory.
    // Held until this function returns; a second builder waits, then finds
    // the kernel in the cache.
    let _lock = lock_cache(cache)?;
    if bz.exists() {
        let version = std::fs::read_to_string(done.join("version"))
            .unwrap_or_default()
            .trim()
            .to_string();
        log::info!("kernel {version} from cache {}", done.display());
        return Ok(Kernel {
            bzimage: bz,
            version,
            config_hash: key,
            source: source.display().to_string(),
            cached: true,
            prebuilt: false,
        });
    }

    // A fixed build path: paths end up in the kernel, so it must not vary.
    let work = cache.join("build");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| ImageError::io(&work, e))?;
    let log = work.join("build.log");
    let src = if source.is_file() {
        let dst = work.join("src");
        std::fs::create_dir_all(&dst).map_err(|e| ImageError::io(&dst, e))?;
        log::info!("unpacking {}", source.display());
        run(
            Command::new("tar")
                .arg("-xf")
                .arg(source)
                .arg("-C")
                .arg(&dst)
                .arg("--strip-components=1"),
            &log,
            "unpacking the kernel source",
        )?;
        dst
    } else {
        source.to_path_buf()
    };
    let obj = work.join("obj");
    std::fs::create_dir_all(&obj).map_err(|e| ImageError::io(&obj, e))?;
    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.arg("-C")
            .arg(&src)
            .arg(format!("O={}", obj.display()))
            .args(args);
        c.env("KBUILD_BUILD_TIMESTAMP", "1970-01-01 00:00:00 UTC")
            .env("KBUILD_BUILD_USER", "tinyvr")
            .env("KBUILD_BUILD_HOST", "tinyvr")
            .env("KBUILD_BUILD_VERSION", "1");
        c
    };
    run(&mut make(&["tinyconfig"]), &log, "make tinyconfig")?;
    let mut merge = Command::new(src.join("scripts/kconfig/merge_config.sh"));
    merge
        .current_dir(&src)
        .arg("-m")
        .arg("-O")
        .arg(&obj)
        .arg(obj.join(".config"));
    for (p, _) in &frags {
        merge.arg(p);
    }
    run(&mut merge, &log, "merging the kernel config fragments")?;
    run(&mut make(&["olddefconfig"]), &log, "make olddefconfig")?;
    let final_cfg =
        std::fs::read_to_string(obj.join(".config")).map_err(|e| ImageError::io(&obj, e))?;
    let lost: Vec<String> = frags
        .iter()
        .flat_map(|(_, t)| missing_options(t, &final_cfg))
        .collect();
    if !lost.is_empty() {
        return Err(ImageError::Kernel(format!(
            "these fragment options did not survive olddefconfig (a dependency is missing):\n  {}",
            lost.join("\n  ")
        )));
    }
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .to_string();
    log::info!(
        "building the kernel ({jobs} jobs), log in {}",
        log.display()
    );
    run(
        &mut make(&["-j", &jobs, "bzImage"]),
        &log,
        "building the kernel",
    )?;
    let version = String::from_utf8_lossy(
        &make(&["-s", "kernelrelease"])
            .output()
            .map_err(|e| ImageError::Kernel(e.to_string()))?
            .stdout,
    )
    .trim()
    .to_string();

    let tmp = cache.join(format!("{key}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
    for (from, to) in [
        (obj.join("arch/x86/boot/bzImage"), "bzImage"),
        (obj.join(".config"), "config"),
        // Symbols for the boot profile (`cargo bench --bench boot_profile`).
        (obj.join("System.map"), "System.map"),
    ] {
        std::fs::copy(&from, tmp.join(to)).map_err(|e| ImageError::io(&from, e))?;
    }
    std::fs::write(tmp.join("version"), &version).map_err(|e| ImageError::io(&tmp, e))?;
    std::fs::rename(&tmp, &done).map_err(|e| ImageError::io(&done, e))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(Kernel {
        bzimage: bz,
        version,
        config_hash: key,
        source: source.display().to_string(),
        cached: false,
        prebuilt: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_options_are_listed() {
        let frag = "# why\nCONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=64\n";
        let fin = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_D=32\n";
        assert_eq!(
            missing_options(frag, fin),
            ["CONFIG_B=y (final: n)", "CONFIG_D=64 (final: 32)"]
        );
    }

    #[test]
    fn shipped_fragment_gives_a_reason_for_every_option() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel-config");
        for (p, text) in fragments(&dir).unwrap() {
            let lines: Vec<&str> = text.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                if l.starts_with("CONFIG_") {
                    // The option's block (options right above it) starts under a comment.
                    let mut j = i;
                    while j > 0 && lines[j - 1].starts_with("CONFIG_") {
                        j -= 1;
                    }
                    assert!(
                        j > 0 && lines[j - 1].starts_with("# "),
                        "{}: {l} has no reason above it",
                        p.display()
                    );
                }
            }
        }
    }
}
