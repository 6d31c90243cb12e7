//! Where a VM's threads run and how they are scheduled: CPU affinity and a
//! policy (other, fifo, rr, deadline) per thread class (vCPU, vhost,
//! emulator). Parsing and checks are pure; `apply` and `read_back` make the
//! syscalls, and everything is read back from the kernel afterwards.

use serde::Serialize;
use tinyvr_config::CpuList;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Vcpu,
    Vhost,
    Emulator,
}

impl std::str::FromStr for Class {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vcpu" => Ok(Class::Vcpu),
            "vhost" => Ok(Class::Vhost),
            "emulator" => Ok(Class::Emulator),
            _ => Err(format!(
                "thread class {s:?}: expected vcpu, vhost or emulator"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "policy", rename_all = "lowercase")]
pub enum Policy {
    Other,
    Fifo {
        priority: u32,
    },
    Rr {
        priority: u32,
    },
    /// Microseconds, as the CLI takes them.
    Deadline {
        runtime_us: u64,
        deadline_us: u64,
        period_us: u64,
    },
}

impl Policy {
    pub fn is_rt(&self) -> bool {
        matches!(self, Policy::Fifo { .. } | Policy::Rr { .. })
    }
}

/// `CLASS=CPULIST`, e.g. `vcpu=0-1`.
pub fn parse_affinity(s: &str) -> Result<(Class, CpuList), String> {
    let (c, l) = s
        .split_once('=')
        .ok_or_else(|| format!("--affinity {s:?}: expected CLASS=CPUS, e.g. vcpu=1"))?;
    Ok((
        c.parse()?,
        l.parse().map_err(|e| format!("--affinity {s:?}: {e}"))?,
    ))
}

/// Shortest SCHED_DEADLINE runtime, µs: the kernel refuses a runtime
/// under 2^DL_SCALE = 1024 ns (`__checkparam_dl`), and whole microseconds
/// reach that at 2.
pub const DEADLINE_MIN_RUNTIME_US: u64 = 2;

/// Longest SCHED_DEADLINE period (and so deadline and runtime), µs: 10 s.
/// The kernel's own hard limits are far away (values in ns must fit a u64
/// and stay under 2^63 ns, ~292 years), but its tunable
/// `kernel.sched_deadline_period_max_us` defaults to 2^22 µs (~4.2 s) and
/// refuses longer periods with EINVAL. 10 s leaves room for a host that
/// raised it, keeps every value * 1000 far inside a u64, and nothing a
/// router VM does needs its CPU share settled over a longer window. The
/// kernel's period minimum (`sched_deadline_period_min_us`, default 100 µs)
/// is tunable down to 0, so it is left to the kernel.
pub const DEADLINE_MAX_PERIOD_US: u64 = 10_000_000;

/// A SCHED_DEADLINE value in µs as the kernel's ns; None when it overflows.
fn us_to_ns(us: u64) -> Option<u64> {
    us.checked_mul(1000)
}

/// Checks `deadline:RUNTIME/DEADLINE/PERIOD` (µs) against the kernel's
/// rules and [`DEADLINE_MAX_PERIOD_US`]; the error says which rule.
fn check_deadline(runtime_us: u64, deadline_us: u64, period_us: u64) -> Result<(), String> {
    if period_us > DEADLINE_MAX_PERIOD_US {
        return Err(format!(
            "period {period_us} µs is out of range: expected at most {DEADLINE_MAX_PERIOD_US} µs (10 s)"
        ));
    }
    if runtime_us < DEADLINE_MIN_RUNTIME_US {
        return Err(format!(
            "runtime {runtime_us} µs is out of range: expected at least {DEADLINE_MIN_RUNTIME_US} µs (the kernel's minimum is 1024 ns)"
        ));
    }
    if runtime_us > deadline_us || deadline_us > period_us {
        return Err(format!(
            "need {DEADLINE_MIN_RUNTIME_US} <= runtime ({runtime_us}) <= deadline ({deadline_us}) <= period ({period_us}) <= {DEADLINE_MAX_PERIOD_US} µs"
        ));
    }
    Ok(())
}

/// `CLASS=other`, `CLASS=fifo:PRIO`, `CLASS=rr:PRIO`,
/// `CLASS=deadline:RUNTIME/DEADLINE/PERIOD` (µs; 2 <= runtime <= deadline
/// <= period <= 10 s).
pub fn parse_sched(s: &str) -> Result<(Class, Policy), String> {
    let bad = |why: &str| format!("--sched {s:?}: {why}");
    let (c, p) = s
        .split_once('=')
        .ok_or_else(|| bad("expected CLASS=POLICY, e.g. vcpu=fifo:10"))?;
    let (name, arg) = p.split_once(':').unwrap_or((p, ""));
    let prio = || -> Result<u32, String> {
        let v: u32 = arg
            .parse()
            .map_err(|_| bad("expected a priority, e.g. fifo:10"))?;
        if (1..=99).contains(&v) {
            Ok(v)
        } else {
            Err(bad("priority must be 1 to 99"))
        }
    };
    let policy = match name {
        "other" => Policy::Other,
        "fifo" => Policy::Fifo { priority: prio()? },
        "rr" => Policy::Rr { priority: prio()? },
        "deadline" => {
            let v: Vec<u64> = arg
                .split('/')
                .map(|x| {
                    x.parse()
                        .map_err(|_| bad("expected RUNTIME/DEADLINE/PERIOD in µs"))
                })
                .collect::<Result<_, _>>()?;
            let [runtime_us, deadline_us, period_us] = v[..] else {
                return Err(bad("expected RUNTIME/DEADLINE/PERIOD in µs"));
            };
            check_deadline(runtime_us, deadline_us, period_us).map_err(|e| bad(&e))?;
            Policy::Deadline {
                runtime_us,
                deadline_us,
                period_us,
            }
        }
        _ => return Err(bad("policy must be other, fifo, rr or deadline")),
    };
    Ok((c.parse()?, policy))
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    pub affinity: Vec<(Class, CpuList)>,
    pub sched: Vec<(Class, Policy)>,
}

impl Placement {
    pub fn affinity_of(&self, c: Class) -> Option<&CpuList> {
        self.affinity
            .iter()
            .rev()
            .find(|(k, _)| *k == c)
            .map(|(_, l)| l)
    }
    pub fn policy_of(&self, c: Class) -> Option<Policy> {
        self.sched
            .iter()
            .rev()
            .find(|(k, _)| *k == c)
            .map(|(_, p)| *p)
    }
    pub fn wants_rt(&self) -> bool {
        self.sched.iter().any(|(_, p)| p.is_rt())
    }

