//! Knowledge bases and their articles.

use async_graphql::InputObject;
use chrono::Utc;
use entity::{kb_article, knowledge_base};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::{Page, PageArgs, event, get, get_ref, new_id, paginate, scoped};
use crate::{auth::OrgScope, domain, error::AppError, state::State};

/// A new knowledge base.
#[derive(Debug, InputObject)]
pub struct CreateKnowledgeBaseInput {
    /// Shown in the dashboard.
    pub name: String,
    /// What the knowledge base covers.
    pub description: Option<String>,
}

/// Changes to a knowledge base; omitted fields stay as they are.
#[derive(Debug, InputObject)]
pub struct UpdateKnowledgeBaseInput {
    /// The knowledge base to change.
    pub id: Uuid,
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
}

/// A new article.
#[derive(Debug, InputObject)]
pub struct CreateKbArticleInput {
    /// The knowledge base it belongs to.
    pub knowledge_base_id: Uuid,
    /// Title, weighted above the body in search.
    pub title: String,
    /// Body in Markdown or plain text.
    pub body: String,
    /// Only published articles are searched and cited. Default: true.
    pub published: Option<bool>,
}

/// Changes to an article; omitted fields stay as they are.
#[derive(Debug, InputObject)]
pub struct UpdateKbArticleInput {
    /// The article to change.
    pub id: Uuid,
    /// New title.
    pub title: Option<String>,
    /// New body.
    pub body: Option<String>,
    /// Publish or unpublish.
    pub published: Option<bool>,
    /// Move the article to another knowledge base of the org.
    pub knowledge_base_id: Option<Uuid>,
}

/// The caller's knowledge bases.
pub async fn list(
    st: &State,
    scope: &OrgScope,
    page: &PageArgs,
) -> Result<Page<knowledge_base::Model>, AppError> {
    paginate(&st.db, scoped::<knowledge_base::Entity>(scope), page).await
}

/// A new knowledge base.
pub async fn create(
    st: &State,
    scope: &OrgScope,
    input: CreateKnowledgeBaseInput,
) -> Result<knowledge_base::Model, AppError> {
    let now = Utc::now();
    let txn = crate::service::begin_write(&st.db).await?;
    let model = knowledge_base::ActiveModel {
        id: Set(new_id()),
        org_id: Set(scope.org_id()),
        name: Set(domain::name("input.name", &input.name)?),
        description: Set(domain::text(
            "input.description",
            input.description.as_deref().unwrap_or(""),
            0,
            domain::SHORT_TEXT_MAX,
        )?),
        revision: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    event::commit_with_event::<knowledge_base::Entity>(
        st,
        txn,
        scope.org_id(),
        "created",
        model.id,
    )
    .await?;
    Ok(model)
}

/// Applies `input` to one of the caller's knowledge bases.
pub async fn update(
    st: &State,
    scope: &OrgScope,
    input: UpdateKnowledgeBaseInput,
) -> Result<knowledge_base::Model, AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    let mut am: knowledge_base::ActiveModel = get::<knowledge_base::Entity>(&txn, scope, input.id)
        .await?
        .into();
    if let Some(v) = input.name {
        am.name = Set(domain::name("input.name", &v)?);
    }
    if let Some(v) = input.description {
        am.description = Set(domain::text(
            "input.description",
            &v,
            0,
            domain::SHORT_TEXT_MAX,
        )?);
    }
    am.updated_at = Set(Utc::now());
    let model = am.update(&txn).await?;
    event::commit_with_event::<knowledge_base::Entity>(
        st,
        txn,
        scope.org_id(),
        "updated",
        input.id,
    )
    .await?;
    Ok(model)
}

/// Deletes a knowledge base and its articles.
pub async fn delete(st: &State, scope: &OrgScope, id: Uuid) -> Result<(), AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    super::delete::<knowledge_base::Entity>(&txn, scope, id).await?;
    event::commit_with_event::<knowledge_base::Entity>(st, txn, scope.org_id(), "deleted", id).await
}

/// The caller's articles, optionally of one knowledge base and/or only published ones.
pub async fn list_articles(
    st: &State,
    scope: &OrgScope,
    knowledge_base_id: Option<Uuid>,
    published: Option<bool>,
    page: &PageArgs,
) -> Result<Page<kb_article::Model>, AppError> {
    let mut select = scoped::<kb_article::Entity>(scope);
    if let Some(kb) = knowledge_base_id {
        select = select.filter(kb_article::Column::KnowledgeBaseId.eq(kb));
    }
    if let Some(p) = published {
        select = select.filter(kb_article::Column::Published.eq(p));
    }
    paginate(&st.db, select, page).await
}

/// An article title, checked (1 to 300 characters, no control characters).
pub(super) fn title(field: &str, v: &str) -> Result<String, AppError> {
    domain::text(field, v, 1, 300)
}

/// An article body, checked (at most [`domain::ARTICLE_BODY_MAX`] characters, no control characters).
pub(super) fn body(field: &str, v: &str) -> Result<String, AppError> {
    domain::text(field, v, 0, domain::ARTICLE_BODY_MAX)
}

