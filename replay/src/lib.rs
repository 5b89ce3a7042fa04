//! nmitrace-replay: events → per-CPU and per-mm kernel state over time.
//!
//! A streaming state machine: it holds state (tasks, mms, CPUs), never events.
