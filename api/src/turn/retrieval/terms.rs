//! From a visitor's question to the words a search looks for.
//!
//! A question is cut into words (runs of letters and digits), lowercased;
//! stop words and chat filler are dropped, duplicates too. What remains can
//! only be letters and digits, so no full-text syntax (`"`, `*`, `NEAR(`,
//! `:`, `&|!`, `-`) survives into an FTS5 or `tsquery` expression, and every
//! expression is still bound as a parameter, never spliced into SQL.
//!
//! Each word becomes a [`TermGroup`]: the word itself plus the other members
//! of its synonym set from a small, hand-written support thesaurus
//! ([`SYNONYMS`]). Visitors say "receipt" where the article says "invoice";
//! neither Porter nor Snowball stemming bridges that, a thesaurus does. The
//! groups are ORed: a question shares few words with the article that
//! answers it, so requiring all of them would find nothing, while BM25 (or
//! `ts_rank`) already ranks articles that match more and rarer words first.

/// Longest word kept; anything longer is noise (a hash, a pasted token).
const MAX_WORD_CHARS: usize = 40;

/// Most words taken from one question, so a pasted page cannot make a huge query.
const MAX_WORDS: usize = 24;

/// The Snowball English stop list (what PostgreSQL's `english` configuration
/// drops), so SQLite, whose FTS5 has no stop list, searches the same words.
const STOP_WORDS: &[&str] = &[
    "i",
    "me",
    "my",
    "myself",
    "we",
    "our",
    "ours",
    "ourselves",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "he",
    "him",
    "his",
    "himself",
    "she",
    "her",
    "hers",
    "herself",
    "it",
    "its",
    "itself",
    "they",
    "them",
    "their",
    "theirs",
    "themselves",
    "what",
    "which",
    "who",
    "whom",
    "this",
    "that",
    "these",
    "those",
    "am",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "have",
    "has",
    "had",
    "having",
    "do",
    "does",
    "did",
    "doing",
    "a",
    "an",
    "the",
    "and",
    "but",
    "if",
    "or",
    "because",
    "as",
    "until",
    "while",
    "of",
    "at",
    "by",
    "for",
    "with",
    "about",
    "against",
    "between",
    "into",
    "through",
    "during",
    "before",
    "after",
    "above",
    "below",
    "to",
    "from",
    "up",
    "down",
    "in",
    "out",
    "on",
    "off",
    "over",
    "under",
    "again",
    "further",
    "then",
    "once",
    "here",
    "there",
    "when",
    "where",
    "why",
    "how",
    "all",
    "any",
    "both",
    "each",
    "few",
    "more",
    "most",
    "other",
    "some",
    "such",
    "no",
    "nor",
    "not",
    "only",
    "own",
    "same",
    "so",
    "than",
    "too",
    "very",
    "s",
    "t",
    "can",
    "will",
    "just",
    "don",
    "should",
    "now",
];

/// Words of chat, not of the question: greetings, politeness, modal verbs,
/// the halves of contractions the stop list misses ("won't" → "won").
const CHAT_FILLER: &[&str] = &[
    "hi", "hello", "hey", "please", "pls", "thanks", "thank", "thx", "would", "could", "might",
    "must", "shall", "may", "also", "really", "anyone", "somebody", "someone", "im", "ive", "id",
    "ll", "ve", "re", "won", "didn", "doesn", "isn", "aren", "wasn", "haven", "hasn", "couldn",
    "wouldn", "shouldn", "cant", "dont", "doesnt", "didnt", "want", "wanted", "wanna", "need",
    "needed", "trying", "tried", "possible", "way", "anyway", "guys", "help", "question",
];

