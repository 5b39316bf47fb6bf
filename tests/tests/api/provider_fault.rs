//! A provider that fails mid-answer, after real text has reached the widget:
//! each provider's wire format streams more than the delta flush size
//! (`DELTA_FLUSH_BYTES`, 24) and then the connection breaks. The `chatTurn`
//! subscriber has seen `ANSWER_DELTA` text, then gets the canned `FALLBACK`
//! reply and `COMPLETED`; the stored conversation records the same, with the
//! reason, and no `ANSWERED`.

use std::time::Duration;

use serde_json::{Value, json};
use wayfinder::{llm::ProviderKind, service};

use crate::{
    chat_turn::{ARTICLES, widget_with_kb},
    fake_llm::{Behaviour, FakeLlm},
    helpers::*,
    on_both_databases,
};

/// What the fake streams before the break: well past 24 bytes, in pieces.
const CHUNKS: &[&str] = &[
    "To reset your password, ",
    "open the sign-in page and ",
    "click Forgot password; ",
    "we email you a link that",
];

on_both_databases!(a_stream_that_breaks_after_real_text_ends_in_the_fallback);

async fn a_stream_that_breaks_after_real_text_ends_in_the_fallback(backend: Backend) {
    for kind in [
        ProviderKind::Ollama,
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
    ] {
        // Arrange: a bot answering from a KB through a provider that breaks mid-answer.
        let fake = FakeLlm::start(kind).await;
        let app = spawn_app_with(backend, |c| {
            fake.configure(c);
            c.llm_model = "test-model".into();
            c.llm_max_retries = 0;
        })
        .await;
        service::credits::grant(&app.state.db, app.org_id, 1_000, None)
            .await
            .unwrap();
        let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
        fake.set_behaviour(Behaviour::break_after(CHUNKS));

        // Act: the widget starts a turn and follows it.
        let started = app
            .gql_as(
                None,
                "mutation($i: TurnInput!) { startTurn(input: $i) { turnId sessionId sessionToken } }",
                json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
            )
            .await;
        assert!(started["errors"].is_null(), "{kind:?}: {started}");
        let s = &started["data"]["startTurn"];
        let mut ws = WsClient::connect(&app.ws_url, json!({})).await;
        ws.subscribe(
            "t",
            "subscription($t: UUID!, $s: String) { chatTurn(turnId: $t, sessionToken: $s) { seq status delta text } }",
            json!({ "t": s["turnId"], "s": s["sessionToken"] }),
        )
        .await;
        let events: Vec<Value> = ws
            .collect("t", Duration::from_secs(15))
            .await
            .into_iter()
            .map(|p| p["data"]["chatTurn"].clone())
            .collect();

        // Assert: text first, then the fallback, then the end.
        assert_eq!(fake.request_count(), 1, "{kind:?}: one call, no retry");
        let statuses: Vec<&str> = events
            .iter()
            .map(|e| e["status"].as_str().unwrap())
            .collect();
        let deltas = statuses.iter().filter(|s| **s == "ANSWER_DELTA").count();
        assert!(deltas >= 2, "{kind:?}: the text was streamed: {statuses:?}");
        let first_delta = statuses.iter().position(|s| *s == "ANSWER_DELTA").unwrap();
        let fallback = statuses
            .iter()
            .position(|s| *s == "FALLBACK")
            .unwrap_or_else(|| panic!("{kind:?}: no FALLBACK: {statuses:?}"));
        assert_eq!(statuses[0], "ANALYZING", "{kind:?}");
        assert!(first_delta < fallback, "{kind:?}: {statuses:?}");
        assert_eq!(fallback, statuses.len() - 2, "{kind:?}: {statuses:?}");
        assert_eq!(statuses.last(), Some(&"COMPLETED"), "{kind:?}");
        assert!(!statuses.contains(&"ANSWERED"), "{kind:?}: {statuses:?}");
        let streamed: String = events.iter().filter_map(|e| e["delta"].as_str()).collect();
        assert!(
            streamed.len() >= 24 && CHUNKS.concat().starts_with(&streamed),
            "{kind:?}: the provider's own text reached the widget: {streamed:?}"
        );
        let reply = events[fallback]["text"].as_str().unwrap();
        assert!(reply.starts_with("Sorry, no idea."), "{kind:?}: {reply}");

        // The stored conversation says the same: the deltas, then the canned reply and why.
        let stored = app
            .gql_ok(
                "query($id: UUID!) { chatSession(id: $id) { messages(first: 100) { nodes { turnId status role text payload } } } }",
                json!({ "id": s["sessionId"] }),
            )
            .await;
        let messages = stored["chatSession"]["messages"]["nodes"]
            .as_array()
            .unwrap();
        let stored_statuses: Vec<&str> = messages
            .iter()
            .map(|m| m["status"].as_str().unwrap())
            .collect();
        // The streamed chunks are stored coalesced: one row holds them all.
        let mut coalesced = statuses.clone();
        coalesced.dedup_by(|a, b| *a == "ANSWER_DELTA" && *b == "ANSWER_DELTA");
        assert_eq!(stored_statuses, coalesced, "{kind:?}: stored as streamed");
        let stored_fallback = &messages[coalesced.iter().position(|s| *s == "FALLBACK").unwrap()];
        assert_eq!(stored_fallback["role"], "bot", "{kind:?}");
        assert_eq!(stored_fallback["text"], reply, "{kind:?}");
        assert_eq!(
            stored_fallback["payload"]["reason"], "llm_unavailable",
            "{kind:?}: {stored_fallback}"
        );
        let stored_text: String = messages
            .iter()
            .filter_map(|m| m["payload"]["parts"].as_array())
            .flatten()
            .filter_map(|p| p.as_str())
            .collect();
        assert_eq!(stored_text, streamed, "{kind:?}: the streamed text is kept");
    }
}
