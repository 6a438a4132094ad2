//! The error body.

use serde::{Deserialize, Serialize};

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// A stable machine-readable code: `bad_request`, `invalid_json`,
    /// `invalid_project_yaml`, `unknown_action`, `git`, `unauthorized`,
    /// `project_yaml_too_large`, `forbidden`, `not_found`, `conflict`, `payload_too_large`, `no_route`,
    /// `method_not_allowed`, `internal`, `unavailable`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// For `invalid_project_yaml`: 1-based line of the first error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// For `invalid_project_yaml`: 1-based column of the first error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// For `unknown_action` and missing actions: the actions the pipeline
    /// defines, in file order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_actions: Option<Vec<String>>,
}
