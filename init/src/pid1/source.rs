//! Where the router config comes from, first found wins: an explicit
//! `--config FILE`, the qemu fw_cfg entry, `tinyvr.config=` (base64) on the
//! kernel command line, `/etc/tinyvr/router.toml`. Also the init's own
//! settings from the command line (`tinyvr.log=`, `tinyvr.on_error=`).

use base64::Engine;
use std::path::{Path, PathBuf};

pub const FW_CFG_ENTRY: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/tinyvr/config/raw";
pub const ROOTFS_CONFIG: &str = "/etc/tinyvr/router.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    Poweroff,
    Halt,
    Reboot,
}

/// The `tinyvr.*` parameters of a kernel command line.
#[derive(Debug, Default, PartialEq)]
pub struct Cmdline {
    pub config_b64: Option<String>,
    pub log: Option<log::LevelFilter>,
    pub on_error: Option<OnError>,
    /// Parameters that were present but wrong, reported once logging is up.
    pub problems: Vec<String>,
}

impl Cmdline {
    pub fn parse(line: &str) -> Cmdline {
        let mut c = Cmdline::default();
        for word in line.split_whitespace() {
            let Some((k, v)) = word.split_once('=') else {
                continue;
            };
            match k {
                "tinyvr.config" => c.config_b64 = Some(v.to_string()),
                "tinyvr.log" => match v.parse() {
                    Ok(l) => c.log = Some(l),
                    Err(_) => c.problems.push(format!(
                        "tinyvr.log={v}: expected off, error, warn, info, debug or trace"
                    )),
                },
                "tinyvr.on_error" => match v {
                    "poweroff" => c.on_error = Some(OnError::Poweroff),
                    "halt" => c.on_error = Some(OnError::Halt),
                    "reboot" => c.on_error = Some(OnError::Reboot),
                    _ => c.problems.push(format!(
                        "tinyvr.on_error={v}: expected poweroff, halt or reboot"
                    )),
                },
                k if k.starts_with("tinyvr.") => {
                    c.problems.push(format!("{word}: unknown parameter"))
                }
                _ => {}
            }
        }
        c
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Source {
    File(PathBuf),
    FwCfg,
    Cmdline,
    Rootfs,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::FwCfg => write!(f, "fw_cfg opt/tinyvr/config"),
            Source::Cmdline => write!(f, "kernel command line tinyvr.config="),
            Source::Rootfs => write!(f, "{ROOTFS_CONFIG}"),
        }
    }
}

/// Finds the config text. `root` prefixes the fixed paths (tests pass a
/// temporary directory; the init passes "/").
pub fn find(
    explicit: Option<&Path>,
    cmdline: &Cmdline,
    root: &Path,
) -> Result<(Source, String), String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
    let text = |src: &Source, bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| format!("config from {src} is not UTF-8 text"))
    };
    if let Some(p) = explicit {
        let s = Source::File(p.to_path_buf());
        return Ok((s.clone(), text(&s, read(p)?)?));
    }
    let fw = root.join(FW_CFG_ENTRY.trim_start_matches('/'));
    if fw.exists() {
        return Ok((Source::FwCfg, text(&Source::FwCfg, read(&fw)?)?));
    }
    if let Some(b) = &cmdline.config_b64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|e| {
                format!("tinyvr.config= on the kernel command line is not valid base64: {e}")
            })?;
        return Ok((Source::Cmdline, text(&Source::Cmdline, bytes)?));
    }
    let f = root.join(ROOTFS_CONFIG.trim_start_matches('/'));
    if f.exists() {
        return Ok((Source::Rootfs, text(&Source::Rootfs, read(&f)?)?));
    }
    Err(format!(
        "no router config: looked for {FW_CFG_ENTRY}, tinyvr.config= on the kernel command line and {ROOTFS_CONFIG}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_parameters() {
        let c = Cmdline::parse("console=ttyS0 tinyvr.log=debug tinyvr.on_error=halt tinyvr.config=bmFtZT0icjEiCg== quiet");
        assert_eq!(c.log, Some(log::LevelFilter::Debug));
        assert_eq!(c.on_error, Some(OnError::Halt));
        assert_eq!(c.config_b64.as_deref(), Some("bmFtZT0icjEiCg=="));
        let bad = Cmdline::parse("tinyvr.on_error=explode tinyvr.colour=1 tinyvr.log=loud");
        assert_eq!(bad.problems.len(), 3, "{:?}", bad.problems);
    }

    #[test]
    fn sources_in_order() {
        let dir = std::env::temp_dir().join(format!("tinyvr-src-{}", std::process::id()));
        let rootfs = dir.join("etc/tinyvr");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::write(rootfs.join("router.toml"), "name = \"file\"").unwrap();
        let none = Cmdline::default();
        assert_eq!(
            find(None, &none, &dir).unwrap(),
            (Source::Rootfs, "name = \"file\"".into())
        );
        let cmd = Cmdline::parse("tinyvr.config=bmFtZT0icjEiCg==");
        assert_eq!(
            find(None, &cmd, &dir).unwrap(),
            (Source::Cmdline, "name=\"r1\"\n".into())
        );
        let fw = dir.join(FW_CFG_ENTRY.trim_start_matches('/'));
        std::fs::create_dir_all(fw.parent().unwrap()).unwrap();
        std::fs::write(&fw, "name = \"fw\"").unwrap();
        assert_eq!(find(None, &cmd, &dir).unwrap().0, Source::FwCfg);
        let bad = Cmdline::parse("tinyvr.config=%%%");
        std::fs::remove_file(&fw).unwrap();
        assert!(find(None, &bad, &dir)
            .unwrap_err()
            .contains("not valid base64"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(find(None, &none, &dir)
            .unwrap_err()
            .contains("no router config"));
    }
}
