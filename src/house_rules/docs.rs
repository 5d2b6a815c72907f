//! The docs cannot drift from the code: every relative link and anchor resolves, and every
//! variable, route, error code and script the docs name exists (and the reverse, where the docs
//! are the reference: every variable in docs/configuration.md, every route and error code in
//! docs/api.md, every script in docs/scripts.md).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config::VARIABLES;
use crate::store::scripts::scripts;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The README, the changelog and every file of `docs/`, with their text.
fn documents() -> Vec<(PathBuf, String)> {
    let mut paths = vec![root().join("README.md"), root().join("CHANGELOG.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// Every run of `text` that starts with `prefix` and goes on with ASCII alphanumerics or `extra`.
fn named<'a>(text: &'a str, prefix: &'a str, extra: &'a str) -> impl Iterator<Item = String> + 'a {
    text.match_indices(prefix).map(move |(at, _)| {
        text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || extra.contains(*c))
            .collect()
    })
}

/// The text outside fenced code blocks (a link or heading inside one is an example).
fn prose(text: &str) -> String {
    let mut fenced = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

/// Every `[text](target)` of the prose.
fn links(text: &str) -> Vec<String> {
    let prose = prose(text);
    let mut found = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            found.push(rest[..end].to_owned());
        }
    }
    found
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    for (path, text) in documents() {
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            let (file, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                path.clone()
            } else {
                path.parent().unwrap().join(file)
            };
            let name = format!("{}: ({link})", path.display());
            if !target.exists() {
                broken.push(format!("{name}: no such file"));
            } else if !fragment.is_empty() {
                let text = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&text).contains(fragment) {
                    broken.push(format!("{name}: no such heading"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

/// Every repository path the docs name (`src/...`, `tests/...`, `lua/...`, `testcontainers/...`,
/// `docs/...`) exists; a `<placeholder>` or `*` in a path skips it.
#[test]
fn every_file_the_docs_name_exists() {
    let mut missing = Vec::new();
    for (path, text) in documents() {
        for tree in ["src/", "tests/", "lua/", "testcontainers/", "docs/"] {
            for (at, _) in text.match_indices(tree) {
                let before = text[..at].chars().next_back();
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)) {
                    continue;
                }
                let named: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || "/._-<>*".contains(*c))
                    .collect();
                let named = named.trim_end_matches(['.', ',']);
                if named.contains(['<', '*']) || !named.contains(['.', '/']) {
                    continue;
                }
                if !root().join(named).exists() {
                    missing.push(format!("{}: {named}", path.display()));
                }
            }
        }
    }
    assert!(missing.is_empty(), "paths that do not exist: {missing:#?}");
}

#[test]
fn nothing_points_outside_the_repository() {
    for (path, text) in documents() {
        assert!(
            !text.contains("../shared"),
            "{} points outside the repository",
            path.display()
        );
    }
}

/// Every `AUTHSESSION_*` name of `text` (a trailing `_*` kept: a family of variables).
fn variables_named(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("AUTHSESSION_") {
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_' || *c == '*')
            .collect();
        names.insert(name);
    }
    names
}

/// The Rust source of the repository, tests and bench included, where development variables
/// are read.
fn development_sources() -> String {
    ["src", "tests", "testcontainers"]
        .iter()
        .flat_map(|tree| super::files(&root().join(tree)))
        .map(|file| std::fs::read_to_string(file).unwrap())
        .collect()
}

#[test]
fn every_variable_the_docs_name_exists() {
    let declared: BTreeSet<&str> = VARIABLES.iter().map(|v| v.name).collect();
    let sources = development_sources();
    for (path, text) in documents() {
        for name in variables_named(&text) {
            let known = match name.strip_suffix('*') {
                Some(family) => declared.iter().any(|d| d.starts_with(family)),
                // A variable of the tests or the bench: read somewhere in their source.
                None => {
                    declared.contains(name.as_str()) || sources.contains(&format!("\"{name}\""))
                }
            };
            assert!(known, "{}: {name} is read nowhere", path.display());
        }
    }
}

/// The routes of the OpenAPI document (which the fuzz test holds the service to).
fn routes() -> Vec<String> {
    let document: serde_json::Value =
        serde_json::from_str(include_str!("../http/openapi.json")).unwrap();
    document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// Whether `named` (a path in the docs, with `{x}`, `<x>` or a sample value) is `route`.
fn same_route(named: &str, route: &str) -> bool {
    let placeholder = |s: &str| s.starts_with('{') || s.starts_with('<');
    let (a, b): (Vec<&str>, Vec<&str>) = (named.split('/').collect(), route.split('/').collect());
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| x == y || placeholder(y) || placeholder(x))
}

#[test]
fn every_route_the_docs_name_exists_and_the_api_doc_names_every_route() {
    let routes = routes();
    for (path, text) in documents() {
        for named in named(&text, "/api/v1/", "/_-{}<>") {
            assert!(
                routes.iter().any(|r| same_route(&named, r)),
                "{}: no route {named}",
                path.display()
            );
        }
    }
    let api = include_str!("../../docs/api.md");
    for route in &routes {
        let documented = named(api, "/api/v1/", "/_-{}<>").any(|named| same_route(&named, route));
        assert!(documented, "docs/api.md lacks {route}");
    }
}

/// The error codes of the OpenAPI document's error envelope.
fn error_codes() -> BTreeSet<String> {
    let document: serde_json::Value =
        serde_json::from_str(include_str!("../http/openapi.json")).unwrap();
    let mut codes = BTreeSet::new();
    let mut pending = vec![&document];
    while let Some(value) = pending.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(all)) =
                    map.get("code").and_then(|c| c.get("enum"))
                {
                    codes.extend(all.iter().filter_map(|c| c.as_str().map(str::to_owned)));
                }
                pending.extend(map.values());
            }
            serde_json::Value::Array(all) => pending.extend(all),
            _ => {}
        }
    }
    codes
}

