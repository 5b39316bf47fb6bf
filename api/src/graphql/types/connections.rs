//! One connection and edge type per listed object, each with its own
//! description (relay-style: `edges { cursor node }`, `nodes`, `pageInfo`).

use async_graphql::{SimpleObject, connection::PageInfo};

use super::*;
use crate::graphql::Paged;

macro_rules! connections {
    ($($conn:ident, $edge:ident, $node:ident, $what:literal;)+) => {$(
        #[doc = $what]
        #[derive(SimpleObject)]
        pub struct $conn {
            /// The items of this page, each with its cursor.
            pub edges: Vec<$edge>,
            /// The items of this page, without cursors.
            pub nodes: Vec<$node>,
            /// Whether there are more items, and the cursors to continue from (pass `endCursor` as `after`).
            pub page_info: PageInfo,
        }

        #[doc = "One item of a list with its cursor."]
        #[derive(SimpleObject)]
        pub struct $edge {
            /// Pass as `after` to continue after this item.
            pub cursor: String,
            /// The item.
            pub node: $node,
        }

        impl Paged for $conn {
            type Node = $node;
            fn assemble(edges: Vec<(String, $node)>, page_info: PageInfo) -> Self {
                let nodes = edges.iter().map(|(_, n)| n.clone()).collect();
                Self {
                    edges: edges.into_iter().map(|(cursor, node)| $edge { cursor, node }).collect(),
                    nodes,
                    page_info,
                }
            }
        }
    )+};
}

connections! {
    ApiKeyConnection, ApiKeyEdge, ApiKey, "A page of API keys, oldest first.";
    BotConnection, BotEdge, Bot, "A page of bots, oldest first.";
    ChatMessageConnection, ChatMessageEdge, ChatMessage, "A page of chat messages, oldest first.";
    ChatSessionConnection, ChatSessionEdge, ChatSession, "A page of chat sessions, oldest first.";
    ChatWidgetConnection, ChatWidgetEdge, ChatWidget, "A page of chat widgets, oldest first.";
    EndUserConnection, EndUserEdge, EndUser, "A page of end users (visitors), oldest first.";
    FeedbackConnection, FeedbackEdge, Feedback, "A page of feedback, oldest first.";
    FlowConnection, FlowEdge, Flow, "A page of flows, oldest first.";
    KbArticleConnection, KbArticleEdge, KbArticle, "A page of KB articles, oldest first.";
    KnowledgeBaseConnection, KnowledgeBaseEdge, KnowledgeBase, "A page of knowledge bases, oldest first.";
    NotificationConnection, NotificationEdge, Notification, "A page of owner notifications, oldest first.";
    LedgerEntryConnection, LedgerEntryEdge, LedgerEntry, "A page of credit ledger entries, oldest first.";
    OrgConnection, OrgEdge, Org, "A page of orgs, oldest first (operator only).";
    OrgEventConnection, OrgEventEdge, OrgEvent, "A page of outbox events, oldest first.";
    SiteConnection, SiteEdge, Site, "A page of sites, oldest first.";
    SupportTicketConnection, SupportTicketEdge, SupportTicket, "A page of support tickets, oldest first.";
    TooltipConnection, TooltipEdge, Tooltip, "A page of tooltips, oldest first.";
    TourRunConnection, TourRunEdge, TourRun, "A page of tour runs, oldest first.";
    WebhookConnection, WebhookEdge, Webhook, "A page of webhooks, oldest first.";
    WebhookDeliveryConnection, WebhookDeliveryEdge, WebhookDelivery, "A page of webhook deliveries, oldest first.";
}
