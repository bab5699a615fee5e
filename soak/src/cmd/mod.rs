//! One module per subcommand.

pub mod compare;
pub mod deploy;
pub mod gates;
pub mod inventory;
pub mod lab;
pub mod run;
pub mod score;
pub mod verify;
