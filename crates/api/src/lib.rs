//! warden's protocol: the shapes that cross a process boundary between the
//! controller (`warden serve`), its agents and its clients, and nothing else
//! (no storage, no HTTP, no logic beyond checking what an agent sends).
//!
//! * [`task`]: what an agent is handed ([`JobDefinition`]) and what it
//!   reports ([`TaskUpdateBody`], [`AgentStage`], the redacted
//!   [`TaskResults`] with [`JobMetrics`]). Results carry no file names.
//! * [`views`]: the JSON answers of the researcher API and the task list.
//! * [`ErrorBody`]: the body of every error response.
//!
//! The controller and an agent both depend on this crate and not on each
//! other, so a type is defined once and never mirrored. With the `openapi`
//! feature every type also derives `utoipa::ToSchema`, which the controller
//! uses to serve its OpenAPI document; an agent needs no such thing.
//!
//! ```
//! use warden_api::{AgentStage, TaskUpdateBody};
//!
//! let update: TaskUpdateBody = serde_json::from_str(
//!     r#"{"stage": "executing", "timestamp_ns": 1700000000000000000}"#,
//! )
//! .unwrap();
//! assert_eq!(update.stage, AgentStage::Executing);
//! // Anything undeclared (such as output file names) is refused.
//! assert!(serde_json::from_str::<TaskUpdateBody>(
//!     r#"{"stage": "finalized", "timestamp_ns": 1, "outputs": ["a.csv"]}"#
//! )
//! .is_err());
//! ```

#![warn(missing_docs)]

mod error;
pub mod task;
pub mod views;

pub use error::ErrorBody;
pub use task::{
    AgentStage, JobDefinition, JobMetrics, LEVEL4_FILE_TYPES, MAX_STATUS_MESSAGE, TaskResults,
    TaskUpdateBody,
};
pub use views::*;
