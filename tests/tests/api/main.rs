#![allow(clippy::unwrap_used, clippy::expect_used)]

//! End-to-end tests: one binary, each test spawning the real server on a
//! random port over its own database (SQLite and PostgreSQL), talking real
//! HTTP and graphql-ws.

// As the server binary does: the memory test reads jemalloc's figures.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod fake_llm;
mod helpers;

mod chat_llm;
mod chat_turn;
mod cli;
mod crud;
mod end_user_data;
mod errors;
mod fan_out;
mod graphql_http;
mod graphql_ws;
mod guidance_turn;
mod identity;
mod limits;
mod llm_providers;
mod memory;
mod metrics;
mod operations;
mod operator;
mod outbound;
mod provider_fault;
mod rest;
mod retrieval;
mod schema;
mod scripts;
mod semantic;
mod session_lifetime;
mod site_map;
mod site_recording;
mod smtp_sink;
mod support;
mod tenancy;
mod test_web_app;
mod tours;
mod webhooks;
mod writes;
