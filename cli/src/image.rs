//! `tinyvr image build`: the kernel, the initramfs, the LXC rootfs and the
//! manifest, from this source tree.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use tinyvr_image::{KernelInput, Options};

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Output directory.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Kernel source: a linux-source tarball or an unpacked tree.
    #[arg(long, conflicts_with = "kernel", default_value = tinyvr_image::kernel::DEFAULT_SOURCE)]
    kernel_source: PathBuf,
    /// Use this prebuilt bzImage instead of building one (it must have the
    /// options of kernel-config/ built in).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Add a host file or directory to the image: SRC:DST (repeatable).
    #[arg(long = "add", value_name = "SRC:DST")]
    adds: Vec<String>,
    /// Use this static tinyvr-init instead of building it.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Kernel build cache (also $TINYVR_CACHE).
    #[arg(long, env = "TINYVR_CACHE", default_value = "/var/cache/tinyvr")]
    cache: PathBuf,
}

impl BuildArgs {
    /// `image build --out OUT` with every other flag at its default.
    pub fn defaults(out: &Path) -> BuildArgs {
        BuildArgs {
            out: out.to_path_buf(),
            kernel_source: tinyvr_image::kernel::DEFAULT_SOURCE.into(),
            kernel: None,
            adds: Vec::new(),
            init: None,
            cache: std::env::var_os("TINYVR_CACHE")
                .map_or_else(|| "/var/cache/tinyvr".into(), PathBuf::from),
        }
    }
}

/// The source tree this tool was built from.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git")
        .current_dir(workspace())
        .args(args)
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Builds the static release init with scripts/build-init (which also
/// enforces its size budget) and returns its path.
pub fn build_init() -> Result<PathBuf> {
    let script = workspace().join("scripts/build-init");
    let out = Command::new(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "building tinyvr-init failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rel = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(workspace().join(rel))
}

pub fn build(a: BuildArgs) -> Result<()> {
    let adds = a
        .adds
        .iter()
        .map(|s| tinyvr_image::parse_add(s))
        .collect::<Result<Vec<_>, _>>()?;
    let init = match a.init {
        Some(p) if !p.is_file() => bail!("--init {}: no such file", p.display()),
        Some(p) => p,
        None => build_init()?,
    };
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v}: expected seconds since 1970"))?,
        Err(_) => git(&["log", "-1", "--format=%ct"])
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    };
    let opts = Options {
        out: a.out.clone(),
        kernel: match a.kernel {
            Some(k) => KernelInput::Prebuilt(k),
            None => KernelInput::Source(a.kernel_source),
        },
        fragments: workspace().join("kernel-config"),
        cache: a.cache.join("kernel"),
        init,
        adds,
        epoch,
        init_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into()),
    };
    let t = std::time::Instant::now();
    let m = tinyvr_image::build(&opts)?;
    println!(
        "image in {} ({:.1} s): kernel {} ({}), bzImage {} bytes, initramfs {} bytes",
        a.out.display(),
        t.elapsed().as_secs_f64(),
        m.kernel.version,
        if m.kernel.prebuilt {
            "prebuilt"
        } else if m.kernel.cached {
            "cached"
        } else {
            "built"
        },
        m.size_of("bzImage"),
        m.size_of("initramfs.cpio.gz"),
    );
    for (what, ok) in [("initramfs", "initramfs_ok"), ("bzImage", "bzimage_ok")] {
        if m.budgets[ok] == false {
            eprintln!("warning: {what} is over its size budget: {}", m.budgets);
        }
    }
    Ok(())
}
