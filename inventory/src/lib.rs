//! `soak-inventory`: hosts and how to reach them — inventory parsing (pure) and the local,
//! SSH and network-namespace lab backends (IO).

pub mod lab;
