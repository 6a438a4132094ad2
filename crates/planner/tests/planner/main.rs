//! Integration tests of warden-planner, in one binary.

/// A hand-built `Pipeline` and history.
mod builder;
/// Topological order, closure and cycles.
mod graph;
/// Random graphs against a plain recursive model of job-runner's planner.
mod props;
/// Each planning rule with its exact messages.
mod rules;
