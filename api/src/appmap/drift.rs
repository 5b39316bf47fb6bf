//! Drift: which steps of a flow or tooltip no longer find their element in a
//! (new) app map. Re-mapping a site runs this over its published content, so
//! a broken step is flagged in the library (`health`, a `content.broken`
//! event) before visitors meet it.
//!
//! A step still stands when its element's map id is in the map, or when its
//! target selector is one of the CSS locators of an element on a page with
//! the step's URL pattern (content authored by hand has no map ids).

use super::{AppMap, url_pattern};
use crate::service::content::FlowStep;

/// The indexes of `steps` whose element is gone from `map`.
pub fn broken_steps(map: &AppMap, steps: &[FlowStep]) -> Vec<usize> {
    steps
        .iter()
        .enumerate()
        .filter(|(_, s)| !stands(map, s))
        .map(|(i, _)| i)
        .collect()
}

fn stands(map: &AppMap, step: &FlowStep) -> bool {
    if let Some(id) = &step.element_id
        && map.element(id).is_some()
    {
        return true;
    }
    let pattern = url_pattern(&step.page_url);
    let wanted: Vec<&str> = std::iter::once(step.target_selector.as_str())
        .chain(
            step.locators
                .iter()
                .filter(|l| l.kind.is_css())
                .map(|l| l.value.as_str()),
        )
        .collect();
    map.pages
        .iter()
        .filter(|p| p.url_pattern == pattern)
        .flat_map(|p| &p.elements)
        .any(|e| {
            e.locators
                .iter()
                .any(|l| wanted.contains(&l.value.as_str()))
        })
}
