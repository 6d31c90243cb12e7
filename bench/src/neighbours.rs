//! Isolation's busy neighbours: router-less containers or VMs that only
//! burn CPU and memory bandwidth (`tinyvr-init --burn` as the service of a
//! router config with no interfaces), burning in the steps that say so and
//! frozen (LXC, cgroup freezer) or paused (VM, QMP stop) in the others.

use crate::experiment::{Experiment, Platform};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tinyvr_config::{CpuList, RouterConfig};
use tinyvr_init::burn;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NeighbourSpec {
    pub name: String,
    /// lxc or vm.
    pub platform: Platform,
    /// The CPUs it burns on (a container's cpuset; a VM's vCPU and
    /// emulator threads).
    pub cpus: CpuList,
    /// Burning threads (a VM gets as many vCPUs).
    #[serde(default = "one")]
    pub threads: u32,
    /// The buffer the threads walk, MB: the memory-bandwidth load.
    #[serde(default = "default_mb")]
    pub memory_mb: u32,
    /// Per isolation step: burning (true) or frozen (false).
    pub burn: Vec<bool>,
}

fn one() -> u32 {
    1
}
fn default_mb() -> u32 {
    64
}

/// Checks the file's neighbours against its mode, steps, routers' names
/// and the online CPUs; each error names the field.
pub fn check(
    exp: &Experiment,
    steps: usize,
    router_names: &[&str],
    online: &[u32],
) -> Result<(), String> {
    let mut seen: Vec<&str> = router_names.to_vec();
    for (i, n) in exp.neighbours.iter().enumerate() {
        let at = format!("neighbour[{i}]");
        if exp.mode != crate::experiment::Mode::Isolation {
            return Err(format!("{at}: neighbours are for mode = \"isolation\""));
        }
        if n.platform == Platform::Netns {
            return Err(format!(
                "{at}.platform: \"netns\": expected lxc or vm (a neighbour needs a cgroup or a guest of its own)"
            ));
        }
        tinyvr_host::state::check_name(&format!("{at}.name"), &n.name)
            .map_err(|e| e.to_string())?;
        if n.name.len() > 8 {
            return Err(format!("{at}.name: {:?}: at most 8 characters", n.name));
        }
        if seen.contains(&n.name.as_str()) {
            return Err(format!(
                "{at}.name: {:?} is used twice; give each router and neighbour its own name",
                n.name
            ));
        }
        seen.push(&n.name);
        if n.cpus.0.is_empty() {
            return Err(format!("{at}.cpus: expected at least one CPU"));
        }
        if let Some(c) = n.cpus.0.iter().find(|c| !online.contains(c)) {
            return Err(format!(
                "{at}.cpus: CPU {c} is not online (online: {online:?})"
            ));
        }
        if let Some(g) = &exp.traffic.cpus {
            if let Some(c) = n.cpus.0.iter().find(|c| g.0.contains(c)) {
                return Err(format!(
                    "{at}.cpus: CPU {c} is also in traffic.cpus ({g}): it would burn the generator's CPU"
                ));
            }
        }
        // The bounds `tinyvr-init --burn` takes.
        for (k, v, max) in [
            ("threads", n.threads, burn::MAX_THREADS),
            ("memory_mb", n.memory_mb, burn::MAX_MB),
        ] {
            if !(1..=max).contains(&v) {
                return Err(format!("{at}.{k}: expected 1 to {max}"));
            }
        }
        if n.burn.len() != steps {
            return Err(format!(
                "{at}.burn: {} entries: expected one per isolation step ({steps})",
                n.burn.len()
            ));
        }
    }
    Ok(())
}

/// The router config a neighbour runs: no interfaces, one service that burns.
pub fn config(n: &NeighbourSpec) -> RouterConfig {
    let text = format!(
        "name = {:?}\n[[service]]\nname = \"burn\"\nexec = [\"/sbin/init\", \"--burn\", \"{}\", \"{}\"]\n",
        n.name, n.threads, n.memory_mb
    );
    tinyvr_config::load(&text).expect("a neighbour's config is valid")
}

const LXC_TIMEOUT: Duration = Duration::from_secs(30);
const VM_TIMEOUT: Duration = Duration::from_secs(90);

/// Neighbours that are up, taken down when dropped (errors, Ctrl-C).
#[derive(Default)]
pub struct Up {
    up: Vec<(Platform, String)>,
    lxcpath: PathBuf,
}