    /// Checks against the online CPUs before anything starts.
    pub fn check(&self, online: &[u32]) -> Result<(), String> {
        for (c, l) in &self.affinity {
            if let Some(cpu) = l.0.iter().find(|x| !online.contains(x)) {
                return Err(format!(
                    "--affinity {c:?}: CPU {cpu} is not online (online: {online:?})"
                )
                .to_lowercase());
            }
        }
        for (c, p) in &self.sched {
            if matches!(p, Policy::Deadline { .. }) && self.affinity_of(*c).is_some() {
                // The kernel refuses SCHED_DEADLINE for a task whose affinity
                // does not span its root domain (it could not admit it).
                return Err(format!(
                    "--sched {c:?}=deadline with --affinity for the same class: the kernel admits deadline tasks only with affinity over all CPUs of their root domain"
                )
                .to_lowercase());
            }
        }
        Ok(())
    }
}

/// One thread as the kernel sees it, beside what was asked for its class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadState {
    pub class: Class,
    pub index: usize,
    pub tid: u32,
    pub cpus: String,
    #[serde(flatten)]
    pub policy: Policy,
    pub asked: Asked,
}

/// A thread class's asked affinity and policy (null: left as qemu made it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Asked {
    pub cpus: Option<String>,
    pub policy: Option<Policy>,
}

