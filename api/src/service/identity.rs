//! Signed visitor identity: who the host app says its user is, proven with
//! the chat widget's identity secret.
//!
//! The host app's server computes `HMAC-SHA256(identitySecret, userId)` (hex)
//! and its page passes `userId`, that `userHash` and optional `traits` with
//! each message (`startTurn`, `sendMessage`, the REST chat adapter, `chat.js`'s
//! `wayfinder.identify`). An unsigned user id would let anyone claim to be
//! anyone, so nothing here ever identifies a visitor without a hash that
//! verifies (in constant time) against the widget's own secret:
//!
//! - a widget with `identityRequired` refuses a missing or wrong hash
//!   (`FORBIDDEN`, with a message that says which);
//! - any other widget keeps such a visitor anonymous: the claim is ignored,
//!   never half-trusted.
//!
//! The shape of a claim (user id length, trait count and size) is checked
//! first, whatever the widget: a malformed claim is `BAD_USER_INPUT` on the
//! field at fault.
//!
//! An identified visitor is one `end_users` row per (widget, userId) (a
//! unique index): every device and every session of that user lands on it,
//! and their latest live session on the widget continues. An anonymous
//! session that signs in is merged into that row: its sessions, tickets and
//! tour runs move over, its chat-extracted traits are kept under the host app's, and
//! the anonymous row is deleted, all in one transaction. The host app's
//! traits are kept apart (`host_traits`) so chat extraction
//! (`turn::traits`) never overwrites them.
//!
//! The secret itself is sealed with the server secret, bound to the widget
//! id (`secret::ServerSecret::seal`), like an org's own LLM key.

use chrono::Utc;
use entity::{bot, chat_session, chat_widget, end_user, support_ticket, tour_run};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter, QueryOrder, sea_query::Expr,
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{chat, new_id};
use crate::{error::AppError, secret, state::State};

/// Sealing purpose of widget identity secrets.
pub const IDENTITY_PURPOSE: &str = "widget-identity-secret";
/// Longest `userId`, in bytes.
pub const USER_ID_MAX: usize = 255;
/// Most traits in one identity.
pub const TRAITS_MAX: usize = 50;
/// Longest trait name, in characters.
pub const TRAIT_KEY_MAX: usize = 64;
/// Longest string trait value, in characters.
pub const TRAIT_VALUE_MAX: usize = 1_000;
/// Largest traits object, serialised, in bytes.
pub const TRAITS_BYTES_MAX: usize = 8_192;

/// What a page says about its visitor, as it arrived (any of the fields may
/// be missing). `Debug` leaves the hash out.
#[derive(Clone, Default)]
pub struct IdentityClaim {
    /// The host app's user id.
    pub user_id: Option<String>,
    /// `HMAC-SHA256(identitySecret, userId)`, hex.
    pub user_hash: Option<String>,
    /// Profile traits (name, email, plan, company, custom keys).
    pub traits: Option<Value>,
}

impl std::fmt::Debug for IdentityClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityClaim")
            .field("user_id", &self.user_id)
            .field("user_hash", &secret::redacted(&self.user_hash))
            .field("traits", &self.traits.as_ref().map(|_| "…"))
            .finish()
    }
}

impl IdentityClaim {
    /// Whether the page sent anything about identity at all.
    pub fn is_empty(&self) -> bool {
        self.user_id.is_none() && self.user_hash.is_none() && self.traits.is_none()
    }
}

/// A claim whose hash verified: the visitor is this user of the widget.
#[derive(Debug, Clone)]
pub struct VerifiedIdentity {
    pub user_id: String,
    pub traits: Map<String, Value>,
}

