//! The app map: a site's pages and, on each page, its interactive elements,
//! each with a stable map id and several locators (best first), every one of
//! which matches exactly one element on its page.
//!
//! Why a map at all: a walkthrough step is only as good as its locator. The
//! generator names elements *by map id*, so a generated step can only point
//! at something that exists; the drift check compares published content
//! with a new map before visitors meet a broken step.
//!
//! Builders live beside this file: [`crawler`] (static HTML through the
//! outbound guard), [`locators`] (what is computed for one element of a
//! parsed page), [`robots`] (robots.txt), [`renderer`] (headless Chromium
//! for single-page apps, driven over [`devtools`], behind the guarded
//! [`proxy`]), [`recorder`] (pages
//! recorded in an org member's browser, merged in); an uploaded map is validated by
//! [`validate_upload`]. [`compress`] renders the part of a map relevant to a
//! question for the generator's prompt, and [`drift`] re-checks content.
//!
//! Storage is compact JSON on the site row (one-letter keys, empty fields
//! left out), read whole: a 500-page map is a few hundred KB at most
//! ([`MAX_MAP_BYTES`]). A new mapping writes the map only when it completes,
//! so the previous version keeps serving until then; `sites.map_version`
//! counts completed versions.

pub mod crawler;
pub mod devtools;
pub mod drift;
pub mod locators;
pub mod proxy;
pub mod recorder;
pub mod renderer;
pub mod robots;

use std::collections::HashSet;

use async_graphql::{Enum, SimpleObject};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{domain, error::AppError};

/// Most pages in one app map.
pub const MAX_PAGES: usize = 500;
/// Most elements on one mapped page.
pub const MAX_ELEMENTS: usize = 300;
/// Most locators kept per element.
pub const MAX_LOCATORS: usize = 6;
/// Longest locator value.
pub const LOCATOR_MAX: usize = 500;
/// Longest label or title.
pub const LABEL_MAX: usize = 300;
/// Largest stored map, serialised.
pub const MAX_MAP_BYTES: usize = 4 * 1024 * 1024;

/// How a locator finds its element; tried best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Enum)]
pub enum LocatorKind {
    /// A test id attribute (`data-testid`, `data-test`, `data-cy`, `data-qa`), as CSS: `[data-testid="save"]`.
    #[serde(rename = "t")]
    TestId,
    /// A stable (not generated-looking) `id`, as CSS: `#save`.
    #[serde(rename = "i")]
    Id,
    /// Role plus accessible name: `role=button[name="Save"]`.
    #[serde(rename = "r")]
    Role,
    /// `aria-label`, `name` or `placeholder`, as CSS: `[aria-label="Save"]`.
    #[serde(rename = "l")]
    Label,
    /// Visible text: `text="Save"`.
    #[serde(rename = "x")]
    Text,
    /// A short structural CSS path: `form > button:nth-of-type(2)`.
    #[serde(rename = "c")]
    Css,
}

impl LocatorKind {
    /// Whether the value is a CSS selector a page can run as it is.
    pub fn is_css(self) -> bool {
        matches!(self, Self::TestId | Self::Id | Self::Label | Self::Css)
    }
}

/// One way to find an element.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    SimpleObject,
    async_graphql::InputObject,
)]
#[graphql(input_name = "LocatorInput")]
pub struct Locator {
    /// What kind of locator `value` is.
    #[serde(rename = "k")]
    pub kind: LocatorKind,
    /// The locator itself (CSS for `TEST_ID`, `ID`, `LABEL`, `CSS`).
    #[serde(rename = "v")]
    pub value: String,
}

/// One interactive element of a mapped page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, SimpleObject)]
#[graphql(complex)]
pub struct MapElement {
    /// Stable id inside the map (`e…`): generated steps name elements by it.
    #[serde(rename = "i")]
    pub id: String,
    /// ARIA role (`button`, `link`, `textbox`…).
    #[serde(rename = "r")]
    pub role: String,
    /// What a person would call it ("Save").
    #[serde(rename = "l")]
    pub label: String,
    /// Locators, best first; each matches exactly one element on the page.
    #[serde(rename = "k")]
    pub locators: Vec<Locator>,
}

#[async_graphql::ComplexObject]
impl MapElement {
    /// The best locator that is a plain CSS selector.
    async fn selector(&self) -> Option<String> {
        self.css().map(str::to_string)
    }
}

