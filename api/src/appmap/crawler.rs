//! The static crawler behind `mapSite`: from the site's base URL, breadth
//! first, same origin only, robots.txt respected, every request through the
//! outbound guard ([`crate::outbound::Fetcher`]).
//!
//! Everything is bounded, because the site is a customer's and may be
//! endless (calendars, search pages) or hostile: pages, link depth, bytes per
//! page and in all, wall-clock time, and requests in flight. Every response
//! counts toward the page and byte bounds, whether it was HTML or not (a
//! site of a thousand linked PDFs ends the crawl as surely as one of a
//! thousand pages), and so do the bytes a rendering Chromium fetched. Pages whose URL
//! pattern was already mapped (`/projects/1` after `/projects/2`) are not
//! fetched again. Hitting a bound ends the crawl with what it has (the
//! summary says which bound); only a base page that cannot be fetched fails
//! it. Redirects are followed by hand, and only within the origin (the guard
//! itself never follows one). Parsing (html5ever, through `scraper`) runs on
//! the blocking pool so a large page cannot stall the runtime.
//!
//! With a [`Renderer`] (headless Chromium, `WAYFINDER_CHROMIUM`), each page
//! that the static fetch found to be HTML is also rendered, and its rendered
//! DOM is mapped instead (links included, so an app's client-side routes are
//! followed); a page that fails to render is mapped from its static HTML.

use std::{
    collections::{HashSet, VecDeque},
    time::Duration,
};

use futures_util::{StreamExt, stream::FuturesUnordered};
use reqwest::{
    Url,
    header::{self, HeaderMap, HeaderName, HeaderValue},
};
use scraper::{Html, Selector};
use tokio::time::Instant;

use super::{
    AppMap, FORMAT, MAX_PAGES, MapElement, MapPage, locators, renderer::Renderer, robots::Robots,
    url_pattern,
};
use crate::outbound::{FetchError, Fetcher, Policy};

/// The crawler's user agent; robots.txt groups for `wayfinder` apply to it.
pub const USER_AGENT: &str = "wayfinder-mapper/1 (+https://github.com/wayfinder)";

/// Links followed per page.
const MAX_LINKS_PER_PAGE: usize = 500;

/// The bounds of one crawl.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_pages: usize,
    pub max_depth: usize,
    pub max_page_bytes: usize,
    pub max_total_bytes: usize,
    pub deadline: Duration,
    pub concurrency: usize,
}

/// Credentials for a staging app, sent to the site's origin only; never stored.
#[derive(Clone, Default)]
pub struct Credentials {
    /// One request header, e.g. `Authorization: Bearer …`.
    pub header: Option<(String, String)>,
    /// A `Cookie` header value.
    pub cookie: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("header", &self.header.as_ref().map(|(n, _)| n))
            .field("cookie", &self.cookie.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Credentials {
    /// The headers to send; a malformed name or value is refused.
    pub fn headers(&self) -> Result<HeaderMap, String> {
        let mut h = HeaderMap::new();
        if let Some((name, value)) = &self.header {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| "not a valid header name".to_string())?;
            let mut value = HeaderValue::from_str(value.trim())
                .map_err(|_| "not a valid header value".to_string())?;
            value.set_sensitive(true);
            h.insert(name, value);
        }
        if let Some(cookie) = &self.cookie {
            let mut value = HeaderValue::from_str(cookie.trim())
                .map_err(|_| "not a valid cookie".to_string())?;
            value.set_sensitive(true);
            h.insert(header::COOKIE, value);
        }
        Ok(h)
    }
}

/// How far a crawl has got, for progress events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub pages_mapped: usize,
    pub pages_queued: usize,
}

/// What a finished crawl found and why it stopped.
#[derive(Clone, Debug)]
pub struct Crawl {
    pub map: AppMap,
    /// Pages fetched (mapped or not).
    pub fetched: usize,
    /// Pages robots.txt kept us out of.
    pub disallowed: usize,
    /// Pages that failed or were not HTML.
    pub skipped: usize,
    pub bytes: usize,
    /// Pages mapped from their rendered DOM.
    pub rendered: usize,
    /// The bound that ended the crawl early, if one did.
    pub stopped_by: Option<&'static str>,
    pub elapsed: Duration,
}

/// Why a crawl failed.
#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    #[error("{0}")]
    Base(String),
    #[error("{0}")]
    Credentials(String),
}

/// One parsed page: title, elements, and the links it has.
struct Parsed {
    title: Option<String>,
    elements: Vec<locators::Found>,
    links: Vec<String>,
}

