//! `agora`: the developer's CLI.

fn main() {
    eprintln!("agora: not yet built");
    std::process::exit(2);
}