impl MapElement {
    /// The best locator that is a plain CSS selector.
    pub fn css(&self) -> Option<&str> {
        self.locators
            .iter()
            .find(|l| l.kind.is_css())
            .map(|l| l.value.as_str())
    }
}

/// One page of a site's app map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, SimpleObject)]
pub struct MapPage {
    /// Stable id inside the map (`p…`), from its URL pattern.
    #[serde(rename = "i")]
    pub id: String,
    /// The page's URL (a path on the site, or absolute).
    #[serde(rename = "u")]
    pub url: String,
    /// The URL's path with id- or slug-like segments as `:id`: pages that differ only by ids share it.
    #[serde(rename = "p")]
    pub url_pattern: String,
    /// The page's title.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Interactive elements on the page.
    #[serde(rename = "e", default)]
    pub elements: Vec<MapElement>,
    /// Whether the page was recorded in an org member's browser (`startSiteRecording`), not crawled or uploaded; a new crawl keeps recorded pages it does not reach itself.
    #[serde(rename = "r", default, skip_serializing_if = "std::ops::Not::not")]
    pub recorded: bool,
}

/// A whole map, as stored on the site.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppMap {
    /// Format version of the document.
    #[serde(rename = "f", default)]
    pub format: u32,
    /// The pages.
    #[serde(rename = "pages", default)]
    pub pages: Vec<MapPage>,
}

/// The document format written by this version.
pub const FORMAT: u32 = 2;

impl AppMap {
    /// Reads a stored map; an empty, older or damaged document reads as empty.
    pub fn from_stored(v: &serde_json::Value) -> Self {
        match serde_json::from_value::<AppMap>(v.clone()) {
            Ok(m) if m.format == FORMAT => m,
            _ => Self::default(),
        }
    }

    /// The stored document, bounded by [`MAX_MAP_BYTES`].
    pub fn to_stored(&self) -> Result<serde_json::Value, AppError> {
        let v = serde_json::to_value(self).map_err(AppError::internal)?;
        let size = serde_json::to_string(&v).map_err(AppError::internal)?.len();
        if size > MAX_MAP_BYTES {
            return Err(AppError::bad_input(
                "input.pages",
                format!("the map is {size} bytes; at most {MAX_MAP_BYTES}"),
            ));
        }
        Ok(v)
    }

    /// The page with this map id.
    pub fn page(&self, id: &str) -> Option<&MapPage> {
        self.pages.iter().find(|p| p.id == id)
    }

    /// The element with this map id and its page.
    pub fn element(&self, id: &str) -> Option<(&MapPage, &MapElement)> {
        self.pages
            .iter()
            .find_map(|p| p.elements.iter().find(|e| e.id == id).map(|e| (p, e)))
    }

    /// The page whose URL pattern `url` has.
    pub fn page_for_url(&self, url: &str) -> Option<&MapPage> {
        let pattern = url_pattern(url);
        self.pages.iter().find(|p| p.url_pattern == pattern)
    }

    /// Gives every page and element a map id, unique within the map.
    pub fn assign_ids(&mut self) {
        let mut seen = HashSet::new();
        for page in &mut self.pages {
            page.assign_ids(&mut seen);
        }
    }

    /// Every page and element id in the map.
    pub fn ids(&self) -> HashSet<String> {
        self.pages
            .iter()
            .flat_map(|p| {
                std::iter::once(p.id.clone()).chain(p.elements.iter().map(|e| e.id.clone()))
            })
            .collect()
    }

    /// Adds the recorded pages of `old` whose URL pattern this map lacks (a
    /// crawl cannot reach pages behind a login; recording them again should
    /// not be needed after every crawl), as far as [`MAX_PAGES`] allows.
    pub fn keep_recorded(&mut self, old: &AppMap) {
        let mut seen = self.ids();
        for page in old.pages.iter().filter(|p| p.recorded) {
            if self.pages.len() >= MAX_PAGES {
                break;
            }
            if self.pages.iter().any(|p| p.url_pattern == page.url_pattern) {
                continue;
            }
            let mut page = page.clone();
            page.assign_ids(&mut seen);
            self.pages.push(page);
        }
    }

    /// Number of elements over all pages.
    pub fn element_count(&self) -> usize {
        self.pages.iter().map(|p| p.elements.len()).sum()
    }
}

