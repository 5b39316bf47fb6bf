//! Locators for the interactive elements of one parsed page.
//!
//! For each element (links, buttons, form fields, anything with an
//! interactive ARIA role) the candidates are, best first: a test id, a
//! stable `id` (not generated-looking: those change between builds), role
//! plus accessible name, `aria-label` / `name` / `placeholder`, visible
//! text, and a short structural CSS path. A candidate is kept only when it
//! matches exactly this one element on the page, checked against the parsed
//! document (CSS candidates by running them, role and text ones by comparing
//! with every other interactive element). Classes are never used: they are
//! shared by design (`.btn`) and rewritten by CSS-in-JS builds.

use std::collections::HashMap;

use scraper::{ElementRef, Html, Selector};

use super::{
    LABEL_MAX, LOCATOR_MAX, Locator, LocatorKind, MAX_ELEMENTS, MAX_LOCATORS, looks_generated,
};

/// What makes an element interactive.
const INTERACTIVE: &str = "a[href], button, input:not([type=hidden]), select, textarea, summary, \
    [role=button], [role=link], [role=tab], [role=menuitem], [role=checkbox], [role=switch], \
    [role=textbox], [role=combobox], [contenteditable=true]";

/// Test id attributes, in the order they are preferred.
const TEST_IDS: &[&str] = &["data-testid", "data-test", "data-cy", "data-qa"];

/// Longest visible text used as a `TEXT` locator.
const TEXT_MAX: usize = 80;

/// An interactive element found on a page, with its unique locators.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub role: String,
    pub label: String,
    pub locators: Vec<Locator>,
}

/// Collapses whitespace.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn text_of(el: ElementRef<'_>) -> String {
    squash(&el.text().collect::<String>())
}

