//! PID 1 duties: everything the init does beyond applying the config.

pub mod acpi;
pub mod caps;
pub mod console;
pub mod counters;
pub mod mounts;
pub mod power;
pub mod services;
pub mod source;
pub mod supervise;

/// Where the init runs; decides mounts and what "shut down" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// PID 1 of a VM: mount everything, power off at the end.
    Vm,
    /// PID 1 of a container (LXC, or a pid namespace): the manager mounted
    /// /proc; exit at the end.
    Container,
}

impl Platform {
    /// Its name in READY and ERROR lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Vm => "vm",
            Platform::Container => "container",
        }
    }

    /// A container manager mounts /proc before starting init and sets
    /// `container=`; a kernel starting init from an initramfs does neither.
    pub fn detect() -> Platform {
        if std::env::var_os("container").is_some()
            || std::path::Path::new("/proc/self/stat").exists()
        {
            Platform::Container
        } else {
            Platform::Vm
        }
    }
}
