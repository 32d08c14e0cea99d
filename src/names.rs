//! Workspace names: validation of `--name`, derivation from a repo folder, and the
//! mapping between NAME and the pod name `devaipod-NAME` (pure, no I/O).

use std::fmt;

/// The prefix of every pod (and object) name devaipod creates.
pub(crate) const POD_PREFIX: &str = "devaipod-";

/// Longest NAME: keeps `devaipod-NAME-agent-home` and friends well under podman's limits.
pub(crate) const MAX_NAME_LEN: usize = 54;

/// A validated workspace name (the NAME in `devaipod-NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub(crate) struct Name(String);

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name {0:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    #[error(
        "name {0:?} must start with a lowercase letter or digit and contain only a-z, 0-9, '_', '.' and '-'"
    )]
    BadCharacters(String),
    #[error(
        "name {0:?} must not itself start with \"devaipod-\" (that prefix is added for the pod)"
    )]
    DoublePrefix(String),
}

impl Name {
    /// Validates a NAME given by the user: `^[a-z0-9][a-z0-9_.-]{0,53}$`, not starting
    /// with `devaipod-`.
    pub(crate) fn new(s: &str) -> Result<Self, NameError> {
        let Some(first) = s.chars().next() else {
            return Err(NameError::Empty);
        };
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(s.to_string()));
        }
        let ok_first = first.is_ascii_lowercase() || first.is_ascii_digit();
        let ok_rest = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
        if !ok_first || !ok_rest {
            return Err(NameError::BadCharacters(s.to_string()));
        }
        if s.starts_with(POD_PREFIX) {
            return Err(NameError::DoublePrefix(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }

    /// Accepts what every command accepts: NAME or `devaipod-NAME`.
    pub(crate) fn from_user(s: &str) -> Result<Self, NameError> {
        match s.strip_prefix(POD_PREFIX) {
            Some(rest) if !rest.is_empty() => Self::new(rest),
            _ => Self::new(s),
        }
    }

    /// Derives a default name from a repo folder name: lowercased, other characters
    /// replaced by `-`, trimmed to fit, plus `-` and `suffix` (a short unique tag).
    pub(crate) fn derive(folder: &str, suffix: &str) -> Self {
        let room = MAX_NAME_LEN - suffix.len() - 1;
        let base = slug(folder, room);
        let base = if base.is_empty() { "workspace" } else { &base };
        let name = format!("{base}-{suffix}");
        Self::new(&name).unwrap_or_else(|_| Self(format!("workspace-{suffix}")))
    }

    /// A valid name close to the refused `s` (`My Project!` gives `my-project`), to
    /// suggest; `None` when nothing of it is left.
    pub(crate) fn suggest(s: &str) -> Option<Self> {
        Self::new(&slug(s, MAX_NAME_LEN)).ok()
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// `devaipod-NAME`.
    pub(crate) fn pod_name(&self) -> String {
        format!("{POD_PREFIX}{}", self.0)
    }
}

/// `text` lowercased, other characters replaced by `-`, without our own prefix, trimmed
/// of separators at both ends, and at most `room` characters: a name's base.
fn slug(text: &str, room: usize) -> String {
    let mut base: String = text
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    // Must start with [a-z0-9] and must not carry our own prefix.
    while base.starts_with(POD_PREFIX) {
        base = base[POD_PREFIX.len()..].to_string();
    }
    let base = base.trim_start_matches(['_', '.', '-']);
    let base: String = base.chars().take(room).collect();
    base.trim_end_matches(['_', '.', '-']).to_string()
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A short random suffix for derived names (5 characters of [a-z0-9]).
pub(crate) fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_name_gets_a_valid_one_to_suggest() {
        for (refused, suggested) in [
            ("My Project!", Some("my-project")),
            ("devaipod-Foo", Some("foo")),
            ("__x__", Some("x")),
            (&"a".repeat(80), Some(&*"a".repeat(MAX_NAME_LEN))),
            ("!!!", None),
            ("", None),
        ] {
            assert_eq!(
                Name::suggest(refused).map(|n| n.to_string()).as_deref(),
                suggested,
                "{refused}"
            );
        }
    }

    #[test]
    fn accepts_valid_names() {
        for ok in ["a", "0", "hello", "my-repo_1.2", &"a".repeat(54)] {
            assert_eq!(
                Name::new(ok).map(|n| n.to_string()),
                Ok(ok.to_string()),
                "{ok}"
            );
        }
    }

    #[test]
    fn refuses_invalid_names() {
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert!(matches!(
            Name::new(&"a".repeat(55)),
            Err(NameError::TooLong(_))
        ));
        for bad in ["-a", ".a", "_a", "A", "a b", "a/b", "ä", "a:b", "../x"] {
            assert!(
                matches!(Name::new(bad), Err(NameError::BadCharacters(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Name::new("devaipod-x"),
            Err(NameError::DoublePrefix(_))
        ));
    }

    #[test]
    fn from_user_strips_one_prefix() {
        assert_eq!(
            Name::from_user("devaipod-foo").map(|n| n.pod_name()),
            Ok("devaipod-foo".into())
        );
        assert_eq!(
            Name::from_user("foo").map(|n| n.pod_name()),
            Ok("devaipod-foo".into())
        );
        assert!(matches!(
            Name::from_user("devaipod-devaipod-x"),
            Err(NameError::DoublePrefix(_))
        ));
        assert_eq!(
            Name::from_user("devaipod-"),
            Err(NameError::DoublePrefix("devaipod-".into()))
        );
    }

    #[test]
    fn derive_makes_valid_names() {
        let cases = [
            ("hello", "hello-ab1cd"),
            ("My Repo!", "my-repo-ab1cd"),
            ("---", "workspace-ab1cd"),
            ("devaipod-thing", "thing-ab1cd"),
            ("Ünïcode", "n-code-ab1cd"),
        ];
        for (folder, want) in cases {
            assert_eq!(Name::derive(folder, "ab1cd").as_str(), want, "{folder}");
        }
        let long = Name::derive(&"x".repeat(200), "ab1cd");
        assert_eq!(long.as_str().len(), MAX_NAME_LEN);
        assert!(Name::new(long.as_str()).is_ok());
    }

    #[test]
    fn random_suffix_is_name_safe() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(Name::new(&s).is_ok());
    }
}
