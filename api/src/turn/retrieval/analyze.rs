//! Text to index terms, the same way for articles and questions: runs of
//! letters and digits, lowercased, stop words dropped (the list in
//! [`super::terms`]), each cut to its Snowball English stem, so "invoices",
//! "invoicing" and "invoice" are one term.

use rust_stemmers::{Algorithm, Stemmer};

use super::terms;

/// Longest token kept, in characters; longer runs are hashes or pasted noise.
const MAX_TOKEN_CHARS: usize = 40;

/// The stemmer; cheap to build, but built once per call site anyway.
pub fn stemmer() -> Stemmer {
    Stemmer::create(Algorithm::English)
}

/// Every term of `text`, in order, repeats kept (for term frequencies).
pub fn terms_of(stemmer: &Stemmer, text: &str, out: &mut Vec<String>) {
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let len = word.chars().count();
        if !(2..=MAX_TOKEN_CHARS).contains(&len) {
            continue;
        }
        let lower = word.to_lowercase();
        if terms::is_stop_word(&lower) {
            continue;
        }
        out.push(stemmer.stem(&lower).into_owned());
    }
}

/// The stem of one word already lowercased.
pub fn stem(stemmer: &Stemmer, word: &str) -> String {
    stemmer.stem(word).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_forms_share_a_term_and_stop_words_go() {
        let s = stemmer();
        let mut out = Vec::new();
        terms_of(&s, "Where are my Invoices? Invoicing, invoice!", &mut out);
        assert_eq!(out, vec!["invoic", "invoic", "invoic"]);
    }

    #[test]
    fn long_runs_are_dropped() {
        let s = stemmer();
        let mut out = Vec::new();
        terms_of(&s, &format!("{} token", "x".repeat(41)), &mut out);
        assert_eq!(out, vec!["token"]);
    }
}
