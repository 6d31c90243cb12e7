//! SR-IOV VFs passed through with vfio-pci: what the host must have ready
//! (an IOMMU group, the vfio-pci driver, a PF), read from sysfs with clear
//! errors, and the VF's MAC set through its PF before qemu starts — in the
//! guest the init finds its NICs by MAC, so the VF must carry the MAC the
//! config (or tinyvr) gave the interface.

use std::path::Path;

/// A VF ready for passthrough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vf {
    pub pci: String,
    pub iommu_group: String,
    /// The PF's network device and the VF's index on it.
    pub pf_netdev: String,
    pub vf_index: u32,
}

fn link_name(p: &Path) -> Option<String> {
    std::fs::read_link(p)
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Checks what passing device `pci` through needs (it exists, has an
/// IOMMU group, is bound to vfio-pci), from sysfs at `sys` (/sys on a host;
/// a directory tree in tests); returns the IOMMU group. Any PCI function
/// qualifies, an SR-IOV VF or a whole NIC. `what` names the interface.
pub fn check(sys: &Path, pci: &str, what: &str) -> Result<String, String> {
    let dev = sys.join("bus/pci/devices").join(pci);
    if !dev.exists() {
        return Err(format!("{what}: no PCI device {pci} on this host"));
    }
    let group = link_name(&dev.join("iommu_group")).ok_or_else(|| {
        format!("{what}: {pci} has no IOMMU group: enable the IOMMU (intel_iommu=on or amd_iommu=on on the host's kernel command line, VT-d/AMD-Vi in the firmware)")
    })?;
    match link_name(&dev.join("driver")) {
        Some(d) if d == "vfio-pci" => Ok(group),
        other => Err(format!(
            "{what}: {pci} is bound to {}, not vfio-pci: echo vfio-pci > {p}/driver_override; echo {pci} > {p}/driver/unbind; echo {pci} > /sys/bus/pci/drivers_probe",
            other.map_or("no driver".to_string(), |d| format!("driver {d}")),
            p = Path::new("/sys/bus/pci/devices").join(pci).display()
        )),
    }
}

/// As [`check`], and finds the VF's PF and its index there: what setting
/// the VF's MAC needs.
pub fn inspect(sys: &Path, pci: &str, what: &str) -> Result<Vf, String> {
    let iommu_group = check(sys, pci, what)?;
    let dev = sys.join("bus/pci/devices").join(pci);
    let pf = link_name(&dev.join("physfn"))
        .ok_or_else(|| format!("{what}: {pci} is not an SR-IOV VF (it has no physfn)"))?;
    let pf_dir = sys.join("bus/pci/devices").join(&pf);
    let pf_netdev = std::fs::read_dir(pf_dir.join("net"))
        .ok()
        .and_then(|mut rd| rd.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .ok_or_else(|| {
            format!(
                "{what}: the PF {pf} of {pci} has no network device to set the VF's MAC through"
            )
        })?;
    let vf_index = std::fs::read_dir(&pf_dir)
        .map_err(|e| format!("{what}: reading {}: {e}", pf_dir.display()))?
        .flatten()
        .find_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let i = n.strip_prefix("virtfn")?.parse::<u32>().ok()?;
            (link_name(&e.path()).as_deref() == Some(pci)).then_some(i)
        })
        .ok_or_else(|| format!("{what}: {pci} is not among the VFs of its PF {pf}"))?;
    Ok(Vf {
        pci: pci.to_string(),
        iommu_group,
        pf_netdev,
        vf_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs tree with PF 0000:01:00.0 (netdev enp1s0f0) and its VF 1 at
    /// 0000:01:10.2, bound to `driver`, with or without an IOMMU group.
    fn sysfs(driver: &str, iommu: bool) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!(
            "tinyvr-vfio-{}-{driver}-{iommu}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        let devs = root.join("bus/pci/devices");
        let (pf, vf) = (devs.join("0000:01:00.0"), devs.join("0000:01:10.2"));
        std::fs::create_dir_all(pf.join("net/enp1s0f0")).unwrap();
        std::fs::create_dir_all(&vf).unwrap();
        symlink("../0000:01:10.0", pf.join("virtfn0")).unwrap();
        symlink("../0000:01:10.2", pf.join("virtfn1")).unwrap();
        symlink("../0000:01:00.0", vf.join("physfn")).unwrap();
        symlink(
            format!("../../../bus/pci/drivers/{driver}"),
            vf.join("driver"),
        )
        .unwrap();
        if iommu {
            symlink("../../../kernel/iommu_groups/42", vf.join("iommu_group")).unwrap();
        }
        root
    }

    #[test]
    fn a_vf_bound_to_vfio_with_an_iommu_group() {
        let root = sysfs("vfio-pci", true);
        let vf = inspect(&root, "0000:01:10.2", "interface[0]").unwrap();
        assert_eq!(
            vf,
            Vf {
                pci: "0000:01:10.2".into(),
                iommu_group: "42".into(),
                pf_netdev: "enp1s0f0".into(),
                vf_index: 1,
            }
        );
        let e = inspect(&root, "0000:09:00.0", "interface[0]").unwrap_err();
        assert!(e.contains("no PCI device 0000:09:00.0"), "{e}");
    }

    #[test]
    fn missing_iommu_or_driver_is_named() {
        let e = inspect(&sysfs("vfio-pci", false), "0000:01:10.2", "interface[1]").unwrap_err();
        assert!(
            e.starts_with("interface[1]: 0000:01:10.2 has no IOMMU group"),
            "{e}"
        );
        let e = inspect(&sysfs("ixgbevf", true), "0000:01:10.2", "interface[1]").unwrap_err();
        assert!(e.contains("bound to driver ixgbevf, not vfio-pci"), "{e}");
    }
}
