//! `wayfinder kb import`: a folder of Markdown and HTML files becomes a
//! knowledge base's articles.
//!
//! - **Idempotent by path.** Each article remembers the file it came from
//!   (`kb_articles.source_path`, relative to the folder); a second run
//!   updates those articles (or leaves them alone when nothing changed) and
//!   never duplicates one.
//! - **Title**: a Markdown file's first `#` heading, an HTML file's
//!   `<title>` (else its first `<h1>`), else the file name. A title over
//!   the limit is cut at a word boundary, with a warning.
//! - **Body**: Markdown as written (its headings stay, so passages keep
//!   them); HTML as text, block by block, headings as Markdown headings,
//!   scripts and styles dropped.
//! - **Bad files are listed and skipped**: unreadable, not UTF-8, empty,
//!   too large; the run never aborts for one file.
//! - Bounded: at most [`MAX_FILES`] files, each at most [`MAX_FILE_BYTES`].

use std::path::{Path, PathBuf};

use chrono::Utc;
use entity::{kb_article, knowledge_base};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::event;
use crate::{domain, error::AppError, state::State};

/// Most files one import reads.
pub const MAX_FILES: usize = 20_000;

/// Largest file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024;

/// Longest title, in characters (the article limit).
pub const MAX_TITLE_CHARS: usize = 300;

/// Extensions imported.
const EXTENSIONS: &[&str] = &["md", "markdown", "mdx", "txt", "html", "htm"];

/// One file to import, read and parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedFile {
    /// Relative to the imported folder, `/`-separated.
    pub source_path: String,
    pub title: String,
    pub body: String,
    /// Set when the title had to be cut.
    pub warning: Option<String>,
}

/// What happened to one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

/// The importable files under `dir`, sorted, at most [`MAX_FILES`] (the
/// second value says whether more were left out).
pub fn list_files(dir: &Path) -> std::io::Result<(Vec<PathBuf>, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut truncated = false;
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)?.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(kind) = e.file_type() else { continue };
            let path = e.path();
            if kind.is_dir() {
                if !e.file_name().to_string_lossy().starts_with('.') {
                    stack.push(path);
                }
            } else if kind.is_file()
                && path
                    .extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
            {
                if out.len() == MAX_FILES {
                    truncated = true;
                    break;
                }
                out.push(path);
            }
        }
    }
    out.sort();
    Ok((out, truncated))
}

/// Reads and parses one file. `Err` says why it is skipped.
pub fn read_file(dir: &Path, path: &Path) -> Result<ImportedFile, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let source_path = path
        .strip_prefix(dir)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().replace(['-', '_'], " "))
        .unwrap_or_default();
    let is_html = path
        .extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| x.eq_ignore_ascii_case("html") || x.eq_ignore_ascii_case("htm"));
    let (title, body) = if is_html {
        html_article(&text)
    } else {
        markdown_article(&text)
    };
    let title = title.filter(|t| !t.trim().is_empty()).unwrap_or(stem);
    let body = body.trim().to_string();
    if title.trim().is_empty() && body.is_empty() {
        return Err("empty".into());
    }
    if body.chars().count() > domain::ARTICLE_BODY_MAX {
        return Err(format!(
            "its text is longer than {} characters",
            domain::ARTICLE_BODY_MAX
        ));
    }
    let (title, warning) = cut_title(title.trim());
    Ok(ImportedFile {
        source_path,
        title,
        body,
        warning,
    })
}