fn parse(body: &str) -> Parsed {
    let doc = Html::parse_document(body);
    let title = Selector::parse("title")
        .ok()
        .and_then(|s| doc.select(&s).next())
        .map(|t| {
            t.text()
                .collect::<String>()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().take(super::LABEL_MAX).collect());
    let links = Selector::parse("a[href]")
        .ok()
        .map(|s| {
            doc.select(&s)
                .filter_map(|a| a.value().attr("href"))
                .take(MAX_LINKS_PER_PAGE)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Parsed {
        title,
        elements: locators::interactive_elements(&doc),
        links,
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The path and query of `url`: how a mapped page is stored (the origin is the site's).
fn path_and_query(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

enum Outcome {
    Page { body: String, bytes: usize },
    Redirect(String),
    Skip { bytes: usize },
    TooLarge,
}

async fn fetch(
    fetcher: &Fetcher,
    policy: &Policy,
    url: &Url,
    max_bytes: usize,
    headers: HeaderMap,
) -> Result<Outcome, FetchError> {
    let got = fetcher
        .get_with(policy, url.as_str(), max_bytes, headers)
        .await;
    let got = match got {
        Err(FetchError::TooLarge { .. }) => return Ok(Outcome::TooLarge),
        other => other?,
    };
    if got.status.is_redirection() {
        return Ok(got
            .headers
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map_or(
                Outcome::Skip {
                    bytes: got.body.len(),
                },
                |l| Outcome::Redirect(l.to_string()),
            ));
    }
    let html = got
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_none_or(|c| c.contains("html"));
    if !got.status.is_success() || !html {
        return Ok(Outcome::Skip {
            bytes: got.body.len(),
        });
    }
    Ok(Outcome::Page {
        bytes: got.body.len(),
        body: String::from_utf8_lossy(&got.body).into_owned(),
    })
}

/// Fetches `url` and, with a renderer, renders an HTML page: its rendered
/// DOM replaces the static body when the tab stayed on the site. Returns
/// whether the page was rendered.
async fn fetch_page(
    fetcher: &Fetcher,
    policy: &Policy,
    renderer: Option<&Renderer>,
    url: &Url,
    max_bytes: usize,
    headers: HeaderMap,
) -> (Result<Outcome, FetchError>, bool) {
    let mut result = fetch(fetcher, policy, url, max_bytes, headers).await;
    let mut rendered = false;
    if let (Some(renderer), Ok(Outcome::Page { body, .. })) = (renderer, &mut result) {
        match renderer.render(url).await {
            Ok(page) if Url::parse(&page.url).is_ok_and(|u| same_origin(url, &u)) => {
                *body = page.html;
                rendered = true;
            }
            Ok(page) => {
                tracing::debug!(%url, to = %page.url, "rendered page left the site; static HTML kept")
            }
            Err(err) => tracing::debug!(%url, err, "page not rendered; static HTML kept"),
        }
    }
    (result, rendered)
}

/// Crawls from `base` within `limits`, reporting progress on `progress`;
/// with `renderer`, pages are rendered in Chromium first.
pub async fn crawl(
    fetcher: &Fetcher,
    policy: &Policy,
    base: &Url,
    limits: &Limits,
    credentials: &Credentials,
    renderer: Option<&Renderer>,
    progress: &tokio::sync::watch::Sender<Progress>,
) -> Result<Crawl, CrawlError> {
    let started = Instant::now();
    let headers = credentials.headers().map_err(CrawlError::Credentials)?;
    let max_pages = limits.max_pages.clamp(1, MAX_PAGES);
    let concurrency = limits.concurrency.clamp(1, 16);

    let robots = match base.join("/robots.txt") {
        Ok(url) => match fetcher
            .get_with(policy, url.as_str(), 512 * 1024, headers.clone())
            .await
        {
            Ok(r) if r.status.is_success() => {
                Robots::parse(&String::from_utf8_lossy(&r.body), "wayfinder")
            }
            Ok(_) => Robots::default(),
            Err(err @ FetchError::Refused(_)) => return Err(CrawlError::Base(err.to_string())),
            Err(_) => Robots::default(),
        },
        Err(_) => Robots::default(),
    };

    let mut seen_patterns: HashSet<String> = HashSet::new();
    let mut queue: VecDeque<(Url, usize, usize)> = VecDeque::new();
    let mut start = base.clone();
    start.set_fragment(None);
    seen_patterns.insert(url_pattern(start.path()));
    queue.push_back((start, 0, 0));

    let mut pages: Vec<MapPage> = vec![];
    let (mut fetched, mut disallowed, mut skipped, mut bytes) = (0, 0, 0, 0usize);
    let mut rendered = 0;
    let total_bytes = |static_bytes: usize| static_bytes + renderer.map_or(0, Renderer::bytes);
    let mut stopped_by = None;
    let mut base_error: Option<String> = None;
    let mut in_flight = FuturesUnordered::new();

    loop {
        // Every response counts toward the page bound, HTML or not.
        while in_flight.len() < concurrency && fetched + in_flight.len() < max_pages {
            let Some((url, depth, hops)) = queue.pop_front() else {
                break;
            };
            if !robots.allows(&path_and_query(&url)) {
                disallowed += 1;
                if depth == 0 && hops == 0 {
                    base_error = Some("robots.txt disallows the base URL".into());
                }
                continue;
            }
            let h = headers.clone();
            let max = limits.max_page_bytes;
            in_flight.push(async move {
                let (r, was_rendered) = fetch_page(fetcher, policy, renderer, &url, max, h).await;
                (url, depth, hops, r, was_rendered)
            });
        }
        if in_flight.is_empty() {
            if !queue.is_empty() && fetched >= max_pages {
                stopped_by = Some("pages");
            }
            break;
        }
        let left = limits.deadline.saturating_sub(started.elapsed());
        let next = match tokio::time::timeout(left, in_flight.next()).await {
            Ok(Some(n)) => n,
            Ok(None) => break,
            Err(_) => {
                stopped_by = Some("time");
                break;
            }
        };
        let (url, depth, hops, result, was_rendered) = next;
        fetched += 1;
        let is_base = depth == 0 && pages.is_empty();
        match result {
            Err(err) => {
                if is_base && hops == 0 {
                    base_error = Some(err.to_string());
                }
                skipped += 1;
            }
            Ok(Outcome::TooLarge) => {
                skipped += 1;
                if is_base {
                    base_error = Some(format!(
                        "the base page is larger than {} bytes",
                        limits.max_page_bytes
                    ));
                }
            }
            Ok(Outcome::Skip { bytes: n }) => {
                bytes += n;
                skipped += 1;
                if is_base {
                    base_error = Some("the base page is not an HTML page that answers 200".into());
                }
            }
            Ok(Outcome::Redirect(to)) => {
                if let Ok(mut to) = url.join(&to)
                    && same_origin(base, &to)
                    && hops < 5
                {
                    to.set_fragment(None);
                    queue.push_front((to, depth, hops + 1));
                } else if is_base {
                    base_error = Some("the base URL redirects away from the site".into());
                }
            }
            Ok(Outcome::Page { body, bytes: n }) => {
                bytes += n;
                rendered += usize::from(was_rendered);
                let parsed = tokio::task::spawn_blocking(move || parse(&body)).await.ok();
                let Some(parsed) = parsed else {
                    skipped += 1;
                    continue;
                };
                if depth < limits.max_depth {
                    for href in parsed.links {
                        let Ok(mut link) = url.join(&href) else {
                            continue;
                        };
                        link.set_fragment(None);
                        if !same_origin(base, &link) {
                            continue;
                        }
                        if seen_patterns.insert(url_pattern(link.path())) {
                            queue.push_back((link, depth + 1, 0));
                        }
                    }
                }
                let path = path_and_query(&url);
                pages.push(MapPage {
                    id: String::new(),
                    recorded: false,
                    url_pattern: url_pattern(&path),
                    url: path,
                    title: parsed.title,
                    elements: parsed
                        .elements
                        .into_iter()
                        .map(|f| MapElement {
                            id: String::new(),
                            role: f.role,
                            label: f.label,
                            locators: f.locators,
                        })
                        .collect(),
                });
                progress.send_replace(Progress {
                    pages_mapped: pages.len(),
                    pages_queued: queue.len() + in_flight.len(),
                });
            }
        }
        if total_bytes(bytes) >= limits.max_total_bytes {
            stopped_by = Some("bytes");
            break;
        }
        if started.elapsed() >= limits.deadline {
            stopped_by = Some("time");
            break;
        }
    }
    if pages.is_empty() {
        return Err(CrawlError::Base(
            base_error.unwrap_or_else(|| "no page could be mapped".into()),
        ));
    }
    let mut map = AppMap {
        format: FORMAT,
        pages,
    };
    map.assign_ids();
    Ok(Crawl {
        map,
        fetched,
        disallowed,
        skipped,
        bytes: total_bytes(bytes),
        rendered,
        stopped_by,
        elapsed: started.elapsed(),
    })
}
