#![allow(clippy::unwrap_used, clippy::expect_used)]

//! End-to-end tests: one binary, each test spawning the real server on a
//! random port over its own database (SQLite and PostgreSQL), talking real
//! HTTP and graphql-ws.

mod helpers;

mod cli;
mod crud;
mod errors;
mod graphql_ws;
mod operations;
mod schema;
mod tenancy;
