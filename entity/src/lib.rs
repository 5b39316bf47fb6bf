//! SeaORM entities, one file per table. Generated-style models only: the
//! behaviour that uses them lives in `wayfinder::service`.

pub mod api_key;
pub mod bot;
pub mod bot_knowledge_base;
pub mod chat_feedback;
pub mod chat_message;
pub mod chat_session;
pub mod chat_widget;
pub mod credit_ledger;
pub mod debounce;
pub mod end_user;
pub mod event;
pub mod flow;
pub mod kb_article;
pub mod kb_passage;
pub mod knowledge_base;
pub mod notification;
pub mod operator_key;
pub mod org;
pub mod server_setting;
pub mod site;
pub mod support_ticket;
pub mod tooltip;
pub mod tour_run;
pub mod used_challenge;
pub mod webhook;
pub mod webhook_delivery;
