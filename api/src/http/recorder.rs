//! `POST /recorder/pages`: where `recorder.js`, running on an org member's
//! own app with a mapping token (`startSiteRecording`), sends each visited
//! page's elements. A thin adapter over [`service::recording::record_page`].
//!
//! Body (JSON, any content type: the recorder sends `text/plain` so no CORS
//! preflight is needed): `{token, url, title?, elements: [{role?, label,
//! locators: [{kind, value}]}]}`, `kind` as in the schema's `LocatorKind`
//! (`TEST_ID`, `ID`, `ROLE`, `LABEL`, `TEXT`, `CSS`). The token may come as
//! `Authorization: Bearer …` instead. Answers `{siteId, mapVersion, pageId,
//! elements}`; errors as the other REST adapters (`UNAUTHENTICATED` 401 for a
//! forged or expired token, `FORBIDDEN` 403 for a page of another origin,
//! `BAD_USER_INPUT` 400 with the field, `RATE_LIMITED` 429). Every call
//! counts against the client's address like any public call.

use std::net::SocketAddr;

use axum::{
    Router,
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode, header},
    response::Response,
    routing::post,
};
use serde::Deserialize;

use super::rest::{RestError, limit_public, parse, respond};
use crate::{
    appmap::{
        Locator, LocatorKind,
        recorder::{RecordedElement, RecordedPage},
    },
    error::AppError,
    service,
    state::AppState,
};

/// The recorder's route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/recorder/pages", post(record))
}

#[derive(Deserialize)]
struct LocatorBody {
    kind: String,
    value: String,
}

#[derive(Deserialize)]
struct ElementBody {
    #[serde(default)]
    role: Option<String>,
    label: String,
    #[serde(default)]
    locators: Vec<LocatorBody>,
}

#[derive(Deserialize)]
struct PageBody {
    #[serde(default)]
    token: Option<String>,
    url: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    elements: Vec<ElementBody>,
}

fn kind(field: String, k: &str) -> Result<LocatorKind, AppError> {
    Ok(match k {
        "TEST_ID" => LocatorKind::TestId,
        "ID" => LocatorKind::Id,
        "ROLE" => LocatorKind::Role,
        "LABEL" => LocatorKind::Label,
        "TEXT" => LocatorKind::Text,
        "CSS" => LocatorKind::Css,
        _ => {
            return Err(AppError::bad_input(
                field,
                "one of TEST_ID, ID, ROLE, LABEL, TEXT, CSS",
            ));
        }
    })
}

impl TryFrom<PageBody> for RecordedPage {
    type Error = AppError;

    fn try_from(b: PageBody) -> Result<Self, AppError> {
        if b.elements.len() > crate::appmap::MAX_ELEMENTS {
            return Err(AppError::bad_input(
                "elements",
                format!("at most {} elements per page", crate::appmap::MAX_ELEMENTS),
            ));
        }
        let mut elements = Vec::with_capacity(b.elements.len());
        for (j, e) in b.elements.into_iter().enumerate() {
            if e.locators.len() > crate::appmap::MAX_LOCATORS {
                return Err(AppError::bad_input(
                    format!("elements[{j}].locators"),
                    format!("at most {} locators", crate::appmap::MAX_LOCATORS),
                ));
            }
            let mut locators = Vec::with_capacity(e.locators.len());
            for (k, l) in e.locators.into_iter().enumerate() {
                locators.push(Locator {
                    kind: kind(format!("elements[{j}].locators[{k}].kind"), &l.kind)?,
                    value: l.value,
                });
            }
            elements.push(RecordedElement {
                role: e.role,
                label: e.label,
                locators,
            });
        }
        Ok(Self {
            url: b.url,
            title: b.title,
            elements,
        })
    }
}

async fn record(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result: Result<_, RestError> = async {
        limit_public(&st, &headers, peer).await?;
        let body: PageBody = parse(&body)?;
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let token = bearer
            .or_else(|| body.token.clone())
            .ok_or(AppError::Unauthenticated("a mapping token is required"))?;
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let page = RecordedPage::try_from(body)?;
        Ok(service::recording::record_page(&st, &token, origin, page).await?)
    }
    .await;
    respond(StatusCode::OK, result)
}