/// Sets of words a visitor and an article writer use for the same thing in
/// SaaS support. General vocabulary, written before the evaluation questions
/// existed and never tuned to them; each set should be interchangeable in
/// most support questions, not merely related.
pub const SYNONYMS: &[&[&str]] = &[
    &["invoice", "receipt", "bill", "statement"],
    &["charge", "payment", "pay", "paid"],
    &["refund", "reimburse", "reimbursement", "chargeback"],
    &[
        "cancel",
        "cancelled",
        "canceled",
        "cancellation",
        "unsubscribe",
        "terminate",
    ],
    &["delete", "remove", "erase", "wipe"],
    &["password", "passcode", "passphrase", "credentials"],
    &["login", "logon", "signin"],
    &["signup", "register", "registration"],
    &["teammate", "colleague", "coworker", "member", "seat"],
    &["invite", "invitation"],
    &["email", "mail"],
    &["notification", "alert"],
    &["export", "download", "backup"],
    &["import", "upload"],
    &[
        "integration",
        "integrate",
        "connector",
        "plugin",
        "addon",
        "extension",
    ],
    &["price", "pricing", "cost"],
    &["plan", "subscription", "tier"],
    &["error", "bug", "problem", "failure", "broken", "issue"],
    &["slow", "performance", "lag", "latency", "sluggish"],
    &["2fa", "mfa", "twofactor", "authenticator", "otp"],
    &["sso", "saml"],
    &["token", "apikey", "key"],
    &["webhook", "callback"],
    &["language", "locale", "translation", "translate"],
    &["report", "analytics", "statistics", "stats", "metrics"],
    &["mobile", "phone", "smartphone", "ios", "android", "iphone"],
    &["change", "update", "modify", "edit"],
    &["find", "locate"],
    &["customer", "client"],
    &["company", "organization", "organisation", "workspace"],
    &["discount", "coupon", "promo", "voucher"],
    &["storage", "quota"],
    &["permission", "role", "access", "privilege"],
    &["admin", "administrator", "owner"],
    &["card", "visa", "mastercard", "amex"],
    &["privacy", "gdpr"],
    &[
        "hacked",
        "compromised",
        "breach",
        "unauthorized",
        "suspicious",
    ],
    &["locked", "lockout", "blocked"],
    &["forgot", "forgotten", "reset", "recover", "recovery"],
    &["renew", "renewal", "recurring", "autorenew"],
    &["spreadsheet", "csv", "excel", "xlsx"],
    &["calendar", "schedule", "scheduling"],
    &["tax", "vat", "gst"],
    &["currency", "dollars", "euros"],
    &["deactivate", "suspend", "disable"],
];

/// One word of the question and the words that may stand in for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TermGroup {
    /// The word as the visitor wrote it (lowercased).
    pub word: String,
    /// Its synonyms, without the word itself.
    pub synonyms: Vec<String>,
}

impl TermGroup {
    /// The word, then its synonyms.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.word.as_str()).chain(self.synonyms.iter().map(String::as_str))
    }
}

/// What one question searches for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Terms {
    pub groups: Vec<TermGroup>,
}

impl Terms {
    /// The searchable words of `question`, each with its synonyms.
    pub fn parse(question: &str) -> Self {
        let groups = words(question)
            .into_iter()
            .map(|word| {
                let synonyms = synonyms_of(&word);
                TermGroup { word, synonyms }
            })
            .collect();
        Self { groups }
    }

    /// Nothing left to search for (empty, or only stop words).
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The question's own words, without synonyms.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().map(|g| g.word.as_str())
    }

    /// Every word and synonym, each once.
    pub fn all(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for w in self.groups.iter().flat_map(TermGroup::all) {
            if !out.contains(&w) {
                out.push(w);
            }
        }
        out
    }
}

/// How the groups of one search are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// Any group (OR): the normal case.
    Any,
    /// Every group (AND): for questions made only of very common words.
    All,
}

/// An FTS5 `MATCH` expression: each group's words quoted and ORed, the
/// groups combined by `how` (`("invoices" OR "receipt") OR ("pdf")`). FTS5
/// runs each quoted string through the table's Porter tokenizer.
pub fn fts5_match<'a>(groups: impl IntoIterator<Item = &'a TermGroup>, how: Combine) -> String {
    let op = match how {
        Combine::Any => " OR ",
        Combine::All => " AND ",
    };
    groups
        .into_iter()
        .map(|g| {
            let words: Vec<String> = g.all().map(|w| format!("\"{w}\"")).collect();
            format!("({})", words.join(" OR "))
        })
        .collect::<Vec<_>>()
        .join(op)
}

