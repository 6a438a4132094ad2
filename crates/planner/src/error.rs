//! Why a request cannot be planned.

/// A request that cannot be turned into jobs.
///
/// The messages of [`PlanError::NoActions`] and [`PlanError::UnknownAction`]
/// are the reference's own (job-runner's `create_jobs`), word for word, so
/// they can be shown to users as they are. Both carry the list of valid action
/// names, which the CLI prints under the message.
///
/// "Nothing to do" is not an error: it is [`crate::Plan::NothingToDo`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The request named no action at all.
    #[error("At least one action must be supplied")]
    NoActions {
        /// The actions of the pipeline, in file order (`run_all` excluded).
        valid_actions: Vec<String>,
    },

    /// The request named an action that the pipeline does not define.
    #[error("Action '{action}' not found in project.yaml")]
    UnknownAction {
        /// The name as requested.
        action: String,
        /// The actions of the pipeline, in file order (`run_all` excluded).
        valid_actions: Vec<String>,
    },

    /// An action needs an action that the pipeline does not define.
    ///
    /// A validated pipeline never has one (the validator reports it with the
    /// same text); the planner still refuses it rather than panic, because a
    /// [`warden_pipeline::Pipeline`] can be built by hand.
    #[error("Action `{action}` references an unknown action in its `needs` list: {need}")]
    UnknownNeed {
        /// The action whose `needs` lists the unknown name.
        action: String,
        /// The unknown name.
        need: String,
    },

    /// The `needs` of some actions form a cycle, so no order can satisfy them.
    ///
    /// `path` follows `needs` and ends where it started: `["a", "b", "a"]`
    /// means `a` needs `b` and `b` needs `a`; a self-dependency is
    /// `["a", "a"]`.
    #[error("Actions form a cycle through their `needs`: {}", .path.join(" -> "))]
    Cycle {
        /// The actions on the cycle, the first repeated at the end.
        path: Vec<String>,
    },
}

impl PlanError {
    /// The valid action names, for the errors that should be shown with them.
    pub fn valid_actions(&self) -> Option<&[String]> {
        match self {
            PlanError::NoActions { valid_actions }
            | PlanError::UnknownAction { valid_actions, .. } => Some(valid_actions),
            PlanError::UnknownNeed { .. } | PlanError::Cycle { .. } => None,
        }
    }
}
