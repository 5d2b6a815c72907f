//! Unknown variables: a misspelled `AUTHSESSION_*` variable (say
//! `AUTHSESSION_INTERNAL_HTTP_TOKN`) would otherwise be ignored without a word, leaving a default
//! (an open internal surface) in place.

use super::*;

/// `AUTHSESSION_*` variables present but unknown, each with the nearest known name when one is
/// close (a likely typo), sorted.
pub fn unknown_variables(env: &dyn EnvSource) -> Vec<(String, Option<&'static str>)> {
    let mut unknown: Vec<_> = env
        .names()
        .into_iter()
        .filter(|name| {
            name.starts_with("AUTHSESSION_") && !VARIABLES.iter().any(|v| v.name == name)
        })
        .map(|name| {
            let nearest = VARIABLES
                .iter()
                .map(|known| (strsim::levenshtein(&name, known.name), known.name))
                .min()
                .filter(|(distance, _)| *distance <= 4)
                .map(|(_, known)| known);
            (name, nearest)
        })
        .collect();
    unknown.sort();
    unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelled_variable_is_refused_naming_the_nearest_known_one() {
        let env: HashMap<String, String> = [
            ("AUTHSESSION_INTERNAL_HTTP_TOKN", "0123456789abcdef"),
            ("AUTHSESSION_SOMETHING_ELSE_ENTIRELY", "1"),
            ("UNRELATED", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let err = Config::from_source(&env).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("AUTHSESSION_INTERNAL_HTTP_TOKN")
                && text.contains("did you mean AUTHSESSION_INTERNAL_HTTP_TOKEN?"),
            "{text}"
        );
        assert!(text.contains("AUTHSESSION_SOMETHING_ELSE_ENTIRELY"));
        assert!(
            !text.contains("0123456789abcdef"),
            "values are not echoed: {text}"
        );
        assert!(!text.contains("UNRELATED"));

        let mut allowed = env.clone();
        allowed.insert(ALLOW_UNKNOWN_VARIABLES.into(), "true".into());
        assert!(Config::from_source(&allowed).is_ok());
    }
}
