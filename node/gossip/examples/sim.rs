//! The simulator command line, runnable without the node shell:
//! `cargo run --release -p soak-gossip --example sim -- --peers 1000 --scenario single --json`.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed = std::env::var("SEED").ok();
    std::process::exit(soak_gossip::sim::cli::main_with(&args, seed.as_deref()));
}
