//! Support: the contact form and its signed challenge, votes on replies,
//! hand-offs, and the tickets they open, as the support inbox sees them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use uuid::Uuid;
use wayfinder::{
    domain::Plan,
    secret::ServerSecret,
    service::chat_widget::{CONTACT_PURPOSE, ContactChallenge},
};

use crate::{
    chat_turn::{ARTICLES, widget_with_kb},
    helpers::*,
    on_both_databases,
};

on_both_databases!(
    a_filled_honeypot_answers_ok_and_creates_nothing,
    bad_contact_challenges_are_rejected,
    a_valid_contact_opens_one_ticket_and_announces_it,
    a_second_vote_replaces_the_first_and_a_downvote_opens_a_ticket,
    votes_only_reach_the_voters_own_bot_replies,
    handoff_answers_emits_and_opens_one_ticket,
    tickets_are_updated_and_stay_in_their_org,
);

const CONFIG: &str =
    "query($w: UUID!) { widgetConfig(widgetId: $w) { contactChallenge contactMinFillMs } }";
const CONTACT: &str =
    "mutation($i: SubmitContactInput!) { submitContact(input: $i) { ok message } }";
const SEND: &str = "mutation($i: TurnInput!) { sendMessage(input: $i) { sessionId sessionToken messageId text status } }";
const VOTE: &str =
    "mutation($i: SubmitFeedbackInput!) { submitFeedback(input: $i) { ok feedbackId ticketId } }";
const HANDOFF: &str = "mutation($i: RequestHandoffInput!) { requestHandoff(input: $i) { ok message ticketId turnId } }";
const TICKETS: &str = "query($f: TicketFilter) { supportTickets(filter: $f) { nodes { id source status name email message sessionId assigneeNote transcript { author status text } } } }";

/// A fresh challenge for `widget`, as `widget.js` gets it.
async fn challenge(app: &TestApp, widget: &str) -> String {
    let r = app.gql_as(None, CONFIG, json!({ "w": widget })).await;
    r["data"]["widgetConfig"]["contactChallenge"]
        .as_str()
        .unwrap_or_else(|| panic!("no challenge: {r}"))
        .to_string()
}

/// A challenge for `widget` minted at `minted_ms` (Unix ms) with `secret`.
fn challenge_at(secret: &ServerSecret, widget: &str, minted_ms: i64) -> String {
    let claims = ContactChallenge {
        w: widget.parse().unwrap(),
        t: minted_ms,
        n: Uuid::new_v4().simple().to_string(),
    };
    secret.sign(CONTACT_PURPOSE, &serde_json::to_vec(&claims).unwrap())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn contact_input(widget: &str, challenge: &str) -> Value {
    json!({
        "widgetId": widget,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "message": "Can I export invoices as CSV?",
        "honeypot": "",
        "challenge": challenge,
    })
}

/// The test org's tickets, optionally filtered.
async fn tickets(app: &TestApp, filter: Value) -> Vec<Value> {
    app.gql_ok(TICKETS, json!({ "f": filter })).await["supportTickets"]["nodes"]
        .as_array()
        .unwrap()
        .clone()
}

/// The test org's outbox events of `kind`.
async fn events(app: &TestApp, kind: &str) -> Vec<Value> {
    app.gql_ok(
        "query($k: String) { events(kind: $k) { nodes { kind payload } } }",
        json!({ "k": kind }),
    )
    .await["events"]["nodes"]
        .as_array()
        .unwrap()
        .clone()
}

/// Asserts `r` is `BAD_USER_INPUT` on `input.challenge` whose message mentions `says`.
fn assert_challenge_rejected(r: &Value, says: &str) {
    assert_eq!(error_code(r), Some("BAD_USER_INPUT"), "{r}");
    assert_eq!(
        r["errors"][0]["extensions"]["field"], "input.challenge",
        "{r}"
    );
    let message = r["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(says),
        "{message:?} should mention {says:?}"
    );
}

async fn a_filled_honeypot_answers_ok_and_creates_nothing(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.contact_min_fill_ms = 0).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let normal = app
        .gql_as(
            None,
            CONTACT,
            json!({ "i": contact_input(&widget, &challenge(&app, &widget).await) }),
        )
        .await;
    let thanks = normal["data"]["submitContact"]["message"].clone();

    let mut input = contact_input(&widget, &challenge(&app, &widget).await);
    input["honeypot"] = json!("https://spam.example");
    let r = app.gql_as(None, CONTACT, json!({ "i": input })).await;

    assert_eq!(r["data"]["submitContact"]["ok"], true, "{r}");
    assert_eq!(r["data"]["submitContact"]["message"], thanks);
    assert_eq!(
        tickets(&app, json!(null)).await.len(),
        1,
        "only the real submission"
    );
    assert_eq!(events(&app, "ticket.created_via_widget").await.len(), 1);
}

