//! Bots: persona, prompts, fallbacks, bound knowledge bases and site.

use async_graphql::{InputObject, MaybeUndefined, SimpleObject};
use chrono::Utc;
use entity::{bot, bot_knowledge_base, knowledge_base, site};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Page, PageArgs, event, get, get_ref, new_id, org, paginate, scoped};
use crate::{
    auth::OrgScope,
    domain::{self, Plan},
    error::AppError,
    state::State,
};

/// Most knowledge bases one bot answers from.
pub const MAX_KNOWLEDGE_BASES: usize = 20;

/// Words the chat panel shows; every one optional, the widget has defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, SimpleObject, InputObject)]
#[graphql(input_name = "BotLabelsInput")]
#[serde(rename_all = "camelCase")]
pub struct BotLabels {
    /// Panel title (defaults to the persona name).
    pub title: Option<String>,
    /// Placeholder of the message box.
    pub input_placeholder: Option<String>,
    /// Text of the send button.
    pub send_button: Option<String>,
    /// Text of the hand-off button.
    pub handoff_button: Option<String>,
}

impl BotLabels {
    fn validated(self) -> Result<Self, AppError> {
        let f = |field: &str, v: Option<String>| -> Result<Option<String>, AppError> {
            v.map(|v| domain::text(field, &v, 1, 100)).transpose()
        };
        Ok(Self {
            title: f("input.labels.title", self.title)?,
            input_placeholder: f("input.labels.inputPlaceholder", self.input_placeholder)?,
            send_button: f("input.labels.sendButton", self.send_button)?,
            handoff_button: f("input.labels.handoffButton", self.handoff_button)?,
        })
    }

    /// Reads the stored labels, tolerating older shapes.
    pub fn from_stored(v: &serde_json::Value) -> Self {
        serde_json::from_value(v.clone()).unwrap_or_default()
    }
}

/// A new bot. Only `name` is required; everything else has a sensible default.
#[derive(Debug, Default, InputObject)]
pub struct CreateBotInput {
    /// Shown in the dashboard.
    pub name: String,
    /// Instructions that come first in every prompt (tone, scope, do's and don'ts).
    pub system_prompt: Option<String>,
    /// The name visitors see the bot speak as.
    pub persona_name: Option<String>,
    /// The first message of every conversation.
    pub greeting: Option<String>,
    /// Knowledge bases the bot answers from.
    pub knowledge_base_ids: Option<Vec<Uuid>>,
    /// The site whose flows and tooltips the bot may start.
    pub site_id: Option<Uuid>,
    /// Offer a hand-off to a human when the bot cannot answer.
    pub fallback_to_human: Option<bool>,
    /// Reply when a visitor is handed off.
    pub handoff_message: Option<String>,
    /// Canned reply when AI is off or unavailable.
    pub fallback_message: Option<String>,
    /// Main colour of the widget, `#rrggbb`.
    pub primary_color: Option<String>,
    /// Accent colour of the widget, `#rrggbb`.
    pub accent_color: Option<String>,
    /// UI labels.
    pub labels: Option<BotLabels>,
}

/// Changes to a bot; omitted fields stay as they are, `siteId: null` unbinds the site.
#[derive(Debug, Default, InputObject)]
pub struct UpdateBotInput {
    /// The bot to change.
    pub id: Uuid,
    /// New name.
    pub name: Option<String>,
    /// New system prompt.
    pub system_prompt: Option<String>,
    /// New persona name.
    pub persona_name: Option<String>,
    /// New greeting.
    pub greeting: Option<String>,
    /// Replaces the bound knowledge bases.
    pub knowledge_base_ids: Option<Vec<Uuid>>,
    /// New site binding; `null` removes it.
    pub site_id: MaybeUndefined<Uuid>,
    /// New hand-off setting.
    pub fallback_to_human: Option<bool>,
    /// New hand-off message.
    pub handoff_message: Option<String>,
    /// New canned fallback reply.
    pub fallback_message: Option<String>,
    /// New primary colour.
    pub primary_color: Option<String>,
    /// New accent colour.
    pub accent_color: Option<String>,
    /// Replaces the UI labels.
    pub labels: Option<BotLabels>,
}

