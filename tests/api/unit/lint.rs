//! The assembled Lua scripts pass `luacheck` (needs the tool, not Redis).

use authsession::store::scripts::scripts;

#[test]
fn luacheck_passes_over_the_assembled_scripts() {
    let installed = std::process::Command::new("luacheck")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let found = installed.then(|| "luacheck".into());
    let install = "Debian package lua-check; `testcontainers/test.sh` installs it";
    let Some(luacheck) = crate::helpers::tool("luacheck", found, install) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for script in scripts().all() {
        std::fs::write(
            dir.path().join(format!("{}.lua", script.name)),
            &script.body,
        )
        .unwrap();
    }
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/lua/.luacheckrc");
    let output = std::process::Command::new(luacheck)
        .arg("--no-color")
        .arg("--config")
        .arg(config)
        .arg(dir.path())
        .output()
        .expect("luacheck runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
