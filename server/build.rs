//! Rebuilds the server when a migration is added: `sqlx::migrate!` embeds the files it
//! found at compile time, and only those are tracked by Cargo otherwise.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
