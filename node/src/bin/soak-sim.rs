fn main() {
    eprintln!("soak-sim: not built yet");
    std::process::exit(69);
}
