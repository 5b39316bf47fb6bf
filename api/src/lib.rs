//! Wayfinder: the backend of an embeddable AI support chat widget.
//!
//! Data flows one way: HTTP / graphql-ws (`http`) → resolvers (`graphql`) →
//! services (`service`) → entities; live updates go out through the bus
//! (`pubsub`). `startup` builds it all as one value; `cli` is the binary.

pub mod appmap;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod embeddings;
pub mod error;
pub mod graphql;
pub mod http;
pub mod llm;
pub mod metrics;
pub mod outbound;
pub mod pubsub;
pub mod secret;
pub mod service;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod turn;