/// Checks the shape of `claim` (whatever the widget): `userId` 1 to 255
/// bytes without control characters, a `userHash` with it, traits an object
/// of at most [`TRAITS_MAX`] scalar values within the size bounds.
fn parse(claim: &IdentityClaim) -> Result<(Option<&str>, Map<String, Value>), AppError> {
    let user_id = match claim.user_id.as_deref() {
        None => None,
        Some(id) if id.is_empty() || id.len() > USER_ID_MAX => {
            return Err(AppError::bad_input(
                "input.userId",
                format!("must be 1 to {USER_ID_MAX} bytes"),
            ));
        }
        Some(id) if id.chars().any(char::is_control) => {
            return Err(AppError::bad_input(
                "input.userId",
                "must not contain control characters",
            ));
        }
        Some(id) => Some(id),
    };
    if user_id.is_some() != claim.user_hash.is_some() {
        let (field, msg) = if user_id.is_some() {
            (
                "input.userHash",
                "give userHash (HMAC-SHA256 of userId with the widget's identity secret) with userId",
            )
        } else {
            ("input.userId", "give userId with userHash")
        };
        return Err(AppError::bad_input(field, msg));
    }
    if claim.traits.is_some() && user_id.is_none() {
        return Err(AppError::bad_input(
            "input.traits",
            "traits come with a signed identity: give userId and userHash too",
        ));
    }
    let traits = match &claim.traits {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => validate_traits(map)?,
        Some(_) => {
            return Err(AppError::bad_input(
                "input.traits",
                "must be an object of names to values",
            ));
        }
    };
    Ok((user_id, traits))
}

fn validate_traits(map: &Map<String, Value>) -> Result<Map<String, Value>, AppError> {
    let bad = |msg: String| AppError::bad_input("input.traits", msg);
    if map.len() > TRAITS_MAX {
        return Err(bad(format!("at most {TRAITS_MAX} traits")));
    }
    let size = serde_json::to_vec(map)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > TRAITS_BYTES_MAX {
        return Err(bad(format!("at most {TRAITS_BYTES_MAX} bytes in all")));
    }
    for (k, v) in map {
        let key_ok = !k.is_empty()
            && k.chars().count() <= TRAIT_KEY_MAX
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !key_ok {
            return Err(bad(format!(
                "trait names are 1 to {TRAIT_KEY_MAX} letters, digits, `_`, `-` or `.`"
            )));
        }
        match v {
            Value::String(s) if s.chars().count() > TRAIT_VALUE_MAX => {
                return Err(bad(format!(
                    "trait `{k}` is longer than {TRAIT_VALUE_MAX} characters"
                )));
            }
            Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => {}
            Value::Array(_) | Value::Object(_) => {
                return Err(bad(format!(
                    "trait `{k}` must be a string, number, boolean or null"
                )));
            }
        }
    }
    Ok(map.clone())
}

/// What a visitor of `widget` is, given `claim`: `Some` identity when its
/// hash verifies; `None` (anonymous) when there is no claim, or, on a widget
/// that does not require identity, a claim that does not verify. On a
/// widget with `identityRequired` a missing or wrong hash is `FORBIDDEN`.
pub fn verify(
    st: &State,
    widget: &chat_widget::Model,
    claim: &IdentityClaim,
) -> Result<Option<VerifiedIdentity>, AppError> {
    let (user_id, traits) = parse(claim)?;
    let Some(user_id) = user_id else {
        if widget.identity_required {
            return Err(AppError::Forbidden(
                "this widget requires a signed identity: pass userId and userHash".into(),
            ));
        }
        return Ok(None);
    };
    let hash = claim.user_hash.as_deref().unwrap_or_default();
    let verified =
        widget_secret(st, widget).is_some_and(|s| secret::verify_identity_hash(&s, user_id, hash));
    if verified {
        return Ok(Some(VerifiedIdentity {
            user_id: user_id.to_string(),
            traits,
        }));
    }
    tracing::info!(widget_id = %widget.id, "identity hash did not verify; visitor stays anonymous");
    if widget.identity_required {
        return Err(AppError::Forbidden(
            "identity not verified: userHash is not HMAC-SHA256(identity secret, userId) for this widget"
                .into(),
        ));
    }
    Ok(None)
}

