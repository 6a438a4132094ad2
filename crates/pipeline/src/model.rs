//! The pipeline model: what a valid `project.yaml` means.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// The magic action name that means "every action in the project".
pub const RUN_ALL_COMMAND: &str = "run_all";

/// Largest moderately_sensitive file the level-4 checks copy to the
/// medium-privacy store (job-runner's default): 16 MiB.
pub const LEVEL4_MAX_FILESIZE: u64 = 16 * 1024 * 1024;

/// Most data rows in a moderately_sensitive CSV file the level-4 checks copy
/// (job-runner's default).
pub const LEVEL4_MAX_CSV_ROWS: u64 = 5000;

/// Output privacy levels, in the fixed order the reference uses everywhere.
/// This is the one definition: the executor, the server and the agents use it
/// (with [`crate::LEVEL4_FILE_TYPES`], [`LEVEL4_MAX_FILESIZE`] and
/// [`LEVEL4_MAX_CSV_ROWS`], the level-4 rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrivacyLevel {
    /// Never visible to researchers.
    HighlySensitive,
    /// Visible after review; the only level that may be released.
    ModeratelySensitive,
    /// Treated like highly sensitive by the backends.
    MinimallySensitive,
}

impl PrivacyLevel {
    /// All levels in the reference's order.
    pub const ALL: [PrivacyLevel; 3] = [
        PrivacyLevel::HighlySensitive,
        PrivacyLevel::ModeratelySensitive,
        PrivacyLevel::MinimallySensitive,
    ];

    /// The name used in `project.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            PrivacyLevel::HighlySensitive => "highly_sensitive",
            PrivacyLevel::ModeratelySensitive => "moderately_sensitive",
            PrivacyLevel::MinimallySensitive => "minimally_sensitive",
        }
    }

    /// Parses a level name.
    pub fn parse(s: &str) -> Option<PrivacyLevel> {
        PrivacyLevel::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl std::fmt::Display for PrivacyLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed pipeline (`project.yaml`).
#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    /// The `version` as a float, as the reference stores it.
    pub version: f64,
    /// Actions in document order (a user-defined `run_all` included, before v5).
    pub actions: IndexMap<String, Action>,
    /// The expectations (population size for dummy data), where the version has them.
    pub expectations: Option<Expectations>,
}

/// The `expectations` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Expectations {
    /// Dummy-data population size.
    pub population_size: i64,
}

/// One action.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    /// The key under `actions:` (Python `str()` of it, so `2019` is `"2019"`).
    pub id: String,
    /// The `run:` command.
    pub run: Command,
    /// Declared outputs.
    pub outputs: Outputs,
    /// Actions this one needs, in the order given.
    pub needs: Vec<String>,
    /// The `config:` mapping, as JSON.
    pub config: Option<serde_json::Value>,
    /// The raw `dummy_data_file:` string.
    pub dummy_data_file: Option<String>,
    /// Where the action's key is in the source (1-based line and column).
    pub line: usize,
    /// See `line`.
    pub column: usize,
}

impl Action {
    /// Whether this action reads the database on a real backend.
    pub fn is_database_action(&self) -> bool {
        is_database_action(&self.run.parts)
    }
}

/// Whether a command (as tokens) is a database action, as the reference decides.
pub fn is_database_action(args: &[String]) -> bool {
    let Some(first) = args.first() else {
        return false;
    };
    let image = first.split(':').next().unwrap_or("");
    let command = args.get(1).map(String::as_str);
    match image {
        "sqlrunner" => true,
        "ehrql" => matches!(command, Some("generate-dataset" | "generate-measures")),
        "cohortextractor" => {
            matches!(
                command,
                Some("generate_cohort" | "generate_codelist_report")
            )
        }
        "databuilder" => matches!(command, Some("generate-dataset")),
        _ => false,
    }
}

/// A `run:` command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Command {
    /// The string as written.
    pub raw: String,
    /// POSIX shell tokens of `raw`.
    pub parts: Vec<String>,
}

impl Command {
    /// The image name: the first token up to its first `:`.
    pub fn name(&self) -> &str {
        let first = self.parts.first().map(String::as_str).unwrap_or("");
        first.split(':').next().unwrap_or("")
    }