/// `title` within [`MAX_TITLE_CHARS`], cut at a word boundary, and a warning when cut.
fn cut_title(title: &str) -> (String, Option<String>) {
    let one_line: String = title.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_TITLE_CHARS {
        return (one_line, None);
    }
    let budget = MAX_TITLE_CHARS - 1; // room for the ellipsis
    let mut cut = String::new();
    for word in one_line.split(' ') {
        let next = if cut.is_empty() {
            word.chars().count()
        } else {
            cut.chars().count() + 1 + word.chars().count()
        };
        if next > budget {
            break;
        }
        if !cut.is_empty() {
            cut.push(' ');
        }
        cut.push_str(word);
    }
    if cut.is_empty() {
        cut = one_line.chars().take(budget).collect();
    }
    cut.push('…');
    let warning = format!(
        "title cut to {} characters (was {})",
        cut.chars().count(),
        one_line.chars().count()
    );
    (cut, Some(warning))
}

/// The first `#` heading as the title (removed from the body), the rest as the body.
fn markdown_article(text: &str) -> (Option<String>, String) {
    let mut title = None;
    let mut body = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if title.is_none() && t.starts_with("# ") {
            title = Some(t[2..].trim().to_string());
            continue;
        }
        body.push(line);
    }
    (title, body.join("\n"))
}

