//! Chat widgets: the public UUID a `<script>` tag carries, and the public
//! configuration a widget loads.

use async_graphql::InputObject;
use chrono::Utc;
use entity::{bot, chat_widget, site};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, JoinType, QuerySelect};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Page, PageArgs, event, get, get_ref, new_id, paginate, scoped};
use crate::{auth::OrgScope, domain, error::AppError, secret::hex, state::State};

/// Most allowed origins on one widget.
pub const MAX_ORIGINS: usize = 50;

/// A new chat widget.
#[derive(Debug, InputObject)]
pub struct CreateChatWidgetInput {
    /// The bot that answers in this widget.
    pub bot_id: Uuid,
    /// The site it is embedded on (for flows and tooltips).
    pub site_id: Option<Uuid>,
    /// Shown in the dashboard. Default: "Chat widget".
    pub name: Option<String>,
    /// Origins allowed to use the widget, e.g. `https://www.example.com`; `*` allows any.
    pub allowed_origins: Option<Vec<String>>,
    /// Whether the widget answers visitors. Default: true.
    pub published: Option<bool>,
    /// Whether every visitor must come with a signed identity (`userId` + `userHash`); others are refused. Default: false (unsigned or wrongly signed visitors stay anonymous).
    pub identity_required: Option<bool>,
}

/// Changes to a chat widget; omitted fields stay as they are.
#[derive(Debug, InputObject)]
pub struct UpdateChatWidgetInput {
    /// The widget (its public id).
    pub id: Uuid,
    /// New bot.
    pub bot_id: Option<Uuid>,
    /// New site.
    pub site_id: Option<Uuid>,
    /// New name.
    pub name: Option<String>,
    /// Replaces the allowed origins.
    pub allowed_origins: Option<Vec<String>>,
    /// Publish or unpublish.
    pub published: Option<bool>,
    /// Require a signed identity from every visitor (needs an identity secret: see `rotateChatWidgetIdentitySecret`).
    pub identity_required: Option<bool>,
}

/// The plan a widget bound to a site (walkthroughs, generated flows) needs.
pub const SITE_PLAN: domain::Plan = domain::Plan::Pro;

/// A widget bound to a site can be created or published only on
/// [`SITE_PLAN`] or higher (`PLAN_REQUIRED`) and once the site's mapping is
/// `COMPLETED` (`BAD_USER_INPUT` on `siteId`): walkthroughs need the map.
async fn require_mapped_site(
    db: &impl sea_orm::ConnectionTrait,
    scope: &OrgScope,
    site_id: Uuid,
) -> Result<(), AppError> {
    let site = get_ref::<site::Entity>(db, scope, site_id, "input.siteId").await?;
    let org = entity::org::Entity::find_by_id(scope.org_id())
        .one(db)
        .await?
        .ok_or_else(|| AppError::internal("scope without org"))?;
    domain::Plan::from_stored(&org.plan)?.require(SITE_PLAN)?;
    if site.mapping_status != domain::MappingStatus::Completed.as_str() {
        return Err(AppError::bad_input(
            "input.siteId",
            "the site must be mapped first (mapSite or updateSiteMap until mappingStatus is COMPLETED)",
        ));
    }
    Ok(())
}

fn origins(list: Vec<String>) -> Result<serde_json::Value, AppError> {
    if list.len() > MAX_ORIGINS {
        return Err(AppError::bad_input(
            "input.allowedOrigins",
            format!("at most {MAX_ORIGINS} origins"),
        ));
    }
    let mut out = list
        .iter()
        .enumerate()
        .map(|(i, o)| domain::origin(&format!("input.allowedOrigins[{i}]"), o))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(serde_json::json!(out))
}

/// The stored allowed origins.
pub fn allowed_origins(w: &chat_widget::Model) -> Vec<String> {
    serde_json::from_value(w.allowed_origins.clone()).unwrap_or_default()
}

/// The caller's widgets.
pub async fn list(
    st: &State,
    scope: &OrgScope,
    page: &PageArgs,
) -> Result<Page<chat_widget::Model>, AppError> {
    paginate(&st.db, scoped::<chat_widget::Entity>(scope), page).await
}

/// A new widget for one of the caller's bots, with its identity secret in
/// plain text: the only time it is shown (only its sealed form is stored).
pub async fn create(
    st: &State,
    scope: &OrgScope,
    input: CreateChatWidgetInput,
) -> Result<(chat_widget::Model, String), AppError> {
    let allowed = origins(input.allowed_origins.unwrap_or_default())?;
    let name = domain::name("input.name", input.name.as_deref().unwrap_or("Chat widget"))?;
    let txn = crate::service::begin_write(&st.db).await?;
    get_ref::<bot::Entity>(&txn, scope, input.bot_id, "input.botId").await?;
    if let Some(s) = input.site_id {
        require_mapped_site(&txn, scope, s).await?;
    }
    let now = Utc::now();
    let id = new_id();
    let (secret, sealed) = super::identity::new_secret(st, id)?;
    let model = chat_widget::ActiveModel {
        id: Set(id),
        org_id: Set(scope.org_id()),
        bot_id: Set(input.bot_id),
        site_id: Set(input.site_id),
        name: Set(name),
        allowed_origins: Set(allowed),
        published: Set(input.published.unwrap_or(true)),
        identity_secret_sealed: Set(Some(sealed)),
        identity_required: Set(input.identity_required.unwrap_or(false)),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    event::commit_with_event::<chat_widget::Entity>(st, txn, scope.org_id(), "created", model.id)
        .await?;
    Ok((model, secret))
}

/// A new identity secret for one of the caller's widgets, in plain text (shown
/// this once). The old one stops verifying at once: identified visitors whose
/// page still signs with it stay anonymous (or are refused, with
/// `identityRequired`) until the host app's server uses the new one.
pub async fn rotate_identity_secret(
    st: &State,
    scope: &OrgScope,
    id: Uuid,
) -> Result<(chat_widget::Model, String), AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    let mut am: chat_widget::ActiveModel =
        get::<chat_widget::Entity>(&txn, scope, id).await?.into();
    let (secret, sealed) = super::identity::new_secret(st, id)?;
    am.identity_secret_sealed = Set(Some(sealed));
    am.updated_at = Set(Utc::now());
    let model = am.update(&txn).await?;
    event::commit_with_event::<chat_widget::Entity>(st, txn, scope.org_id(), "updated", id).await?;
    Ok((model, secret))
}