/// A claim made without a widget (a dashboard testing a bot): refused, since
/// only a widget has an identity secret.
pub fn refuse_without_widget(claim: &IdentityClaim) -> Result<(), AppError> {
    if claim.is_empty() {
        return Ok(());
    }
    Err(AppError::bad_input(
        "input.userId",
        "a signed identity needs a widgetId: the secret belongs to the widget",
    ))
}

/// The widget's identity secret in plain text, if it has one that opens.
fn widget_secret(st: &State, widget: &chat_widget::Model) -> Option<String> {
    let sealed = widget.identity_secret_sealed.as_deref()?;
    match st
        .secret
        .open(IDENTITY_PURPOSE, widget.id.as_bytes(), sealed)
    {
        Some(raw) => String::from_utf8(raw).ok(),
        None => {
            tracing::error!(widget_id = %widget.id, "the widget's identity secret does not decrypt (server secret changed?)");
            None
        }
    }
}

/// A new identity secret for `widget_id`: the plain secret (to show once) and its sealed form (to store).
pub fn new_secret(st: &State, widget_id: Uuid) -> Result<(String, String), AppError> {
    let plain = secret::generate_identity_secret().map_err(AppError::internal)?;
    let sealed = st
        .secret
        .seal(IDENTITY_PURPOSE, widget_id.as_bytes(), plain.as_bytes())
        .map_err(AppError::internal)?;
    Ok((plain, sealed))
}

/// The session a turn continues or starts. `current` is the session of a
/// valid token, if one came, with its visitor; `identity` the verified
/// visitor, if any.
///
/// - no identity: `current` when its visitor is anonymous, otherwise (or
///   without one) a new anonymous visitor and session;
/// - identity and a session of that same user: it continues;
/// - identity and an anonymous session: that visitor is merged into the
///   identified one, and the session continues;
/// - identity and a session of another identified user (someone else signed
///   in on this browser): their conversation is not touched; the identified
///   user continues their latest live session on the widget, or starts one.
pub async fn session_for(
    st: &State,
    bot: &bot::Model,
    widget: Option<&chat_widget::Model>,
    current: Option<(chat_session::Model, Option<end_user::Model>)>,
    identity: Option<VerifiedIdentity>,
) -> Result<chat_session::Model, AppError> {
    let (Some(identity), Some(widget)) = (identity, widget) else {
        // A signed-in user's conversation continues only with their identity:
        // a bare token (a shared browser, a host app that never signed out)
        // starts a new anonymous conversation instead of reading theirs.
        return match (current, widget) {
            (Some((s, owner)), Some(_))
                if owner.as_ref().is_none_or(|o| o.external_id.is_none()) =>
            {
                Ok(s)
            }
            (Some((s, _)), None) => Ok(s),
            _ => chat::start_session(&st.db, bot.org_id, bot.id, widget).await,
        };
    };
    let user = identified_user(&st.db, widget, &identity).await?;
    if let Some((session, owner)) = current {
        match owner {
            Some(o) if o.id == user.id => return Ok(session),
            Some(o) if o.external_id.is_none() => {
                merge_anonymous(&st.db, o, &user).await?;
                return Ok(chat_session::Model {
                    end_user_id: Some(user.id),
                    ..session
                });
            }
            _ => {}
        }
    }
    let latest = chat_session::Entity::find()
        .filter(chat_session::Column::EndUserId.eq(user.id))
        .filter(chat_session::Column::ChatWidgetId.eq(widget.id))
        .filter(chat_session::Column::BotId.eq(bot.id))
        .order_by_desc(chat_session::Column::UpdatedAt)
        .one(&st.db)
        .await?;
    if let Some(s) = latest.filter(|s| !chat::session_expired_now(st, s)) {
        return Ok(s);
    }
    let now = Utc::now();
    Ok(chat_session::ActiveModel {
        id: Set(new_id()),
        org_id: Set(bot.org_id),
        bot_id: Set(bot.id),
        chat_widget_id: Set(Some(widget.id)),
        end_user_id: Set(Some(user.id)),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&st.db)
    .await?)
}

