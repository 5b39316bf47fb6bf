//! robots.txt, as far as a polite crawler needs it: the group for our user
//! agent (`wayfinder`) or else `*`, its `Allow` and `Disallow` path
//! prefixes, the longest match deciding (RFC 9309); `*` and `$` in rules are
//! honoured. A missing or unreadable robots.txt allows everything.

/// The rules that apply to the crawler.
#[derive(Clone, Debug, Default)]
pub struct Robots {
    /// `(allow, pattern)` pairs.
    rules: Vec<(bool, String)>,
}

/// Most rules read from one robots.txt.
const MAX_RULES: usize = 500;

impl Robots {
    /// Parses `text` for `agent` (lower case).
    pub fn parse(text: &str, agent: &str) -> Self {
        let mut ours: Vec<(bool, String)> = vec![];
        let mut any: Vec<(bool, String)> = vec![];
        let mut agents: Vec<String> = vec![];
        let mut in_rules = false;
        for line in text.lines().take(10_000) {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            match key.as_str() {
                "user-agent" => {
                    if in_rules {
                        agents.clear();
                        in_rules = false;
                    }
                    agents.push(value.to_ascii_lowercase());
                }
                "allow" | "disallow" => {
                    in_rules = true;
                    if value.is_empty() {
                        continue;
                    }
                    let rule = (key == "allow", value.to_string());
                    if agents
                        .iter()
                        .any(|a| agent.contains(a.as_str()) && a != "*")
                    {
                        ours.push(rule.clone());
                    }
                    if agents.iter().any(|a| a == "*") {
                        any.push(rule);
                    }
                }
                _ => {}
            }
        }
        let mut rules = if ours.is_empty() { any } else { ours };
        rules.truncate(MAX_RULES);
        Self { rules }
    }

    /// Whether `path` (with its query) may be fetched.
    pub fn allows(&self, path: &str) -> bool {
        let mut best: Option<(usize, bool)> = None;
        for (allow, pattern) in &self.rules {
            if matches(pattern, path) {
                let len = pattern.len();
                if best.is_none_or(|(l, a)| len > l || (len == l && *allow && !a)) {
                    best = Some((len, *allow));
                }
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

/// A robots.txt pattern: a prefix, with `*` for any run and a final `$` for the end.
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = path.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if last && anchored {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    !anchored || rest.is_empty() || parts.last().is_some_and(|p| p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_rule_wins() {
        let r = Robots::parse(
            "User-agent: *\nDisallow: /admin\nAllow: /admin/help\nDisallow: /*.pdf$\n\nUser-agent: other\nDisallow: /",
            "wayfinder",
        );
        assert!(!r.allows("/admin/users"));
        assert!(r.allows("/admin/help/1"));
        assert!(r.allows("/settings"));
        assert!(!r.allows("/files/a.pdf"));
        assert!(r.allows("/files/a.pdf?x"));
        let ours = Robots::parse(
            "User-agent: *\nDisallow: /\nUser-agent: Wayfinder\nDisallow: /private",
            "wayfinder",
        );
        assert!(ours.allows("/settings"));
        assert!(!ours.allows("/private/x"));
    }
}