async fn bad_contact_challenges_are_rejected(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.contact_min_fill_ms = 0).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let (other_widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let send = |challenge: Value| {
        let mut input = contact_input(&widget, "");
        input["challenge"] = challenge;
        app.gql_as(None, CONTACT, json!({ "i": input }))
    };

    // Missing.
    assert_challenge_rejected(&send(json!(null)).await, "missing");
    // Expired: minted over an hour ago with the real secret.
    let old = challenge_at(&app.state.secret, &widget, now_ms() - 61 * 60 * 1000);
    assert_challenge_rejected(&send(json!(old)).await, "expired");
    // Forged: signed with another secret.
    let forger = ServerSecret::from_bytes(b"not-the-server-secret-not-the-server");
    assert_challenge_rejected(
        &send(json!(challenge_at(&forger, &widget, now_ms()))).await,
        "invalid",
    );
    assert_challenge_rejected(&send(json!("garbage.token")).await, "invalid");
    // Another widget's.
    let theirs = challenge(&app, &other_widget).await;
    assert_challenge_rejected(&send(json!(theirs)).await, "another widget");
    // Reused: the first use works, the second doesn't.
    let once = challenge(&app, &widget).await;
    let first = send(json!(once)).await;
    assert_eq!(first["data"]["submitContact"]["ok"], true, "{first}");
    assert_challenge_rejected(&send(json!(once)).await, "already used");
    assert_eq!(tickets(&app, json!(null)).await.len(), 1);

    // Too fast: with the default minimum fill time, an immediate submission is a bot.
    let strict = spawn_app(backend).await;
    let (widget, _, _) = widget_with_kb(&strict, ARTICLES).await;
    let fresh = challenge(&strict, &widget).await;
    let r = strict
        .gql_as(
            None,
            CONTACT,
            json!({ "i": contact_input(&widget, &fresh) }),
        )
        .await;
    assert_challenge_rejected(&r, "too quickly");
    assert!(tickets(&strict, json!(null)).await.is_empty());
    assert!(
        events(&strict, "ticket.created_via_widget")
            .await
            .is_empty()
    );
}