const DEFAULT_PROMPT: &str = "You are a friendly, concise support assistant.";
const DEFAULT_GREETING: &str = "Hi! How can I help you today?";
const DEFAULT_HANDOFF: &str =
    "I've passed your question to our team; they will get back to you by email.";
const DEFAULT_FALLBACK: &str =
    "Sorry, I can't answer that right now. You can ask again later or talk to our team.";

/// The bots of the caller's org.
pub async fn list(
    st: &State,
    scope: &OrgScope,
    page: &PageArgs,
) -> Result<Page<bot::Model>, AppError> {
    paginate(&st.db, scoped::<bot::Entity>(scope), page).await
}

/// Ids of the knowledge bases bound to `bot_id`.
pub async fn knowledge_base_ids(
    db: &impl ConnectionTrait,
    bot_id: Uuid,
) -> Result<Vec<Uuid>, AppError> {
    Ok(bot_knowledge_base::Entity::find()
        .filter(bot_knowledge_base::Column::BotId.eq(bot_id))
        .all(db)
        .await?
        .into_iter()
        .map(|b| b.knowledge_base_id)
        .collect())
}

async fn bind_knowledge_bases(
    db: &impl ConnectionTrait,
    scope: &OrgScope,
    bot_id: Uuid,
    ids: &[Uuid],
) -> Result<(), AppError> {
    if ids.len() > MAX_KNOWLEDGE_BASES {
        return Err(AppError::bad_input(
            "input.knowledgeBaseIds",
            format!("at most {MAX_KNOWLEDGE_BASES} knowledge bases"),
        ));
    }
    let mut unique = ids.to_vec();
    unique.sort();
    unique.dedup();
    for id in &unique {
        get_ref::<knowledge_base::Entity>(db, scope, *id, "input.knowledgeBaseIds").await?;
    }
    bot_knowledge_base::Entity::delete_many()
        .filter(bot_knowledge_base::Column::BotId.eq(bot_id))
        .exec(db)
        .await?;
    if !unique.is_empty() {
        bot_knowledge_base::Entity::insert_many(unique.into_iter().map(|kb| {
            bot_knowledge_base::ActiveModel {
                bot_id: Set(bot_id),
                knowledge_base_id: Set(kb),
                org_id: Set(scope.org_id()),
            }
        }))
        .exec(db)
        .await?;
    }
    Ok(())
}

fn opt_text(field: &str, v: Option<String>, max: usize) -> Result<Option<String>, AppError> {
    v.map(|v| domain::text(field, &v, 0, max)).transpose()
}

