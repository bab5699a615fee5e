//! Faults: the nemesis and its backends.
pub mod host;
