//! The `widget.js` contact form: a visitor's message becomes a support ticket.
//!
//! No CAPTCHA service: bots are kept out by two cheap checks. A honeypot field
//! that humans never see (a filled one gets the ordinary thank-you and creates
//! nothing, so the bot learns nothing), and a signed challenge minted with the
//! widget configuration ([`mint_contact_challenge`]) that must come back
//! bound to the same widget, no sooner than `contact_min_fill_ms` (people take
//! time to type) and no later than [`CHALLENGE_MAX_AGE_MS`], and only once:
//! its nonce goes into `used_challenges` in the transaction that opens the
//! ticket, where a second use hits the primary key.
//!
//! [`submit_contact`] is the one entry point, shared by the `submitContact`
//! mutation and the `POST /chatbot/message` REST adapter.
//!
//! [`mint_contact_challenge`]: super::chat_widget::mint_contact_challenge

use async_graphql::{InputObject, SimpleObject};
use chrono::{DateTime, Utc};
use entity::used_challenge;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, TryInsertResult};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    chat_widget::{self, CONTACT_PURPOSE, ContactChallenge},
    event,
    ticket::{self, NewTicket},
};
use crate::{
    domain::{self, TicketSource},
    error::AppError,
    state::State,
};

/// A challenge older than this (one hour) is expired: reload the form.
pub const CHALLENGE_MAX_AGE_MS: i64 = 60 * 60 * 1000;
/// Longest contact message.
pub const CONTACT_MESSAGE_MAX: usize = 5_000;
/// What a visitor reads after sending the form (and what a honeypot bot reads too).
pub const CONTACT_THANKS: &str = "Thanks for your message! We'll get back to you by email soon.";
/// The field a challenge failure names.
const CHALLENGE_FIELD: &str = "input.challenge";

// Also the body the `POST /chatbot/message` adapter deserialises (camelCase keys).
/// What the contact form sends. (`Debug` never shows the challenge.)
#[derive(Clone, Default, Deserialize, InputObject)]
#[serde(rename_all = "camelCase", default)]
#[graphql(name = "SubmitContactInput")]
pub struct ContactSubmission {
    /// The public widget id the form belongs to.
    pub widget_id: Uuid,
    /// The visitor's name (1 to 200 characters).
    pub name: String,
    /// The visitor's email address, where the answer goes.
    pub email: String,
    /// What the visitor wants (1 to 5,000 characters).
    pub message: String,
    /// The form's hidden field, sent as it is (people leave it empty; a filled one is answered normally and dropped).
    pub honeypot: Option<String>,
    /// The `contactChallenge` from `widgetConfig`, sent back unchanged. Each one works once.
    #[graphql(secret)]
    pub challenge: Option<String>,
}

impl std::fmt::Debug for ContactSubmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactSubmission")
            .field("widget_id", &self.widget_id)
            .field("name", &self.name)
            .field("email", &self.email)
            .field("message", &self.message)
            .field("honeypot", &self.honeypot)
            .field("challenge", &crate::secret::redacted(&self.challenge))
            .finish()
    }
}

/// How a contact submission was answered.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(name = "SubmitContactResult")]
pub struct ContactOutcome {
    /// Whether the message was received. Always true when there is no error.
    pub ok: bool,
    /// The thank-you text to show the visitor.
    pub message: String,
    /// The ticket opened; `None` when the honeypot was filled in (never shown to the public).
    #[graphql(skip)]
    pub ticket_id: Option<Uuid>,
}

impl ContactOutcome {
    fn thanks(ticket_id: Option<Uuid>) -> Self {
        Self {
            ok: true,
            message: CONTACT_THANKS.to_string(),
            ticket_id,
        }
    }
}