/// A new bot; needs the GROWTH plan or higher.
#[tracing::instrument(skip_all, fields(org_id = %scope.org_id()))]
pub async fn create(
    st: &State,
    scope: &OrgScope,
    input: CreateBotInput,
) -> Result<bot::Model, AppError> {
    let org = org::get(&st.db, scope).await?;
    org::plan(&org)?.require(Plan::Growth)?;
    let name = domain::name("input.name", &input.name)?;
    let txn = crate::service::begin_write(&st.db).await?;
    if let Some(site) = input.site_id {
        get_ref::<site::Entity>(&txn, scope, site, "input.siteId").await?;
    }
    let now = Utc::now();
    let id = new_id();
    let labels = input.labels.unwrap_or_default().validated()?;
    let model = bot::ActiveModel {
        id: Set(id),
        org_id: Set(scope.org_id()),
        persona_name: Set(
            opt_text("input.personaName", input.persona_name, domain::NAME_MAX)?
                .unwrap_or_else(|| name.clone()),
        ),
        name: Set(name),
        system_prompt: Set(opt_text(
            "input.systemPrompt",
            input.system_prompt,
            domain::LONG_TEXT_MAX,
        )?
        .unwrap_or_else(|| DEFAULT_PROMPT.into())),
        greeting: Set(
            opt_text("input.greeting", input.greeting, domain::SHORT_TEXT_MAX)?
                .unwrap_or_else(|| DEFAULT_GREETING.into()),
        ),
        primary_color: Set(input
            .primary_color
            .map(|c| domain::colour("input.primaryColor", &c))
            .transpose()?
            .unwrap_or_else(|| "#1f6feb".into())),
        accent_color: Set(input
            .accent_color
            .map(|c| domain::colour("input.accentColor", &c))
            .transpose()?
            .unwrap_or_else(|| "#ffffff".into())),
        labels: Set(serde_json::to_value(labels).map_err(AppError::internal)?),
        fallback_to_human: Set(input.fallback_to_human.unwrap_or(true)),
        handoff_message: Set(opt_text(
            "input.handoffMessage",
            input.handoff_message,
            domain::SHORT_TEXT_MAX,
        )?
        .unwrap_or_else(|| DEFAULT_HANDOFF.into())),
        fallback_message: Set(opt_text(
            "input.fallbackMessage",
            input.fallback_message,
            domain::SHORT_TEXT_MAX,
        )?
        .unwrap_or_else(|| DEFAULT_FALLBACK.into())),
        site_id: Set(input.site_id),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    bind_knowledge_bases(
        &txn,
        scope,
        id,
        &input.knowledge_base_ids.unwrap_or_default(),
    )
    .await?;
    event::commit_with_event::<bot::Entity>(st, txn, scope.org_id(), "created", id).await?;
    Ok(model)
}

/// Applies `input` to one of the caller's bots.
#[tracing::instrument(skip_all, fields(org_id = %scope.org_id(), bot_id = %input.id))]
pub async fn update(
    st: &State,
    scope: &OrgScope,
    input: UpdateBotInput,
) -> Result<bot::Model, AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    let mut am: bot::ActiveModel = get::<bot::Entity>(&txn, scope, input.id).await?.into();
    if let Some(v) = input.name {
        am.name = Set(domain::name("input.name", &v)?);
    }
    if let Some(v) = opt_text(
        "input.systemPrompt",
        input.system_prompt,
        domain::LONG_TEXT_MAX,
    )? {
        am.system_prompt = Set(v);
    }
    if let Some(v) = input.persona_name {
        am.persona_name = Set(domain::name("input.personaName", &v)?);
    }
    if let Some(v) = opt_text("input.greeting", input.greeting, domain::SHORT_TEXT_MAX)? {
        am.greeting = Set(v);
    }
    match input.site_id {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => am.site_id = Set(None),
        MaybeUndefined::Value(site) => {
            get_ref::<site::Entity>(&txn, scope, site, "input.siteId").await?;
            am.site_id = Set(Some(site));
        }
    }
    if let Some(v) = input.fallback_to_human {
        am.fallback_to_human = Set(v);
    }
    if let Some(v) = opt_text(
        "input.handoffMessage",
        input.handoff_message,
        domain::SHORT_TEXT_MAX,
    )? {
        am.handoff_message = Set(v);
    }
    if let Some(v) = opt_text(
        "input.fallbackMessage",
        input.fallback_message,
        domain::SHORT_TEXT_MAX,
    )? {
        am.fallback_message = Set(v);
    }
    if let Some(v) = input.primary_color {
        am.primary_color = Set(domain::colour("input.primaryColor", &v)?);
    }
    if let Some(v) = input.accent_color {
        am.accent_color = Set(domain::colour("input.accentColor", &v)?);
    }
    if let Some(v) = input.labels {
        am.labels = Set(serde_json::to_value(v.validated()?).map_err(AppError::internal)?);
    }
    if let Some(ids) = input.knowledge_base_ids {
        bind_knowledge_bases(&txn, scope, input.id, &ids).await?;
    }
    am.updated_at = Set(Utc::now());
    let model = am.update(&txn).await?;
    event::commit_with_event::<bot::Entity>(st, txn, scope.org_id(), "updated", input.id).await?;
    Ok(model)
}

/// Deletes one of the caller's bots with its widgets and conversations.
pub async fn delete(st: &State, scope: &OrgScope, id: Uuid) -> Result<(), AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    super::delete::<bot::Entity>(&txn, scope, id).await?;
    event::commit_with_event::<bot::Entity>(st, txn, scope.org_id(), "deleted", id).await
}
