//! Text from the agent or the repo on its way to the user's terminal.
//!
//! Session titles, commit subjects, log lines and the like are written by the agent (or
//! the repo), so they may carry terminal control sequences: a window title (OSC 0), a
//! clipboard write (OSC 52), a cleared screen (CSI 2J), a link (OSC 8), a bidi override
//! that reorders what the user reads. Everything devaipod prints for humans that holds
//! such text goes through [`line`] or [`text`], which show every control character as a
//! visible escape (`\x1b`, `\u{202e}`) instead of passing it to the terminal. `--json`
//! output is exact JSON and needs none of this: JSON escapes control characters itself.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` as one line: every control character, newlines and tabs included, escaped.
pub(crate) fn line(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// `s` as text: newlines and tabs kept, every other control character escaped.
pub(crate) fn text(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// Bytes that may not be UTF-8 (a container's output), as [`text`]: invalid bytes show
/// as `\xNN`.
pub(crate) fn bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        out.push_str(&text(chunk.valid()));
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

fn escape(s: &str, keep_layout: bool) -> Cow<'_, str> {
    let needs = |c: char| unsafe_char(c) && !(keep_layout && matches!(c, '\n' | '\t'));
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !needs(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

/// Characters a terminal acts on or that change how the text around them reads: C0 and
/// C1 controls, DEL, the bidi embeddings, overrides and isolates, and the Unicode line
/// and paragraph separators.
fn unsafe_char(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200e}' | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_are_shown_not_sent() {
        let cases = [
            ("\x1b]0;pwned\x07title", "\\x1b]0;pwned\\x07title"),
            ("\x1b[2J", "\\x1b[2J"),
            (
                "\x1b]52;c;ZXZpbA==\x1b\\subject",
                "\\x1b]52;c;ZXZpbA==\\x1b\\subject",
            ),
            (
                "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\",
                "\\x1b]8;;http://x\\x1b\\link\\x1b]8;;\\x1b\\",
            ),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            ("a\u{9b}2Jb", "a\\u{9b}2Jb"),
            ("del\u{7f}", "del\\x7f"),
            ("cr\rover", "cr\\x0dover"),
            ("two\nlines\tand tab", "two\\x0alines\\x09and tab"),
            ("iso\u{2066}late\u{2069}", "iso\\u{2066}late\\u{2069}"),
        ];
        for (input, want) in cases {
            assert_eq!(line(input), want, "{input:?}");
        }
    }

    #[test]
    fn text_keeps_newlines_and_tabs() {
        assert_eq!(text("a\n\tb\x1b[31m"), "a\n\tb\\x1b[31m");
        assert_eq!(text("a\r\nb"), "a\\x0d\nb");
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in [
            "",
            "fix: the parser",
            "ünïcödé ✓ 👩‍💻",
            "C:\\path\\x1b literally",
        ] {
            assert!(matches!(line(s), Cow::Borrowed(_)), "{s:?}");
            assert_eq!(line(s), s);
        }
    }

    #[test]
    fn invalid_utf8_bytes_are_escaped() {
        assert_eq!(bytes(b"ok\xff\xfe\x1b[0m\n"), "ok\\xff\\xfe\\x1b[0m\n");
        assert_eq!(bytes("é".as_bytes()), "é");
    }

    #[test]
    fn no_output_contains_a_raw_control_character() {
        // Every byte value, alone and in sequence, as bytes and as chars.
        let all: Vec<u8> = (0..=255u8).collect();
        let out = bytes(&all);
        assert!(
            !out.chars()
                .any(|c| unsafe_char(c) && c != '\n' && c != '\t')
        );
        let chars: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        assert!(!line(&chars).chars().any(unsafe_char));
    }
}