impl MapPage {
    /// Gives the page and its elements ids not in `seen` (and adds them):
    /// hashes of the URL pattern and of each element's role, label and best
    /// locator, so the same page and element keep their id across mappings.
    pub fn assign_ids(&mut self, seen: &mut HashSet<String>) {
        self.id = unique_id(seen, 'p', &self.url_pattern);
        for el in &mut self.elements {
            let basis = format!(
                "{}|{}|{}|{}",
                self.url_pattern,
                el.role,
                el.label,
                el.locators.first().map_or("", |l| l.value.as_str())
            );
            el.id = unique_id(seen, 'e', &basis);
        }
    }
}

/// `prefix` and 8 hex digits of a hash of `basis`, made unique in `seen`
/// with a counter: the same page and element keep their id across mappings.
fn unique_id(seen: &mut HashSet<String>, prefix: char, basis: &str) -> String {
    let digest = Sha256::digest(basis.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let mut id = format!("{prefix}{hex}");
    let mut n = 2;
    while !seen.insert(id.clone()) {
        id = format!("{prefix}{hex}-{n}");
        n += 1;
    }
    id
}

/// Whether a path segment or `id` looks machine-made (a number, a UUID, a
/// hash, `:r1:`, `ember123`): such values change between builds or rows.
pub fn looks_generated(s: &str) -> bool {
    let digits = s.chars().filter(|c| c.is_ascii_digit()).count();
    if s.is_empty() || s.contains(':') {
        return true;
    }
    if digits == s.len() {
        return true;
    }
    let hexish = s.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if hexish && s.len() >= 8 && digits > 0 {
        return true;
    }
    // A run of three or more digits (`ember123`, `input-4711`), or many digits mixed in.
    let mut run = 0;
    for c in s.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        if run >= 3 {
            return true;
        }
    }
    digits * 3 >= s.len() && s.len() >= 6
}

/// The path of `url` (absolute or a path), without query or fragment, with
/// generated-looking segments replaced by `:id`: `/projects/42/edit` →
/// `/projects/:id/edit`.
pub fn url_pattern(url: &str) -> String {
    let path = url
        .split_once("://")
        .map_or(url, |(_, r)| r.find('/').map_or("/", |i| &r[i..]));
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let segments: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| if looks_generated(s) { ":id" } else { s })
        .collect();
    format!("/{}", segments.join("/"))
}

/// An element of an uploaded map, before ids are assigned.
#[derive(Clone, Debug)]
pub struct UploadElement {
    pub id: Option<String>,
    pub role: Option<String>,
    pub label: String,
    /// A CSS selector, kept as a `CSS` locator after the others.
    pub selector: Option<String>,
    pub locators: Vec<Locator>,
}

/// A page of an uploaded map.
#[derive(Clone, Debug)]
pub struct UploadPage {
    pub url: String,
    pub url_pattern: Option<String>,
    pub title: Option<String>,
    pub elements: Vec<UploadElement>,
}

