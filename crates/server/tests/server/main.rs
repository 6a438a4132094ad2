//! warden-server's integration tests: the real server over loopback HTTP,
//! real git repositories, on SQLite and on PostgreSQL.

mod common;
mod schema;

/// Authentication, creating, reading, cancelling, pausing, bad input.
mod api;
/// 50 concurrent creates on one workspace.
mod concurrency;
/// kill -9 of the server (a child process) in the middle of scheduling.
mod crash;
/// Deeply nested project.yaml files are refused; the server keeps serving.
mod deep_yaml;
/// Hostile text in requests is escaped in answers.
mod hostile;
/// A test acting as the agent drives jobs through their whole life.
mod lifecycle;
/// Size limits on request bodies and on project.yaml.
mod limits;
/// The OpenAPI document against the router.
mod openapi;