async fn a_valid_contact_opens_one_ticket_and_announces_it(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.contact_min_fill_ms = 0).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let mut ws = WsClient::connect(&app.ws_url, json!({ "apiKey": app.api_key })).await;
    ws.subscribe(
        "ev",
        r#"subscription { orgEvents(kinds: ["knowledge_base.created", "ticket.created_via_widget"]) { kind payload } }"#,
        json!({}),
    )
    .await;
    // Warm up: wait until the subscription demonstrably receives events.
    let mut live = false;
    for _ in 0..20 {
        app.gql_ok(
            r#"mutation { createKnowledgeBase(input: {name: "probe"}) { id } }"#,
            json!({}),
        )
        .await;
        if ws.next(Duration::from_millis(300)).await.is_some() {
            live = true;
            break;
        }
    }
    assert!(live, "orgEvents never started");

    let r = app
        .gql_as(
            None,
            CONTACT,
            json!({ "i": contact_input(&widget, &challenge(&app, &widget).await) }),
        )
        .await;
    assert_eq!(r["data"]["submitContact"]["ok"], true, "{r}");
    assert!(
        r["data"]["submitContact"]["message"]
            .as_str()
            .unwrap()
            .contains("Thanks")
    );

    let all = tickets(&app, json!({ "source": "CONTACT_FORM", "status": "OPEN" })).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let ticket = &all[0];
    assert_eq!(ticket["name"], "Ada Lovelace");
    assert_eq!(ticket["email"], "ada@example.com");
    assert_eq!(ticket["message"], "Can I export invoices as CSV?");
    assert_eq!(ticket["sessionId"], Value::Null);
    assert_eq!(ticket["transcript"], json!([]));
    let evs = events(&app, "ticket.created_via_widget").await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["payload"]["ticketId"], ticket["id"]);
    assert_eq!(evs[0]["payload"]["widgetId"], widget.as_str());

    let mut received = None;
    while let Some(msg) = ws.next(Duration::from_secs(5)).await {
        let ev = &msg["payload"]["data"]["orgEvents"];
        if ev["kind"] == "ticket.created_via_widget" {
            received = Some(ev.clone());
            break;
        }
    }
    let received = received.expect("orgEvents delivers ticket.created_via_widget");
    assert_eq!(received["payload"]["ticketId"], ticket["id"]);

    // Invalid fields are named, and spend nothing.
    let mut bad = contact_input(&widget, &challenge(&app, &widget).await);
    bad["email"] = json!("not-an-email");
    let r = app.gql_as(None, CONTACT, json!({ "i": bad.clone() })).await;
    assert_eq!(r["errors"][0]["extensions"]["field"], "input.email", "{r}");
    bad["email"] = json!("ada@example.com");
    bad["message"] = json!("x".repeat(5_001));
    let r = app.gql_as(None, CONTACT, json!({ "i": bad.clone() })).await;
    assert_eq!(
        r["errors"][0]["extensions"]["field"], "input.message",
        "{r}"
    );
    bad["message"] = json!("fine now");
    let r = app.gql_as(None, CONTACT, json!({ "i": bad })).await;
    assert_eq!(
        r["data"]["submitContact"]["ok"], true,
        "the challenge was not spent: {r}"
    );
}