/// A CSS string literal for `v`, or `None` when it cannot be one safely.
fn quoted(v: &str) -> Option<String> {
    if v.is_empty() || v.len() > LOCATOR_MAX - 40 || v.chars().any(|c| c.is_control()) {
        return None;
    }
    Some(format!(
        "\"{}\"",
        v.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

fn is_ident(v: &str) -> bool {
    v.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The element's ARIA role: an explicit `role`, else the tag's implicit one.
fn role(el: ElementRef<'_>) -> String {
    if let Some(r) = el.value().attr("role") {
        let r = r
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if !r.is_empty() && r.len() <= 30 {
            return r;
        }
    }
    let tag = el.value().name();
    let kind = el
        .value()
        .attr("type")
        .unwrap_or("text")
        .to_ascii_lowercase();
    match tag {
        "a" => "link",
        "button" | "summary" => "button",
        "select" => "combobox",
        "textarea" => "textbox",
        "input" => match kind.as_str() {
            "button" | "submit" | "reset" | "image" => "button",
            "checkbox" => "checkbox",
            "radio" => "radio",
            "range" => "slider",
            "search" => "searchbox",
            "file" => "button",
            _ => "textbox",
        },
        _ => "generic",
    }
    .into()
}

/// The accessible name, approximately as browsers compute it.
fn accessible_name(doc: &Html, el: ElementRef<'_>, labels: &HashMap<String, String>) -> String {
    let v = el.value();
    if let Some(l) = v.attr("aria-label").map(squash).filter(|s| !s.is_empty()) {
        return l;
    }
    if let Some(ids) = v.attr("aria-labelledby") {
        let text: Vec<String> = ids
            .split_whitespace()
            .filter_map(|id| {
                let sel = Selector::parse(&format!("[id={}]", quoted(id)?)).ok()?;
                doc.select(&sel).next().map(text_of)
            })
            .collect();
        let text = squash(&text.join(" "));
        if !text.is_empty() {
            return text;
        }
    }
    let tag = v.name();
    if matches!(tag, "input" | "select" | "textarea") {
        if let Some(l) = v.id().and_then(|id| labels.get(id)) {
            return l.clone();
        }
        if let Some(l) = el
            .ancestors()
            .filter_map(ElementRef::wrap)
            .find(|a| a.value().name() == "label")
            .map(text_of)
            .filter(|s| !s.is_empty())
        {
            return l;
        }
        let kind = v.attr("type").unwrap_or("").to_ascii_lowercase();
        if tag == "input" && matches!(kind.as_str(), "submit" | "button" | "reset") {
            return v.attr("value").map(squash).unwrap_or_else(|| {
                if kind == "reset" {
                    "Reset".into()
                } else {
                    "Submit".into()
                }
            });
        }
        if let Some(p) = v.attr("placeholder").map(squash).filter(|s| !s.is_empty()) {
            return p;
        }
    } else {
        let t = text_of(el);
        if !t.is_empty() {
            return t;
        }
        let img = Selector::parse("img[alt]").ok();
        if let Some(alt) = img
            .and_then(|s| el.select(&s).next())
            .and_then(|i| i.value().attr("alt"))
            .map(squash)
            .filter(|s| !s.is_empty())
        {
            return alt;
        }
    }
    v.attr("title").map(squash).unwrap_or_default()
}

/// Whether `css` matches exactly `el` in `doc`.
fn unique_css(doc: &Html, css: &str, el: ElementRef<'_>) -> bool {
    let Ok(sel) = Selector::parse(css) else {
        return false;
    };
    let mut hits = doc.select(&sel);
    matches!((hits.next(), hits.next()), (Some(a), None) if a.id() == el.id())
}

/// `tag:nth-of-type(n)` of `el` among its siblings.
fn step(el: ElementRef<'_>) -> String {
    let tag = el.value().name();
    let n = 1 + el
        .prev_siblings()
        .filter_map(ElementRef::wrap)
        .filter(|s| s.value().name() == tag)
        .count();
    format!("{tag}:nth-of-type({n})")
}

/// The shortest structural path (`form:nth-of-type(1) > button:nth-of-type(2)`)
/// that matches only `el`, anchored at an ancestor with a stable unique id when there is one.
fn css_path(doc: &Html, el: ElementRef<'_>) -> Option<String> {
    let mut parts = vec![step(el)];
    let mut current = el;
    for _ in 0..12 {
        let css = parts.iter().rev().cloned().collect::<Vec<_>>().join(" > ");
        if unique_css(doc, &css, el) {
            return Some(css);
        }
        let parent = current.parent().and_then(ElementRef::wrap)?;
        if let Some(id) = parent
            .value()
            .id()
            .filter(|i| is_ident(i) && !looks_generated(i))
        {
            let css = format!(
                "#{id} > {}",
                parts.iter().rev().cloned().collect::<Vec<_>>().join(" > ")
            );
            if unique_css(doc, &css, el) {
                return Some(css);
            }
        }
        if parent.value().name() == "html" {
            return None;
        }
        parts.push(step(parent));
        current = parent;
    }
    None
}

/// Every interactive element of `doc` (at most [`MAX_ELEMENTS`]), each
/// with its locators that match it alone; elements no locator singles out
/// are left out.
pub fn interactive_elements(doc: &Html) -> Vec<Found> {
    let Ok(interactive) = Selector::parse(INTERACTIVE) else {
        return vec![];
    };
    let mut labels = HashMap::new();
    if let Ok(sel) = Selector::parse("label[for]") {
        for l in doc.select(&sel) {
            if let Some(f) = l.value().attr("for") {
                labels.insert(f.to_string(), text_of(l));
            }
        }
    }
    let els: Vec<ElementRef<'_>> = doc.select(&interactive).take(MAX_ELEMENTS).collect();
    let described: Vec<(String, String, String)> = els
        .iter()
        .map(|&el| {
            let name = accessible_name(doc, el, &labels);
            (role(el), name, text_of(el))
        })
        .collect();
    let mut role_names: HashMap<(&str, &str), usize> = HashMap::new();
    let mut texts: HashMap<&str, usize> = HashMap::new();
    for (r, n, t) in &described {
        *role_names.entry((r.as_str(), n.as_str())).or_default() += 1;
        *texts.entry(t.as_str()).or_default() += 1;
    }
    let mut out = Vec::with_capacity(els.len());
    for (el, (r, name, text)) in els.iter().copied().zip(described.iter()) {
        let v = el.value();
        let mut locators = Vec::new();
        let push_css = |kind, css: String, locators: &mut Vec<Locator>| {
            if css.len() <= LOCATOR_MAX && unique_css(doc, &css, el) {
                locators.push(Locator { kind, value: css });
                true
            } else {
                false
            }
        };
        for attr in TEST_IDS {
            if let Some(q) = v.attr(attr).and_then(quoted)
                && push_css(LocatorKind::TestId, format!("[{attr}={q}]"), &mut locators)
            {
                break;
            }
        }
        if let Some(id) = v.id().filter(|i| !looks_generated(i)) {
            let css = if is_ident(id) {
                Some(format!("#{id}"))
            } else {
                quoted(id).map(|q| format!("[id={q}]"))
            };
            if let Some(css) = css {
                push_css(LocatorKind::Id, css, &mut locators);
            }
        }
        if !name.is_empty()
            && role_names.get(&(r.as_str(), name.as_str())) == Some(&1)
            && let Some(q) = quoted(name)
        {
            locators.push(Locator {
                kind: LocatorKind::Role,
                value: format!("role={r}[name={q}]"),
            });
        }
        let tag = v.name();
        for (attr, css_of) in [
            ("aria-label", None),
            ("name", Some(tag)),
            ("placeholder", None),
        ] {
            if let Some(q) = v.attr(attr).and_then(quoted) {
                let css = format!("{}[{attr}={q}]", css_of.unwrap_or(""));
                if push_css(LocatorKind::Label, css, &mut locators) {
                    break;
                }
            }
        }
        if !text.is_empty()
            && text.chars().count() <= TEXT_MAX
            && texts.get(text.as_str()) == Some(&1)
            && let Some(q) = quoted(text)
        {
            locators.push(Locator {
                kind: LocatorKind::Text,
                value: format!("text={q}"),
            });
        }
        if let Some(css) = css_path(doc, el) {
            push_css(LocatorKind::Css, css, &mut locators);
        }
        locators.truncate(MAX_LOCATORS);
        if locators.is_empty() {
            continue;
        }
        let label: String = if name.is_empty() {
            v.attr("name").unwrap_or(r.as_str()).to_string()
        } else {
            name.clone()
        };
        out.push(Found {
            role: r.clone(),
            label: label.chars().take(LABEL_MAX).collect(),
            locators,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_are_unique_and_skip_generated_ids() {
        let doc = Html::parse_document(
            r#"<html><body><main id="app">
            <form><label for="email">Work email</label><input id="email" name="email">
              <button class="btn" data-testid="save">Save</button>
              <button class="btn">Cancel</button>
              <button class="btn" id="ember4711">Delete</button>
              <button class="btn">Cancel</button>
            </form></main></body></html>"#,
        );
        let found = interactive_elements(&doc);
        assert_eq!(found.len(), 5, "{found:#?}");
        let email = &found[0];
        assert_eq!(email.role, "textbox");
        assert_eq!(email.label, "Work email");
        assert_eq!(email.locators[0].value, "#email");
        assert_eq!(found[1].locators[0].kind, LocatorKind::TestId);
        // The generated id is not a locator; role + name are.
        assert!(found[3].locators.iter().all(|l| !l.value.contains("ember")));
        assert_eq!(found[3].locators[0].value, r#"role=button[name="Delete"]"#);
        // Two identical "Cancel" buttons: only structural paths tell them apart.
        for f in [&found[2], &found[4]] {
            assert!(
                f.locators.iter().all(|l| l.kind == LocatorKind::Css),
                "{f:?}"
            );
        }
        for f in &found {
            for l in f.locators.iter().filter(|l| l.kind.is_css()) {
                let sel = Selector::parse(&l.value).unwrap();
                assert_eq!(doc.select(&sel).count(), 1, "{}", l.value);
            }
        }
    }
}
