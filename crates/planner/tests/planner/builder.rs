//! A small builder for `Pipeline` values (the parser is not used here).

use std::collections::HashMap;

use indexmap::IndexMap;
use warden_pipeline::{Action, Command, Expectations, Outputs, Pipeline};
use warden_planner::{JobState, PriorJob};

/// Builds a pipeline action by action, in file order.
#[derive(Default)]
pub struct Builder {
    actions: IndexMap<String, Action>,
    expectations: Option<Expectations>,
}

/// Starts a pipeline.
pub fn pipeline() -> Builder {
    Builder::default()
}

impl Builder {
    /// A python action writing `output/<name>.csv` (highly sensitive).
    pub fn act(self, name: &str, needs: &[&str]) -> Self {
        self.action(
            name,
            &format!("python:latest python analysis/{name}.py"),
            needs,
        )
    }

    /// An action with the given `run:` string.
    pub fn action(mut self, name: &str, run: &str, needs: &[&str]) -> Self {
        let outputs = Outputs {
            highly_sensitive: Some(IndexMap::from([(
                "data".to_owned(),
                format!("output/{name}.csv"),
            )])),
            ..Outputs::default()
        };
        let action = Action {
            id: name.to_owned(),
            run: Command {
                raw: run.to_owned(),
                parts: shlex::split(run).expect("valid run string"),
            },
            outputs,
            needs: needs.iter().map(|s| (*s).to_owned()).collect(),
            config: None,
            dummy_data_file: None,
            line: self.actions.len() + 1,
            column: 3,
        };
        self.actions.insert(name.to_owned(), action);
        self
    }

    /// Changes the last action added.
    pub fn with(mut self, change: impl FnOnce(&mut Action)) -> Self {
        let (_, action) = self.actions.last_mut().expect("an action to change");
        change(action);
        self
    }

    /// Sets `expectations.population_size`.
    pub fn population(mut self, size: i64) -> Self {
        self.expectations = Some(Expectations {
            population_size: size,
        });
        self
    }

    pub fn build(self) -> Pipeline {
        Pipeline {
            version: 3.0,
            actions: self.actions,
            expectations: self.expectations,
        }
    }
}

/// A history from `(action, job id, state)` triples, outputs present.
pub fn history(jobs: &[(&str, &str, JobState)]) -> HashMap<String, PriorJob> {
    jobs.iter()
        .map(|(action, id, state)| ((*action).to_owned(), PriorJob::new(*id, *state)))
        .collect()
}
