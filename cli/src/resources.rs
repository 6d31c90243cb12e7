//! The cgroup flags the container and VM platforms share.

use tinyvr_host::cgroup::Resources;

#[derive(clap::Args)]
pub struct ResourceArgs {
    /// The router cgroup's CPU weight, 1-10000 (v2 cpu.weight; v1 cpu.shares = weight x 1024 / 100).
    #[arg(long)]
    cpu_weight: Option<u32>,
    /// The router cgroup's CPU bandwidth "QUOTA PERIOD" in µs, e.g. "50000 100000".
    #[arg(long)]
    cpu_max: Option<String>,
    /// CPUs the router may run on, e.g. "1" or "0-1".
    #[arg(long)]
    cpuset: Option<String>,
}

impl ResourceArgs {
    pub fn resources(&self) -> Resources {
        Resources {
            cpu_weight: self.cpu_weight,
            cpu_max: self.cpu_max.clone(),
            cpuset: self.cpuset.clone(),
        }
    }
}
