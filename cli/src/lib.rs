//! The `nmitrace` commands as a library: what the binary (`main.rs`) wires
//! to its command line, and what the Python package calls in-process
//! (`batch::analyse_files`, `batch::write_part`, `merge::merge`).

pub mod analyze;
pub mod analyze_outputs;
pub mod atomic;
pub mod batch;
pub mod convert;
pub mod events;
pub mod merge;
pub mod model_args;
pub mod progress;

/// Exit status of an internal error: a bug in nmitrace (EX_SOFTWARE).
pub const EXIT_INTERNAL: u8 = 70;