/// The one end user of (`widget`, `identity.user_id`), created on first sight
/// (concurrent first turns meet on the unique index), with the host app's
/// traits merged in when they changed.
async fn identified_user(
    db: &DatabaseConnection,
    widget: &chat_widget::Model,
    identity: &VerifiedIdentity,
) -> Result<end_user::Model, AppError> {
    let find = || {
        end_user::Entity::find()
            .filter(end_user::Column::ChatWidgetId.eq(widget.id))
            .filter(end_user::Column::ExternalId.eq(identity.user_id.as_str()))
            .one(db)
    };
    let user = match find().await? {
        Some(u) => u,
        None => {
            let now = Utc::now();
            end_user::Entity::insert(end_user::ActiveModel {
                id: Set(new_id()),
                org_id: Set(widget.org_id),
                chat_widget_id: Set(Some(widget.id)),
                external_id: Set(Some(identity.user_id.clone())),
                anonymous: Set(false),
                traits: Set(Value::Object(identity.traits.clone())),
                host_traits: Set(Some(Value::Object(identity.traits.clone()))),
                created_at: Set(now),
                updated_at: Set(now),
            })
            // On the (widget, user id) index: a plain `on_conflict_do_nothing`
            // targets the primary key and lets a concurrent first sight fail.
            .on_conflict_do_nothing_on([
                end_user::Column::ChatWidgetId,
                end_user::Column::ExternalId,
            ])
            .exec_without_returning(db)
            .await?;
            find()
                .await?
                .ok_or_else(|| AppError::internal("identified end user vanished"))?
        }
    };
    let host = host_traits(&user);
    let changed = identity.traits.iter().any(|(k, v)| host.get(k) != Some(v));
    if !changed {
        return Ok(user);
    }
    let mut new_host = host;
    let mut all = user.traits.as_object().cloned().unwrap_or_default();
    for (k, v) in &identity.traits {
        new_host.insert(k.clone(), v.clone());
        all.insert(k.clone(), v.clone());
    }
    let mut am: end_user::ActiveModel = user.into();
    am.host_traits = Set(Some(Value::Object(new_host)));
    am.traits = Set(Value::Object(all));
    am.anonymous = Set(false);
    am.updated_at = Set(Utc::now());
    Ok(am.update(db).await?)
}