/// Checks an uploaded map at the boundary: counts, sizes, URLs, and that no
/// two elements of a page share a locator (the uniqueness an upload can be
/// checked for without its DOM). Ids given are kept when well-formed and
/// unique; missing ones are assigned.
pub fn validate_upload(pages: Vec<UploadPage>) -> Result<AppMap, AppError> {
    if pages.len() > MAX_PAGES {
        return Err(AppError::bad_input(
            "input.pages",
            format!("at most {MAX_PAGES} pages"),
        ));
    }
    let mut out = Vec::with_capacity(pages.len());
    let mut given_ids: Vec<Vec<Option<String>>> = Vec::with_capacity(pages.len());
    for (i, p) in pages.into_iter().enumerate() {
        let f = |name: &str| format!("input.pages[{i}].{name}");
        if p.elements.len() > MAX_ELEMENTS {
            return Err(AppError::bad_input(
                f("elements"),
                format!("at most {MAX_ELEMENTS} elements per page"),
            ));
        }
        let url = domain::page_url(&f("url"), &p.url)?;
        let url_pattern = match p.url_pattern {
            Some(pat) => {
                let pat = domain::selector(&f("urlPattern"), &pat)?;
                if !pat.starts_with('/') {
                    return Err(AppError::bad_input(f("urlPattern"), "must start with /"));
                }
                pat
            }
            None => url_pattern(&url),
        };
        let title = p
            .title
            .map(|t| domain::text(&f("title"), &t, 0, LABEL_MAX))
            .transpose()?;
        let mut seen_locators = HashSet::new();
        let mut elements = Vec::with_capacity(p.elements.len());
        let mut ids = Vec::with_capacity(p.elements.len());
        for (j, e) in p.elements.into_iter().enumerate() {
            let g = |name: &str| format!("input.pages[{i}].elements[{j}].{name}");
            if e.locators.len() > MAX_LOCATORS {
                return Err(AppError::bad_input(
                    g("locators"),
                    format!("at most {MAX_LOCATORS} locators"),
                ));
            }
            let mut locators = Vec::new();
            for (k, l) in e.locators.into_iter().enumerate() {
                let value = domain::selector(&format!("{}[{k}].value", g("locators")), &l.value)?;
                locators.push(Locator {
                    kind: l.kind,
                    value,
                });
            }
            if let Some(s) = e.selector {
                let value = domain::selector(&g("selector"), &s)?;
                let l = Locator {
                    kind: LocatorKind::Css,
                    value,
                };
                if !locators.contains(&l) && locators.len() < MAX_LOCATORS {
                    locators.push(l);
                }
            }
            if locators.is_empty() {
                return Err(AppError::bad_input(
                    g("locators"),
                    "give at least one locator (or a selector)",
                ));
            }
            for l in &locators {
                // CSS locators of any kind are one selector language: `#a` as an ID and as a CSS locator match the same element.
                let kind = if l.kind.is_css() {
                    LocatorKind::Css
                } else {
                    l.kind
                };
                let key = (kind, l.value.clone());
                if !seen_locators.insert(key) {
                    return Err(AppError::bad_input(
                        g("locators"),
                        format!(
                            "{:?} locator {:?} is used by another element of this page; each must match exactly one",
                            l.kind, l.value
                        ),
                    ));
                }
            }
            let id =
                e.id.map(|id| {
                    let ok = (1..=40).contains(&id.len())
                        && id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                    if ok {
                        Ok(id)
                    } else {
                        Err(AppError::bad_input(
                            g("id"),
                            "1 to 40 letters, digits, - or _",
                        ))
                    }
                })
                .transpose()?;
            ids.push(id);
            elements.push(MapElement {
                id: String::new(),
                role: e
                    .role
                    .map(|r| domain::text(&g("role"), &r, 1, 50))
                    .transpose()?
                    .unwrap_or_else(|| "generic".into()),
                label: domain::text(&g("label"), &e.label, 1, LABEL_MAX)?,
                locators,
            });
        }
        given_ids.push(ids);
        out.push(MapPage {
            id: String::new(),
            url,
            url_pattern,
            title,
            elements,
            recorded: false,
        });
    }
    let mut map = AppMap {
        format: FORMAT,
        pages: out,
    };
    map.assign_ids();
    // Keep ids the uploader chose (their tooling may refer to them), when unique.
    let mut taken: HashSet<String> = HashSet::new();
    for ids in &given_ids {
        for id in ids.iter().flatten() {
            if !taken.insert(id.clone()) {
                return Err(AppError::bad_input(
                    "input.pages",
                    format!("element id {id:?} is used twice"),
                ));
            }
        }
    }
    for (page, ids) in map.pages.iter_mut().zip(given_ids) {
        for (el, id) in page.elements.iter_mut().zip(ids) {
            if let Some(id) = id {
                el.id = id;
            } else if taken.contains(&el.id) {
                el.id = format!("{}-u", el.id);
            }
        }
    }
    map.to_stored()?;
    Ok(map)
}

/// Lower-case words of at least three letters, minus common question words.
pub fn words(text: &str) -> Vec<String> {
    const STOP: &[&str] = &[
        "the", "and", "how", "can", "you", "for", "what", "where", "when", "does", "with", "this",
        "that", "want", "need", "would", "like", "please", "show", "help", "tell", "from", "into",
        "your", "our", "are", "there", "have", "has", "who", "why", "which", "get",
    ];
    text.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| w.chars().count() >= 3 && !STOP.contains(&w.as_str()))
        .map(|w| {
            // A crude stem, so "invites" meets "invite" and "teammates" meets "teammate".
            w.strip_suffix("ing")
                .or_else(|| w.strip_suffix("es"))
                .or_else(|| w.strip_suffix('s'))
                .filter(|s| s.chars().count() >= 3)
                .map(str::to_string)
                .unwrap_or(w)
        })
        .collect()
}

