//! `soak-sim`: the deterministic gossip simulator (issue 4). A thin wrapper over
//! `soak_gossip::sim::cli`; see `docs/gossip.md`.
//!
//! `cargo run --release -p soak-node --bin soak-sim -- --peers N --scenario single|multi|churn|partition|slow --seed S --json`

fn main() {
    // Every soak binary installs the ring provider first (no TLS is used here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed = std::env::var("SEED").ok();
    std::process::exit(soak_gossip::sim::cli::main_with(&args, seed.as_deref()));
}
