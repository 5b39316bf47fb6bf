//! The excerpt shown under a hit: the stretch of the body that holds the
//! most of the question's words.
//!
//! Computed here rather than with FTS5 `snippet()` or PostgreSQL
//! `ts_headline` so both databases and both retrieval modes cut the same
//! excerpt, and so the database ranks without re-parsing bodies
//! (`ts_headline` re-parses each document, which costs more than ranking).
//! Matching is by shared prefix, a cheap stand-in for the engines' stemming:
//! "invoices" lights up "invoicing".

/// Longest excerpt, in characters, ellipses included.
pub const MAX_CHARS: usize = 200;

/// Whether body word `word` is a form of query word `term` (both lowercase).
pub fn word_matches(term: &str, word: &str) -> bool {
    if term == word {
        return true;
    }
    let (tl, wl) = (term.chars().count(), word.chars().count());
    let common = term
        .chars()
        .zip(word.chars())
        .take_while(|(a, b)| a == b)
        .count();
    if tl < 4 {
        // Short words ("api", "sso") only as themselves or with a short ending.
        return common == tl && wl <= tl + 2;
    }
    common >= 4 && common + 2 >= tl.min(wl)
}

/// An excerpt of at most [`MAX_CHARS`] characters around the densest match
/// of `terms` in `body`; the body's start when nothing matches.
pub fn excerpt(body: &str, terms: &[&str]) -> String {
    // (byte start, byte end, char offset of start, matched term index)
    let mut words: Vec<(usize, usize, usize, Option<usize>)> = Vec::new();
    let mut chars_before = 0;
    let mut last_end = 0;
    let mut start = None;
    for (i, c) in body
        .char_indices()
        .chain(std::iter::once((body.len(), ' ')))
    {
        if c.is_alphanumeric() {
            if start.is_none() {
                chars_before += body[last_end..i].chars().count();
                last_end = i;
                start = Some(i);
            }
        } else if let Some(s) = start.take() {
            let word = body[s..i].to_lowercase();
            let hit = terms.iter().position(|t| word_matches(t, &word));
            words.push((s, i, chars_before, hit));
        }
    }
    if words.is_empty() {
        return clip(body, 0, body.len());
    }
    let char_end = |w: &(usize, usize, usize, Option<usize>)| w.2 + body[w.0..w.1].chars().count();

    // Two pointers: the window of words starting at `i` that fits, scored by
    // distinct terms first, then by matches.
    let budget = MAX_CHARS - 2;
    let (mut best, mut best_score) = (0, (0, 0));
    let mut j = 0;
    let mut counts = vec![0usize; terms.len()];
    let (mut distinct, mut total) = (0, 0);
    for i in 0..words.len() {
        if j < i {
            j = i;
        }
        while j < words.len() && char_end(&words[j]) - words[i].2 <= budget {
            if let Some(t) = words[j].3 {
                if counts[t] == 0 {
                    distinct += 1;
                }
                counts[t] += 1;
                total += 1;
            }
            j += 1;
        }
        if (distinct, total) > best_score {
            best_score = (distinct, total);
            best = i;
        }
        if j > i
            && let Some(t) = words[i].3
        {
            counts[t] -= 1;
            total -= 1;
            if counts[t] == 0 {
                distinct -= 1;
            }
        }
    }
    let from = if best_score.0 == 0 || best == 0 {
        0
    } else {
        words[best].0
    };
    clip(body, from, body.len())
}

/// `body[from..to]` with whitespace collapsed, cut at a word boundary to fit
/// [`MAX_CHARS`], with an ellipsis on each side that was cut.
fn clip(body: &str, from: usize, to: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    if from > 0 {
        out.push('…');
        n = 1;
    }
    let text_start = n;
    let mut cut = false;
    for word in body[from..to].split_whitespace() {
        let sep = usize::from(n > text_start);
        let len = word.chars().count();
        // Keep one character for the closing ellipsis.
        if n + sep + len > MAX_CHARS - 1 {
            cut = true;
            break;
        }
        if sep == 1 {
            out.push(' ');
        }
        out.push_str(word);
        n += sep + len;
    }
    if n == text_start && cut {
        // One word longer than the excerpt: cut it mid-word.
        out.extend(body[from..to].trim_start().chars().take(MAX_CHARS - 1 - n));
    }
    if cut {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_of_a_word_match() {
        assert!(word_matches("invoices", "invoicing"));
        assert!(word_matches("cancel", "cancellation"));
        assert!(word_matches("configure", "configuration"));
        assert!(word_matches("api", "apis"));
        assert!(!word_matches("invoice", "invite"));
        assert!(!word_matches("api", "apiary"));
        assert!(!word_matches("account", "accurate"));
    }

    #[test]
    fn excerpt_centres_on_the_matches() {
        let body = format!(
            "{} To download an invoice, open Billing and choose Invoices. {}",
            "Filler sentence about nothing much. ".repeat(20),
            "More filler text here. ".repeat(20)
        );
        let s = excerpt(&body, &["invoices", "billing"]);
        assert!(s.chars().count() <= MAX_CHARS, "{s}");
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert!(s.contains("Billing and choose Invoices"), "{s}");
    }

    #[test]
    fn short_bodies_and_no_matches() {
        assert_eq!(
            excerpt("Click  Forgot\npassword.", &["zzz"]),
            "Click Forgot password."
        );
        assert_eq!(excerpt("", &["zzz"]), "");
        let long_word = "x".repeat(500);
        assert!(excerpt(&long_word, &["x"]).chars().count() <= MAX_CHARS);
        let long = "word ".repeat(100);
        let s = excerpt(&long, &[]);
        assert!(s.chars().count() <= MAX_CHARS && s.ends_with('…') && !s.starts_with('…'));
    }
}
