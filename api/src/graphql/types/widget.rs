//! Chat widgets and their public configuration.

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::service::{bot::BotLabels, chat_widget::allowed_origins};

/// A chat widget; its `id` is the public UUID of the `<script>` tag.
#[derive(SimpleObject, Clone)]
pub struct ChatWidget {
    /// The public widget id.
    pub id: Uuid,
    /// The bot that answers.
    pub bot_id: Uuid,
    /// The site it is embedded on.
    pub site_id: Option<Uuid>,
    /// Name in the dashboard.
    pub name: String,
    /// Origins allowed to use it; `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Whether it answers visitors.
    pub published: bool,
    /// Whether every visitor must come with a signed identity (`userId` + `userHash`).
    pub identity_required: bool,
    /// Whether the widget has an identity secret (widgets made before identity existed get one with `rotateChatWidgetIdentitySecret`).
    pub identity_secret_set: bool,
    /// The identity secret, in plain text: only in the answer of `createChatWidget` and `rotateChatWidgetIdentitySecret`, `null` everywhere else (it is stored encrypted and never shown again). The host app's server signs each user id with it: `userHash = hex(HMAC-SHA256(identitySecret, userId))`. Keep it on the server.
    pub identity_secret: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<entity::chat_widget::Model> for ChatWidget {
    fn from(m: entity::chat_widget::Model) -> Self {
        Self {
            allowed_origins: allowed_origins(&m),
            id: m.id,
            bot_id: m.bot_id,
            site_id: m.site_id,
            name: m.name,
            published: m.published,
            identity_required: m.identity_required,
            identity_secret_set: m.identity_secret_sealed.is_some(),
            identity_secret: None,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// What a widget on a public page needs to render itself. Public: no API key.
#[derive(SimpleObject)]
pub struct WidgetConfig {
    /// The public widget id.
    pub widget_id: Uuid,
    /// The name the bot speaks as.
    pub persona_name: String,
    /// First message of the conversation.
    pub greeting: String,
    /// Main colour.
    pub primary_color: String,
    /// Accent colour.
    pub accent_color: String,
    /// UI labels.
    pub labels: BotLabels,
    /// Whether to show the hand-off button.
    pub fallback_to_human: bool,
    /// Signed token the contact form must send back with `submitContact`.
    pub contact_challenge: String,
    /// The contact form is rejected if submitted sooner than this after `contactChallenge` was minted.
    pub contact_min_fill_ms: i32,
}
