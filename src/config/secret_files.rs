//! Secrets from files, the container convention: `<NAME>_FILE` names a file whose content is the
//! secret `<NAME>`, so secrets need not sit in the environment that `docker inspect` and
//! `/proc/<pid>/environ` show. A secret file must be readable by its owner only (mode 0600 or
//! 0400): a group- or world-readable one is refused, as is setting both the variable and its
//! file. A problem names the variable and the path, never the content.

use std::collections::HashMap;
use std::path::Path;

use super::parse::Parser;
use super::vars::*;
use super::EnvSource;

/// Each secret and the variable naming its file.
pub const SECRET_FILES: [(&str, &str); 5] = [
    (REDIS_PASSWORD, REDIS_PASSWORD_FILE),
    (REDIS_SENTINEL_PASSWORD, REDIS_SENTINEL_PASSWORD_FILE),
    (INTERNAL_HTTP_TOKEN, INTERNAL_HTTP_TOKEN_FILE),
    (CODE_HASH_KEY, CODE_HASH_KEY_FILE),
    (CODE_HASH_KEY_PREVIOUS, CODE_HASH_KEY_PREVIOUS_FILE),
];

/// The environment with every secret read from its file, where one is named.
pub struct WithSecretFiles<'a> {
    env: &'a dyn EnvSource,
    read: HashMap<&'static str, String>,
}

impl<'a> WithSecretFiles<'a> {
    /// Reads every named secret file; a problem for each that cannot be used.
    pub fn read(env: &'a dyn EnvSource, p: &mut Parser<'_>) -> Self {
        let mut read = HashMap::new();
        for (secret, file) in SECRET_FILES {
            let Some(path) = env.get(file).filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            if env.get(secret).is_some_and(|v| !v.trim().is_empty()) {
                p.problem(file, None, &format!("either {secret} or {file}, not both"));
                continue;
            }
            match read_secret(Path::new(path.trim())) {
                Ok(value) => {
                    read.insert(secret, value);
                }
                Err(why) => p.problem(file, Some(path), &format!("a file holding {secret}: {why}")),
            }
        }
        Self { env, read }
    }
}

impl EnvSource for WithSecretFiles<'_> {
    fn get(&self, name: &str) -> Option<String> {
        match self.read.get(name) {
            Some(value) => Some(value.clone()),
            None => self.env.get(name),
        }
    }

    fn names(&self) -> Vec<String> {
        self.env.names()
    }
}

/// A secret file's content, trimmed; why it cannot be used (never its content).
pub fn read_secret(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it ({e})"))?;
    if !meta.is_file() {
        return Err("not a file".into());
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "its mode {:o} lets others read it; it must be 0600 or 0400",
            meta.mode() & 0o777
        ));
    }
    let value = std::fs::read_to_string(path).map_err(|e| format!("cannot read it ({e})"))?;
    let value = value.trim();
    if value.is_empty() {
        return Err("it is empty".into());
    }
    Ok(value.to_owned())
}