/// The traits the host app set on `user` (they win over extracted ones).
pub fn host_traits(user: &end_user::Model) -> Map<String, Value> {
    user.host_traits
        .as_ref()
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Moves everything of the anonymous visitor `anon` onto `user` and deletes
/// `anon`, in one transaction: sessions, tickets, and its extracted traits
/// (under the host app's).
async fn merge_anonymous(
    db: &DatabaseConnection,
    anon: end_user::Model,
    user: &end_user::Model,
) -> Result<(), AppError> {
    let txn = super::begin_write(db).await?;
    chat_session::Entity::update_many()
        .col_expr(chat_session::Column::EndUserId, Expr::value(user.id))
        .filter(chat_session::Column::EndUserId.eq(anon.id))
        .exec(&txn)
        .await?;
    support_ticket::Entity::update_many()
        .col_expr(support_ticket::Column::EndUserId, Expr::value(user.id))
        .col_expr(
            support_ticket::Column::UserId,
            Expr::value(user.external_id.clone()),
        )
        .filter(support_ticket::Column::EndUserId.eq(anon.id))
        .exec(&txn)
        .await?;
    // Tour runs follow (an anonymous auto-start then counts for the signed-in visitor too).
    tour_run::Entity::update_many()
        .col_expr(tour_run::Column::EndUserId, Expr::value(user.id))
        .filter(tour_run::Column::EndUserId.eq(anon.id))
        .exec(&txn)
        .await?;
    // Read again inside the transaction: the row may have changed since.
    let fresh = end_user::Entity::find_by_id(user.id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::internal("identified end user vanished"))?;
    let host = host_traits(&fresh);
    let mut all = fresh.traits.as_object().cloned().unwrap_or_default();
    if let Some(extracted) = anon.traits.as_object() {
        for (k, v) in extracted {
            if !host.contains_key(k) {
                all.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    let mut am: end_user::ActiveModel = fresh.into();
    am.traits = Set(Value::Object(all));
    am.updated_at = Set(Utc::now());
    am.update(&txn).await?;
    end_user::Entity::delete_by_id(anon.id).exec(&txn).await?;
    txn.commit().await?;
    Ok(())
}

/// The end user of `session_id` and what a ticket should say about them:
/// (end user id, host user id, name, email) from their traits.
pub async fn ticket_contact(
    db: &impl ConnectionTrait,
    session_id: Uuid,
) -> Result<TicketContact, AppError> {
    let Some(session) = chat_session::Entity::find_by_id(session_id).one(db).await? else {
        return Ok(TicketContact::default());
    };
    let Some(user_id) = session.end_user_id else {
        return Ok(TicketContact::default());
    };
    let Some(user) = end_user::Entity::find_by_id(user_id).one(db).await? else {
        return Ok(TicketContact::default());
    };
    let trait_of = |k: &str| {
        user.traits
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    Ok(TicketContact {
        name: trait_of("name").and_then(|n| crate::domain::name("name", &n).ok()),
        email: trait_of("email").and_then(|e| crate::domain::email("email", &e).ok()),
        end_user_id: Some(user.id),
        user_id: user.external_id,
    })
}

/// Who a hand-off or downvote ticket is from.
#[derive(Debug, Clone, Default)]
pub struct TicketContact {
    pub end_user_id: Option<Uuid>,
    /// The host app's user id, when the visitor is identified.
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(user_id: Option<&str>, hash: Option<&str>, traits: Option<Value>) -> IdentityClaim {
        IdentityClaim {
            user_id: user_id.map(str::to_string),
            user_hash: hash.map(str::to_string),
            traits,
        }
    }

    #[test]
    fn claims_are_checked_at_the_boundary() {
        assert!(parse(&IdentityClaim::default()).is_ok());
        assert!(parse(&claim(Some("u1"), Some("ab"), None)).is_ok());
        let field = |c: &IdentityClaim| match parse(c) {
            Err(AppError::BadInput { field, .. }) => field,
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        };
        assert_eq!(field(&claim(Some("u1"), None, None)), "input.userHash");
        assert_eq!(field(&claim(None, Some("ab"), None)), "input.userId");
        assert_eq!(field(&claim(Some(""), Some("ab"), None)), "input.userId");
        assert_eq!(
            field(&claim(Some("a\nb"), Some("ab"), None)),
            "input.userId"
        );
        let long = "x".repeat(USER_ID_MAX + 1);
        assert_eq!(field(&claim(Some(&long), Some("ab"), None)), "input.userId");
        let t = |v: Value| claim(Some("u1"), Some("ab"), Some(v));
        assert_eq!(
            field(&claim(None, None, Some(serde_json::json!({})))),
            "input.traits"
        );
        assert_eq!(field(&t(serde_json::json!([1]))), "input.traits");
        assert_eq!(
            field(&t(serde_json::json!({"a": {"b": 1}}))),
            "input.traits"
        );
        assert_eq!(field(&t(serde_json::json!({"bad key": 1}))), "input.traits");
        let many: Map<String, Value> = (0..=TRAITS_MAX)
            .map(|i| (format!("k{i}"), Value::from(i)))
            .collect();
        assert_eq!(field(&t(Value::Object(many))), "input.traits");
        let big = "x".repeat(TRAIT_VALUE_MAX + 1);
        assert_eq!(field(&t(serde_json::json!({"bio": big}))), "input.traits");
        let total: Map<String, Value> = (0..10)
            .map(|i| (format!("k{i}"), Value::from("y".repeat(900))))
            .collect();
        assert_eq!(field(&t(Value::Object(total))), "input.traits");
        let good = t(serde_json::json!({"plan": "pro", "seats": 3, "admin": true}));
        assert_eq!(parse(&good).map(|(_, m)| m.len()).ok(), Some(3));
    }
}
