//! Text from the agent or the repo on its way to the user's terminal.
//!
//! Session titles, commit subjects, log lines and the like are written by the agent (or
//! the repo), so they may carry terminal control sequences: a window title (OSC 0), a
//! clipboard write (OSC 52), a cleared screen (CSI 2J), a link (OSC 8), a bidi override
//! that reorders what the user reads. Everything devaipod prints for humans that holds
//! such text goes through [`line`] or [`text`], which show every control character as a
//! visible escape (`\x1b`, `\u{202e}`) instead of passing it to the terminal. `--json`
//! output is exact JSON and needs none of this: JSON escapes control characters itself.
//! A container's output (`logs`) goes through [`Lines`], which also marks every line as
//! the container's.

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

/// The longest line [`Lines`] holds back waiting for its end; a longer one is shown in
/// pieces (an agent that never writes a newline cannot make devaipod buffer without end).
const MAX_LINE: usize = 64 * 1024;

/// A byte stream (a container's output, in chunks that may end anywhere, in the middle
/// of a line or of a UTF-8 sequence) turned into escaped lines, each starting with
/// `prefix` so that no line of it can pass for devaipod's own.
#[derive(Debug)]
pub(crate) struct Lines {
    prefix: String,
    pending: Vec<u8>,
}

impl Lines {
    pub(crate) fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            pending: Vec::new(),
        }
    }

    /// The complete lines `chunk` ends (each escaped, prefixed, with its `\n`); the rest
    /// waits for the next chunk.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> String {
        self.pending.extend_from_slice(chunk);
        let mut out = String::new();
        let mut start = 0;
        while let Some(n) = self.pending[start..].iter().position(|&b| b == b'\n') {
            self.push_line(&mut out, start, start + n);
            start += n + 1;
        }
        while self.pending.len() - start > MAX_LINE {
            let end = char_boundary(&self.pending, start + MAX_LINE);
            self.push_line(&mut out, start, end);
            start = end;
        }
        self.pending.drain(..start);
        out
    }

    /// The last line when the stream ended without a newline.
    pub(crate) fn finish(self) -> String {
        let mut out = String::new();
        if !self.pending.is_empty() {
            let end = self.pending.len();
            self.push_line(&mut out, 0, end);
        }
        out
    }

    fn push_line(&self, out: &mut String, start: usize, end: usize) {
        out.push_str(&self.prefix);
        out.push_str(&bytes(&self.pending[start..end]));
        out.push('\n');
    }
}

/// `at`, or the start of the UTF-8 sequence `at` falls inside (at most 3 bytes back).
fn char_boundary(b: &[u8], at: usize) -> usize {
    let mut i = at;
    while i > at.saturating_sub(3) && b.get(i).is_some_and(|&c| c & 0xc0 == 0x80) {
        i -= 1;
    }
    i
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

/// Hostile text for the renderers' tests.
/// Unix seconds as local RFC 3339 (`2026-12-02T17:40:12+01:00`), as `--json` shows times.
pub(crate) fn rfc3339_of(secs: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_opt(secs, 0) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
        }
        chrono::LocalResult::None => secs.to_string(),
    }
}

/// serde's `serialize_with` for [`rfc3339_of`].
pub(crate) fn rfc3339<S: serde::Serializer>(secs: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_of(*secs))
}

/// Unix seconds as a person reads them: local date and time, and how long ago when it
/// is recent (`2026-12-02 17:40:12 (5 min ago)`), `now` being the present.
pub(crate) fn local_time(secs: i64, now: i64) -> String {
    use chrono::TimeZone;
    let shown = match chrono::Local.timestamp_opt(secs, 0) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.format("%Y-%m-%d %H:%M:%S").to_string()
        }
        chrono::LocalResult::None => return secs.to_string(),
    };
    match now - secs {
        d if (0..60).contains(&d) => format!("{shown} ({d} s ago)"),
        d if (60..3600).contains(&d) => format!("{shown} ({} min ago)", d / 60),
        d if (3600..86_400).contains(&d) => format!("{shown} ({} h ago)", d / 3600),
        _ => shown,
    }
}

