//! Builds the tinyvr image: a kernel (from kernel-config/, cached by the hash
//! of its inputs), a reproducible initramfs whose /init is tinyvr-init, the
//! same tree as an LXC rootfs (directory and tarball), and a manifest.
//! Output is written to a temporary directory and renamed into place at the
//! end, so a failed build never leaves an output that looks complete.

pub mod cpio;
pub mod kernel;
pub mod tree;

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Size budgets (bytes).
pub const INITRAMFS_BUDGET: u64 = 2 * 1024 * 1024;
pub const BZIMAGE_BUDGET: u64 = 3 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel: {0}")]
    Kernel(String),
    #[error("--add {0}")]
    BadAdd(String),
    #[error("{0}")]
    Input(String),
}

impl ImageError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ImageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// Where the kernel comes from.
#[derive(Debug, Clone)]
pub enum KernelInput {
    /// Build from a linux-source tarball or tree.
    Source(PathBuf),
    /// Use this bzImage as is (it must have the fragment's options built in).
    Prebuilt(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    pub kernel: KernelInput,
    /// The kernel-config/ directory.
    pub fragments: PathBuf,
    pub cache: PathBuf,
    /// The static tinyvr-init binary.
    pub init: PathBuf,
    /// Extra files: (host path, path in the image).
    pub adds: Vec<(PathBuf, String)>,
    /// Fixed time for every entry (SOURCE_DATE_EPOCH).
    pub epoch: u64,
    pub init_version: String,
    pub git_commit: String,
}

#[derive(Debug, Serialize)]
pub struct Artefact {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct Manifest {
    pub artefacts: Vec<Artefact>,
    pub kernel: kernel::Kernel,
    pub init: serde_json::Value,
    pub inputs: serde_json::Value,
    pub budgets: serde_json::Value,
}

impl Manifest {
    pub fn size_of(&self, name: &str) -> u64 {
        self.artefacts
            .iter()
            .find(|a| a.name == name)
            .map_or(0, |a| a.size)
    }
}

/// Parses `SRC:DST` of `--add`, checking that SRC exists.
pub fn parse_add(s: &str) -> Result<(PathBuf, String), ImageError> {
    let (src, dst) = s.split_once(':').ok_or_else(|| {
        ImageError::BadAdd(format!(
            "{s}: expected SRC:DST, e.g. /usr/sbin/bird:/usr/sbin/bird"
        ))
    })?;
    let src = PathBuf::from(src);
    if !src.exists() {
        return Err(ImageError::BadAdd(format!(
            "{s}: {} does not exist",
            src.display()
        )));
    }
    if dst.is_empty() {
        return Err(ImageError::BadAdd(format!("{s}: empty destination")));
    }
    Ok((src, dst.to_string()))
}

fn artefact(dir: &Path, name: &str) -> Result<Artefact, ImageError> {
    let p = dir.join(name);
    let data = std::fs::read(&p).map_err(|e| ImageError::io(&p, e))?;
    Ok(Artefact {
        name: name.into(),
        size: data.len() as u64,
        sha256: sha256_hex(&data),
    })
}

pub fn build(o: &Options) -> Result<Manifest, ImageError> {
    let init = std::fs::read(&o.init).map_err(|e| ImageError::io(&o.init, e))?;
    let mut tree = tree::Tree::router(init);
    for (src, dst) in &o.adds {
        tree.add_host(src, dst)?;
    }
    // Check inputs before the (slow) kernel.
    let kernel = match &o.kernel {
        KernelInput::Prebuilt(p) => {
            if !p.is_file() {
                return Err(ImageError::Input(format!(
                    "--kernel {}: no such file",
                    p.display()
                )));
            }
            let data = std::fs::read(p).map_err(|e| ImageError::io(p, e))?;
            kernel::Kernel {
                bzimage: p.clone(),
                version: "prebuilt".into(),
                config_hash: sha256_hex(&data)[..16].to_string(),
                source: p.display().to_string(),
                cached: false,
                prebuilt: true,
            }
        }
        KernelInput::Source(src) => kernel::build(src, &o.fragments, &o.cache)?,
    };

    let parent = o
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ImageError::io(parent, e))?;
    let name = o.out.file_name().ok_or_else(|| {
        ImageError::Input(format!("--out {}: not a directory name", o.out.display()))
    })?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
    let result = write_all(o, &tree, &kernel, &tmp);
    match result {
        Ok(m) => {
            let old = parent.join(format!(
                ".{}.old-{}",
                name.to_string_lossy(),
                std::process::id()
            ));
            if o.out.exists() {
                std::fs::rename(&o.out, &old).map_err(|e| ImageError::io(&o.out, e))?;
            }
            std::fs::rename(&tmp, &o.out).map_err(|e| ImageError::io(&o.out, e))?;
            let _ = std::fs::remove_dir_all(&old);
            Ok(m)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn write_all(
    o: &Options,
    tree: &tree::Tree,
    kernel: &kernel::Kernel,
    dir: &Path,
) -> Result<Manifest, ImageError> {
    let bz = dir.join("bzImage");
    std::fs::copy(&kernel.bzimage, &bz).map_err(|e| ImageError::io(&kernel.bzimage, e))?;
    tree.write_cpio_gz(&dir.join("initramfs.cpio.gz"), o.epoch as u32)?;
    tree.write_dir(&dir.join("rootfs"))?;
    tree.write_tar(&dir.join("rootfs.tar"), o.epoch)?;
    let artefacts = vec![
        artefact(dir, "bzImage")?,
        artefact(dir, "initramfs.cpio.gz")?,
        artefact(dir, "rootfs.tar")?,
        Artefact {
            name: "tinyvr-init".into(),
            size: std::fs::metadata(&o.init)
                .map_err(|e| ImageError::io(&o.init, e))?
                .len(),
            sha256: sha256_hex(&std::fs::read(&o.init).map_err(|e| ImageError::io(&o.init, e))?),
        },
    ];
    let ird = artefacts[1].size;
    let bzs = artefacts[0].size;
    let m = Manifest {
        artefacts,
        kernel: kernel.clone(),
        init: serde_json::json!({ "version": o.init_version, "git_commit": o.git_commit, "path": o.init.display().to_string() }),
        inputs: serde_json::json!({
            "source_date_epoch": o.epoch,
            "kernel_fragments": o.fragments.display().to_string(),
            "adds": o.adds.iter().map(|(s, d)| format!("{}:{d}", s.display())).collect::<Vec<_>>(),
        }),
        budgets: serde_json::json!({
            "initramfs_bytes": ird, "initramfs_max": INITRAMFS_BUDGET, "initramfs_ok": ird <= INITRAMFS_BUDGET,
            "bzimage_bytes": bzs, "bzimage_max": BZIMAGE_BUDGET, "bzimage_ok": bzs <= BZIMAGE_BUDGET,
        }),
    };
    let j = serde_json::to_string_pretty(&m).expect("manifest serializes");
    let p = dir.join("manifest.json");
    std::fs::write(&p, j + "\n").map_err(|e| ImageError::io(&p, e))?;
    Ok(m)
}
