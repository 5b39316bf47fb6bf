//! The demo org a fresh embedded install starts with, so a newcomer can chat
//! at once: a PRO org with credits, a knowledge base about Wayfinder itself, a
//! bot, a site and a published chat widget.
//!
//! The demo org's id is stored as a server setting (`demo_org_id`) the moment
//! it is created: `/demo` finds the demo by that id. Any org can rename
//! itself "Wayfinder Demo"; none can become the demo.

use entity::{chat_widget as widgets, org};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::{bot, chat_widget, credits, kb, org as orgs, server_setting, site};
use crate::{auth::OrgScope, domain::Plan, error::AppError, state::State};

/// The demo org's first published widget: what `/demo` shows. `None` when
/// this server has no demo (never seeded, or its org deleted).
pub async fn widget(db: &sea_orm::DatabaseConnection) -> Result<Option<Uuid>, AppError> {
    let Some(org_id) = server_setting::get(db, server_setting::DEMO_ORG_ID).await? else {
        return Ok(None);
    };
    let Ok(org_id) = Uuid::parse_str(&org_id) else {
        tracing::error!(%org_id, "the stored demo org id is not a UUID");
        return Ok(None);
    };
    Ok(widgets::Entity::find()
        .filter(widgets::Column::OrgId.eq(org_id))
        .filter(widgets::Column::Published.eq(true))
        .order_by_asc(widgets::Column::Id)
        .one(db)
        .await?
        .map(|w| w.id))
}

/// What the operator needs to try the demo.
pub struct Demo {
    pub org_id: Uuid,
    pub api_key: String,
    pub widget_id: Uuid,
}

const ARTICLES: &[(&str, &str)] = &[
    (
        "What is Wayfinder?",
        "Wayfinder is an open-source backend for an embeddable AI support chat widget. Add one script tag to your site and visitors get a chat bubble that answers from your knowledge base, with citations to the articles it used.",
    ),
    (
        "Installing the chat widget",
        "Paste <script src=\"https://YOUR-HOST/chat.js\" data-widget-id=\"WIDGET-ID\" async></script> before the closing body tag. The widget id is the public UUID of a chat widget; create one with the createChatWidget mutation and list the origins allowed to use it.",
    ),
    (
        "API keys and authentication",
        "Dashboards and integrators call the GraphQL API at /graphql with an org API key in the x-api-key header or as Authorization: Bearer. Keys start with wf_live_, are shown once when created, and can be revoked at any time. Visitors never need a key.",
    ),
    (
        "Knowledge bases and articles",
        "A knowledge base is a collection of articles. Bots answer from the knowledge bases bound to them and cite the published articles they used. Unpublished articles are never searched or cited.",
    ),
    (
        "When the AI is off or unavailable",
        "If AI is switched off for your org, or the language model is down or too slow, the bot answers with its canned fallback message and, when hand-off is enabled, offers to pass the conversation to a human as a support ticket.",
    ),
    (
        "Credits and billing",
        "Every AI call is paid from your org's credit balance. Credits are reserved before a call and settled by the tokens actually used; every grant and charge appears in the credit ledger. When credits run out the owner gets one email per day.",
    ),
    (
        "Contact form and support tickets",
        "widget.js renders a contact form protected by a honeypot field and a signed challenge instead of a CAPTCHA. Each submission, hand-off and flagged downvote becomes a support ticket you can list with the supportTickets query.",
    ),
];

/// The origins a browser may show the demo from: the listen address, and its
/// `localhost` / `127.0.0.1` twin (people type either).
fn demo_origins(public_url: &str) -> Vec<String> {
    let mut out = vec![public_url.to_string()];
    for (from, to) in [
        ("://127.0.0.1:", "://localhost:"),
        ("://localhost:", "://127.0.0.1:"),
        ("://0.0.0.0:", "://127.0.0.1:"),
        ("://0.0.0.0:", "://localhost:"),
    ] {
        if public_url.contains(from) {
            out.push(public_url.replace(from, to));
        }
    }
    out
}

/// Seeds the demo when the database has no org yet; `None` when it already has one.
pub async fn seed_if_empty(st: &State, public_url: &str) -> Result<Option<Demo>, AppError> {
    if org::Entity::find().count(&st.db).await? > 0 {
        return Ok(None);
    }
    let (org, _, key) = orgs::create(
        &st.db,
        "Wayfinder Demo",
        Plan::Pro,
        "owner@demo.wayfinder.dev",
    )
    .await?;
    server_setting::set(&st.db, server_setting::DEMO_ORG_ID, &org.id.to_string()).await?;
    let scope = OrgScope::operator(org.id);
    credits::grant(
        &st.db,
        org.id,
        st.config.demo_credits.max(1),
        Some("demo starting balance".into()),
    )
    .await?;
    let knowledge = kb::create(
        st,
        &scope,
        kb::CreateKnowledgeBaseInput {
            name: "Wayfinder Help".into(),
            description: Some("How Wayfinder works".into()),
        },
    )
    .await?;
    for (title, body) in ARTICLES {
        kb::create_article(
            st,
            &scope,
            kb::CreateKbArticleInput {
                knowledge_base_id: knowledge.id,
                title: (*title).into(),
                body: (*body).into(),
                published: Some(true),
            },
        )
        .await?;
    }
    let demo_site = site::create(
        st,
        &scope,
        site::CreateSiteInput {
            name: "Demo site".into(),
            base_url: format!("{public_url}/demo"),
        },
    )
    .await?;
    let demo_bot = bot::create(st, &scope, bot::CreateBotInput {
        name: "Demo bot".into(),
        persona_name: Some("Wayfinder Guide".into()),
        system_prompt: Some("You are Wayfinder Guide, the assistant of the Wayfinder demo. Answer briefly and only from the knowledge base.".into()),
        greeting: Some("Hi! I'm the Wayfinder Guide. Ask me how Wayfinder works.".into()),
        knowledge_base_ids: Some(vec![knowledge.id]),
        site_id: Some(demo_site.id),
        ..Default::default()
    })
    .await?;
    let widget = chat_widget::create(
        st,
        &scope,
        chat_widget::CreateChatWidgetInput {
            bot_id: demo_bot.id,
            site_id: Some(demo_site.id),
            name: Some("Demo widget".into()),
            allowed_origins: Some(demo_origins(public_url)),
            published: Some(true),
            identity_required: None,
        },
    )
    .await?
    .0;
    Ok(Some(Demo {
        org_id: org.id,
        api_key: key.key,
        widget_id: widget.id,
    }))
}
