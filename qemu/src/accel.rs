//! KVM or TCG. `/dev/kvm` alone proves nothing: on hosts whose CPU flags
//! lack vmx/svm it may exist and still hang a normal guest, so `auto` also
//! asks the CPU.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostCaps {
    /// `/dev/kvm` opened read-write (and why not, if it did not).
    pub kvm_dev: Result<(), String>,
    /// The CPU advertises vmx (Intel) or svm (AMD).
    pub cpu_virt: bool,
}

impl HostCaps {
    pub fn probe() -> HostCaps {
        let kvm_dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .map(|_| ())
            .map_err(|e| format!("/dev/kvm: {e}"));
        let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        HostCaps {
            kvm_dev,
            cpu_virt: cpu_has_virt(&cpu),
        }
    }
}

pub fn cpu_has_virt(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// Picks the accelerator for a request ("auto", "kvm", "tcg"); returns it
/// and the reason, or why KVM cannot be had.
pub fn choose(want: &str, caps: &HostCaps) -> Result<(Accel, String), String> {
    let kvm_ok = match (&caps.kvm_dev, caps.cpu_virt) {
        (Ok(()), true) => Ok(()),
        (Err(e), _) => Err(e.clone()),
        (Ok(()), false) => Err("/dev/kvm exists but the CPU flags have no vmx or svm: it cannot run a normal guest here (qemu would hang)".into()),
    };
    match (want, kvm_ok) {
        ("kvm", Ok(())) | ("auto", Ok(())) => Ok((
            Accel::Kvm,
            "KVM: /dev/kvm opens and the CPU has vmx/svm".into(),
        )),
        ("kvm", Err(why)) => Err(format!("--accel kvm: {why}")),
        ("auto", Err(why)) => Ok((Accel::Tcg, format!("TCG (software emulation): {why}"))),
        ("tcg", _) => Ok((Accel::Tcg, "TCG: asked for".into())),
        (other, _) => Err(format!("--accel {other}: expected auto, kvm or tcg")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_needs_both_the_device_and_the_cpu_flag() {
        let here = HostCaps {
            kvm_dev: Ok(()),
            cpu_virt: false,
        };
        let (a, why) = choose("auto", &here).unwrap();
        assert_eq!(a, Accel::Tcg);
        assert!(why.contains("no vmx or svm"), "{why}");
        assert!(choose("kvm", &here)
            .unwrap_err()
            .contains("cannot run a normal guest"));
        let kvm = HostCaps {
            kvm_dev: Ok(()),
            cpu_virt: true,
        };
        assert_eq!(choose("auto", &kvm).unwrap().0, Accel::Kvm);
        let none = HostCaps {
            kvm_dev: Err("/dev/kvm: No such file".into()),
            cpu_virt: true,
        };
        assert_eq!(choose("auto", &none).unwrap().0, Accel::Tcg);
        assert!(choose("xen", &kvm).is_err());
    }

    #[test]
    fn cpu_flags() {
        assert!(cpu_has_virt("flags\t\t: fpu vme vmx sse\n"));
        assert!(!cpu_has_virt("flags\t\t: fpu hypervisor\n"));
    }
}
