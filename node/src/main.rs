fn main() {
    eprintln!("soak-node: not built yet");
    std::process::exit(69);
}