/// Checks a challenge for `widget_id` at `now`; returns its nonce and when it expires.
fn check_challenge(
    st: &State,
    widget_id: Uuid,
    token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(String, DateTime<Utc>), AppError> {
    let reject = |msg: &str| AppError::bad_input(CHALLENGE_FIELD, msg);
    let token = token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| reject("missing: send back the contactChallenge from widgetConfig"))?;
    let invalid = || reject("invalid challenge: reload the form and try again");
    let payload = st
        .secret
        .verify(CONTACT_PURPOSE, token)
        .ok_or_else(invalid)?;
    let claims: ContactChallenge = serde_json::from_slice(&payload).map_err(|_| invalid())?;
    if claims.w != widget_id {
        return Err(reject(
            "this challenge was issued for another widget: reload the form and try again",
        ));
    }
    if claims.n.is_empty() || claims.n.len() > 128 {
        return Err(invalid());
    }
    let age_ms = now.timestamp_millis().saturating_sub(claims.t);
    if age_ms > CHALLENGE_MAX_AGE_MS {
        return Err(reject(
            "the challenge has expired: reload the form and try again",
        ));
    }
    let min_fill = i64::try_from(st.config.contact_min_fill_ms).unwrap_or(i64::MAX);
    if age_ms < min_fill {
        return Err(reject(
            "submitted too quickly after the form loaded: wait a moment and try again",
        ));
    }
    let expires_at =
        DateTime::<Utc>::from_timestamp_millis(claims.t.saturating_add(CHALLENGE_MAX_AGE_MS))
            .unwrap_or(now);
    Ok((claims.n, expires_at))
}

/// Receives a contact-form submission for widget `input.widget_id`.
///
/// A filled honeypot answers the ordinary thank-you and writes nothing. A
/// missing, forged, expired, too-fast, reused or other-widget challenge is
/// `BAD_USER_INPUT` on `input.challenge`; bad name, email or message are
/// `BAD_USER_INPUT` on their field; an unknown or unpublished widget is
/// `NOT_FOUND` on `widgetId`. Otherwise the challenge is spent, a
/// `CONTACT_FORM` ticket opened and `ticket.created_via_widget` recorded in one
/// transaction, and the event published after commit.
#[tracing::instrument(skip_all, fields(widget_id = %input.widget_id, org_id, ticket_id))]
pub async fn submit_contact(
    st: &State,
    input: ContactSubmission,
) -> Result<ContactOutcome, AppError> {
    let (widget, _bot) = chat_widget::public(st, input.widget_id).await?;
    chat_widget::charge(st, widget.id).await?;
    let span = tracing::Span::current();
    span.record("org_id", tracing::field::display(widget.org_id));
    if input
        .honeypot
        .as_deref()
        .is_some_and(|h| !h.trim().is_empty())
    {
        tracing::info!("contact honeypot filled in; dropped");
        return Ok(ContactOutcome::thanks(None));
    }
    let now = Utc::now();
    let (nonce, expires_at) = check_challenge(st, widget.id, input.challenge.as_deref(), now)?;
    let name = domain::name("input.name", &input.name)?;
    let email = domain::email("input.email", &input.email)?;
    let message = domain::text("input.message", &input.message, 1, CONTACT_MESSAGE_MAX)?;

    // Opportunistic clean-up: expired challenges can't be replayed anyway.
    if let Err(err) = used_challenge::Entity::delete_many()
        .filter(used_challenge::Column::ExpiresAt.lt(now))
        .exec(&st.db)
        .await
    {
        tracing::warn!(%err, "could not delete expired contact challenges");
    }

    let txn = crate::service::begin_write(&st.db).await?;
    let spent = used_challenge::Entity::insert(used_challenge::ActiveModel {
        nonce: Set(nonce),
        expires_at: Set(expires_at),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(&txn)
    .await?;
    if !matches!(spent, TryInsertResult::Inserted(1)) {
        txn.rollback().await?;
        return Err(AppError::bad_input(
            CHALLENGE_FIELD,
            "this challenge was already used: reload the form to send another message",
        ));
    }
    let ticket = ticket::open(
        &txn,
        NewTicket {
            org_id: widget.org_id,
            source: TicketSource::ContactForm,
            name: Some(name),
            email: Some(email),
            message,
            session_id: None,
            end_user_id: None,
            user_id: None,
        },
    )
    .await?;
    let ev = event::record(
        &txn,
        widget.org_id,
        "ticket.created_via_widget",
        serde_json::json!({
            "id": ticket.id,
            "ticketId": ticket.id,
            "widgetId": widget.id,
            "source": ticket.source,
        }),
    )
    .await?;
    txn.commit().await?;
    event::publish(st, &[ev]).await;
    span.record("ticket_id", tracing::field::display(ticket.id));
    Ok(ContactOutcome::thanks(Some(ticket.id)))
}