async fn a_second_vote_replaces_the_first_and_a_downvote_opens_a_ticket(backend: Backend) {
    let app = spawn_app(backend).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let r = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
        )
        .await;
    let reply = r["data"]["sendMessage"].clone();
    let (token, message) = (reply["sessionToken"].clone(), reply["messageId"].clone());

    let up = app
        .gql_as(
            None,
            VOTE,
            json!({ "i": { "messageId": message, "vote": "UP", "sessionToken": token } }),
        )
        .await;
    assert_eq!(up["data"]["submitFeedback"]["ok"], true, "{up}");
    assert_eq!(up["data"]["submitFeedback"]["ticketId"], Value::Null);
    let down = app
        .gql_as(None, VOTE, json!({ "i": { "messageId": message, "vote": "DOWN", "comment": "The link never arrives.", "sessionToken": token, "openTicket": true } }))
        .await;
    let down = &down["data"]["submitFeedback"];
    assert_eq!(
        down["feedbackId"], up["data"]["submitFeedback"]["feedbackId"],
        "{down}"
    );

    // One vote, now DOWN.
    let fb = app
        .gql_ok(
            "{ feedback { nodes { id messageId vote comment } } }",
            json!({}),
        )
        .await;
    let votes = fb["feedback"]["nodes"].as_array().unwrap();
    assert_eq!(votes.len(), 1, "{votes:?}");
    assert_eq!(votes[0]["vote"], "DOWN");
    assert_eq!(votes[0]["comment"], "The link never arrives.");
    assert_eq!(events(&app, "feedback.submitted").await.len(), 2);

    // The downvote opened a FEEDBACK ticket whose transcript is the conversation.
    let all = tickets(&app, json!({ "source": "FEEDBACK" })).await;
    assert_eq!(all.len(), 1);
    let ticket = &all[0];
    assert_eq!(ticket["id"], down["ticketId"]);
    assert_eq!(ticket["status"], "OPEN");
    assert_eq!(ticket["sessionId"], reply["sessionId"]);
    let text = ticket["message"].as_str().unwrap();
    assert!(
        text.contains("The link never arrives.") && text.contains("Forgot password"),
        "{text}"
    );
    assert_eq!(
        ticket["transcript"],
        json!([
            { "author": "VISITOR", "status": "ANALYZING", "text": "How do I reset my password?" },
            { "author": "BOT", "status": "ANSWERED", "text": reply["text"] },
        ])
    );
    let created = events(&app, "ticket.created").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["payload"]["ticketId"], ticket["id"]);

    // A second downvote in the session adds to the open ticket instead of opening another.
    let r = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": "zzqx vvbn", "sessionToken": token } }),
        )
        .await;
    let again = app
        .gql_as(None, VOTE, json!({ "i": { "messageId": r["data"]["sendMessage"]["messageId"], "vote": "DOWN", "comment": "Useless.", "sessionToken": token, "openTicket": true } }))
        .await;
    assert_eq!(
        again["data"]["submitFeedback"]["ticketId"], ticket["id"],
        "{again}"
    );
    let all = tickets(&app, json!({ "source": "FEEDBACK" })).await;
    assert_eq!(all.len(), 1);
    assert!(all[0]["message"].as_str().unwrap().contains("Useless."));
    assert_eq!(all[0]["transcript"].as_array().unwrap().len(), 4);

    // An over-long comment is refused.
    let r = app
        .gql_as(None, VOTE, json!({ "i": { "messageId": message, "vote": "DOWN", "comment": "x".repeat(2_001), "sessionToken": token } }))
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["field"], "input.comment",
        "{r}"
    );
}

