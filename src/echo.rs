//! Values from outside (flags, variables, file names, a server's words) as the log shows
//! them. A message stays one line, so a value cannot forge a `cachegate: hit` line, recolour
//! the terminal or hide text behind a carriage return; and a 10 kB value is cut in the
//! middle, so it does not bury the message that names it.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Characters of a value shown whole; a longer one keeps its start and its end.
const MAX_CHARS: usize = 240;
const HEAD_CHARS: usize = 160;
const TAIL_CHARS: usize = 40;

/// A value inside a message: escaped and, when very long, shortened.
pub fn value(v: &str) -> String {
    let n = v.chars().count();
    if n <= MAX_CHARS {
        return line(v).into_owned();
    }
    let head: String = v.chars().take(HEAD_CHARS).collect();
    let tail: String = v.chars().skip(n - TAIL_CHARS).collect();
    format!("{}…[{} bytes]…{}", line(&head), v.len(), line(&tail))
}

/// A value named as the bad one, in quotes: `--path "a\nb"`.
pub fn quoted(v: &str) -> String {
    format!("\"{}\"", value(v).replace('"', "\\\""))
}

/// A whole message with its control characters escaped (no shortening: the values in it
/// were shortened where they were put in).
pub fn line(msg: &str) -> Cow<'_, str> {
    if !msg.chars().any(needs_escape) {
        return Cow::Borrowed(msg);
    }
    let mut out = String::with_capacity(msg.len() + 8);
    for c in msg.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Control characters, line and paragraph separators, and the bidirectional overrides
/// that make a terminal show text in another order than it was written.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_cannot_start_a_line_or_colour_the_log() {
        assert_eq!(value("x\ncachegate: hit"), "x\\ncachegate: hit");
        assert_eq!(value("a\rb\tc\u{1b}[31m"), "a\\rb\\tc\\u{1b}[31m");
        assert_eq!(value("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(quoted("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
        assert!(matches!(line("plain · ü"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_long_value_keeps_its_start_its_end_and_its_length() {
        let long = format!("start{}end", "x".repeat(10_000));
        let shown = value(&long);
        assert!(shown.starts_with("startxxx"), "{shown}");
        assert!(shown.ends_with("xxxend"), "{shown}");
        assert!(shown.contains("…[10008 bytes]…"), "{shown}");
        assert!(shown.chars().count() < 300, "{}", shown.len());
        let fits = "y".repeat(MAX_CHARS);
        assert_eq!(value(&fits), fits);
        // Cut on characters, never inside one.
        let wide = "é".repeat(1000);
        assert!(value(&wide).contains("…[2000 bytes]…"));
    }
}
