//! The routes. Every route is registered through `utoipa-axum`'s
//! [`OpenApiRouter`], so the router and the OpenAPI document are built from
//! the same list and cannot disagree; handlers sit next to their docs.

pub mod backends;
pub mod job_requests;
pub mod jobs;
pub mod meta;
pub mod tasks;
pub mod workspaces;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

/// Every route of the API.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(meta::health))
        .routes(routes!(meta::me))
        .routes(routes!(meta::openapi))
        .routes(routes!(workspaces::list))
        .routes(routes!(workspaces::get))
        .routes(routes!(backends::list))
        .routes(routes!(backends::pause))
        .routes(routes!(backends::unpause))
        .routes(routes!(job_requests::create, job_requests::list))
        .routes(routes!(job_requests::get))
        .routes(routes!(job_requests::cancel))
        .routes(routes!(job_requests::events))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::cancel))
        .routes(routes!(tasks::pull))
        .routes(routes!(tasks::update))
}