/// Now, in Unix seconds.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod testing {
    /// Agent-written text with each kind of sequence issue 14 found: a window title
    /// (OSC 0), a cleared screen (CSI 2J), a clipboard write (OSC 52), a link (OSC 8), a
    /// bidi override, a C1 CSI.
    pub(crate) const HOSTILE: &str = "t\x1b]0;pwned\x07 \x1b[2J \x1b]52;c;ZXZpbA==\x07 \x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\ \u{202e}txt \u{9b}2J";
    /// [`HOSTILE`] as the user sees it.
    pub(crate) const HOSTILE_SHOWN: &str = "t\\x1b]0;pwned\\x07 \\x1b[2J \\x1b]52;c;ZXZpbA==\\x07 \\x1b]8;;http://evil\\x1b\\link\\x1b]8;;\\x1b\\ \\u{202e}txt \\u{9b}2J";

    /// `out` holds no control character but newlines, and shows [`HOSTILE`] escaped.
    #[track_caller]
    pub(crate) fn assert_inert(out: &str) {
        let raw: Vec<char> = out
            .chars()
            .filter(|&c| super::unsafe_char(c) && c != '\n')
            .collect();
        assert!(raw.is_empty(), "raw control characters {raw:?} in:\n{out}");
        assert!(
            out.contains(HOSTILE_SHOWN),
            "the escaped text is missing from:\n{out}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_local_date_and_time_and_rfc_3339() {
        let t = 1_764_700_000; // a moment in late 2025
        let shown = local_time(t, t + 300);
        assert!(shown.ends_with(" (5 min ago)"), "{shown}");
        assert_eq!(
            shown.len(),
            "2025-12-02 18:26:40 (5 min ago)".len(),
            "{shown}"
        );
        assert!(!local_time(t, t + 3 * 86_400).contains("ago"));
        let rfc = rfc3339_of(t);
        let back = chrono::DateTime::parse_from_rfc3339(&rfc).expect("RFC 3339");
        assert_eq!(back.timestamp(), t, "{rfc}");
    }

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

    #[test]
    fn the_hostile_sample_is_shown_escaped() {
        assert_eq!(line(testing::HOSTILE), testing::HOSTILE_SHOWN);
        testing::assert_inert(&line(testing::HOSTILE));
    }

    #[test]
    fn lines_are_escaped_and_marked_whatever_the_chunks() {
        let stream =
            "plain\n\x1b]0;title\x07\ndevaipod: forged\r\nh\u{e9}llo \u{202e}\n\u{9b}2Jtail"
                .as_bytes();
        let want = "agent | plain\n\
                    agent | \\x1b]0;title\\x07\n\
                    agent | devaipod: forged\\x0d\n\
                    agent | h\u{e9}llo \\u{202e}\n\
                    agent | \\u{9b}2Jtail\n";
        // Cut the stream at every place, inside lines and inside UTF-8 sequences.
        for cut in 0..=stream.len() {
            let mut lines = Lines::new("agent | ");
            let mut out = lines.feed(&stream[..cut]);
            out.push_str(&lines.feed(&stream[cut..]));
            out.push_str(&lines.finish());
            assert_eq!(out, want, "cut at {cut}");
        }
        // One byte at a time.
        let mut lines = Lines::new("agent | ");
        let mut out: String = stream.iter().map(|b| lines.feed(&[*b])).collect();
        out.push_str(&lines.finish());
        assert_eq!(out, want);
    }

    #[test]
    fn a_line_is_held_only_until_its_end_and_never_without_bound() {
        let mut lines = Lines::new("> ");
        assert_eq!(lines.feed(b"half"), "");
        assert_eq!(lines.feed(b" done\nnext"), "> half done\n");
        assert_eq!(lines.finish(), "> next\n");
        assert_eq!(Lines::new("> ").finish(), "");
        // A line longer than MAX_LINE comes out in pieces, never split inside a char.
        let long = "\u{e9}".repeat(MAX_LINE);
        let mut lines = Lines::new("> ");
        let out = lines.feed(long.as_bytes());
        assert!(!out.is_empty());
        assert!(lines.pending.len() <= MAX_LINE);
        let rest = lines.finish();
        let all = format!("{out}{rest}");
        assert!(!all.contains("\\x"), "a char was split");
        assert_eq!(all.replace("> ", "").replace('\n', ""), long);
    }
}
