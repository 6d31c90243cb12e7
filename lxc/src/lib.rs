//! The container platform: the image's rootfs run by real LXC
//! (`lxc-start`) with tinyvr-init as PID 1 and the router config at
//! /etc/tinyvr/router.toml.

pub mod config;
pub mod platform;
