//! The output glob matcher.
//!
//! Output patterns in `project.yaml` support only `*`, which matches any run
//! of characters (possibly none) within one path segment: it never crosses
//! `/`. Patterns and paths are relative and use `/`; empty and `.` segments
//! are ignored. A leading `.` in a name is matched by `*` like any other
//! character (as Python's `pathlib.Path.glob` does).

/// A compiled `*`-only glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    segments: Vec<String>,
}

impl Glob {
    /// Compile `pattern`.
    pub fn new(pattern: &str) -> Self {
        Glob {
            source: pattern.to_string(),
            segments: split(pattern).map(str::to_string).collect(),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Number of path segments the pattern matches.
    pub fn depth(&self) -> usize {
        self.segments.len()
    }

    /// True if the relative `path` (with `/`) matches the whole pattern.
    pub fn matches(&self, path: &str) -> bool {
        let mut parts = split(path);
        for segment in &self.segments {
            match parts.next() {
                Some(part) if segment_matches(segment, part) => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }

    /// True if the pattern has no `*` (it names one path).
    pub fn is_literal(&self) -> bool {
        !self.source.contains('*')
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty() && *s != ".")
}

/// Match one segment `pattern` (with `*` wildcards) against `name`.
///
/// Greedy with back-tracking to the last `*`: linear in practice, and never
/// exponential.
pub fn segment_matches(pattern: &str, name: &str) -> bool {
    let p = pattern.as_bytes();
    let n = name.as_bytes();
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_paths() {
        let g = Glob::new("output/dataset.csv");
        assert!(g.matches("output/dataset.csv"));
        assert!(!g.matches("output/dataset.csv.gz"));
        assert!(!g.matches("output/sub/dataset.csv"));
        assert!(!g.matches("dataset.csv"));
        assert!(g.is_literal());
    }

    #[test]
    fn star_stays_within_a_segment() {
        let g = Glob::new("output/*.csv");
        assert!(g.matches("output/a.csv"));
        assert!(g.matches("output/.csv"));
        assert!(g.matches("output/.hidden.csv"));
        assert!(!g.matches("output/sub/a.csv"));
        assert!(!g.matches("output/a.csv.gz"));
        assert!(!g.matches("output/a_csv"));
        assert!(!g.matches("other/a.csv"));
        assert!(!g.is_literal());
    }

    #[test]
    fn star_in_directory_segments() {
        let g = Glob::new("output/*/table_*.csv");
        assert!(g.matches("output/x/table_1.csv"));
        assert!(g.matches("output/yy/table_.csv"));
        assert!(!g.matches("output/table_1.csv"));
        assert!(!g.matches("output/x/y/table_1.csv"));
        assert_eq!(g.depth(), 3);
    }

    #[test]
    fn several_stars_and_backtracking() {
        assert!(segment_matches("*a*b*c", "xxaxxbxxc"));
        assert!(segment_matches("a*a*a", "aaa"));
        assert!(segment_matches("a*a*a", "aXaYa"));
        assert!(!segment_matches("a*a*a", "aa"));
        assert!(segment_matches("*", ""));
        assert!(segment_matches("**", "anything"));
        assert!(!segment_matches("", "x"));
        assert!(segment_matches("", ""));
        assert!(segment_matches("*.tar.gz", "a.b.tar.gz"));
        assert!(!segment_matches("*.tar.gz", "a.tar.gzz"));
    }

    #[test]
    fn no_exponential_blowup() {
        let name = "a".repeat(5000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!segment_matches(&pattern, &name));
    }

    #[test]
    fn empty_and_dot_segments_are_ignored() {
        let g = Glob::new("./output//*.txt");
        assert!(g.matches("output/a.txt"));
        assert!(g.matches("output/./a.txt"));
    }

    #[test]
    fn question_marks_and_brackets_are_literal() {
        let g = Glob::new("output/a?[1].csv");
        assert!(g.matches("output/a?[1].csv"));
        assert!(!g.matches("output/ab1.csv"));
    }

    #[test]
    fn non_ascii_names() {
        assert!(Glob::new("out/*é.csv").matches("out/caféé.csv"));
        assert!(Glob::new("out/*.csv").matches("out/données.csv"));
    }
}
