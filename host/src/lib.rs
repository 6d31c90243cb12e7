//! Host-side plumbing shared by the platforms: named network namespaces,
//! links made over netlink, a state file per router so that everything
//! created can be removed again (also after a crash), the source/sink
//! topology, and the bare-namespace (baseline) platform.

pub mod cgroup;
pub mod console;
pub mod interrupt;
pub mod libvirt;
pub mod lifecycle;
pub mod links;
pub mod netns;
pub mod platform_netns;
pub mod sriov;
pub mod state;
pub mod tap;
pub mod topology;
pub mod verify;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Netlink(#[from] tinyvr_init::netlink::NlError),
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl HostError {
    pub fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        HostError::Sys {
            what: what.into(),
            source,
        }
    }
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        HostError::Io {
            what: what.into(),
            source,
        }
    }
}
