//! One module per subcommand.

pub mod deploy;
pub mod export;
pub mod lab;
pub mod report;
pub mod run;
pub mod scenarios;
pub mod score;
pub mod verify;
