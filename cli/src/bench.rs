//! `tinyvr bench EXPERIMENT.toml` and `tinyvr demo`: the tester.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tinyvr_bench::experiment::{self, Loaded, Platform};
use tinyvr_bench::routers::Env;
use tinyvr_bench::run::{self, Results};
use tinyvr_bench::{plot, report};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Experiment file (TOML; see experiments/).
    experiment: PathBuf,
    /// Output directory (default: results/<experiment name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Image directory (overrides the experiment's `image`).
    #[arg(long)]
    image: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Output directory.
    #[arg(long, default_value = "results/demo")]
    out: PathBuf,
    /// Image directory (built there when missing or stale).
    #[arg(long, default_value = "out")]
    image: PathBuf,
}

/// The exit status of a run that could not start here (automake's "skip").
pub const SKIP: u8 = 77;

#[derive(Debug)]
pub struct Skipped(pub String);

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "skipped: {}", self.0)
    }
}
impl std::error::Error for Skipped {}

/// What the experiment needs that this machine may lack, checked before
/// anything is created.
fn requirements(l: &Loaded) -> Result<(), Skipped> {
    let have = tinyvr_host::console::have;
    for (i, (spec, _)) in l.routers.iter().enumerate() {
        let at = format!("router[{i}] ({})", spec.platform.as_str());
        match spec.platform {
            Platform::Netns => {}
            Platform::Lxc => {
                if !have("lxc-start") {
                    return Err(Skipped(format!("{at}: lxc-start not found (Debian's lxc)")));
                }
                if l.exp.mode == tinyvr_bench::experiment::Mode::Migrate {
                    tinyvr_lxc::platform::criu_ready()
                        .map_err(|why| Skipped(format!("{at}: migrating a container: {why}")))?;
                }
                if !l.image.join("rootfs/init").is_file() {
                    return Err(Skipped(format!(
                        "{at}: no image at {} (tinyvr image build)",
                        l.image.display()
                    )));
                }
            }
            Platform::Vm => {
                if !have("qemu-system-x86_64") {
                    return Err(Skipped(format!(
                        "{at}: qemu-system-x86_64 not found (Debian's qemu-system-x86)"
                    )));
                }
                if !l.image.join("bzImage").is_file() {
                    return Err(Skipped(format!(
                        "{at}: no image at {} (tinyvr image build)",
                        l.image.display()
                    )));
                }
                let want = spec.accel.as_deref().unwrap_or("auto");
                tinyvr_qemu::accel::choose(want, &tinyvr_qemu::accel::HostCaps::probe())
                    .map_err(|e| Skipped(format!("{at}: accel = {want:?}: {e}")))?;
            }
        }
    }
    Ok(())
}

/// Loads, checks, runs, and writes every output, also when the run
/// failed or was interrupted midway.
fn run_loaded(l: &Loaded, out: &Path) -> Result<()> {
    requirements(l)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;
    let env = Env {
        image: l.image.clone(),
        init: crate::netns::init_binary()?,
        dir: out.join("routers"),
        dst: l.exp.traffic.dst,
    };
    run::catch_signals();
    let mut res = Results::default();
    let started = std::time::Instant::now();
    let r = run::run(l, &env, &mut res);
    if let Err(e) = &r {
        res.error = Some(e.clone());
    }
    report::results_json(&out, l, &res).map_err(anyhow::Error::msg)?;
    report::results_csv(&out, &res).map_err(anyhow::Error::msg)?;
    report::environment_json(&out, l, &res).map_err(anyhow::Error::msg)?;
    let plots = plot::all(&out, &res).map_err(anyhow::Error::msg)?;
    println!("{}", report::table(&res));
    println!(
        "{} trials in {:.0} s; results in {}: results.json, results.csv, environment.json{}",
        res.trials.len(),
        started.elapsed().as_secs_f64(),
        out.display(),
        plots
            .iter()
            .filter_map(|p| p.file_name().map(|n| format!(", {}", n.to_string_lossy())))
            .collect::<String>()
    );
    if res.interrupted {
        bail!("interrupted: the results above are what was measured before Ctrl-C");
    }
    r.map_err(anyhow::Error::msg)
}

fn load(path: &Path, image: Option<&Path>) -> Result<Loaded> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut l = experiment::load(&text, path, &tinyvr_host::cgroup::online_cpus())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if let Some(i) = image {
        l.image = i.to_path_buf();
    }
    Ok(l)
}

pub fn bench(a: BenchArgs) -> Result<()> {
    let l = load(&a.experiment, a.image.as_deref())?;
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from("results").join(&l.exp.name));
    run_loaded(&l, &out)
}

/// The demo experiment and its router, shipped in experiments/.
const DEMO: &str = include_str!("../../experiments/demo.toml");
const DEMO_ROUTER: &str = include_str!("../../experiments/router.toml");

pub fn demo(a: DemoArgs) -> Result<()> {
    crate::image::build(crate::image::BuildArgs::defaults(&a.image))?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let exp = a.out.join("demo.toml");
    std::fs::write(&exp, DEMO)?;
    std::fs::write(a.out.join("router.toml"), DEMO_ROUTER)?;
    let l = load(&exp, Some(&a.image))?;
    run_loaded(&l, &a.out)
}
