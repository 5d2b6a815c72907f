//! Tells cargo that the embedded Lua scripts are inputs of the build.
fn main() {
    println!("cargo:rerun-if-changed=lua");
}
