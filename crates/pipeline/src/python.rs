//! The few Python behaviours the reference's messages and verdicts depend on:
//! `repr(float)`, `float(str)`, `int(str)`, `shlex.split` and `str(date)`.

/// First code point of every run of ten Unicode decimal digits (category Nd)
/// outside ASCII, as Python 3.11 knows them. Python's `float()` and `int()`
/// accept these digits.
const UNICODE_ZEROS: [u32; 65] = [
    0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6,
    0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50,
    0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50,
    0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// The value of a decimal digit, ASCII or any Unicode Nd digit.
pub fn decimal_digit(c: char) -> Option<u32> {
    if c.is_ascii_digit() {
        return Some(c as u32 - '0' as u32);
    }
    let cp = c as u32;
    UNICODE_ZEROS
        .iter()
        .find(|&&z| cp >= z && cp < z + 10)
        .map(|z| cp - z)
}

/// Replaces Unicode decimal digits by ASCII ones and strips surrounding whitespace.
fn to_ascii_number(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| match decimal_digit(c) {
            Some(d) if !c.is_ascii() => char::from_digit(d, 10).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Checks `s` is digits with single underscores between digits; returns it without them.
fn digits_with_underscores(s: &str) -> Option<String> {
    if s.is_empty() || s.starts_with('_') || s.ends_with('_') || s.contains("__") {
        return None;
    }
    if !s.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    Some(s.replace('_', ""))
}

/// Python's `float(str)`.
pub fn py_float(s: &str) -> Option<f64> {
    let t = to_ascii_number(s);
    let (sign, body) = match t.as_bytes().first()? {
        b'-' => (-1.0, &t[1..]),
        b'+' => (1.0, &t[1..]),
        _ => (1.0, &t[..]),
    };
    let lower = body.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "infinity" => return Some(sign * f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (mantissa, None),
    };
    let int_clean = if int_part.is_empty() {
        String::new()
    } else {
        digits_with_underscores(int_part)?
    };
    let frac_clean = match frac_part {
        Some("") | None => String::new(),
        Some(f) => digits_with_underscores(f)?,
    };
    if int_clean.is_empty() && frac_clean.is_empty() {
        return None;
    }
    let mut text = format!(
        "{}.{}",
        if int_clean.is_empty() {
            "0"
        } else {
            &int_clean
        },
        if frac_clean.is_empty() {
            "0"
        } else {
            &frac_clean
        }
    );
    if let Some(e) = exponent {
        let (esign, edigits) = match e.as_bytes().first()? {
            b'-' => ("-", &e[1..]),
            b'+' => ("", &e[1..]),
            _ => ("", e),
        };
        let edigits = digits_with_underscores(edigits)?;
        text.push('e');
        text.push_str(esign);
        text.push_str(&edigits);
    }
    text.parse::<f64>().ok().map(|f| sign * f)
}

/// Python's `int(str)` in base 10. `Err(())` when Python raises; a value too large
/// for an `i128` saturates.
pub fn py_int(s: &str) -> Option<i128> {
    let t = to_ascii_number(s);
    let (negative, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, &t[..]),
    };
    let digits = digits_with_underscores(body)?;
    let value = digits.parse::<i128>().unwrap_or(i128::MAX);
    Some(if negative { -value } else { value })
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form outside
/// `1e-4 <= |x| < 1e16`, `.0` on integral values, `inf`, `nan`.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{:e}", x.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let decpt = exp + 1;
    let sign = if x < 0.0 { "-" } else { "" };
    if decpt > -4 && decpt <= 16 {
        let n = digits.len() as i32;
        let body = if decpt <= 0 {
            format!("0.{}{}", "0".repeat((-decpt) as usize), digits)
        } else if decpt >= n {
            format!("{}{}.0", digits, "0".repeat((decpt - n) as usize))
        } else {
            format!(
                "{}.{}",
                &digits[..decpt as usize],
                &digits[decpt as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let m = if digits.len() == 1 {
            digits
        } else {
            format!("{}.{}", &digits[..1], &digits[1..])
        };
        let e = decpt - 1;
        format!("{sign}{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    }
}

/// Python's `repr(str)`: single quotes unless the text has a single quote and
/// no double quote; backslash escapes for quotes, backslashes and control
/// characters.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `str()` of a YAML timestamp (`date` or `datetime`).
pub fn timestamp_str(s: &str) -> String {
    s.replacen(['T', 't'], " ", 1)
}

/// Why `shlex.split` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShlexError {
    /// A quote was opened and never closed.
    NoClosingQuotation,
    /// A backslash at the very end.
    NoEscapedCharacter,
}

/// Python's `shlex.split(s)` (POSIX mode, no comments).
pub fn shlex_split(s: &str) -> Result<Vec<String>, ShlexError> {
    #[derive(PartialEq)]
    enum St {
        Between,
        Word,
        Single,
        Double,
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut st = St::Between;
    let mut chars = s.chars().peekable();
    // Python's shlex treats only these as whitespace in POSIX mode.
    let is_ws = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    while let Some(c) = chars.next() {
        match st {
            St::Between | St::Word => {
                if is_ws(c) {
                    if st == St::Word {
                        out.push(std::mem::take(&mut cur));
                        st = St::Between;
                    }
                } else if c == '\\' {
                    match chars.next() {
                        Some(n) => cur.push(n),
                        None => return Err(ShlexError::NoEscapedCharacter),
                    }
                    st = St::Word;
                } else if c == '\'' {
                    st = St::Single;
                } else if c == '"' {
                    st = St::Double;
                } else {
                    cur.push(c);
                    st = St::Word;
                }
            }
            St::Single => {
                if c == '\'' {
                    st = St::Word;
                } else {
                    cur.push(c);
                }
            }
            St::Double => {
                if c == '"' {
                    st = St::Word;
                } else if c == '\\' {
                    match chars.peek() {
                        Some(&n) if n == '"' || n == '\\' => {
                            cur.push(n);
                            chars.next();
                        }
                        Some(_) => cur.push('\\'),
                        None => return Err(ShlexError::NoClosingQuotation),
                    }
                } else {
                    cur.push(c);
                }
            }
        }
    }
    match st {
        St::Single | St::Double => Err(ShlexError::NoClosingQuotation),
        St::Word => {
            out.push(cur);
            Ok(out)
        }
        St::Between => Ok(out),
    }
}

/// Python's `shlex.quote`.
pub fn shlex_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    let safe = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\"'\"'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        for (x, want) in [
            (4.0, "4.0"),
            (3.5, "3.5"),
            (1e-5, "1e-05"),
            (1e20, "1e+20"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (6.0, "6.0"),
            (40.0, "40.0"),
            (f64::INFINITY, "inf"),
            (-1.0, "-1.0"),
            (1.5e-7, "1.5e-07"),
            (123.456, "123.456"),
            (0.1, "0.1"),
        ] {
            assert_eq!(float_repr(x), want, "{x}");
        }
        assert_eq!(float_repr(f64::NAN), "nan");
    }

    #[test]
    fn float_parses_like_python() {
        assert_eq!(py_float(" 5 "), Some(5.0));
        assert_eq!(py_float("+4."), Some(4.0));
        assert_eq!(py_float("4e0"), Some(4.0));
        assert_eq!(py_float("4_0"), Some(40.0));
        assert_eq!(py_float("Infinity"), Some(f64::INFINITY));
        assert!(py_float("nAn").unwrap().is_nan());
        assert_eq!(py_float("\u{665}"), Some(5.0));
        assert_eq!(py_float(".5"), Some(0.5));
        for bad in [
            "0x5",
            "yes",
            "",
            ".",
            "1e",
            "_1",
            "1__0",
            "1_",
            "2020-01-01",
            "1.2.3",
        ] {
            assert_eq!(py_float(bad), None, "{bad}");
        }
    }

    #[test]
    fn int_parses_like_python() {
        assert_eq!(py_int("12"), Some(12));
        assert_eq!(py_int(" 7 "), Some(7));
        assert_eq!(py_int("+5"), Some(5));
        assert_eq!(py_int("1_0"), Some(10));
        assert_eq!(py_int("-3"), Some(-3));
        for bad in ["10.0", "1e3", "0x10", "", "abc"] {
            assert_eq!(py_int(bad), None, "{bad}");
        }
    }

    #[test]
    fn shlex_splits_like_python() {
        let s = |x: &str| shlex_split(x).unwrap();
        assert_eq!(s("a b  c"), vec!["a", "b", "c"]);
        assert_eq!(s("--x \"a b\" 'c d'"), vec!["--x", "a b", "c d"]);
        assert_eq!(s("a\\ b"), vec!["a b"]);
        assert_eq!(s("# x"), vec!["#", "x"]);
        assert_eq!(s("'qu'\"'\"'ote.csv'"), vec!["qu'ote.csv"]);
        assert_eq!(s("\"a\\\"b\\c\""), vec!["a\"b\\c"]);
        assert_eq!(s("   "), Vec::<String>::new());
        assert_eq!(shlex_split("'abc"), Err(ShlexError::NoClosingQuotation));
        assert_eq!(s("x''"), vec!["x"]);
        assert_eq!(s("''"), vec![""]);
    }
}
