//! `weft`: the command-line tool.

fn main() {
    println!("weft {}", env!("CARGO_PKG_VERSION"));
}