/// The part of `map` relevant to `question`, rendered for a prompt within
/// `budget_tokens` (about four characters a token): pages ranked by how many
/// question words their title, URL and elements share, each element on one
/// line with its map id. Returns the text and its estimated tokens.
pub fn compress(map: &AppMap, question: &str, budget_tokens: usize) -> (String, usize) {
    let q: HashSet<String> = words(question).into_iter().collect();
    let score = |text: &str| words(text).iter().filter(|w| q.contains(*w)).count();
    let mut ranked: Vec<(usize, &MapPage)> = map
        .pages
        .iter()
        .map(|p| {
            let own = score(&format!("{} {}", p.url, p.title.as_deref().unwrap_or("")));
            let els: usize = p.elements.iter().map(|e| score(&e.label)).sum();
            (own * 3 + els, p)
        })
        .collect();
    ranked.sort_by_key(|r| std::cmp::Reverse(r.0));
    let budget = budget_tokens.saturating_mul(4);
    let mut out = String::new();
    for (page_score, page) in ranked {
        let head = format!(
            "page {} {} \"{}\"\n",
            page.id,
            page.url,
            page.title.as_deref().unwrap_or("").replace('"', "'")
        );
        if out.len() + head.len() > budget {
            break;
        }
        out.push_str(&head);
        // On relevant pages every element (matching ones first); elsewhere only matching ones.
        let mut els: Vec<(usize, &MapElement)> =
            page.elements.iter().map(|e| (score(&e.label), e)).collect();
        els.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (s, e) in els {
            if page_score == 0 && s == 0 {
                continue;
            }
            let line = format!("  {} {} \"{}\"\n", e.id, e.role, e.label.replace('"', "'"));
            if out.len() + line.len() > budget {
                break;
            }
            out.push_str(&line);
        }
    }
    let tokens = out.len().div_ceil(4);
    (out, tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_fold_ids_and_slugs() {
        assert_eq!(
            url_pattern("https://a.io/projects/42/edit?x=1"),
            "/projects/:id/edit"
        );
        assert_eq!(
            url_pattern("/u/3f2a9c1e-77aa-4bbb-9ccc-0123456789ab"),
            "/u/:id"
        );
        assert_eq!(url_pattern("https://a.io"), "/");
        assert_eq!(url_pattern("/settings/team/"), "/settings/team");
    }

    #[test]
    fn generated_ids_are_told_apart() {
        for g in ["ember123", ":r1:", "a1b2c3d4e5", "12345", "input-4711"] {
            assert!(looks_generated(g), "{g}");
        }
        for s in ["save", "invite-button", "main-nav", "h1", "step2"] {
            assert!(!looks_generated(s), "{s}");
        }
    }

    #[test]
    fn uploads_refuse_shared_locators_and_keep_ids_stable() {
        let el = |label: &str, sel: &str| UploadElement {
            id: None,
            role: Some("button".into()),
            label: label.into(),
            selector: Some(sel.into()),
            locators: vec![],
        };
        let page = |els| UploadPage {
            url: "/settings".into(),
            url_pattern: None,
            title: None,
            elements: els,
        };
        assert!(validate_upload(vec![page(vec![el("A", "#x"), el("B", "#x")])]).is_err());
        let a = validate_upload(vec![page(vec![el("A", "#a"), el("B", "#b")])]).unwrap();
        let b = validate_upload(vec![page(vec![el("A", "#a"), el("B", "#b")])]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.pages[0].elements[0].id, a.pages[0].elements[1].id);
        let stored = a.to_stored().unwrap();
        assert_eq!(AppMap::from_stored(&stored), a);
    }

    #[test]
    fn compression_keeps_relevant_pages_within_budget() {
        let mut map = AppMap {
            format: FORMAT,
            pages: (0..50)
                .map(|i| MapPage {
                    id: String::new(),
                    url: format!("/area{i}"),
                    url_pattern: format!("/area{i}"),
                    title: Some(format!("Area {i}")),
                    elements: (0..20)
                        .map(|j| MapElement {
                            id: String::new(),
                            role: "button".into(),
                            label: format!("Action {j}"),
                            locators: vec![Locator {
                                kind: LocatorKind::Css,
                                value: format!("#a{i}-{j}"),
                            }],
                        })
                        .collect(),
                    recorded: false,
                })
                .collect(),
        };
        map.pages[7].title = Some("Team settings".into());
        map.pages[7].elements[3].label = "Invite teammate".into();
        map.assign_ids();
        let (text, tokens) = compress(&map, "How do I invite a teammate?", 300);
        assert!(tokens <= 300, "{tokens}");
        assert!(
            text.starts_with(&format!("page {}", map.pages[7].id)),
            "{text}"
        );
        assert!(text.contains(&map.pages[7].elements[3].id));
    }
}
