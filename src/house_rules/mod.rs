//! The house rules as tests. The code map in docs/architecture.md is the layering rule: each
//! module may use only the modules its row names, and every module has a row. Files stay short
//! enough to read without scrolling (`src/`: 400 lines; `tests/` and `testcontainers/`: 600,
//! where a test's arrangement often reads better whole). The docs are checked against the code
//! in `docs.rs`.

mod docs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `module -> may call`, from the "Code map" table of docs/architecture.md.
fn code_map() -> BTreeMap<String, BTreeSet<String>> {
    let readme = include_str!("../../docs/architecture.md");
    let section = readme
        .split("## Code map")
        .nth(1)
        .expect("a Code map section");
    section
        .lines()
        .skip_while(|l| !l.starts_with("| module"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let module = cells[1]
                .trim_matches('`')
                .trim_start_matches("src/")
                .trim_end_matches('/')
                .trim_end_matches(".rs")
                .to_owned();
            let calls = cells[3]
                .split(',')
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect();
            (module, calls)
        })
        .collect()
}

/// Every `.rs` file of a module: its file, its directory's tree, or both.
fn files(module: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let file = module.with_extension("rs");
    if file.is_file() {
        found.push(file);
    }
    // Both can exist (`lua.rs` and its `lua/tests.rs`): the directory is walked whole.
    if module.is_dir() {
        walk(module, &mut found);
    }
    found
}

/// Every `.rs` file under `dir`.
fn walk(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn modules_call_only_what_the_code_map_allows() {
    let map = code_map();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: BTreeSet<String> = BTreeSet::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() || (name != "lib" && name != "build") {
            modules.insert(name);
        }
    }
    let mapped: BTreeSet<String> = map.keys().cloned().collect();
    assert_eq!(
        modules, mapped,
        "modules under src/ vs rows of the code map in docs/architecture.md"
    );

    let mut violations = Vec::new();
    for (module, allowed) in &map {
        for file in files(&src.join(module)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for prefix in ["crate::", "authsession::"] {
                for used in text.split(prefix).skip(1) {
                    let target: String = used
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if mapped.contains(&target) && target != *module && !allowed.contains(&target) {
                        violations.push(format!("{}: uses {target}", file.display()));
                    }
                }
            }
        }
    }
    violations.sort();
    violations.dedup();
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

/// Raw Redis commands are spelled in `store` only (and in `gateway`, which reads the contract's
/// keys as a gateway would, without the service's code).
#[test]
fn only_the_store_sends_raw_redis_commands() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    for module in code_map().keys() {
        // (`house_rules` names the calls it looks for.)
        if module == "store" || module == "gateway" || module == "house_rules" {
            continue;
        }
        for file in files(&src.join(module)) {
            let text = std::fs::read_to_string(&file).unwrap();
            if text.contains("redis::cmd(") || text.contains("redis::pipe(") {
                offenders.push(file.display().to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "raw Redis outside the store: {offenders:?}"
    );
}

/// The file bounds: `src/` 400 lines, `tests/` and `testcontainers/` 600 (a module's tests go in
/// a `tests.rs` of their own, a test module splits into a folder, when they would go over).
const BOUNDS: [(&str, usize); 3] = [("src", 400), ("tests", 600), ("testcontainers", 600)];

#[test]
fn no_file_is_over_its_trees_bound() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut long = Vec::new();
    for (tree, bound) in BOUNDS {
        for file in files(&root.join(tree)) {
            let lines = std::fs::read_to_string(&file).unwrap().lines().count();
            if lines > bound {
                long.push(format!("{} ({lines} > {bound})", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "files over their bound: {long:?}");
}

/// The layout is decided in one place: outside `store/layout.rs` nothing asks whether the
/// deployment is partitioned (flows match on the `Layout` value; where a script's admission
/// runs is `flows::admission`'s answer, passed in as the call's optional slots).
#[test]
fn only_the_layout_asks_whether_keys_are_partitioned() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed = ["layout.rs", "partitions.rs"];
    let offenders: Vec<_> = files(&src)
        .into_iter()
        .filter(|f| !allowed.iter().any(|a| f.ends_with(a)))
        .filter(|f| {
            // Spelled in two halves, so this file does not match itself.
            let needle = concat!(".is_", "partitioned()");
            std::fs::read_to_string(f).unwrap().contains(needle)
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "asks the layout by hand: {offenders:?}"
    );
}
