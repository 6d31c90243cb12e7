//! The tinyvr router config: one TOML file describes one router.
//!
//! This crate is shared by the router init, the host tools and the tests. It
//! makes no syscalls: it parses ([`RouterConfig::from_toml`]), validates
//! ([`RouterConfig::validate`]) and expands generated routes, nothing more.

mod error;
pub mod sysctl_scope;
mod types;
mod validate;
pub mod values;

pub use error::{ConfigError, Errors};
pub use types::*;
pub use validate::{router_name, NAME_MAX};
pub use values::{CpuList, IfName, MacAddr, PciAddr, Prefix};

/// Parses and validates a router config in one step; what every consumer wants.
pub fn load(text: &str) -> Result<RouterConfig, Errors> {
    let cfg = RouterConfig::from_toml(text).map_err(Errors::one)?;
    cfg.validate()?;
    Ok(cfg)
}
