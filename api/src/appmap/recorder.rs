//! Pages recorded in an org member's browser (`startSiteRecording` and
//! `recorder.js`), for apps behind a login no crawler can enter: what one
//! recorded page is, how it is checked, and how it is merged into a map.
//!
//! The browser computed the elements and their locators in the real DOM
//! (the same kinds as [`super::locators`], each checked unique there); the
//! server cannot re-check them against a DOM it never saw, so a recorded
//! page goes through the same boundary checks as an upload
//! ([`super::validate_upload`]: counts, sizes, no locator shared by two
//! elements) plus its URL's origin. Merging replaces the page with the same
//! URL pattern (a page recorded again is its newest version) or adds it,
//! keeps every other page and its ids, and marks the page `recorded`, so a
//! later crawl keeps it ([`AppMap::keep_recorded`]).

use super::{AppMap, FORMAT, Locator, MAX_PAGES, MapPage, UploadElement, UploadPage};
use crate::error::AppError;

/// One element as the recorder sends it.
#[derive(Clone, Debug)]
pub struct RecordedElement {
    pub role: Option<String>,
    pub label: String,
    pub locators: Vec<Locator>,
}

/// One page as the recorder sends it.
#[derive(Clone, Debug)]
pub struct RecordedPage {
    /// The page's address as the browser had it (absolute).
    pub url: String,
    pub title: Option<String>,
    pub elements: Vec<RecordedElement>,
}

/// Checks `page` (its URL must be on `site_origin`, e.g. `https://app.acme.io`)
/// and returns it as a map page, its URL as path and query.
pub fn validate(page: RecordedPage, site_origin: &str) -> Result<MapPage, AppError> {
    let url = reqwest::Url::parse(page.url.trim())
        .map_err(|_| AppError::bad_input("url", "must be the page's absolute URL"))?;
    if url.origin().ascii_serialization() != site_origin {
        return Err(AppError::bad_input(
            "url",
            format!("the page is not on the site's origin {site_origin}"),
        ));
    }
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let upload = UploadPage {
        url: path,
        url_pattern: None,
        title: page
            .title
            .map(|t| t.chars().take(super::LABEL_MAX).collect::<String>())
            .filter(|t| !t.trim().is_empty()),
        elements: page
            .elements
            .into_iter()
            .map(|e| UploadElement {
                id: None,
                role: e.role,
                label: e.label,
                selector: None,
                locators: e.locators,
            })
            .collect(),
    };
    let map = super::validate_upload(vec![upload]).map_err(|e| match e {
        AppError::BadInput { field, message } => AppError::BadInput {
            field: field.replace("input.pages[0].", ""),
            message,
        },
        other => other,
    })?;
    let mut page = map
        .pages
        .into_iter()
        .next()
        .ok_or_else(|| AppError::bad_input("url", "no page"))?;
    page.recorded = true;
    Ok(page)
}

/// `map` with `page` merged in: the page of the same URL pattern replaced,
/// or `page` added; ids of every other page kept. Fails when the map is full.
pub fn merge(mut map: AppMap, mut page: MapPage) -> Result<AppMap, AppError> {
    map.format = FORMAT;
    map.pages.retain(|p| p.url_pattern != page.url_pattern);
    if map.pages.len() >= MAX_PAGES {
        return Err(AppError::bad_input(
            "url",
            format!("the map has {MAX_PAGES} pages already"),
        ));
    }
    let mut seen = map.ids();
    page.assign_ids(&mut seen);
    map.pages.push(page);
    map.to_stored()?;
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appmap::LocatorKind;

    fn recorded(url: &str, labels: &[&str]) -> RecordedPage {
        RecordedPage {
            url: url.into(),
            title: Some("Billing".into()),
            elements: labels
                .iter()
                .map(|l| RecordedElement {
                    role: Some("button".into()),
                    label: (*l).into(),
                    locators: vec![Locator {
                        kind: LocatorKind::Text,
                        value: format!("text=\"{l}\""),
                    }],
                })
                .collect(),
        }
    }

    #[test]
    fn recorded_pages_are_checked_and_merged_by_pattern() {
        let origin = "https://app.acme.io";
        assert!(validate(recorded("https://evil.example/billing", &["Pay"]), origin).is_err());
        assert!(validate(recorded("/billing", &["Pay"]), origin).is_err());
        let err = validate(recorded("https://app.acme.io/b", &["Pay", "Pay"]), origin).unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT");

        let a = validate(
            recorded("https://app.acme.io/projects/7/billing?tab=1", &["Pay"]),
            origin,
        )
        .unwrap();
        assert_eq!(a.url, "/projects/7/billing?tab=1");
        assert_eq!(a.url_pattern, "/projects/:id/billing");
        assert!(a.recorded);
        let map = merge(AppMap::default(), a).unwrap();
        let b = validate(
            recorded(
                "https://app.acme.io/projects/9/billing",
                &["Pay", "Cancel plan"],
            ),
            origin,
        )
        .unwrap();
        let merged = merge(map.clone(), b).unwrap();
        assert_eq!(merged.pages.len(), 1, "same pattern: replaced");
        assert_eq!(merged.pages[0].elements.len(), 2);
        assert_eq!(
            merged.pages[0].elements[0].id, map.pages[0].elements[0].id,
            "the same element keeps its id"
        );

        // A crawl keeps recorded pages it did not reach.
        let mut crawled = AppMap {
            format: FORMAT,
            pages: vec![],
        };
        crawled.keep_recorded(&merged);
        assert_eq!(crawled.pages.len(), 1);
    }
}
