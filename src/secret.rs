//! Secret values: a newtype whose Debug and Display redact, so a value cannot reach a
//! log line, an error or a plan by accident. Only [`SecretValue::expose`] gives it out,
//! and only the code that hands it to Podman's secret store calls that.

use std::fmt;

/// A secret value (an API key, a password).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SecretValue(String);

impl SecretValue {
    pub(crate) fn new(value: String) -> Self {
        Self(value)
    }

    /// A fresh random value of 40 characters from [A-Za-z0-9].
    pub(crate) fn generate() -> Self {
        use rand::Rng;
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        Self(
            (0..40)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect(),
        )
    }

    /// The value itself: only for handing to the engine's secret store.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = SecretValue::new("sentinel-123".into());
        assert_eq!(format!("{s}"), "<redacted>");
        assert!(!format!("{s:?}").contains("sentinel"));
        assert!(!format!("{:#?}", vec![s.clone()]).contains("sentinel"));
        assert_eq!(s.expose(), "sentinel-123");
    }

    #[test]
    fn generated_values_are_long_and_distinct() {
        let (a, b) = (SecretValue::generate(), SecretValue::generate());
        assert_eq!(a.expose().len(), 40);
        assert_ne!(a, b);
    }
}
