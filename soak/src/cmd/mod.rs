//! One module per subcommand.

pub mod compare;
pub mod deploy;
pub mod export;
pub mod gates;
pub mod inventory;
pub mod lab;
pub mod report;
pub mod run;
pub mod samples;
pub mod scenarios;
pub mod score;
pub mod verify;
pub mod watch;
