//! Escaping names (file names, action names, image names, source snippets)
//! before a person reads them.
//!
//! Everything in a `project.yaml` and every file name a job writes is chosen
//! by the person who wrote the study, so it is hostile input: a name holding
//! `ESC [ 2 J` clears the terminal of whoever prints it, a right-to-left
//! override (U+202E) makes `evil\u{202e}vsc.exe` display as `evilexe.csv`,
//! and a newline forges a second log line. This module is the one place that
//! turns such text into something that shows exactly what it holds. Use it
//! wherever a name reaches a terminal, a log line or a web page.
//!
//! The rules ([`escape_name`]):
//!
//! - `\` becomes `\\`, so that every backslash in the output starts an escape
//!   and two different names never print the same;
//! - `\n`, `\r`, `\t` and `\0` print as those two characters;
//! - other ASCII controls (U+0001–U+001F) and DEL print as `\xNN` (ESC is `\x1b`);
//! - C1 controls (U+0080–U+009F), the bidirectional controls (U+061C, U+200E,
//!   U+200F, U+202A–U+202E, U+2066–U+2069) and the other invisible or
//!   format characters (zero-width spaces and joiners, U+2028/U+2029 line and
//!   paragraph separators, the byte order mark, soft hyphen, tag characters,
//!   variation selectors, interlinear annotation marks, noncharacters…)
//!   print as `\u{hex}` with lowercase hex;
//! - every other character, including all printable non-ASCII text
//!   (`é`, `数据`, emoji), is left as it is.
//!
//! A name with nothing to escape is returned borrowed, unchanged.
//!
//! ```
//! use warden_pipeline::escape::{escape_name, escape_bytes};
//! assert_eq!(escape_name("output/data.csv"), "output/data.csv");
//! assert_eq!(escape_name("a\x1b[2Jb"), "a\\x1b[2Jb");
//! assert_eq!(escape_name("evil\u{202e}vsc.exe"), "evil\\u{202e}vsc.exe");
//! assert_eq!(escape_name("two\nlines"), "two\\nlines");
//! assert_eq!(escape_name("back\\slash"), "back\\\\slash");
//! assert_eq!(escape_bytes(b"bad\xffbyte"), "bad\\xffbyte");
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must be escaped by [`escape_name`]: controls, DEL, bidirectional
/// controls, invisible format characters, and `\` itself.
pub fn needs_escape(c: char) -> bool {
    let u = u32::from(c);
    match u {
        // Backslash: escaped so the output can be read back unambiguously.
        0x5C => true,
        // C0 controls, DEL, C1 controls.
        0x00..=0x1F | 0x7F..=0x9F => true,
        // Soft hyphen (invisible), combining grapheme joiner.
        0xAD | 0x034F => true,
        // Arabic letter mark (bidi), Hangul fillers, Mongolian vowel separator and
        // free variation selectors, Khmer invisible vowels.
        0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F | 0x3164 | 0xFFA0 => true,
        // Zero-width space/joiners, LRM/RLM, line/paragraph separators, the
        // embeddings and overrides, word joiner and invisible operators, the
        // isolates, deprecated format characters.
        0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F => true,
        // Variation selectors, zero-width no-break space (BOM), interlinear
        // annotation and object replacement marks.
        0xFE00..=0xFE0F | 0xFEFF | 0xFFF9..=0xFFFC => true,
        // Arabic and Syriac format characters, Egyptian/Brahmi/Kaithi/musical
        // format controls, shorthand format controls.
        0x0600..=0x0605 | 0x06DD | 0x070F | 0x0890 | 0x0891 | 0x08E2 => true,
        0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A => true,
        // Tag characters and supplementary variation selectors.
        0xE0000..=0xE0FFF => true,
        // Noncharacters.
        0xFDD0..=0xFDEF => true,
        _ if u & 0xFFFE == 0xFFFE => true,
        // Private use areas: displayed as anything at all by some fonts.
        0xE000..=0xF8FF | 0xF0000..=0x10FFFF => true,
        _ => false,
    }
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        c if u32::from(c) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

/// Escapes `name` for a person to read (see the [module docs](self) for the
/// rules). Returns `name` itself when nothing needs escaping.
pub fn escape_name(name: &str) -> Cow<'_, str> {
    let Some(first) = name.find(needs_escape) else {
        return Cow::Borrowed(name);
    };
    let mut out = String::with_capacity(name.len() + 8);
    out.push_str(&name[..first]);
    for c in name[first..].chars() {
        if needs_escape(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Escapes raw bytes (a file name from the file system, which need not be
/// UTF-8): valid UTF-8 is escaped as by [`escape_name`] and every byte that is
/// not part of valid UTF-8 prints as `\xNN` (lowercase hex, two digits).
/// Bytes `0x80`–`0xff` can only print as `\xNN` this way, and the control
/// characters U+0080–U+009F print as `\u{80}`…, so the two never collide.
pub fn escape_bytes(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return escape_name(s);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(&escape_name(chunk.valid()));
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

/// Escapes an OS string (a path from the file system): on Unix its raw bytes
/// as by [`escape_bytes`]; elsewhere its lossy UTF-8 form.
pub fn escape_os(name: &std::ffi::OsStr) -> Cow<'_, str> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        escape_bytes(name.as_bytes())
    }
    #[cfg(not(unix))]
    {
        match name.to_string_lossy() {
            Cow::Borrowed(s) => escape_name(s),
            Cow::Owned(s) => Cow::Owned(escape_name(&s).into_owned()),
        }
    }
}

/// Escapes a path for a person to read, as by [`escape_os`].
pub fn escape_path(path: &std::path::Path) -> Cow<'_, str> {
    escape_os(path.as_os_str())
}

/// A value that displays escaped: `format!("{}", Escaped(name))` is
/// `escape_name(name)`, without an intermediate `String` when used in
/// `write!`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&escape_name(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reverses [`escape_bytes`]: proves that escaping loses nothing, so two
    /// different names never print the same.
    fn unescape(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut it = s.chars().peekable();
        while let Some(c) = it.next() {
            if c != '\\' {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            match it.next().expect("a lone backslash at the end") {
                '\\' => out.push(b'\\'),
                'n' => out.push(b'\n'),
                'r' => out.push(b'\r'),
                't' => out.push(b'\t'),
                '0' => out.push(0),
                'x' => {
                    let h: String = [it.next().unwrap(), it.next().unwrap()].iter().collect();
                    out.push(u8::from_str_radix(&h, 16).unwrap());
                }
                'u' => {
                    assert_eq!(it.next(), Some('{'));
                    let h: String = it.by_ref().take_while(|c| *c != '}').collect();
                    let c = char::from_u32(u32::from_str_radix(&h, 16).unwrap()).unwrap();
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                other => panic!("unknown escape \\{other}"),
            }
        }
        out
    }

    fn is_dangerous(c: char) -> bool {
        c.is_control()
            || matches!(
                u32::from(c),
                0x061C | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2069 | 0xFEFF
            )
    }

    #[test]
    fn examples() {
        assert!(matches!(escape_name("output/a.csv"), Cow::Borrowed(_)));
        assert_eq!(escape_name("数据/é-😀.csv"), "数据/é-😀.csv");
        assert_eq!(escape_name("a\x1b[31mred"), "a\\x1b[31mred");
        assert_eq!(escape_name("a\u{7f}\u{85}\u{9b}"), "a\\x7f\\u{85}\\u{9b}");
        assert_eq!(escape_name("\0\t\r\n"), "\\0\\t\\r\\n");
        for c in [
            '\u{202a}',
            '\u{202b}',
            '\u{202c}',
            '\u{202d}',
            '\u{202e}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200e}',
            '\u{200f}',
            '\u{061c}',
            '\u{200b}',
            '\u{feff}',
            '\u{2028}',
            '\u{2029}',
            '\u{ad}',
            '\u{e0041}',
        ] {
            let s = format!("x{c}y");
            assert_eq!(escape_name(&s), format!("x\\u{{{:x}}}y", u32::from(c)));
        }
        assert_eq!(escape_name("a\\x1b"), "a\\\\x1b");
        assert_eq!(escape_bytes(b"\xff\xfe.csv"), "\\xff\\xfe.csv");
        assert_eq!(escape_bytes("é\u{85}".as_bytes()), "é\\u{85}");
        assert_eq!(Escaped("a\nb").to_string(), "a\\nb");
    }

    #[cfg(unix)]
    #[test]
    fn os_strings_show_invalid_utf8_bytes() {
        use std::os::unix::ffi::OsStrExt as _;
        let p = std::path::Path::new(std::ffi::OsStr::from_bytes(b"out/\x1b\xc3(.csv"));
        assert_eq!(escape_path(p), "out/\\x1b\\xc3(.csv");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn output_never_holds_a_control_or_bidi_char(s in any::<String>()) {
            let e = escape_name(&s);
            prop_assert!(!e.chars().any(is_dangerous), "{e:?}");
            prop_assert!(!e.chars().any(|c| needs_escape(c) && c != '\\'), "{e:?}");
        }

        #[test]
        fn bytes_output_never_holds_a_control_or_bidi_char(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let e = escape_bytes(&b);
            prop_assert!(!e.chars().any(is_dangerous), "{e:?}");
        }

        #[test]
        fn printable_names_are_unchanged(s in "[\\PC&&[^\\\\\\p{Cf}\\p{Co}\\p{Cn}\\p{Zl}\\p{Zp}]]*") {
            // Printable text (no controls, format characters, private use or
            // unassigned code points, separators), no backslash.
            prop_assume!(!s.chars().any(needs_escape));
            let e = escape_name(&s);
            prop_assert!(matches!(e, Cow::Borrowed(_)));
            prop_assert_eq!(e, s.as_str());
        }

        #[test]
        fn ordinary_file_names_are_unchanged(s in "[A-Za-z0-9._/ ()\\[\\]{}:;,'\"!?#%&*+=<>@^`|~$-]*") {
            prop_assert_eq!(escape_name(&s), s.as_str());
        }

        #[test]
        fn escaping_is_reversible_so_names_never_collide(s in any::<String>()) {
            prop_assert_eq!(unescape(&escape_name(&s)), s.as_bytes());
        }

        #[test]
        fn escaping_bytes_is_reversible(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(unescape(&escape_bytes(&b)), b);
        }

        #[test]
        fn names_built_from_dangerous_pieces_round_trip(
            parts in proptest::collection::vec(prop_oneof![
                Just("\\".to_string()), Just("\\x1b".to_string()), Just("\x1b".to_string()),
                Just("\u{202e}".to_string()), Just("\\u{202e}".to_string()), Just("\n".to_string()),
                Just("\\n".to_string()), Just("\u{85}".to_string()), Just("a".to_string()),
                Just("é".to_string()),
            ], 0..12),
            other in proptest::collection::vec(prop_oneof![
                Just("\\".to_string()), Just("\\x1b".to_string()), Just("\x1b".to_string()),
                Just("\u{202e}".to_string()), Just("\\u{202e}".to_string()), Just("\n".to_string()),
                Just("\\n".to_string()), Just("\u{85}".to_string()), Just("a".to_string()),
                Just("é".to_string()),
            ], 0..12),
        ) {
            let a = parts.concat();
            let b = other.concat();
            if a != b {
                prop_assert_ne!(escape_name(&a), escape_name(&b));
            }
        }
    }
}