/// Applies `input` to one of the caller's widgets.
pub async fn update(
    st: &State,
    scope: &OrgScope,
    input: UpdateChatWidgetInput,
) -> Result<chat_widget::Model, AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    let current = get::<chat_widget::Entity>(&txn, scope, input.id).await?;
    let site_after = input.site_id.or(current.site_id);
    let published_after = input.published.unwrap_or(current.published);
    let binding_changes =
        input.site_id.is_some() || (input.published == Some(true) && !current.published);
    if binding_changes
        && published_after
        && let Some(s) = site_after
    {
        require_mapped_site(&txn, scope, s).await?;
    }
    let mut am: chat_widget::ActiveModel = current.into();
    if let Some(b) = input.bot_id {
        get_ref::<bot::Entity>(&txn, scope, b, "input.botId").await?;
        am.bot_id = Set(b);
    }
    if let Some(s) = input.site_id {
        get_ref::<site::Entity>(&txn, scope, s, "input.siteId").await?;
        am.site_id = Set(Some(s));
    }
    if let Some(v) = input.name {
        am.name = Set(domain::name("input.name", &v)?);
    }
    if let Some(v) = input.allowed_origins {
        am.allowed_origins = Set(origins(v)?);
    }
    if let Some(v) = input.published {
        am.published = Set(v);
    }
    if let Some(v) = input.identity_required {
        let has_secret = matches!(
            &am.identity_secret_sealed,
            sea_orm::ActiveValue::Unchanged(Some(_))
        );
        if v && !has_secret {
            return Err(AppError::bad_input(
                "input.identityRequired",
                "this widget has no identity secret yet: rotateChatWidgetIdentitySecret first",
            ));
        }
        am.identity_required = Set(v);
    }
    am.updated_at = Set(Utc::now());
    let model = am.update(&txn).await?;
    event::commit_with_event::<chat_widget::Entity>(st, txn, scope.org_id(), "updated", input.id)
        .await?;
    Ok(model)
}

/// Deletes one of the caller's widgets and its conversations.
pub async fn delete(st: &State, scope: &OrgScope, id: Uuid) -> Result<(), AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    super::delete::<chat_widget::Entity>(&txn, scope, id).await?;
    event::commit_with_event::<chat_widget::Entity>(st, txn, scope.org_id(), "deleted", id).await
}

/// A published widget and its bot, by public id. Unpublished and unknown ids are both `NOT_FOUND`.
pub async fn public(
    st: &State,
    widget_id: Uuid,
) -> Result<(chat_widget::Model, bot::Model), AppError> {
    // One statement: a widget is always read with its bot.
    let with_bot = chat_widget::Entity::belongs_to(bot::Entity)
        .from(chat_widget::Column::BotId)
        .to(bot::Column::Id);
    match chat_widget::Entity::find_by_id(widget_id)
        .join(JoinType::InnerJoin, with_bot.into())
        .select_also(bot::Entity)
        .one(&st.db)
        .await?
    {
        Some((widget, Some(bot))) if widget.published => Ok((widget, bot)),
        _ => Err(AppError::not_found_in("chat widget", "widgetId")),
    }
}

/// Charges one public operation to `widget_id`'s budget (all its visitors
/// together): `RATE_LIMITED` when the widget is over it. Dashboards using
/// their own widget are charged to their key instead, by the transport.
pub async fn charge(st: &State, widget_id: Uuid) -> Result<(), AppError> {
    st.rate
        .check(crate::http::rate_limit::Subject::Widget(widget_id), 1)
        .await
}

/// What a contact challenge token carries.
#[derive(Debug, Serialize, Deserialize)]
pub struct ContactChallenge {
    /// The widget it was minted for.
    pub w: Uuid,
    /// When it was minted (Unix milliseconds).
    pub t: i64,
    /// A random nonce, so each token is single-use.
    pub n: String,
}

/// Token purpose of contact challenges.
pub const CONTACT_PURPOSE: &str = "contact-challenge";

/// Mints a signed contact-form challenge bound to `widget_id`.
pub fn mint_contact_challenge(st: &State, widget_id: Uuid) -> Result<String, AppError> {
    let nonce = crate::secret::random_bytes::<12>().map_err(AppError::internal)?;
    let claims = ContactChallenge {
        w: widget_id,
        t: Utc::now().timestamp_millis(),
        n: hex(&nonce),
    };
    let payload = serde_json::to_vec(&claims).map_err(AppError::internal)?;
    Ok(st.secret.sign(CONTACT_PURPOSE, &payload))
}
