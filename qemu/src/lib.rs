//! Host side of the VM platform: which accelerator to use, the qemu
//! command line, and QMP.

pub mod accel;
pub mod argv;
pub mod libvirt;
pub mod libvirt_up;
pub mod memory;
pub mod migrate;
pub mod platform;
pub mod qmp;
pub mod sched;
pub mod vfio;