    /// The image tag: between the first and second `:` of the first token.
    pub fn version(&self) -> &str {
        let first = self.parts.first().map(String::as_str).unwrap_or("");
        first.split(':').nth(1).unwrap_or("")
    }

    /// The arguments after the image, joined with single spaces (quoting is lost).
    pub fn args(&self) -> String {
        self.parts.get(1..).unwrap_or(&[]).join(" ")
    }

    /// The arguments after the image as tokens.
    pub fn arg_parts(&self) -> &[String] {
        self.parts.get(1..).unwrap_or(&[])
    }
}

/// Declared outputs by privacy level. A level is `None` when absent or null.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outputs {
    /// `highly_sensitive` outputs: name → glob.
    pub highly_sensitive: Option<IndexMap<String, String>>,
    /// `moderately_sensitive` outputs: name → glob.
    pub moderately_sensitive: Option<IndexMap<String, String>>,
    /// `minimally_sensitive` outputs: name → glob.
    pub minimally_sensitive: Option<IndexMap<String, String>>,
}

impl Outputs {
    /// The outputs at one level.
    pub fn level(&self, level: PrivacyLevel) -> Option<&IndexMap<String, String>> {
        match level {
            PrivacyLevel::HighlySensitive => self.highly_sensitive.as_ref(),
            PrivacyLevel::ModeratelySensitive => self.moderately_sensitive.as_ref(),
            PrivacyLevel::MinimallySensitive => self.minimally_sensitive.as_ref(),
        }
    }

    /// The present levels (empty ones included), in the fixed order.
    pub fn levels(&self) -> impl Iterator<Item = (PrivacyLevel, &IndexMap<String, String>)> {
        PrivacyLevel::ALL
            .into_iter()
            .filter_map(|l| self.level(l).map(|m| (l, m)))
    }

    /// Number of present levels.
    pub fn len(&self) -> usize {
        self.levels().count()
    }

    /// Whether no level is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The reference's `Outputs.dict()` as JSON: the present levels (empty
    /// ones included) in the fixed order, each `{name: pattern}`. This is the
    /// `output_spec` jobs record.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.levels()
                .map(|(level, entries)| {
                    let entries = entries
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                        .collect();
                    (
                        level.as_str().to_string(),
                        serde_json::Value::Object(entries),
                    )
                })
                .collect(),
        )
    }

    /// Every pattern with its level, level by level.
    pub fn patterns(&self) -> impl Iterator<Item = (PrivacyLevel, &str)> {
        self.levels()
            .flat_map(|(l, m)| m.values().map(move |p| (l, p.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule the executor and the server share (job-runner §5.7 and the
    /// reference's `constants.LEVEL4_FILE_TYPES`), pinned.
    #[test]
    fn privacy_levels_and_level4_rules_are_pinned() {
        let names: Vec<&str> = PrivacyLevel::ALL.iter().map(|l| l.as_str()).collect();
        assert_eq!(
            names,
            [
                "highly_sensitive",
                "moderately_sensitive",
                "minimally_sensitive"
            ]
        );
        for level in PrivacyLevel::ALL {
            let json = serde_json::to_string(&level).unwrap();
            assert_eq!(json, format!("\"{level}\""));
            let back: PrivacyLevel = serde_json::from_str(&json).unwrap();
            assert_eq!(back, level);
            assert_eq!(PrivacyLevel::parse(level.as_str()), Some(level));
        }
        assert!(serde_json::from_str::<PrivacyLevel>("\"Moderately_sensitive\"").is_err());
        let mut types = crate::LEVEL4_FILE_TYPES.to_vec();
        types.sort_unstable();
        assert_eq!(
            types,
            [
                ".csv", ".html", ".jpeg", ".jpg", ".json", ".log", ".md", ".png", ".svg", ".svgz",
                ".txt"
            ]
        );
        assert_eq!(LEVEL4_MAX_FILESIZE, 16 * 1024 * 1024);
        assert_eq!(LEVEL4_MAX_CSV_ROWS, 5000);
    }
}
