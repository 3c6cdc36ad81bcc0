// `sqlx::migrate!` embeds the migration files at compile time; without this,
// adding a new file to a migrations directory would not trigger a rebuild.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/sqlite");
    println!("cargo:rerun-if-changed=../../migrations/postgres");
}
