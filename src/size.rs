//! Sizes as users write them (`16g`, `512m`, `1.5gb`, `4096`): the one grammar every
//! size in devaipod is read with. Callers add their own bounds (a minimum memory limit,
//! the reference CLI's narrower form) on top; the grammar itself stays the same.

/// Why a size could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SizeError {
    /// No number, or not one (`""`, `1.2.3`).
    #[error("expected a number such as \"16g\"")]
    Number,
    /// Something other than k, m, g or t (each optionally followed by b) after the number.
    #[error("unknown unit (use k, m, g or t)")]
    Unit,
    /// More bytes than fit in 64 bits.
    #[error("too large")]
    Overflow,
}

/// Reads a size in bytes.
///
/// The grammar, surrounding whitespace ignored and letters in any case:
/// `[+] NUMBER [UNIT]`, where NUMBER is digits with at most one `.` (`5`, `5.`, `.5`,
/// `1.5`) and UNIT is `k`, `m`, `g` or `t` (powers of 1024) followed by any number of
/// `b`s, or `b`s alone (bytes). A fraction of a byte is dropped.
///
/// It is the union of what devaipod's three size readers accepted before they became
/// this one: the config's `memory_limit` (`+` and integers), runArgs' docker sizes
/// (fractions and the trailing `b`s docker's own parser tolerates) and the
/// hostRequirements of image metadata (`4gb`).
pub(crate) fn parse_size(s: &str) -> Result<u64, SizeError> {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let multiplier = multiplier(unit)?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(SizeError::Number);
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| SizeError::Overflow)?
    };
    let whole = whole.checked_mul(multiplier).ok_or(SizeError::Overflow)?;
    let part = if fraction.is_empty() {
        0
    } else {
        let f: f64 = format!("0.{fraction}")
            .parse()
            .map_err(|_| SizeError::Number)?;
        // Below one multiplier, so it fits; truncating drops the fraction of a byte.
        (f * multiplier as f64) as u64
    };
    whole.checked_add(part).ok_or(SizeError::Overflow)
}

/// A size for people: whole units as they are (`10GiB`, `512MiB`), other sizes with
/// one decimal (`20.3MiB`), below 1 KiB in bytes (`512B`). Powers of 1024, as
/// [`parse_size`] reads them.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    while unit + 1 < UNITS.len() && bytes >= 1u64 << (10 * (unit + 1)) {
        unit += 1;
    }
    let scale = 1u64 << (10 * unit);
    if bytes.is_multiple_of(scale) {
        format!("{}{}", bytes / scale, UNITS[unit])
    } else {
        format!("{:.1}{}", bytes as f64 / scale as f64, UNITS[unit])
    }
}

/// The bytes one unit stands for: `k`/`m`/`g`/`t`, then any number of `b`s.
fn multiplier(unit: &str) -> Result<u64, SizeError> {
    let unit = unit.to_ascii_lowercase();
    match unit.trim_end_matches('b') {
        "" => Ok(1),
        "k" => Ok(1 << 10),
        "m" => Ok(1 << 20),
        "g" => Ok(1 << 30),
        "t" => Ok(1 << 40),
        _ => Err(SizeError::Unit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read() {
        let table: &[(&str, u64)] = &[
            ("0", 0),
            ("4096", 4096),
            ("1073741824", 1 << 30),
            ("+16g", 16 << 30),
            ("16g", 16 << 30),
            ("16G", 16 << 30),
            ("512M", 512 << 20),
            ("512m", 512 << 20),
            ("64k", 64 << 10),
            ("2t", 2 << 40),
            ("4gb", 4 << 30),
            ("4GB", 4 << 30),
            ("1kbb", 1 << 10),
            ("512b", 512),
            ("1.5g", 3 << 29),
            ("1.", 1),
            (".5k", 512),
            ("0.1k", 102),
            ("  2g  ", 2 << 30),
        ];
        for (text, bytes) in table {
            assert_eq!(parse_size(text), Ok(*bytes), "{text:?}");
        }
    }

    #[test]
    fn sizes_for_people() {
        let table: &[(u64, &str)] = &[
            (0, "0B"),
            (512, "512B"),
            (1024, "1KiB"),
            (1536, "1.5KiB"),
            (20 << 20, "20MiB"),
            ((20 << 20) + 300 * 1024, "20.3MiB"),
            (10 << 30, "10GiB"),
            (3 << 40, "3TiB"),
            (5000 << 40, "5000TiB"),
        ];
        for (bytes, text) in table {
            assert_eq!(human(*bytes), *text, "{bytes}");
        }
        // What is shown reads back as the same size when whole.
        assert_eq!(
            parse_size(human(10 << 30).trim_end_matches("iB")),
            Ok(10 << 30)
        );
    }

    #[test]
    fn non_sizes_are_refused_with_the_reason() {
        let table: &[(&str, SizeError)] = &[
            ("", SizeError::Number),
            (".", SizeError::Number),
            ("g", SizeError::Number),
            ("1.2.3", SizeError::Number),
            ("x", SizeError::Unit),
            ("lots", SizeError::Unit),
            ("1q", SizeError::Unit),
            ("1e3", SizeError::Unit),
            ("-1g", SizeError::Unit),
            ("1 g", SizeError::Unit),
            ("1gib", SizeError::Unit),
            ("99999999999999999999", SizeError::Overflow),
            ("99999999999t", SizeError::Overflow),
        ];
        for (text, why) in table {
            assert_eq!(parse_size(text), Err(*why), "{text:?}");
        }
    }
}
