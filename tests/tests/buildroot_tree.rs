//! Buildroot cannot be downloaded here, so the external tree is checked
//! structurally: every file it names exists, the defconfig selects the
//! package and points the kernel at kernel-config/, and the package's
//! variables match its directory name (as Buildroot's macros require).

use std::path::{Path, PathBuf};
use tinyvr_tests::workspace;

fn tree() -> PathBuf {
    workspace().join("buildroot-overlay")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Replaces $(BR2_EXTERNAL_TINYVR_PATH) / $BR2_EXTERNAL_TINYVR_PATH with the tree.
fn resolve(s: &str) -> PathBuf {
    let t = tree().display().to_string();
    PathBuf::from(
        s.replace("$(BR2_EXTERNAL_TINYVR_PATH)", &t)
            .replace("$BR2_EXTERNAL_TINYVR_PATH", &t),
    )
}

#[test]
fn external_desc_names_the_tree() {
    let d = read(&tree().join("external.desc"));
    assert!(d.lines().any(|l| l == "name: TINYVR"), "{d}");
}

#[test]
fn every_sourced_config_in_exists_and_packages_match_their_directory() {
    let cfg = read(&tree().join("Config.in"));
    let sourced: Vec<&str> = cfg
        .lines()
        .filter_map(|l| l.trim().strip_prefix("source "))
        .map(|s| s.trim_matches('"'))
        .collect();
    assert!(!sourced.is_empty());
    for s in sourced {
        let p = resolve(s);
        assert!(p.is_file(), "Config.in sources {s}, which does not exist");
        let dir = p.parent().unwrap();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let var = name.to_uppercase().replace('-', "_");
        let mk = dir.join(format!("{name}.mk"));
        let mk_text = read(&mk);
        assert!(
            read(&p).contains(&format!("config BR2_PACKAGE_{var}")),
            "{}",
            p.display()
        );
        for needed in [
            format!("{var}_VERSION"),
            format!("{var}_SITE"),
            "$(eval $(cargo-package))".into(),
        ] {
            assert!(mk_text.contains(&needed), "{} lacks {needed}", mk.display());
        }
        // The package builds the crate that exists in this workspace.
        assert!(mk_text.contains("--package tinyvr-init"));
        assert!(workspace().join("init/Cargo.toml").is_file());
    }
    assert!(
        read(&tree().join("external.mk")).contains("$(BR2_EXTERNAL_TINYVR_PATH)/package/*/*.mk")
    );
}

#[test]
fn defconfig_selects_the_package_and_every_path_resolves() {
    let d = read(&tree().join("configs/tinyvr_x86_64_defconfig"));
    for line in [
        "BR2_PACKAGE_TINYVR_INIT=y",
        "BR2_INIT_NONE=y",
        "BR2_LINUX_KERNEL=y",
        "BR2_TARGET_ROOTFS_CPIO=y",
    ] {
        assert!(d.lines().any(|l| l == line), "defconfig lacks {line}");
    }
    let mut paths = 0;
    for l in d.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, val)) = l.split_once('=') else {
            continue;
        };
        let val = val.trim_matches('"');
        if val.contains("BR2_EXTERNAL_TINYVR_PATH") {
            for p in val.split_whitespace() {
                let r = resolve(p);
                assert!(
                    r.exists(),
                    "{key} names {p} = {}, which does not exist",
                    r.display()
                );
                paths += 1;
            }
        }
    }
    assert!(paths >= 3);
    let frag = d
        .lines()
        .find_map(|l| l.strip_prefix("BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES="))
        .unwrap();
    let frag = resolve(frag.trim_matches('"')).canonicalize().unwrap();
    assert_eq!(
        frag,
        workspace()
            .join("kernel-config/tinyvr.config")
            .canonicalize()
            .unwrap()
    );
    // The base config really is a tinyconfig for the same kernel series.
    let base = read(&tree().join("board/tinyvr/linux-tinyconfig.config"));
    assert!(
        base.contains("Linux/x86 6.1."),
        "base config is not for Linux 6.1"
    );
    assert!(
        base.contains("# CONFIG_NET is not set"),
        "base config is not tinyconfig"
    );
    let version = d
        .lines()
        .find_map(|l| l.strip_prefix("BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE="))
        .unwrap();
    assert!(version.trim_matches('"').starts_with("6.1."));
}
