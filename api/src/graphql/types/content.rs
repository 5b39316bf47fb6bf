//! Bots, sites, flows and tooltips.

use async_graphql::{ComplexObject, Context, Json, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    appmap::{AppMap, MapPage},
    domain::{Audience, ContentSource, ContentStatus, MappingStatus},
    error::{AppError, GqlResult},
    graphql::ContextExt,
    service::{
        bot::{BotLabels, knowledge_base_ids},
        content::{FlowStep, steps},
    },
};

/// A bot: who answers in a chat widget, and from what.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Bot {
    /// Bot id.
    pub id: Uuid,
    /// Name in the dashboard.
    pub name: String,
    /// Instructions that come first in every prompt.
    pub system_prompt: String,
    /// The name visitors see.
    pub persona_name: String,
    /// First message of every conversation.
    pub greeting: String,
    /// Main widget colour.
    pub primary_color: String,
    /// Accent widget colour.
    pub accent_color: String,
    /// Widget UI labels.
    pub labels: BotLabels,
    /// Whether a hand-off to a human is offered when the bot cannot answer.
    pub fallback_to_human: bool,
    /// Reply when a visitor is handed off.
    pub handoff_message: String,
    /// Canned reply when AI is off or unavailable.
    pub fallback_message: String,
    /// The site whose flows and tooltips the bot may start.
    pub site_id: Option<Uuid>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

#[ComplexObject]
impl Bot {
    /// The knowledge bases it answers from.
    async fn knowledge_base_ids(&self, ctx: &Context<'_>) -> GqlResult<Vec<Uuid>> {
        Ok(knowledge_base_ids(&ctx.state()?.db, self.id).await?)
    }
}

