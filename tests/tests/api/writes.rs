//! Writes per turn: a long streamed answer is not one row per chunk. The
//! chunks reach the socket one by one, are stored coalesced, and a replay of
//! the finished turn is the same stream.

use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use wayfinder::llm::ProviderKind;

use crate::{
    chat_turn::{ARTICLES, widget_with_kb},
    fake_llm::{Behaviour, FakeLlm},
    helpers::*,
    on_both_databases,
};

on_both_databases!(a_long_streamed_turn_writes_a_few_rows_and_replays_whole);
on_both_databases!(a_dashboard_that_joins_a_running_answer_reads_the_store_a_few_times);

const CHAT_TURN: &str = "subscription($t: UUID!, $s: String) { chatTurn(turnId: $t, sessionToken: $s) { seq status delta text messageId } }";

/// Every event of a turn through `chatTurn`.
pub async fn follow(app: &TestApp, turn: &Value, token: &Value) -> Vec<Value> {
    follow_timed(&app.ws_url, turn, token)
        .await
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

/// What makes two streams of a turn the same: each event's sequence
/// number, status, chunk and message id, in order.
fn stream_keys<'a>(events: impl IntoIterator<Item = &'a Value>) -> Vec<[Value; 4]> {
    events
        .into_iter()
        .map(|e| {
            [
                e["seq"].clone(),
                e["status"].clone(),
                e["delta"].clone(),
                e["messageId"].clone(),
            ]
        })
        .collect()
}

/// Every event of a turn through `chatTurn`, each with when it arrived.
pub async fn follow_timed(ws_url: &str, turn: &Value, token: &Value) -> Vec<(Instant, Value)> {
    let mut ws = WsClient::connect(ws_url, json!({})).await;
    ws.subscribe("t", CHAT_TURN, json!({ "t": turn, "s": token }))
        .await;
    let mut out = vec![];
    loop {
        let msg = ws
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("timed out; got so far {out:?}"));
        match msg["type"].as_str() {
            Some("next") => out.push((Instant::now(), msg["payload"]["data"]["chatTurn"].clone())),
            Some("complete") => return out,
            _ => panic!("unexpected {msg}"),
        }
    }
}

/// A subscriber that joined a running answer: it got every event once and
/// in order, the chunks it missed while the answer still streamed (from the
/// stash, not from a stored row), and the same stream as one that was there
/// from the start.
pub fn assert_joined_mid_stream(late: &[(Instant, Value)], live: &[Value]) {
    assert_eq!(
        stream_keys(late.iter().map(|(_, e)| e)),
        stream_keys(live),
        "the late subscriber saw the same stream"
    );
    let at = |status: &str| {
        late.iter()
            .find(|(_, e)| e["status"] == status)
            .map(|(t, _)| *t)
            .unwrap()
    };
    let streaming = at("ANSWERED").duration_since(at("ANSWER_DELTA"));
    assert!(
        streaming >= Duration::from_millis(200),
        "the missed chunks came while the answer streamed, not with it: {streaming:?}"
    );
}

/// An app whose LLM (a fake speaking OpenAI's wire format) answers in
/// `chunks`, one every 4 ms, with a widget on a knowledge base; the fake is
/// returned to keep it running.
async fn paced_app(backend: Backend, chunks: Vec<String>) -> (FakeLlm, TestApp, String) {
    let fake = FakeLlm::start(ProviderKind::OpenAi).await;
    let app = spawn_app_with(backend, |c| {
        fake.configure(c);
        c.llm_model = "test-model".into();
    })
    .await;
    app.grant_credits(100_000).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    fake.set_behaviour(Behaviour::Paced {
        chunks,
        every: Duration::from_millis(4),
    });
    (fake, app, widget)
}