/// A `to_tsquery('english', …)` expression: each group's words quoted and
/// ORed, the groups combined by `how` (`('invoices' | 'receipt') | ('pdf')`).
/// Quoting keeps each operand one lexeme source whatever its characters;
/// `to_tsquery` stems it, and drops it when it is a stop word.
pub fn tsquery<'a>(groups: impl IntoIterator<Item = &'a TermGroup>, how: Combine) -> String {
    let op = match how {
        Combine::Any => " | ",
        Combine::All => " & ",
    };
    groups
        .into_iter()
        .map(|g| {
            let words: Vec<String> = g.all().map(|w| format!("'{w}'")).collect();
            format!("({})", words.join(" | "))
        })
        .collect::<Vec<_>>()
        .join(op)
}

/// Whether `word` (lowercased) is on the stop list: left out of every index.
pub fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

/// The searchable words of `text`: lowercase alphanumeric runs, without stop
/// words, chat filler, one-letter words, overlong words or repeats.
pub fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for raw in text.split(|c: char| !c.is_alphanumeric()) {
        let len = raw.chars().count();
        if !(2..=MAX_WORD_CHARS).contains(&len) {
            continue;
        }
        let w = raw.to_lowercase();
        if STOP_WORDS.contains(&w.as_str()) || CHAT_FILLER.contains(&w.as_str()) {
            continue;
        }
        if !out.contains(&w) {
            out.push(w);
            if out.len() == MAX_WORDS {
                break;
            }
        }
    }
    out
}

/// A crude English stem, only to look words up in [`SYNONYMS`]
/// ("invoices", "invoicing", "invoiced" → "invoic"); the databases do the
/// real stemming.
fn crude_stem(w: &str) -> &str {
    for suffix in ["ing", "ed", "es", "s", "e"] {
        if let Some(stem) = w.strip_suffix(suffix)
            && stem.chars().count() >= 3
        {
            return stem;
        }
    }
    w
}

/// The other members of every synonym set `word` belongs to.
fn synonyms_of(word: &str) -> Vec<String> {
    let stem = crude_stem(word);
    let mut out: Vec<String> = Vec::new();
    for set in SYNONYMS {
        if set.iter().any(|m| *m == word || crude_stem(m) == stem) {
            for m in set.iter() {
                if crude_stem(m) != stem && !out.iter().any(|o| o == m) {
                    out.push((*m).to_string());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_stop_words_filler_and_syntax() {
        let t = Terms::parse(r#"Hi! How do I "export" my data* NEAR(x) to: CSV && || !!"#);
        let words: Vec<&str> = t.words().collect();
        assert_eq!(words, ["export", "data", "near", "csv"]);
        assert!(Terms::parse("how do I do it?").is_empty());
        assert!(Terms::parse("").is_empty());
    }

    #[test]
    fn word_forms_find_their_synonyms() {
        for form in ["invoices", "invoicing", "invoice", "invoiced"] {
            let t = Terms::parse(form);
            assert!(
                t.groups[0].synonyms.contains(&"receipt".to_string()),
                "{form}"
            );
            assert!(
                !t.groups[0].synonyms.contains(&"invoice".to_string()),
                "{form}"
            );
        }
        assert!(Terms::parse("billion").groups[0].synonyms.is_empty());
    }

    #[test]
    fn expressions_only_hold_quoted_alphanumerics() {
        let t = Terms::parse("reset pwd 'or' 1=1; DROP TABLE x -- café");
        let fts = fts5_match(&t.groups, Combine::Any);
        assert!(fts.starts_with(r#"("reset" OR "forgot" OR "#), "{fts}");
        assert!(
            fts.contains(r#") OR ("pwd") OR ("drop") OR ("table") OR ("café")"#),
            "{fts}"
        );
        let ts = tsquery(&t.groups[1..3], Combine::All);
        assert_eq!(ts, "('pwd') & ('drop')");
        for c in [';', '=', '-', '*', ':'] {
            assert!(!fts.contains(c) && !ts.contains(c), "{c}");
        }
    }

    #[test]
    fn questions_are_bounded() {
        let long = (0..500)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(Terms::parse(&long).groups.len(), MAX_WORDS);
        assert!(Terms::parse(&"x".repeat(100)).is_empty());
    }
}