#[test]
fn every_error_code_the_docs_name_exists_and_the_api_doc_names_every_code() {
    let codes = error_codes();
    assert!(codes.contains("invalid_request"), "{codes:?}");
    for (path, text) in documents() {
        // `409 challenge_already_confirmed`: a status, then a word of the error table.
        let words: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || c == '`' || c == '|')
            .filter(|w| !w.is_empty())
            .collect();
        for pair in words.windows(2) {
            let status = pair[0].len() == 3 && pair[0].starts_with(['4', '5']);
            let code = pair[1].trim_end_matches([',', '.', ';', ':', ')']);
            if status
                && code.contains('_')
                && code.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                assert!(
                    codes.contains(code),
                    "{}: no error code {code}",
                    path.display()
                );
            }
        }
    }
    let api = include_str!("../../docs/api.md");
    for code in &codes {
        assert!(
            api.contains(&format!("`{code}`")) || api.contains(&format!(" {code}")),
            "docs/api.md lacks {code}"
        );
    }
}

#[test]
fn every_script_the_docs_name_exists() {
    let names: BTreeSet<&str> = scripts().all().iter().map(|s| s.name).collect();
    for (path, text) in documents() {
        for named in named(&text, "lua/", "/_.") {
            if named.ends_with(".lua") {
                assert!(
                    root().join(&named).is_file(),
                    "{}: no file {named}",
                    path.display()
                );
            }
        }
        // The scripts table's rows: `| `name` vN |`.
        for row in text.lines().filter(|l| l.starts_with("| `")) {
            let cell = row[3..].split('`').next().unwrap_or("");
            let version = row[3 + cell.len()..].strip_prefix("` v");
            if version.is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit())) {
                assert!(names.contains(cell), "{}: no script {cell}", path.display());
            }
        }
    }
}