async fn a_long_streamed_turn_writes_a_few_rows_and_replays_whole(backend: Backend) {
    // Arrange: an LLM answering in 300 chunks, one every 4 ms.
    let chunks: Vec<String> = (0..300)
        .map(|i| format!("password step {i} [1]\n"))
        .collect();
    let answer: String = chunks.concat();
    let (_fake, app, widget) = paced_app(backend, chunks).await;

    // Act: one subscriber from the start, one that joins half-way.
    let marks = &app.state.published;
    let (writes_before, marks_before) = (
        wayfinder::metrics::metrics().db_writes.get(),
        marks.statements(),
    );
    let started = app
        .gql_as(
            None,
            "mutation($i: TurnInput!) { startTurn(input: $i) { turnId sessionToken } }",
            json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
        )
        .await;
    let s = &started["data"]["startTurn"];
    let turn_id: uuid::Uuid = s["turnId"].as_str().unwrap().parse().unwrap();
    let rows_of_turn = || async {
        entity::chat_message::Entity::find()
            .filter(entity::chat_message::Column::TurnId.eq(turn_id))
            .count(&app.state.db)
            .await
            .unwrap()
    };
    let (live, late) = tokio::join!(follow(&app, &s["turnId"], &s["sessionToken"]), async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            rows_of_turn().await,
            1,
            "mid-answer only ANALYZING is stored"
        );
        follow_timed(&app.ws_url, &s["turnId"], &s["sessionToken"]).await
    });

    // Assert: every chunk live, in order, then the answer.
    let seqs: Vec<i64> = live.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    let deltas: String = live
        .iter()
        .filter(|e| e["status"] == "ANSWER_DELTA")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, answer, "the chunks add up to the answer");
    assert!(
        live.iter()
            .filter(|e| e["status"] == "ANSWER_DELTA")
            .count()
            >= 300
    );
    let answered = live.iter().find(|e| e["status"] == "ANSWERED").unwrap();
    assert_eq!(answered["text"], answer.trim());
    assert_joined_mid_stream(&late, &live);

    // Every database write of the turn, whatever the answer's length: the
    // new visitor and session (2), the message (1), the credit reservation
    // (2) and settlement (2), the chunks with the answer and `COMPLETED` (1),
    // the outbox event (1). The event's published mark is one `UPDATE` a
    // second shared by every event of that second, not counted against the
    // turn.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writes = wayfinder::metrics::metrics().db_writes.get()
        - writes_before
        - (marks.statements() - marks_before);
    assert!(
        writes <= 9,
        "a streamed turn of 300 chunks made {writes} database writes"
    );

    // A handful of rows for the whole turn, whatever the answer's length.
    let rows = rows_of_turn().await;
    assert_eq!(
        rows, 4,
        "ANALYZING, the coalesced chunks, ANSWERED, COMPLETED: got {rows} rows"
    );

    // The LLM call is in the metrics, with its model and tokens.
    let metrics = app.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wayfinder_llm_calls_total{")
                && l.contains("model=\"test-model\"")
                && l.contains("outcome=\"ok\"")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wayfinder_llm_tokens_total{") && l.contains("test-model")),
        "{metrics}"
    );

    // The finished turn replays as the same stream, chunk by chunk.
    let replay = follow(&app, &s["turnId"], &s["sessionToken"]).await;
    assert_eq!(stream_keys(&replay), stream_keys(&live));

    // The visitor's next turn in the same conversation: at most 7 writes.
    let (writes_before, marks_before) = (
        wayfinder::metrics::metrics().db_writes.get(),
        marks.statements(),
    );
    let next = app
        .gql_as(
            None,
            "mutation($i: TurnInput!) { startTurn(input: $i) { turnId sessionToken } }",
            json!({ "i": { "widgetId": widget, "message": "And how do I reset my password on a phone?", "sessionToken": s["sessionToken"] } }),
        )
        .await;
    let n = &next["data"]["startTurn"];
    let events = follow(&app, &n["turnId"], &n["sessionToken"]).await;
    assert_eq!(
        events.last().map(|e| e["status"].clone()),
        Some(json!("COMPLETED"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writes = wayfinder::metrics::metrics().db_writes.get()
        - writes_before
        - (marks.statements() - marks_before);
    assert!(
        writes <= 7,
        "a follow-up streamed turn made {writes} database writes"
    );
}

async fn a_dashboard_that_joins_a_running_answer_reads_the_store_a_few_times(backend: Backend) {
    // Arrange: 300 chunks, one every 4 ms, and a subscriber from the start.
    let chunks: Vec<String> = (0..300).map(|i| format!("step {i} [1]\n")).collect();
    let (_fake, app, widget) = paced_app(backend, chunks).await;
    let started = app
        .gql_as(
            None,
            "mutation($i: TurnInput!) { startTurn(input: $i) { turnId sessionId sessionToken } }",
            json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
        )
        .await;
    let s = &started["data"]["startTurn"];

    // Act: a dashboard's `sessionEvents` joins half-way. Its first live
    // chunk is past a gap, and so is every chunk after it until the stash
    // (written every 250 ms) catches up.
    let (live, (late, reads)) = tokio::join!(
        follow(&app, &s["turnId"], &s["sessionToken"]),
        async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            let reads_before = wayfinder::metrics::metrics().db_reads.get();
            let mut ws = WsClient::connect(&app.ws_url, json!({ "apiKey": app.api_key })).await;
            ws.subscribe(
            "s",
            "subscription($s: UUID!) { sessionEvents(sessionId: $s) { seq status delta messageId } }",
            json!({ "s": s["sessionId"] }),
        )
        .await;
            let mut late = vec![];
            while late
                .last()
                .is_none_or(|e: &(Instant, Value)| e.1["status"] != "COMPLETED")
            {
                let msg = ws
                    .next(Duration::from_secs(10))
                    .await
                    .unwrap_or_else(|| panic!("sessionEvents stalled after {late:?}"));
                assert_eq!(msg["type"], "next", "{msg}");
                late.push((
                    Instant::now(),
                    msg["payload"]["data"]["sessionEvents"].clone(),
                ));
            }
            (
                late,
                wayfinder::metrics::metrics().db_reads.get() - reads_before,
            )
        }
    );

    // Assert: the same stream, the missed chunks while the answer streamed,
    // and a few reads (the key, the replay, a re-read per 250 ms of gap and
    // the turn's own), not one per chunk past the gap.
    assert_joined_mid_stream(&late, &live);
    assert!(
        reads <= 18,
        "the late sessionEvents subscriber's turn made {reads} reads"
    );
}