/// struct sched_attr (include/uapi/linux/sched/types.h), first version.
#[repr(C)]
#[derive(Default, Debug)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

const SCHED_OTHER: u32 = 0;
const SCHED_FIFO: u32 = 1;
const SCHED_RR: u32 = 2;
const SCHED_DEADLINE: u32 = 6;

/// The kernel's form of a policy; None when a deadline value in ns does
/// not fit a u64 (only a `Policy` built without [`parse_sched`] can).
fn to_attr(p: Policy) -> Option<SchedAttr> {
    let mut a = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        ..Default::default()
    };
    match p {
        Policy::Other => a.policy = SCHED_OTHER,
        Policy::Fifo { priority } => (a.policy, a.priority) = (SCHED_FIFO, priority),
        Policy::Rr { priority } => (a.policy, a.priority) = (SCHED_RR, priority),
        Policy::Deadline {
            runtime_us,
            deadline_us,
            period_us,
        } => {
            a.policy = SCHED_DEADLINE;
            (a.runtime, a.deadline, a.period) = (
                us_to_ns(runtime_us)?,
                us_to_ns(deadline_us)?,
                us_to_ns(period_us)?,
            );
        }
    }
    Some(a)
}

fn from_attr(a: &SchedAttr) -> Policy {
    match a.policy {
        SCHED_FIFO => Policy::Fifo {
            priority: a.priority,
        },
        SCHED_RR => Policy::Rr {
            priority: a.priority,
        },
        SCHED_DEADLINE => Policy::Deadline {
            runtime_us: a.runtime / 1000,
            deadline_us: a.deadline / 1000,
            period_us: a.period / 1000,
        },
        _ => Policy::Other,
    }
}

pub fn set_policy(tid: u32, p: Policy) -> std::io::Result<()> {
    let a = to_attr(p).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{p:?}: a value in ns overflows 64 bits"),
        )
    })?;
    // SAFETY: sched_setattr reads a sched_attr of the size it is told.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            tid as libc::pid_t,
            &a as *const SchedAttr,
            0u32,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn get_policy(tid: u32) -> std::io::Result<Policy> {
    let mut a = SchedAttr::default();
    // SAFETY: sched_getattr writes at most `size` bytes into our struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid as libc::pid_t,
            &mut a as *mut SchedAttr,
            std::mem::size_of::<SchedAttr>() as u32,
            0u32,
        )
    };
    if r == 0 {
        Ok(from_attr(&a))
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn set_affinity(tid: u32, cpus: &CpuList) -> nix::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    for &c in &cpus.0 {
        set.set(c as usize)?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid as i32), &set)
}

/// Cpus_allowed_list of a thread, from /proc.
pub fn affinity_of(pid: u32, tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Cpus_allowed_list:")
                    .map(|v| v.trim().to_string())
            })
        })
        .unwrap_or_default()
}

