//! The router tester: offers packet load through routers under test and
//! measures what comes out; `ceiling` first measures the generator alone. `experiment` is the file format; `gen` and
//! `sink` the two ends of the traffic; `counters` and `cpu` what the
//! kernel reports; `search` and `stats` the arithmetic; `routers` brings
//! platforms up and down; `run` drives the modes; `report` and `plot`
//! write the results.

pub mod ceiling;
pub mod counters;
pub mod cpu;
pub mod experiment;
pub mod frame;
pub mod gen;
pub mod neighbours;
pub mod plot;
pub mod report;
pub mod routers;
pub mod run;
pub mod search;
pub mod seq;
pub mod sink;
pub mod softnet;
pub mod stats;
pub mod timeline;
