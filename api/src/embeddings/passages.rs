//! Articles cut into passages: the pieces that are embedded, ranked and
//! handed to the LLM, so a long article contributes the paragraph that
//! answers, not its first 2,000 characters.
//!
//! A passage is a run of paragraphs under one heading, at most
//! [`MAX_WORDS`] words (a sentence embedding model reads about 256 tokens and
//! was trained on 128; 120 English words are about 160 tokens). Paragraphs
//! are split at blank lines, Markdown headings start a new section, and a
//! paragraph longer than the bound is split between sentences (or, for one
//! endless sentence, between words). Each passage keeps its heading, and the
//! article's title goes in front of every passage when it is embedded
//! ([`embedding_input`]), so "Cancel" under "Billing" stays about billing.

/// Most words in one passage.
pub const MAX_WORDS: usize = 120;

/// Passages shorter than this are merged with the next one under the same heading.
const MIN_WORDS: usize = 25;

/// Most passages kept per article; the rest of a very long article is still
/// found by keywords, not by meaning.
pub const MAX_PASSAGES: usize = 128;

/// One passage, in article order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passage {
    /// 0-based position in the article.
    pub position: usize,
    /// The heading it sits under (empty before the first heading), then its text.
    pub text: String,
}

/// What the model reads for a passage: the article's title, then the passage.
pub fn embedding_input(title: &str, passage: &str) -> String {
    if passage.is_empty() {
        title.to_string()
    } else {
        format!("{title}\n{passage}")
    }
}

fn heading_of(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let hashes = t.bytes().take_while(|b| *b == b'#').count();
    if (1..=6).contains(&hashes) && t[hashes..].starts_with([' ', '\t']) {
        Some(t[hashes..].trim())
    } else {
        None
    }
}

/// Splits `text` into pieces of at most [`MAX_WORDS`] words, between sentences where it can.
fn bounded_pieces(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() <= MAX_WORDS {
        return vec![words.join(" ")];
    }
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut last_sentence_end = 0;
    for w in words {
        current.push(w);
        if w.ends_with(['.', '!', '?', ':', ';']) {
            last_sentence_end = current.len();
        }
        if current.len() >= MAX_WORDS {
            let cut = if last_sentence_end >= MIN_WORDS {
                last_sentence_end
            } else {
                current.len()
            };
            let rest = current.split_off(cut);
            out.push(current.join(" "));
            current = rest;
            last_sentence_end = 0;
        }
    }
    if !current.is_empty() {
        out.push(current.join(" "));
    }
    out
}

/// The passages of an article's body (the title is not repeated in them).
/// An empty body gives one empty passage, so the title alone is still embedded.
pub fn split(body: &str) -> Vec<Passage> {
    // (heading, paragraph) pairs.
    let mut paragraphs: Vec<(String, String)> = Vec::new();
    let mut heading = String::new();
    let mut current = String::new();
    let flush = |current: &mut String, heading: &str, out: &mut Vec<(String, String)>| {
        let t = current.trim();
        if !t.is_empty() {
            out.push((heading.to_string(), t.to_string()));
        }
        current.clear();
    };
    for line in body.lines() {
        if let Some(h) = heading_of(line) {
            flush(&mut current, &heading, &mut paragraphs);
            heading = h.to_string();
        } else if line.trim().is_empty() {
            flush(&mut current, &heading, &mut paragraphs);
        } else {
            current.push(' ');
            current.push_str(line.trim());
        }
    }
    flush(&mut current, &heading, &mut paragraphs);

    let mut chunks: Vec<(String, String)> = Vec::new();
    for (heading, paragraph) in paragraphs {
        for piece in bounded_pieces(&paragraph) {
            let n = piece.split_whitespace().count();
            match chunks.last_mut() {
                Some((h, text))
                    if *h == heading
                        && (text.split_whitespace().count() < MIN_WORDS || n < MIN_WORDS)
                        && text.split_whitespace().count() + n <= MAX_WORDS =>
                {
                    text.push(' ');
                    text.push_str(&piece);
                }
                _ => chunks.push((heading.clone(), piece)),
            }
        }
    }
    if chunks.is_empty() {
        return vec![Passage {
            position: 0,
            text: String::new(),
        }];
    }
    chunks
        .into_iter()
        .take(MAX_PASSAGES)
        .enumerate()
        .map(|(position, (heading, text))| Passage {
            position,
            text: if heading.is_empty() {
                text
            } else {
                format!("{heading}\n{text}")
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_articles_are_one_passage() {
        let p = split("Open Settings, then Billing.\n\nClick Download.");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].text, "Open Settings, then Billing. Click Download.");
        assert_eq!(split("")[0].text, "");
    }

    #[test]
    fn headings_start_sections_and_stay_with_their_text() {
        let long = "word ".repeat(40);
        let body = format!("# Cancel\n{long}\n\n## Refunds\n{long}");
        let p = split(&body);
        assert_eq!(p.len(), 2);
        assert!(p[0].text.starts_with("Cancel\nword"));
        assert!(p[1].text.starts_with("Refunds\nword"));
        assert_eq!(p[1].position, 1);
    }

    #[test]
    fn long_paragraphs_split_between_sentences_within_the_bound() {
        let sentence = "This sentence has exactly ten words in it, friend. ";
        let body = sentence.repeat(30);
        let p = split(&body);
        assert!(p.len() >= 3);
        for passage in &p {
            let n = passage.text.split_whitespace().count();
            assert!(n <= MAX_WORDS, "{n}");
            assert!(passage.text.ends_with('.'));
        }
        let endless = "word ".repeat(1000);
        assert!(
            split(&endless)
                .iter()
                .all(|p| p.text.split_whitespace().count() <= MAX_WORDS)
        );
    }

    #[test]
    fn passages_are_bounded_in_number() {
        let body = (0..500)
            .map(|i| format!("# H{i}\n{}", "text ".repeat(30)))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(split(&body).len(), MAX_PASSAGES);
    }
}
