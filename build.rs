// `sqlx::migrate!` embeds migrations/ at compile time, but cargo only rebuilds when a Rust
// source changes: without this, a new migration file would silently be left out of the binary.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
