//! The tinyvr router init as a library: the netlink apply code shared by the
//! PID 1 binary, the `--apply` baseline mode and the host tools.

pub mod apply;
pub mod burn;
pub mod check;
pub mod held;
pub mod netlink;
pub mod pid1;
pub mod rings;
pub mod sysfs;
