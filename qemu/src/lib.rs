//! Host side of the VM platform.

pub mod qmp;