/// `<title>` (else the first `<h1>`) and the text of the body, block by block.
fn html_article(text: &str) -> (Option<String>, String) {
    use scraper::{ElementRef, Html, Node, Selector};
    let doc = Html::parse_document(text);
    let pick = |css: &str| {
        Selector::parse(css).ok().and_then(|s| {
            doc.select(&s)
                .next()
                .map(|e| e.text().collect::<String>().trim().to_string())
        })
    };
    let title = pick("title")
        .filter(|t| !t.is_empty())
        .or_else(|| pick("h1"));
    let mut out = String::new();
    fn walk(e: ElementRef<'_>, out: &mut String) {
        let name = e.value().name();
        if matches!(
            name,
            "script" | "style" | "noscript" | "template" | "head" | "nav"
        ) {
            return;
        }
        let heading = match name {
            "h1" | "h2" => Some("# "),
            "h3" | "h4" | "h5" | "h6" => Some("## "),
            _ => None,
        };
        let block = heading.is_some()
            || matches!(
                name,
                "p" | "div"
                    | "section"
                    | "article"
                    | "li"
                    | "ul"
                    | "ol"
                    | "table"
                    | "tr"
                    | "br"
                    | "pre"
                    | "blockquote"
                    | "main"
                    | "header"
                    | "footer"
                    | "dd"
                    | "dt"
            );
        if block {
            out.push_str("\n\n");
        }
        if let Some(h) = heading {
            out.push_str(h);
            out.push_str(
                e.text()
                    .collect::<String>()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .as_str(),
            );
            out.push_str("\n\n");
            return;
        }
        for child in e.children() {
            match child.value() {
                Node::Text(t) => {
                    // Whitespace at a text node's edges is a word break; none is none
                    // ("<b>monthly</b>." stays "monthly.").
                    let collapsed = t.split_whitespace().collect::<Vec<_>>().join(" ");
                    let starts = t.starts_with(char::is_whitespace);
                    if starts && !out.is_empty() && !out.ends_with([' ', '\n']) {
                        out.push(' ');
                    }
                    out.push_str(&collapsed);
                    if t.ends_with(char::is_whitespace) && !collapsed.is_empty() {
                        out.push(' ');
                    }
                }
                Node::Element(_) => {
                    if let Some(el) = ElementRef::wrap(child) {
                        walk(el, out);
                    }
                }
                _ => {}
            }
        }
        if block {
            out.push_str("\n\n");
        }
    }
    if let Ok(body) = Selector::parse("body")
        && let Some(b) = doc.select(&body).next()
    {
        walk(b, &mut out);
    }
    // Collapse runs of blank lines.
    let mut body = String::new();
    let mut blank = 0;
    for line in out.lines() {
        if line.trim().is_empty() {
            blank += 1;
            continue;
        }
        if !body.is_empty() {
            body.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        body.push_str(line.trim());
    }
    // The title heading is the article's title, not its first paragraph.
    if let Some(t) = &title
        && let Some(rest) = body.strip_prefix(&format!("# {t}"))
    {
        body = rest.trim_start().to_string();
    }
    (title, body)
}

/// Creates or updates the article of `file.source_path` in knowledge base
/// `kb` of org `org_id`, in one transaction with its event.
pub async fn upsert(
    st: &State,
    org_id: Uuid,
    kb: Uuid,
    file: &ImportedFile,
) -> Result<Outcome, AppError> {
    use kb_article::{Column, Entity};
    // The same checks as an article written through the API.
    let title = super::kb::title("title", &file.title)?;
    let body = super::kb::body("body", &file.body)?;
    let txn = super::begin_write(&st.db).await?;
    let existing = Entity::find()
        .filter(Column::OrgId.eq(org_id))
        .filter(Column::KnowledgeBaseId.eq(kb))
        .filter(Column::SourcePath.eq(file.source_path.as_str()))
        .one(&txn)
        .await?;
    let (outcome, id) = match existing {
        Some(a) if a.title == title && a.body == body => return Ok(Outcome::Unchanged),
        Some(a) => {
            let id = a.id;
            let revision = super::kb::bump_revision(&txn, kb).await?;
            let mut am: kb_article::ActiveModel = a.into();
            am.title = Set(title);
            am.body = Set(body);
            am.revision = Set(revision);
            am.updated_at = Set(Utc::now());
            super::kb::forget_vectors(&txn, &mut am, id).await?;
            am.update(&txn).await?;
            (Outcome::Updated, id)
        }
        None => {
            let new = super::kb::NewArticle {
                org_id,
                knowledge_base_id: kb,
                title,
                body,
                published: true,
                source_path: Some(file.source_path.clone()),
            };
            let model = super::kb::insert_article(&txn, new).await?;
            (Outcome::Created, model.id)
        }
    };
    let verb = if outcome == Outcome::Created {
        "created"
    } else {
        "updated"
    };
    event::commit_with_event::<kb_article::Entity>(st, txn, org_id, verb, id).await?;
    st.retriever.articles_changed();
    Ok(outcome)
}

/// Checks that knowledge base `kb` belongs to org `org_id`.
pub async fn check_target(st: &State, org_id: Uuid, kb: Uuid) -> Result<(), AppError> {
    knowledge_base::Entity::find_by_id(kb)
        .filter(knowledge_base::Column::OrgId.eq(org_id))
        .one(&st.db)
        .await?
        .map(|_| ())
        .ok_or_else(|| AppError::not_found_in("knowledge base", "--kb"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_titles_come_from_the_first_heading() {
        let (t, b) =
            markdown_article("Intro line\n# Reset your password\n\n## Steps\nOpen Settings.");
        assert_eq!(t.as_deref(), Some("Reset your password"));
        assert_eq!(b, "Intro line\n\n## Steps\nOpen Settings.");
    }

    #[test]
    fn html_keeps_text_and_headings_and_drops_scripts() {
        let (t, b) = html_article(
            "<html><head><title>Billing FAQ</title><style>p{}</style></head><body>\
             <h1>Billing FAQ</h1><script>alert(1)</script><p>Invoices are <b>monthly</b>.</p>\
             <h2>Refunds</h2><ul><li>Within 30 days</li><li>Pro rata</li></ul></body></html>",
        );
        assert_eq!(t.as_deref(), Some("Billing FAQ"));
        assert_eq!(
            b,
            "Invoices are monthly.\n\n# Refunds\n\nWithin 30 days\n\nPro rata"
        );
    }

    #[test]
    fn long_titles_are_cut_at_a_word_boundary() {
        let long = "word ".repeat(100);
        let (t, w) = cut_title(&long);
        assert!(t.chars().count() <= MAX_TITLE_CHARS);
        assert!(t.ends_with("word…"), "{t}");
        assert!(w.is_some());
        assert_eq!(cut_title("Short title"), ("Short title".to_string(), None));
    }
}