impl From<entity::bot::Model> for Bot {
    fn from(m: entity::bot::Model) -> Self {
        Self {
            labels: BotLabels::from_stored(&m.labels),
            id: m.id,
            name: m.name,
            system_prompt: m.system_prompt,
            persona_name: m.persona_name,
            greeting: m.greeting,
            primary_color: m.primary_color,
            accent_color: m.accent_color,
            fallback_to_human: m.fallback_to_human,
            handoff_message: m.handoff_message,
            fallback_message: m.fallback_message,
            site_id: m.site_id,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// A site the widget runs on, with its app map.
#[derive(SimpleObject, Clone)]
pub struct Site {
    /// Site id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Base URL.
    pub base_url: String,
    /// Where mapping stands.
    pub mapping_status: MappingStatus,
    /// The mapped pages and their interactive elements (the current version; a running mapping replaces it when it completes).
    pub pages: Vec<MapPage>,
    /// Completed mappings so far: the version of `pages`.
    pub map_version: i32,
    /// Why the last mapping failed.
    pub mapping_error: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<entity::site::Model> for Site {
    type Error = AppError;
    fn try_from(m: entity::site::Model) -> Result<Self, AppError> {
        Ok(Self {
            pages: AppMap::from_stored(&m.app_map).pages,
            map_version: m.map_version,
            mapping_error: m.mapping_error,
            mapping_status: MappingStatus::from_stored(&m.mapping_status)?,
            id: m.id,
            name: m.name,
            base_url: m.base_url,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// A recording started by `startSiteRecording`: a short-lived mapping token for one site, and where to use it.
#[derive(SimpleObject, Clone)]
pub struct SiteRecording {
    /// The site being recorded.
    pub site_id: Uuid,
    /// The signed mapping token: it lets `recorder.js` add pages to this site's map until `expiresAt`, nothing else.
    pub token: String,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
    /// Open this URL (the site's base URL with `#wayfinder-record=<token>`) in a tab of a browser signed in to the app; on pages that load `/recorder.js`, every page visited in that tab is recorded.
    pub start_url: String,
    /// The recorder script's path on this server; add `<script src="https://<this server>/recorder.js" async></script>` to the app (it does nothing without a token), or load it once with the bookmarklet `javascript:` URL the README shows.
    pub script_path: String,
    /// Where the recorder sends pages (`POST`, this server's path).
    pub endpoint_path: String,
}

impl From<crate::service::recording::Recording> for SiteRecording {
    fn from(r: crate::service::recording::Recording) -> Self {
        Self {
            site_id: r.site_id,
            token: r.token,
            expires_at: r.expires_at,
            start_url: r.start_url,
            script_path: "/recorder.js".into(),
            endpoint_path: "/recorder/pages".into(),
        }
    }
}

/// A product tour.
#[derive(SimpleObject, Clone)]
pub struct Flow {
    /// Flow id.
    pub id: Uuid,
    /// The site it runs on.
    pub site_id: Option<Uuid>,
    /// Name; the chat matcher looks for it verbatim in questions.
    pub name: String,
    /// What it walks a visitor through.
    pub description: String,
    /// Its steps, in order.
    pub steps: Vec<FlowStep>,
    /// Draft or published.
    pub status: ContentStatus,
    /// Made by a person or generated.
    pub source: ContentSource,
    /// Who it auto-shows to.
    pub audience: Audience,
    /// Targeting rules when `audience` is `RULES`.
    pub audience_rules: Json<serde_json::Value>,
    /// Page URL pattern on which it starts by itself (once per visitor, for its audience); null: only the chat or the SDK starts it.
    pub auto_start: Option<String>,
    /// Whether its steps still find their elements in the site's app map.
    pub health: ContentHealth,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// The drift check's findings on a flow or tooltip.
#[derive(SimpleObject, Clone, Debug, Default)]
pub struct ContentHealth {
    /// Whether it has been checked against an app map.
    pub checked: bool,
    /// Whether every step still finds its element: in the app map, and on visitors' pages.
    pub ok: bool,
    /// Indexes (from 0) of the steps whose element is gone from the app map.
    pub broken_steps: Vec<i32>,
    /// Indexes (from 0) of the steps whose element tour.js could not find on visitors' pages (`tourRuns` say which locators), since the last mapping re-checked the content.
    pub visitor_missing_steps: Vec<i32>,
    /// The map version it was checked against.
    pub map_version: Option<i32>,
    /// When it was checked.
    pub checked_at: Option<DateTime<Utc>>,
}

impl ContentHealth {
    fn from_stored(h: &Option<serde_json::Value>) -> Self {
        let Some(h) = h else {
            return Self {
                ok: true,
                ..Default::default()
            };
        };
        let broken: Vec<i32> = serde_json::from_value(h["brokenSteps"].clone()).unwrap_or_default();
        let missing: Vec<i32> =
            serde_json::from_value(h["visitorMissingSteps"].clone()).unwrap_or_default();
        Self {
            checked: h["brokenSteps"].is_array(),
            ok: broken.is_empty() && missing.is_empty(),
            broken_steps: broken,
            visitor_missing_steps: missing,
            map_version: h["mapVersion"].as_i64().and_then(|v| i32::try_from(v).ok()),
            checked_at: serde_json::from_value(h["checkedAt"].clone()).ok(),
        }
    }
}

impl TryFrom<entity::flow::Model> for Flow {
    type Error = AppError;
    fn try_from(m: entity::flow::Model) -> Result<Self, AppError> {
        Ok(Self {
            steps: steps(&m),
            health: ContentHealth::from_stored(&m.health),
            status: ContentStatus::from_stored(&m.status)?,
            source: ContentSource::from_stored(&m.source)?,
            audience: Audience::from_stored(&m.audience)?,
            id: m.id,
            site_id: m.site_id,
            name: m.name,
            description: m.description,
            audience_rules: Json(m.audience_rules),
            auto_start: m.auto_start,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// A tooltip pinned to one element of one page.
#[derive(SimpleObject, Clone)]
pub struct Tooltip {
    /// Tooltip id.
    pub id: Uuid,
    /// The site it runs on.
    pub site_id: Option<Uuid>,
    /// Name; the chat matcher looks for it verbatim in questions.
    pub name: String,
    /// The page it shows on.
    pub page_url: String,
    /// CSS selector of its element.
    pub target_selector: String,
    /// Its text.
    pub body: String,
    /// Draft or published.
    pub status: ContentStatus,
    /// Made by a person or generated.
    pub source: ContentSource,
    /// Who it auto-shows to.
    pub audience: Audience,
    /// Targeting rules when `audience` is `RULES`.
    pub audience_rules: Json<serde_json::Value>,
    /// Page URL pattern on which it starts by itself (once per visitor, for its audience); null: only the chat or the SDK starts it.
    pub auto_start: Option<String>,
    /// Whether its element is still in the site's app map.
    pub health: ContentHealth,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<entity::tooltip::Model> for Tooltip {
    type Error = AppError;
    fn try_from(m: entity::tooltip::Model) -> Result<Self, AppError> {
        Ok(Self {
            status: ContentStatus::from_stored(&m.status)?,
            source: ContentSource::from_stored(&m.source)?,
            audience: Audience::from_stored(&m.audience)?,
            health: ContentHealth::from_stored(&m.health),
            id: m.id,
            site_id: m.site_id,
            name: m.name,
            page_url: m.page_url,
            target_selector: m.target_selector,
            body: m.body,
            audience_rules: Json(m.audience_rules),
            auto_start: m.auto_start,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}
