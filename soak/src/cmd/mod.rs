//! One module per subcommand.

pub mod deploy;
pub mod lab;
pub mod run;
pub mod samples;
pub mod score;
pub mod verify;
