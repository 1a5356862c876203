//! Records where the prebuilt libduckdb was linked from (`DUCKDB_LIB_DIR`) as the binary's
//! run path, so `hybridstore` finds it without `LD_LIBRARY_PATH`.

fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{dir}");
    }
}
