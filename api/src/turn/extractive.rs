//! The answer without an LLM: the opening of the best articles, with
//! citations. What the embedded default answers with, so a fresh install is
//! useful before any provider is configured.

use super::{events::Citation, retrieval::Hit};

/// Characters taken from the best article.
const LEAD_CHARS: usize = 420;

/// The first sentences of `body`, up to about `max` characters.
fn lead(body: &str, max: usize) -> String {
    let text: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    for sentence in text.split_inclusive(['.', '!', '?']) {
        if !out.is_empty() && out.len() + sentence.len() > max {
            break;
        }
        out.push_str(sentence);
        if out.len() >= max {
            break;
        }
    }
    if out.chars().count() > max {
        out = out.chars().take(max).collect::<String>();
        out.push('…');
    }
    out.trim().to_string()
}

/// The answer text, its pieces (for streaming) and its citations; `None` without hits.
pub fn answer(hits: &[Hit]) -> Option<(String, Vec<String>, Vec<Citation>)> {
    let best = hits.first()?;
    let mut pieces = vec![format!("{} [1]", lead(&best.body, LEAD_CHARS))];
    let mut citations = vec![Citation {
        article_id: best.article_id,
        title: best.title.clone(),
    }];
    let others: Vec<&Hit> = hits.iter().skip(1).take(2).collect();
    if !others.is_empty() {
        let list: Vec<String> = others
            .iter()
            .enumerate()
            .map(|(i, h)| format!("“{}” [{}]", h.title, i + 2))
            .collect();
        pieces.push(format!("\n\nSee also: {}.", list.join(", ")));
        for h in others {
            citations.push(Citation {
                article_id: h.article_id,
                title: h.title.clone(),
            });
        }
    }
    Some((pieces.concat(), pieces, citations))
}
