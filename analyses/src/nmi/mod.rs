//! What an NMI is, as the trace shows it: the register dump it printed
//! ([`dump`]) and the instance builder that groups `nmi_handler` events into
//! NMIs and attributes faults and dumps to them ([`instance`]). No findings
//! are written here: the detectors ([`crate::detect`]) judge what is built.

pub mod dump;
pub mod instance;
