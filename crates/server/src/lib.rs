//! The warden controller (`warden serve`): it owns all state, turns job
//! requests into jobs with the same planner as local runs, schedules them,
//! and hands tasks to agents; plus the JSON API researchers and agents use.
//!
//! (Full documentation of the model and guarantees: see the sections below.)

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod create;
pub mod definition;
pub mod error;
pub mod events;
pub mod repos;
pub mod routes;
pub mod scheduler;
pub mod views;

pub use app::{App, AppState, Server, StartError, app, openapi};
pub use config::Config;
pub use error::{AppError, ErrorBody};
