//! Job weights (the `job-weights` flag) and number flags.

use std::collections::{BTreeMap, HashMap};

use regex::Regex;
use serde::Deserialize;
use warden_state::Job;

#[derive(Default)]
pub(super) struct Weights {
    default: Vec<(Regex, f64)>,
    workspaces: HashMap<String, Vec<(Regex, f64)>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WeightsJson {
    #[serde(default)]
    default: BTreeMap<String, f64>,
    #[serde(default)]
    workspaces: BTreeMap<String, BTreeMap<String, f64>>,
}

fn compile(map: &BTreeMap<String, f64>) -> Vec<(Regex, f64)> {
    map.iter()
        .filter_map(
            |(pattern, w)| match Regex::new(&format!("^(?:{pattern})$")) {
                Ok(re) => Some((re, *w)),
                Err(e) => {
                    tracing::warn!(pattern, error = %e, "ignoring an invalid job weight pattern");
                    None
                }
            },
        )
        .collect()
}

impl Weights {
    pub(super) fn parse(text: Option<&str>) -> Weights {
        let Some(text) = text else {
            return Weights::default();
        };
        match serde_json::from_str::<WeightsJson>(text) {
            Ok(w) => Weights {
                default: compile(&w.default),
                workspaces: w
                    .workspaces
                    .iter()
                    .map(|(ws, m)| (ws.clone(), compile(m)))
                    .collect(),
            },
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an invalid job-weights flag");
                Weights::default()
            }
        }
    }

    pub(super) fn weight(&self, job: &Job) -> f64 {
        if let Some(rules) = self.workspaces.get(&job.workspace)
            && let Some((_, w)) = rules.iter().find(|(re, _)| re.is_match(&job.action))
        {
            return *w;
        }
        self.default
            .iter()
            .find(|(re, _)| re.is_match(&job.run_command))
            .map_or(1.0, |(_, w)| *w)
    }
}

/// Parses a number flag.
pub(super) fn number(flag: Option<&str>) -> Option<f64> {
    flag.and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;
    use warden_state::{State, StatusCode};

    use super::*;

    #[test]
    fn weights() {
        let w = Weights::parse(Some(
            r#"{"default": {"python:.* big\\.py": 4}, "workspaces": {"ws": {"heavy_.*": 2.5}}}"#,
        ));
        let mut job = Job {
            id: "j".into(),
            job_request_id: "r".into(),
            workspace: "ws".into(),
            backend: "b".into(),
            action: "heavy_one".into(),
            state: State::Pending,
            status_code: StatusCode::Created,
            status_message: String::new(),
            run_command: "python:v2 big.py".into(),
            image: String::new(),
            output_spec: serde_json::json!({}),
            requires_outputs_from: vec![],
            wait_for_job_ids: vec![],
            requires_db: false,
            outputs: None,
            cancelled: false,
            created_at: OffsetDateTime::UNIX_EPOCH,
            started_at: None,
            completed_at: None,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            status_code_updated_at: 0,
        };
        assert_eq!(w.weight(&job), 2.5);
        job.action = "light".into();
        assert_eq!(w.weight(&job), 4.0);
        job.run_command = "python:v2 small.py".into();
        assert_eq!(w.weight(&job), 1.0);
        assert_eq!(Weights::parse(Some("not json")).weight(&job), 1.0);
    }
}