/// vhost worker threads of a qemu process: user threads named vhost-<pid>
/// (Linux ≥ 6.4) or kernel threads of that name (older kernels).
pub fn vhost_threads(qemu: u32) -> Vec<u32> {
    let name = format!("vhost-{qemu}");
    let comm = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let mut out: Vec<u32> = std::fs::read_dir(format!("/proc/{qemu}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|t: &u32| comm(&format!("/proc/{qemu}/task/{t}/comm")) == name)
        .collect();
    if out.is_empty() {
        out = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|p: &u32| comm(&format!("/proc/{p}/comm")) == name)
            .collect();
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_policy() {
        assert_eq!(
            parse_sched("vcpu=fifo:10").unwrap(),
            (Class::Vcpu, Policy::Fifo { priority: 10 })
        );
        assert_eq!(
            parse_sched("vhost=rr:99").unwrap(),
            (Class::Vhost, Policy::Rr { priority: 99 })
        );
        assert_eq!(
            parse_sched("emulator=other").unwrap(),
            (Class::Emulator, Policy::Other)
        );
        assert_eq!(
            parse_sched("vcpu=deadline:70000/200000/200000").unwrap().1,
            Policy::Deadline {
                runtime_us: 70_000,
                deadline_us: 200_000,
                period_us: 200_000
            }
        );
        assert!(parse_sched("vcpu=deadline:300000/200000/200000")
            .unwrap_err()
            .contains("runtime (300000) <= deadline (200000)"));
        assert!(parse_sched("vcpu=fifo:0").unwrap_err().contains("1 to 99"));
        assert!(parse_sched("gpu=fifo:1")
            .unwrap_err()
            .contains("vcpu, vhost or emulator"));
        assert!(parse_sched("vcpu=batch")
            .unwrap_err()
            .contains("other, fifo, rr or deadline"));
        assert_eq!(
            parse_affinity("emulator=1").unwrap(),
            (Class::Emulator, CpuList(vec![1]))
        );
    }

    #[test]
    fn deadline_values_are_range_checked() {
        let err = |v: &str| parse_sched(&format!("vcpu=deadline:{v}")).unwrap_err();
        // u64 µs that overflow u64 ns once multiplied by 1000.
        let huge = u64::MAX / 1000 + 1;
        let e = err(&format!("{huge}/{huge}/{huge}"));
        assert!(e.starts_with("--sched \"vcpu=deadline:"), "{e}");
        assert!(e.contains("expected at most 10000000 µs"), "{e}");
        assert!(err("2/2/10000001").contains("period 10000001 µs is out of range"));
        assert!(err("1/1000/1000").contains("at least 2 µs"));
        assert!(err("0/1000/1000").contains("at least 2 µs"));
        assert!(err("1000/10/1000").contains("runtime (1000) <= deadline (10)"));
        assert!(err("10/1000/100").contains("deadline (1000) <= period (100)"));
        assert!(err("1/2").contains("RUNTIME/DEADLINE/PERIOD"));
        assert!(err(&format!("1/2/{}0", u64::MAX)).contains("RUNTIME/DEADLINE/PERIOD"));
        // The extremes that pass convert to ns without overflow.
        for v in ["2/2/2", "10000000/10000000/10000000"] {
            let p = parse_sched(&format!("vcpu=deadline:{v}")).unwrap().1;
            let a = to_attr(p).unwrap();
            assert!(a.runtime >= 1024 && a.period <= 10_000_000_000, "{v}");
            assert_eq!(from_attr(&a), p);
        }
        // A policy built by hand that overflows is refused, not wrapped.
        let p = Policy::Deadline {
            runtime_us: 2,
            deadline_us: 2,
            period_us: huge,
        };
        assert!(to_attr(p).is_none());
        assert_eq!(
            set_policy(0, p).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn checks_cpus_and_deadline_with_affinity() {
        let p = Placement {
            affinity: vec![parse_affinity("vcpu=5").unwrap()],
            sched: vec![],
        };
        assert!(p
            .check(&[0, 1])
            .unwrap_err()
            .contains("cpu 5 is not online"));
        let p = Placement {
            affinity: vec![parse_affinity("vcpu=0").unwrap()],
            sched: vec![parse_sched("vcpu=deadline:1000/10000/10000").unwrap()],
        };
        assert!(p.check(&[0, 1]).unwrap_err().contains("root domain"));
    }

    #[test]
    fn sched_attr_round_trip() {
        for p in [
            Policy::Other,
            Policy::Fifo { priority: 5 },
            Policy::Deadline {
                runtime_us: 1,
                deadline_us: 2,
                period_us: 3,
            },
        ] {
            assert_eq!(from_attr(&to_attr(p).unwrap()), p);
        }
        assert_eq!(std::mem::size_of::<SchedAttr>(), 48, "SCHED_ATTR_SIZE_VER0");
    }
}