async fn votes_only_reach_the_voters_own_bot_replies(backend: Backend) {
    let app = spawn_app(backend).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let send = |m: &'static str| {
        app.gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": m } }),
        )
    };
    let a = send("How do I reset my password?").await["data"]["sendMessage"].clone();
    let b = send("Exporting invoices?").await["data"]["sendMessage"].clone();
    for reply in [&a, &b] {
        assert_eq!(reply["status"], "ANSWERED", "{reply}");
        assert!(reply["messageId"].is_string(), "{reply}");
    }

    // Session A's token can't vote on session B's reply.
    let r = app
        .gql_as(None, VOTE, json!({ "i": { "messageId": b["messageId"], "vote": "UP", "sessionToken": a["sessionToken"] } }))
        .await;
    assert_eq!(error_code(&r), Some("NOT_FOUND"), "{r}");
    // Nor on the visitor's own message (not a bot reply).
    let msgs = app
        .gql_ok(
            "query($id: UUID!) { chatSession(id: $id) { messages { nodes { id status } } } }",
            json!({ "id": a["sessionId"] }),
        )
        .await;
    let user_msg = msgs["chatSession"]["messages"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["status"] == "ANALYZING")
        .unwrap()["id"]
        .clone();
    let r = app
        .gql_as(None, VOTE, json!({ "i": { "messageId": user_msg, "vote": "UP", "sessionToken": a["sessionToken"] } }))
        .await;
    assert_eq!(error_code(&r), Some("NOT_FOUND"), "{r}");
    // Unknown ids look the same; no token and no key is refused.
    let r = app
        .gql_as(None, VOTE, json!({ "i": { "messageId": Uuid::now_v7(), "vote": "UP", "sessionToken": a["sessionToken"] } }))
        .await;
    assert_eq!(error_code(&r), Some("NOT_FOUND"), "{r}");
    let r = app
        .gql_as(
            None,
            VOTE,
            json!({ "i": { "messageId": b["messageId"], "vote": "UP" } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("BAD_USER_INPUT"), "{r}");

    // An API key votes without a token, but only in its own org.
    let r = app
        .gql(
            VOTE,
            json!({ "i": { "messageId": b["messageId"], "vote": "UP" } }),
        )
        .await;
    assert_eq!(r["data"]["submitFeedback"]["ok"], true, "{r}");
    let (_, other_key) = app.create_org(Plan::Pro).await;
    let r = app
        .gql_as(
            Some(&other_key),
            VOTE,
            json!({ "i": { "messageId": a["messageId"], "vote": "DOWN" } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("NOT_FOUND"), "{r}");
    assert_eq!(events(&app, "feedback.submitted").await.len(), 1);
}

async fn handoff_answers_emits_and_opens_one_ticket(backend: Backend) {
    let app = spawn_app(backend).await;
    let (widget, bot, _) = widget_with_kb(&app, ARTICLES).await;
    let handoff_message = "A person from our team will reply by email within a day.";
    app.gql_ok(
        "mutation($id: UUID!, $m: String!) { updateBot(input: {id: $id, handoffMessage: $m}) { id } }",
        json!({ "id": bot, "m": handoff_message }),
    )
    .await;
    let r = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
        )
        .await;
    let reply = r["data"]["sendMessage"].clone();

    // A dashboard watches the conversation; skip the replay of the first turn.
    let mut ws = WsClient::connect(&app.ws_url, json!({ "apiKey": app.api_key })).await;
    ws.subscribe(
        "s",
        "subscription($s: UUID!) { sessionEvents(sessionId: $s) { turnId seq status text } }",
        json!({ "s": reply["sessionId"] }),
    )
    .await;
    loop {
        let m = ws
            .next(Duration::from_secs(5))
            .await
            .expect("replayed event");
        if m["payload"]["data"]["sessionEvents"]["status"] == "COMPLETED" {
            break;
        }
    }

    let r = app
        .gql_as(None, HANDOFF, json!({ "i": { "sessionToken": reply["sessionToken"], "email": "ada@example.com", "note": "Still locked out." } }))
        .await;
    let first = r["data"]["requestHandoff"].clone();
    assert_eq!(first["ok"], true, "{r}");
    assert_eq!(first["message"], handoff_message);

    let live = ws
        .next(Duration::from_secs(5))
        .await
        .expect("HANDOFF event");
    let ev = &live["payload"]["data"]["sessionEvents"];
    assert_eq!(ev["status"], "HANDOFF", "{live}");
    assert_eq!(ev["seq"], 1);
    assert_eq!(ev["text"], handoff_message);
    assert_eq!(ev["turnId"], first["turnId"]);
    let done = ws
        .next(Duration::from_secs(5))
        .await
        .expect("COMPLETED event");
    assert_eq!(
        done["payload"]["data"]["sessionEvents"]["status"],
        "COMPLETED"
    );

    // Asking again gives the same ticket and writes nothing new.
    let again = app
        .gql_as(
            None,
            HANDOFF,
            json!({ "i": { "sessionToken": reply["sessionToken"] } }),
        )
        .await;
    assert_eq!(
        again["data"]["requestHandoff"]["ticketId"], first["ticketId"],
        "{again}"
    );
    assert_eq!(again["data"]["requestHandoff"]["message"], handoff_message);
    assert_eq!(again["data"]["requestHandoff"]["turnId"], Value::Null);

    let all = tickets(&app, json!({ "source": "HANDOFF" })).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let ticket = &all[0];
    assert_eq!(ticket["id"], first["ticketId"]);
    assert_eq!(ticket["email"], "ada@example.com");
    assert_eq!(ticket["message"], "Still locked out.");
    assert_eq!(ticket["sessionId"], reply["sessionId"]);
    let lines = ticket["transcript"].as_array().unwrap();
    assert_eq!(lines.last().unwrap()["status"], "HANDOFF");
    assert_eq!(events(&app, "ticket.created").await.len(), 1);

    // Once the ticket is closed, a new request opens a new one.
    app.gql_ok(
        "mutation($id: UUID!) { updateTicket(input: {id: $id, status: CLOSED}) { id } }",
        json!({ "id": first["ticketId"] }),
    )
    .await;
    let r = app
        .gql_as(
            None,
            HANDOFF,
            json!({ "i": { "sessionToken": reply["sessionToken"] } }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    assert!(r["data"]["requestHandoff"]["ticketId"].is_string(), "{r}");
    assert_ne!(
        r["data"]["requestHandoff"]["ticketId"], first["ticketId"],
        "{r}"
    );

    // Bad input and bad tokens.
    let r = app
        .gql_as(
            None,
            HANDOFF,
            json!({ "i": { "sessionToken": reply["sessionToken"], "email": "nope" } }),
        )
        .await;
    assert_eq!(r["errors"][0]["extensions"]["field"], "input.email", "{r}");
    let r = app
        .gql_as(
            None,
            HANDOFF,
            json!({ "i": { "sessionToken": "forged.token" } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("FORBIDDEN"), "{r}");
}

async fn tickets_are_updated_and_stay_in_their_org(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.contact_min_fill_ms = 0).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let r = app
        .gql_as(
            None,
            CONTACT,
            json!({ "i": contact_input(&widget, &challenge(&app, &widget).await) }),
        )
        .await;
    assert_eq!(r["data"]["submitContact"]["ok"], true, "{r}");
    let id = tickets(&app, json!(null)).await[0]["id"].clone();
    const UPDATE: &str =
        "mutation($i: UpdateTicketInput!) { updateTicket(input: $i) { id status assigneeNote } }";

    // Another org can neither see nor change it.
    let (_, other_key) = app.create_org(Plan::Pro).await;
    let r = app
        .gql_as(
            Some(&other_key),
            UPDATE,
            json!({ "i": { "id": id, "status": "CLOSED" } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("NOT_FOUND"), "{r}");
    let r = app
        .gql_as(Some(&other_key), TICKETS, json!({ "f": null }))
        .await;
    assert_eq!(r["data"]["supportTickets"]["nodes"], json!([]), "{r}");
    // Nor can the public.
    let r = app
        .gql_as(
            None,
            UPDATE,
            json!({ "i": { "id": id, "status": "CLOSED" } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("UNAUTHENTICATED"), "{r}");

    let r = app
        .gql_ok(
            UPDATE,
            json!({ "i": { "id": id, "status": "PENDING", "assigneeNote": "Asked billing." } }),
        )
        .await;
    assert_eq!(
        r["updateTicket"],
        json!({ "id": id, "status": "PENDING", "assigneeNote": "Asked billing." })
    );
    let r = app
        .gql_ok(UPDATE, json!({ "i": { "id": id, "status": "CLOSED" } }))
        .await;
    assert_eq!(r["updateTicket"]["status"], "CLOSED");
    assert_eq!(
        r["updateTicket"]["assigneeNote"], "Asked billing.",
        "omitted fields stay"
    );
    assert_eq!(tickets(&app, json!({ "status": "CLOSED" })).await.len(), 1);
    assert!(tickets(&app, json!({ "status": "OPEN" })).await.is_empty());
    let updated = events(&app, "ticket.updated").await;
    assert_eq!(updated.len(), 2);
    assert_eq!(updated[1]["payload"]["status"], "CLOSED");
    assert_eq!(updated[1]["payload"]["id"], id);
}
