//! The project's own OpenAPI document, fuzzed against a real instance by schemathesis with every
//! check on: schema-valid requests must be accepted (or answered with a documented outcome),
//! schema-violating ones refused, every answer must match the document, and the internal surface
//! must refuse requests without its token. A document looser or stricter than the service fails.
//!
//! Needs the `schemathesis` CLI (PyPI): the README's test command installs it into
//! `target/schemathesis-venv`; `AUTHSESSION_SCHEMATHESIS` names another executable.

use std::path::PathBuf;
use std::time::Duration;

use authsession::config;

use crate::helpers::{harness, public_key, unique_email};

const TOKEN: &str = "fuzz-internal-token-0123456789";

fn schemathesis() -> Option<PathBuf> {
    let venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis-venv/bin/schemathesis");
    let found = match std::env::var_os("AUTHSESSION_SCHEMATHESIS") {
        Some(path) => Some(path.into()),
        None => venv.is_file().then_some(venv),
    };
    crate::helpers::tool(
        "schemathesis",
        found,
        "the README's test command installs it, or `python3 -m venv target/schemathesis-venv && \
         target/schemathesis-venv/bin/pip install 'schemathesis>=4,<5'`",
    )
}

/// The project's schemathesis settings plus dictionaries of ids that exist, so half the
/// generated internal requests reach real sessions and users instead of 404.
fn config_file(sessions: &[String], users: &[String]) -> tempfile::NamedTempFile {
    let root = env!("CARGO_MANIFEST_DIR");
    let base =
        std::fs::read_to_string(format!("{root}/tests/api/service/schemathesis.toml")).unwrap();
    let list = |ids: &[String]| {
        ids.iter()
            .map(|id| format!("{id:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "[parameters]\n\
         \"path.device_session_id\" = {{ dictionary = \"sessions\", probability = 0.5 }}\n\
         \"path.user_id\" = {{ dictionary = \"users\", probability = 0.5 }}\n\n\
         [dictionaries.sessions]\nvalues = [{}]\n\n\
         [dictionaries.users]\nvalues = [{}]\n\n{base}",
        list(sessions),
        list(users)
    );
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    file
}

/// Runs schemathesis over the operations whose path matches `paths` at `base`; returns its
/// report when it found anything.
async fn fuzz(
    schemathesis: &std::path::Path,
    config: &std::path::Path,
    base: &str,
    paths: &str,
    extra: &[&str],
) -> Option<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = tokio::process::Command::new(schemathesis)
        .current_dir(std::env::temp_dir())
        .args(["--config-file", &config.display().to_string()])
        .args(["run", &format!("{root}/src/http/openapi.json")])
        .args(["--url", base, "--include-path-regex", paths])
        .args(["--checks", "all", "--max-examples", "60", "--seed", "1"])
        // One worker: CPython 3.11 raised internal AST errors with two.
        .args(["--workers", "1", "--request-timeout", "10", "--no-color"])
        .args(extra)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), output)
        .await
        .expect("schemathesis finishes within 5 minutes")
        .expect("schemathesis runs");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (!output.status.success()).then_some(report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_says_exactly_what_the_service_accepts() {
    let Some(schemathesis) = schemathesis() else {
        return;
    };
    let h = harness(&[(config::INTERNAL_HTTP_TOKEN, TOKEN)]).await;
    let (mut sessions, mut users) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (challenge_id, code) = h.send_code(&unique_email()).await;
        let reply = h.app.confirm(&challenge_id, &code, &public_key()).await;
        let session = reply.body["device_session_id"].as_str().unwrap().to_owned();
        let url = h
            .app
            .internal_url(&format!("/api/v1/internal/sessions/{session}"));
        let record = h.app.send(h.app.http.get(url).bearer_auth(TOKEN)).await;
        users.push(record.body["user_id"].as_str().unwrap().to_owned());
        sessions.push(session);
    }
    let config = config_file(&sessions, &users);
    let public = format!("http://{}", h.app.public_addr);
    let internal = format!("http://{}", h.app.internal_addr);
    let bearer = format!("Authorization: Bearer {TOKEN}");

    let mut failures = Vec::new();
    // Public: every phase, stateful included (the document links send to confirm).
    if let Some(report) = fuzz(
        &schemathesis,
        config.path(),
        &public,
        "^/api/v1/public/",
        &[],
    )
    .await
    {
        failures.push(report);
    }
    // Internal: no links between its operations, so no stateful phase.
    let internal_args = ["-H", &bearer, "--phases", "examples,coverage,fuzzing"];
    if let Some(report) = fuzz(
        &schemathesis,
        config.path(),
        &internal,
        "^/api/v1/internal/",
        &internal_args,
    )
    .await
    {
        failures.push(report);
    }
    assert!(
        failures.is_empty(),
        "schemathesis found:\n{}",
        failures.join("\n")
    );
}