/// A new article's fields, already checked.
pub(super) struct NewArticle {
    pub org_id: Uuid,
    pub knowledge_base_id: Uuid,
    pub title: String,
    pub body: String,
    pub published: bool,
    pub source_path: Option<String>,
}

/// Inserts `a` in `txn`, stamped with its knowledge base's increased revision.
pub(super) async fn insert_article(
    txn: &impl ConnectionTrait,
    a: NewArticle,
) -> Result<kb_article::Model, AppError> {
    let now = Utc::now();
    let revision = bump_revision(txn, a.knowledge_base_id).await?;
    Ok(kb_article::ActiveModel {
        id: Set(new_id()),
        org_id: Set(a.org_id),
        knowledge_base_id: Set(a.knowledge_base_id),
        title: Set(a.title),
        body: Set(a.body),
        published: Set(a.published),
        revision: Set(revision),
        embedding_model: Set(None),
        source_path: Set(a.source_path),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(txn)
    .await?)
}

/// The text of the article `am` will write changed: its passages describe
/// the old text, so they go, and the background job computes new ones.
pub(super) async fn forget_vectors(
    txn: &impl ConnectionTrait,
    am: &mut kb_article::ActiveModel,
    id: Uuid,
) -> Result<(), AppError> {
    am.embedding_model = Set(None);
    entity::kb_passage::Entity::delete_many()
        .filter(entity::kb_passage::Column::ArticleId.eq(id))
        .exec(txn)
        .await?;
    Ok(())
}

/// A new article in one of the caller's knowledge bases.
pub async fn create_article(
    st: &State,
    scope: &OrgScope,
    input: CreateKbArticleInput,
) -> Result<kb_article::Model, AppError> {
    let title = title("input.title", &input.title)?;
    let body = body("input.body", &input.body)?;
    let txn = crate::service::begin_write(&st.db).await?;
    get_ref::<knowledge_base::Entity>(
        &txn,
        scope,
        input.knowledge_base_id,
        "input.knowledgeBaseId",
    )
    .await?;
    let model = insert_article(
        &txn,
        NewArticle {
            org_id: scope.org_id(),
            knowledge_base_id: input.knowledge_base_id,
            title,
            body,
            published: input.published.unwrap_or(true),
            source_path: None,
        },
    )
    .await?;
    event::commit_with_event::<kb_article::Entity>(st, txn, scope.org_id(), "created", model.id)
        .await?;
    st.retriever.articles_changed();
    Ok(model)
}

/// Applies `input` to one of the caller's articles.
pub async fn update_article(
    st: &State,
    scope: &OrgScope,
    input: UpdateKbArticleInput,
) -> Result<kb_article::Model, AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    let old = get::<kb_article::Entity>(&txn, scope, input.id).await?;
    let old_kb = old.knowledge_base_id;
    let mut text_changed = false;
    let mut am: kb_article::ActiveModel = old.into();
    if let Some(v) = input.title {
        am.title = Set(title("input.title", &v)?);
        text_changed = true;
    }
    if let Some(v) = input.body {
        am.body = Set(body("input.body", &v)?);
        text_changed = true;
    }
    if let Some(v) = input.published {
        am.published = Set(v);
    }
    let mut new_kb = old_kb;
    if let Some(kb) = input.knowledge_base_id {
        get_ref::<knowledge_base::Entity>(&txn, scope, kb, "input.knowledgeBaseId").await?;
        am.knowledge_base_id = Set(kb);
        new_kb = kb;
    }
    if new_kb != old_kb {
        bump_revision(&txn, old_kb).await?;
    }
    am.revision = Set(bump_revision(&txn, new_kb).await?);
    if text_changed {
        forget_vectors(&txn, &mut am, input.id).await?;
    }
    am.updated_at = Set(Utc::now());
    let model = am.update(&txn).await?;
    event::commit_with_event::<kb_article::Entity>(st, txn, scope.org_id(), "updated", input.id)
        .await?;
    st.retriever.articles_changed();
    Ok(model)
}

/// Deletes one of the caller's articles.
pub async fn delete_article(st: &State, scope: &OrgScope, id: Uuid) -> Result<(), AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    let article = get::<kb_article::Entity>(&txn, scope, id).await?;
    bump_revision(&txn, article.knowledge_base_id).await?;
    super::delete::<kb_article::Entity>(&txn, scope, id).await?;
    event::commit_with_event::<kb_article::Entity>(st, txn, scope.org_id(), "deleted", id).await
}

/// Increases knowledge base `kb`'s revision inside `txn` and returns the new
/// value: every replica's in-memory index of it reloads what changed
/// (`turn::retrieval::index`). On PostgreSQL the update also locks the
/// row, so concurrent writers to one knowledge base take turns.
pub async fn bump_revision(txn: &impl ConnectionTrait, kb: Uuid) -> Result<i64, AppError> {
    use knowledge_base::{Column, Entity};
    let rows = Entity::update_many()
        .col_expr(Column::Revision, Expr::col(Column::Revision).add(1))
        .filter(Column::Id.eq(kb))
        .exec_with_returning(txn)
        .await?;
    rows.first()
        .map(|m| m.revision)
        .ok_or_else(|| AppError::internal("knowledge base vanished during a write"))
}