impl Up {
    /// Starts each neighbour (burning: its init starts the service after
    /// READY); returns their READY jsons.
    pub fn start(
        specs: &[NeighbourSpec],
        image: &Path,
    ) -> Result<(Up, Vec<serde_json::Value>), String> {
        let mut up = Up {
            up: Vec::new(),
            lxcpath: PathBuf::from(tinyvr_lxc::platform::DEFAULT_LXCPATH),
        };
        let mut ready = Vec::new();
        for n in specs {
            let cfg = config(n);
            let r = match n.platform {
                Platform::Lxc => tinyvr_lxc::platform::up(&tinyvr_lxc::platform::Up {
                    config: &cfg,
                    name: None,
                    rootfs: image.join("rootfs"),
                    topology: false,
                    datapath: tinyvr_host::topology::Datapath::Veth,
                    resources: tinyvr_host::cgroup::Resources {
                        cpuset: Some(n.cpus.to_string()),
                        ..Default::default()
                    },
                    lxcpath: up.lxcpath.clone(),
                    timeout: LXC_TIMEOUT,
                }),
                _ => tinyvr_qemu::platform::up(&tinyvr_qemu::platform::Up {
                    config: &cfg,
                    name: None,
                    image: image.to_path_buf(),
                    topology: false,
                    datapath: tinyvr_host::topology::Datapath::Bridge,
                    incoming: None,
                    accel: "auto".into(),
                    cpus: n.threads,
                    memory_mb: n.memory_mb + 96,
                    prealloc: true,
                    thp: tinyvr_qemu::memory::Thp::Auto,
                    console: false,
                    timeout: VM_TIMEOUT,
                    qemu: "qemu-system-x86_64".into(),
                    placement: placement(&n.cpus)?,
                    resources: Default::default(),
                    rt_runtime_us: None,
                    libvirt: None,
                }),
            }
            .map_err(|e| format!("neighbour {}: {e}", n.name))?;
            up.up.push((n.platform, n.name.clone()));
            ready.push(r);
        }
        Ok((up, ready))
    }

    /// Burning or not, as step `step` of each spec says; read back.
    pub fn set_step(&self, specs: &[NeighbourSpec], step: usize) -> Result<Vec<bool>, String> {
        specs.iter().map(|n| self.set(n, n.burn[step])).collect()
    }

    /// Every neighbour frozen or paused (while NDRs are searched).
    pub fn quiet(&self, specs: &[NeighbourSpec]) -> Result<(), String> {
        specs
            .iter()
            .try_for_each(|n| self.set(n, false).map(|_| ()))
    }

    fn set(&self, n: &NeighbourSpec, on: bool) -> Result<bool, String> {
        match n.platform {
            Platform::Lxc => tinyvr_lxc::platform::set_frozen(&n.name, &self.lxcpath, !on),
            _ => tinyvr_qemu::platform::set_running(&n.name, on),
        }
        .map(|_| on)
        .map_err(|e| format!("neighbour {}: {e}", n.name))
    }

    pub fn down_all(&mut self) -> Vec<String> {
        let lxcpath = self.lxcpath.clone();
        self.up
            .drain(..)
            .filter_map(|(p, name)| {
                // Thawed or resumed first (a frozen container or a paused
                // guest cannot take its halt signal or power button), and
                // taken down whether that worked or not.
                let r = match p {
                    Platform::Lxc => {
                        let _ = tinyvr_lxc::platform::set_frozen(&name, &lxcpath, false);
                        tinyvr_lxc::platform::down(&name, &lxcpath, Duration::from_secs(20))
                            .map(|_| ())
                    }
                    _ => {
                        let _ = tinyvr_qemu::platform::set_running(&name, true);
                        tinyvr_qemu::platform::down(&name, Duration::from_secs(20)).map(|_| ())
                    }
                };
                r.err().map(|e| format!("neighbour {name}: {e}"))
            })
            .collect()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        for e in self.down_all() {
            log::error!("tearing down {e}");
        }
    }
}

/// vCPUs and qemu's own threads on the neighbour's CPUs.
fn placement(cpus: &CpuList) -> Result<tinyvr_qemu::sched::Placement, String> {
    let mut p = tinyvr_qemu::sched::Placement::default();
    for class in ["vcpu", "emulator"] {
        p.affinity.push(
            tinyvr_qemu::sched::parse_affinity(&format!("{class}={cpus}"))
                .map_err(|e| format!("cpus: {e}"))?,
        );
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_neighbours_config_has_no_interfaces_and_one_burning_service() {
        let n = NeighbourSpec {
            name: "hog".into(),
            platform: Platform::Lxc,
            cpus: "1".parse().unwrap(),
            threads: 2,
            memory_mb: 32,
            burn: vec![false, true],
        };
        let c = config(&n);
        assert!(c.interfaces.is_empty());
        assert_eq!(c.services[0].exec, ["/sbin/init", "--burn", "2", "32"]);
    }
}
