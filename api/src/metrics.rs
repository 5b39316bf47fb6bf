//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format
//! (which Prometheus scrapes natively), through `prometheus-client`, the
//! Prometheus project's own Rust client: small (no HTTP server, no
//! protobuf), so it costs little to build.
//!
//! One registry per process, reached through [`metrics()`]: counters are
//! bumped from every layer (transport, turn pipeline, bus, rate limits)
//! without threading a handle through each of them, as a global recorder
//! would. Several servers in one process (the tests) share it. Label sets
//! are small and bounded: operation kinds, transports, turn statuses,
//! provider and model names (the operator's and orgs' configured models),
//! rate-limit subjects, never ids.

use std::{sync::LazyLock, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// A GraphQL operation: its kind (`query`, `mutation`, `subscription`,
/// `batch`, `invalid`) and transport (`http`, `ws`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub kind: &'static str,
    pub transport: &'static str,
}

/// A turn's final status (`ANSWERED`, `FALLBACK`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TurnLabels {
    pub status: &'static str,
}

/// One LLM call: provider, model, and whether it gave a usable answer (`ok`, `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LlmLabels {
    pub provider: &'static str,
    pub model: String,
    pub outcome: &'static str,
}

/// Tokens of one provider and model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub provider: &'static str,
    pub model: String,
}

/// A rate-limit subject kind (`ip`, `widget`, `api_key`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubjectLabels {
    pub subject: &'static str,
}

/// Every metric Wayfinder exports.
pub struct Metrics {
    registry: Registry,
    pub operations: Family<OperationLabels, Counter>,
    pub operation_seconds: Family<OperationLabels, Histogram>,
    pub open_sockets: Gauge,
    pub subscriptions: Gauge,
    pub turns: Family<TurnLabels, Counter>,
    pub llm_calls: Family<LlmLabels, Counter>,
    pub llm_seconds: Family<LlmLabels, Histogram>,
    pub llm_tokens: Family<ModelLabels, Counter>,
    pub credit_refusals: Counter,
    pub rate_limited: Family<SubjectLabels, Counter>,
    pub socket_refusals: Counter,
    pub db_writes: Counter,
    pub db_reads: Counter,
    pub fanout_gaps: Counter,
}

/// Latency buckets in seconds: 1 ms to 60 s.
fn buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ]
    .into_iter()
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("wayfinder");
        let operations = Family::<OperationLabels, Counter>::default();
        let operation_seconds = Family::<OperationLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(buckets())) as fn() -> Histogram,
        );
        let open_sockets = Gauge::default();
        let subscriptions = Gauge::default();
        let turns = Family::<TurnLabels, Counter>::default();
        let llm_calls = Family::<LlmLabels, Counter>::default();
        let llm_seconds = Family::<LlmLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(buckets())) as fn() -> Histogram,
        );
        let llm_tokens = Family::<ModelLabels, Counter>::default();
        let credit_refusals = Counter::default();
        let rate_limited = Family::<SubjectLabels, Counter>::default();
        let socket_refusals = Counter::default();
        let db_writes = Counter::default();
        let db_reads = Counter::default();
        let fanout_gaps = Counter::default();
        registry.register(
            "graphql_operations",
            "GraphQL operations received, by kind and transport",
            operations.clone(),
        );
        registry.register(
            "graphql_operation_seconds",
            "Time to answer a GraphQL request over HTTP, by kind",
            operation_seconds.clone(),
        );
        registry.register(
            "open_sockets",
            "graphql-ws sockets open on this replica",
            open_sockets.clone(),
        );
        registry.register(
            "subscriptions",
            "Live subscriptions to the bus on this replica (chatTurn, sessionEvents, orgEvents)",
            subscriptions.clone(),
        );
        registry.register(
            "turns",
            "Chat turns finished, by final status",
            turns.clone(),
        );
        registry.register(
            "llm_calls",
            "Answer LLM calls, by provider, model and outcome",
            llm_calls.clone(),
        );
        registry.register(
            "llm_call_seconds",
            "Duration of answer LLM calls, by provider, model and outcome",
            llm_seconds.clone(),
        );
        registry.register(
            "llm_tokens",
            "Tokens the provider reported, by provider and model",
            llm_tokens.clone(),
        );
        registry.register(
            "credit_refusals",
            "Turns refused an LLM call for want of credits",
            credit_refusals.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests and operations refused by a rate budget, by subject",
            rate_limited.clone(),
        );
        registry.register(
            "socket_refusals",
            "graphql-ws upgrades refused because the client address holds its most sockets",
            socket_refusals.clone(),
        );
        registry.register(
            "db_writes",
            "Statements that changed rows (INSERT, UPDATE, DELETE), every transaction's included",
            db_writes.clone(),
        );
        registry.register("db_reads", "SELECT statements", db_reads.clone());
        registry.register(
            "fanout_gaps",
            "Times a live subscription may have missed bus messages (it lagged, or the bus reconnected) and re-read the store",
            fanout_gaps.clone(),
        );
        Self {
            registry,
            operations,
            operation_seconds,
            open_sockets,
            subscriptions,
            turns,
            llm_calls,
            llm_seconds,
            llm_tokens,
            credit_refusals,
            rate_limited,
            socket_refusals,
            db_writes,
            db_reads,
            fanout_gaps,
        }
    }

    /// The registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(err) = encode(&mut out, &self.registry) {
            tracing::error!(%err, "metrics could not be encoded");
        }
        out
    }

    /// An answer LLM call finished after `took`, with `tokens` reported.
    pub fn llm_call(
        &self,
        provider: &'static str,
        model: &str,
        ok: bool,
        tokens: u32,
        took: Duration,
    ) {
        let labels = LlmLabels {
            provider,
            model: model.to_string(),
            outcome: if ok { "ok" } else { "failed" },
        };
        self.llm_calls.get_or_create(&labels).inc();
        self.llm_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.llm_tokens
            .get_or_create(&ModelLabels {
                provider,
                model: model.to_string(),
            })
            .inc_by(u64::from(tokens));
    }
}

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Decrements a gauge when dropped (a socket or subscription ending, however it ends).
pub struct GaugeGuard(&'static Gauge);

impl GaugeGuard {
    /// Increments `gauge` now, decrements it on drop.
    pub fn new(gauge: &'static Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
