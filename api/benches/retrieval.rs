//! Knowledge-base retrieval, measured: `cargo bench -p wayfinder-api --bench retrieval`.
//!
//! 1. **Latency.** Synthetic knowledge bases of 1k, 10k and 100k support
//!    articles (generated deterministically from a vocabulary of products,
//!    features, actions and error codes, so term frequencies look like a
//!    real help centre: a few words everywhere, a long tail of rare ones)
//!    are loaded into SQLite (a temp file) and PostgreSQL (a temp database,
//!    dropped afterwards), and a fixed set of questions is searched with the
//!    baseline (`keyword`) and the default (`fulltext`). Prints p50/p99.
//! 2. **Quality.** The hand-written help centre in `benches/data/faq.txt`
//!    (72 articles of a fictional SaaS) is searched with the labelled
//!    questions in `benches/data/questions.txt`; prints nDCG@10, recall@3,
//!    MRR and the share of questions with no relevant hit in the top 10.
//!
//! Tables, not assertions. Environment knobs: `RETRIEVAL_BENCH_SIZES`
//! (default `1000,10000,100000`), `RETRIEVAL_BENCH_POSTGRES` (the admin URL,
//! default `postgres://postgres@127.0.0.1:5432/postgres`; `off` skips
//! PostgreSQL), `RETRIEVAL_BENCH_VERBOSE=1` (list every missed question and
//! the latency of each question), `RETRIEVAL_BENCH_KEEP=1` (keep the
//! databases, to study query plans).

use std::{
    collections::HashMap,
    error::Error,
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, Value};
use uuid::Uuid;
use wayfinder::{
    db,
    domain::Plan,
    service,
    turn::retrieval::{self, RetrievalMode},
};

type BenchResult<T> = Result<T, Box<dyn Error>>;

const FAQ: &str = include_str!("data/faq.txt");
const QUESTIONS: &str = include_str!("data/questions.txt");

/// Hits asked for in the latency runs: what the chat turn asks for.
const TURN_LIMIT: usize = 5;
/// Hits asked for in the quality runs (nDCG@10).
const EVAL_LIMIT: usize = 10;
/// Rows per INSERT statement when loading.
const BATCH: usize = 500;
/// Most timed searches per (database, size, method), and the time budget for them.
const MAX_SAMPLES: usize = 600;
const TIME_BUDGET: Duration = Duration::from_secs(8);

/// The latency questions: realistic, some specific, some vague, one long.
const LATENCY_QUERIES: &[&str] = &[
    "how do I reset my password in the mobile app",
    "webhook is not firing after I changed the endpoint",
    "export invoices to csv",
    "lost my phone and can't do two-factor authentication",
    "why does my payment keep failing",
    "set up single sign-on with okta",
    "api rate limit exceeded error",
    "change the time zone for reminders",
    "storage quota is full what can I delete",
    "restore an archived project",
    "it doesn't work",
    "I need help with my account settings please",
    "error ERR-4821 when syncing the calendar",
    "how can I give a guest read only access to one dashboard",
    "notifications stopped arriving on android",
    "import users from a spreadsheet",
    "refund for the annual subscription",
    "slow reports",
    "Hi, we are a team of 40 people and since yesterday nobody can log in to the \
     admin console through our SAML identity provider, it shows an invalid certificate \
     message and then redirects back to the login page. What should we check?",
    "what is zentri",
];

fn main() -> BenchResult<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> BenchResult<()> {
    let sizes: Vec<usize> = std::env::var("RETRIEVAL_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let pg_admin = std::env::var("RETRIEVAL_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let pg_admin = (pg_admin != "off").then_some(pg_admin);

    let mut latency = Vec::new();
    let mut quality = Vec::new();
    for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
        if backend == DbBackend::Postgres && pg_admin.is_none() {
            continue;
        }
        let tmp = TempDatabase::create(backend, pg_admin.as_deref()).await?;
        let outcome = bench_backend(&tmp, backend, &sizes, &mut latency, &mut quality).await;
        if std::env::var("RETRIEVAL_BENCH_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("kept {}", tmp.url);
        } else {
            tmp.drop_database().await;
        }
        outcome?;
    }

    println!(
        "\n## Latency (limit {TURN_LIMIT}, {} questions)\n",
        LATENCY_QUERIES.len()
    );
    println!("| database | articles | method | p50 ms | p99 ms | max ms | samples |");
    println!("|---|---:|---|---:|---:|---:|---:|");
    for l in &latency {
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {} |",
            l.backend, l.size, l.method, l.p50, l.p99, l.max, l.samples
        );
    }
    let questions = parse_questions(QUESTIONS);
    println!(
        "\n## Quality ({} articles, {} labelled questions, top {EVAL_LIMIT})\n",
        parse_faq(FAQ).len(),
        questions.len()
    );
    println!("| database | method | nDCG@10 | recall@3 | MRR@10 | none in top 10 |");
    println!("|---|---|---:|---:|---:|---:|");
    for q in &quality {
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {} / {} |",
            q.backend, q.method, q.ndcg10, q.recall3, q.mrr, q.misses, q.questions
        );
    }
    Ok(())
}

struct Latency {
    backend: &'static str,
    size: usize,
    method: &'static str,
    p50: f64,
    p99: f64,
    max: f64,
    samples: usize,
}

struct Quality {
    backend: &'static str,
    method: &'static str,
    ndcg10: f64,
    recall3: f64,
    mrr: f64,
    misses: usize,
    questions: usize,
}

fn backend_name(b: DbBackend) -> &'static str {
    if b == DbBackend::Postgres {
        "PostgreSQL"
    } else {
        "SQLite"
    }
}

fn method_name(m: RetrievalMode) -> &'static str {
    match m {
        RetrievalMode::FullText => "fulltext (default)",
        RetrievalMode::Keyword => "keyword (baseline)",
    }
}

async fn bench_backend(
    tmp: &TempDatabase,
    backend: DbBackend,
    sizes: &[usize],
    latency: &mut Vec<Latency>,
    quality: &mut Vec<Quality>,
) -> BenchResult<()> {
    let conn = db::connect(&tmp.url).await?;
    db::migrate(&conn).await?;
    let name = backend_name(backend);

    // Quality first, on a knowledge base of its own in an org of its own.
    let (faq_org, _, _) =
        service::org::create(&conn, "FAQ org", Plan::Pro, "faq@example.com").await?;
    let faq_kb = insert_knowledge_base(&conn, faq_org.id, "Help centre").await?;
    let articles = parse_faq(FAQ);
    let mut ids = HashMap::new();
    let rows: Vec<Article> = articles
        .iter()
        .map(|(slug, title, body)| {
            let id = Uuid::now_v7();
            ids.insert(id, slug.clone());
            Article {
                id,
                title: title.clone(),
                body: body.clone(),
            }
        })
        .collect();
    insert_articles(&conn, faq_org.id, faq_kb, &rows).await?;
    let questions = parse_questions(QUESTIONS);
    for mode in [RetrievalMode::Keyword, RetrievalMode::FullText] {
        let q = evaluate(&conn, faq_org.id, faq_kb, &questions, &ids, mode).await?;
        quality.push(Quality {
            backend: name,
            method: method_name(mode),
            ..q
        });
    }

    // Latency: grow one knowledge base through the sizes.
    let (org, _, _) =
        service::org::create(&conn, "Bench org", Plan::Pro, "bench@example.com").await?;
    let kb = insert_knowledge_base(&conn, org.id, "Synthetic").await?;
    let mut generator = Generator::new(0x5eed);
    let mut loaded = 0;
    for &size in sizes {
        let started = Instant::now();
        while loaded < size {
            let n = BATCH.min(size - loaded);
            let batch: Vec<Article> = (0..n).map(|_| generator.article()).collect();
            insert_articles(&conn, org.id, kb, &batch).await?;
            loaded += n;
        }
        if backend == DbBackend::Postgres {
            conn.execute_unprepared("ANALYZE kb_articles").await?;
        }
        eprintln!(
            "{name}: {size} articles loaded in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for mode in [RetrievalMode::Keyword, RetrievalMode::FullText] {
            let mut samples = time_queries(&conn, org.id, kb, mode).await?;
            samples.sort_by(f64::total_cmp);
            latency.push(Latency {
                backend: name,
                size,
                method: method_name(mode),
                p50: percentile(&samples, 0.50),
                p99: percentile(&samples, 0.99),
                max: samples.last().copied().unwrap_or_default(),
                samples: samples.len(),
            });
        }
    }
    conn.close().await?;
    Ok(())
}

/// Milliseconds per search, the latency questions round-robin, after one warm-up pass.
async fn time_queries(
    conn: &DatabaseConnection,
    org: Uuid,
    kb: Uuid,
    mode: RetrievalMode,
) -> BenchResult<Vec<f64>> {
    for q in LATENCY_QUERIES {
        retrieval::search(conn, org, &[kb], q, TURN_LIMIT, mode).await?;
    }
    let verbose = std::env::var("RETRIEVAL_BENCH_VERBOSE").is_ok_and(|v| v == "1");
    let started = Instant::now();
    let mut samples = Vec::new();
    'outer: loop {
        for q in LATENCY_QUERIES {
            let t = Instant::now();
            let hits = retrieval::search(conn, org, &[kb], q, TURN_LIMIT, mode).await?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if verbose && samples.len() < LATENCY_QUERIES.len() {
                eprintln!(
                    "  [{}] {ms:7.2} ms {} hits  {q:.60}",
                    method_name(mode),
                    hits.len()
                );
            }
            samples.push(ms);
            if samples.len() >= MAX_SAMPLES {
                break 'outer;
            }
        }
        if started.elapsed() > TIME_BUDGET {
            break;
        }
    }
    Ok(samples)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// nDCG@10 (binary relevance), recall@3 and MRR@10 over the labelled questions.
async fn evaluate(
    conn: &DatabaseConnection,
    org: Uuid,
    kb: Uuid,
    questions: &[(Vec<String>, String)],
    slugs: &HashMap<Uuid, String>,
    mode: RetrievalMode,
) -> BenchResult<Quality> {
    let verbose = std::env::var("RETRIEVAL_BENCH_VERBOSE").is_ok_and(|v| v == "1");
    let (mut ndcg, mut recall, mut mrr, mut misses) = (0.0, 0.0, 0.0, 0);
    for (relevant, question) in questions {
        let hits = retrieval::search(conn, org, &[kb], question, EVAL_LIMIT, mode).await?;
        let ranked: Vec<&str> = hits
            .iter()
            .filter_map(|h| slugs.get(&h.article_id).map(String::as_str))
            .collect();
        let is_relevant = |s: &str| relevant.iter().any(|r| r == s);
        let dcg: f64 = ranked
            .iter()
            .enumerate()
            .filter(|(_, s)| is_relevant(s))
            .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        let ideal: f64 = (0..relevant.len().min(EVAL_LIMIT))
            .map(|i| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        ndcg += dcg / ideal;
        let in_top3 = ranked.iter().take(3).filter(|s| is_relevant(s)).count();
        recall += in_top3 as f64 / relevant.len() as f64;
        match ranked.iter().position(|s| is_relevant(s)) {
            Some(i) => mrr += 1.0 / (i as f64 + 1.0),
            None => misses += 1,
        }
        if verbose && in_top3 == 0 {
            eprintln!(
                "[{}] miss: {question:?} wants {relevant:?}, got {:?}",
                method_name(mode),
                ranked.iter().take(3).collect::<Vec<_>>()
            );
        }
    }
    let n = questions.len() as f64;
    Ok(Quality {
        backend: "",
        method: "",
        ndcg10: ndcg / n,
        recall3: recall / n,
        mrr: mrr / n,
        misses,
        questions: questions.len(),
    })
}

/// (slug, title, body) of every article in `faq.txt`.
fn parse_faq(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for chunk in text.split("\n=== ").skip(1) {
        let mut lines = chunk.lines();
        let slug = lines.next().unwrap_or_default().trim().to_string();
        let title = lines
            .next()
            .and_then(|l| l.strip_prefix("title:"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let body = lines.collect::<Vec<_>>().join("\n").trim().to_string();
        out.push((slug, title, body));
    }
    out
}

/// (relevant slugs, question) of every line of `questions.txt`.
fn parse_questions(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('|'))
        .map(|(slugs, q)| {
            let slugs = slugs.split(',').map(|s| s.trim().to_string()).collect();
            (slugs, q.trim().to_string())
        })
        .collect()
}

struct Article {
    id: Uuid,
    title: String,
    body: String,
}

fn placeholder(backend: DbBackend, n: usize) -> String {
    if backend == DbBackend::Postgres {
        format!("${n}")
    } else {
        "?".into()
    }
}

async fn insert_knowledge_base(
    conn: &DatabaseConnection,
    org: Uuid,
    name: &str,
) -> BenchResult<Uuid> {
    let backend = conn.get_database_backend();
    let id = Uuid::now_v7();
    let now = chrono::Utc::now();
    let p: Vec<String> = (1..=6).map(|i| placeholder(backend, i)).collect();
    let sql = format!(
        "INSERT INTO knowledge_bases (id, org_id, name, description, created_at, updated_at) \
         VALUES ({})",
        p.join(", ")
    );
    let values: Vec<Value> = vec![
        id.into(),
        org.into(),
        name.into(),
        "".into(),
        now.into(),
        now.into(),
    ];
    conn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(id)
}

/// Inserts `articles` (published) in one transaction, [`BATCH`] rows per statement.
async fn insert_articles(
    conn: &DatabaseConnection,
    org: Uuid,
    kb: Uuid,
    articles: &[Article],
) -> BenchResult<()> {
    use sea_orm::TransactionTrait;
    let backend = conn.get_database_backend();
    let txn = conn.begin().await?;
    let now = chrono::Utc::now();
    for chunk in articles.chunks(BATCH) {
        let mut rows = Vec::with_capacity(chunk.len());
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 8);
        for a in chunk {
            let mut p = Vec::with_capacity(8);
            for v in [
                Value::from(a.id),
                org.into(),
                kb.into(),
                a.title.clone().into(),
                a.body.clone().into(),
                true.into(),
                now.into(),
                now.into(),
            ] {
                values.push(v);
                p.push(placeholder(backend, values.len()));
            }
            rows.push(format!("({})", p.join(", ")));
        }
        let sql = format!(
            "INSERT INTO kb_articles (id, org_id, knowledge_base_id, title, body, published, \
             created_at, updated_at) VALUES {}",
            rows.join(", ")
        );
        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// A database of the benchmark's own: a temp SQLite file or a PostgreSQL
/// database created on the admin URL's server.
struct TempDatabase {
    url: String,
    dir: std::path::PathBuf,
    pg: Option<(String, String)>,
}

impl TempDatabase {
    async fn create(backend: DbBackend, pg_admin: Option<&str>) -> BenchResult<Self> {
        let tag = Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("wayfinder-bench-{tag}"));
        std::fs::create_dir_all(&dir)?;
        if backend == DbBackend::Sqlite {
            return Ok(Self {
                url: format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()),
                dir,
                pg: None,
            });
        }
        let admin_url = pg_admin.ok_or("no PostgreSQL admin URL")?;
        let name = format!("wf_bench_{tag}");
        let admin = Database::connect(admin_url).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        admin.close().await?;
        let (server, _) = admin_url
            .rsplit_once('/')
            .ok_or("the PostgreSQL URL needs a database path")?;
        Ok(Self {
            url: format!("{server}/{name}"),
            dir,
            pg: Some((admin_url.to_string(), name)),
        })
    }

    async fn drop_database(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((admin_url, name)) = &self.pg
            && let Ok(admin) = Database::connect(admin_url.as_str()).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
            let _ = admin.close().await;
        }
    }
}

/// Deterministic synthetic help-centre articles.
struct Generator {
    state: u64,
    serial: u64,
}

const PRODUCTS: &[&str] = &[
    "web app",
    "mobile app",
    "desktop app",
    "API",
    "admin console",
    "billing portal",
    "reporting module",
    "calendar",
    "shared inbox",
    "task board",
    "timesheet",
    "client portal",
    "analytics dashboard",
    "chat widget",
    "form builder",
    "file manager",
    "scheduler",
    "workflow engine",
    "SSO gateway",
    "data warehouse connector",
    "browser extension",
    "Android app",
    "iOS app",
    "email plugin",
];

const FEATURES: &[&str] = &[
    "invoice",
    "password",
    "two-factor authentication",
    "single sign-on",
    "webhook",
    "CSV export",
    "user role",
    "permission",
    "notification",
    "subscription",
    "refund",
    "payment method",
    "API key",
    "rate limit",
    "data import",
    "backup",
    "time zone",
    "language setting",
    "custom field",
    "integration",
    "audit log",
    "team member",
    "guest access",
    "storage quota",
    "attachment",
    "template",
    "dashboard",
    "report",
    "reminder",
    "recurring task",
    "email delivery",
    "domain verification",
    "SAML certificate",
    "push notification",
    "offline mode",
    "search index",
    "workspace",
    "project archive",
    "calendar sync",
    "tax ID",
    "billing address",
    "seat count",
    "approval workflow",
    "retention policy",
    "label",
    "tag",
    "comment",
    "mention",
    "checklist",
    "priority",
    "due date",
    "milestone",
    "budget",
    "expense",
    "receipt scan",
    "signature",
    "QR code",
    "barcode",
    "holiday calendar",
    "overtime rule",
];

const ACTIONS: &[&str] = &[
    "set up",
    "configure",
    "reset",
    "troubleshoot",
    "enable",
    "disable",
    "update",
    "remove",
    "export",
    "import",
    "share",
    "migrate",
    "verify",
    "schedule",
    "customize",
    "connect",
    "restore",
    "rename",
    "limit",
    "audit",
    "duplicate",
    "merge",
    "archive",
    "approve",
];

const AUDIENCES: &[&str] = &[
    "admins",
    "owners",
    "members",
    "guests",
    "new users",
    "accountants",
    "managers",
    "developers",
    "IT teams",
    "freelancers",
];

const MENUS: &[&str] = &[
    "Settings",
    "Preferences",
    "the Admin area",
    "your Profile",
    "the sidebar",
    "the Developers page",
    "the Billing page",
    "the Integrations tab",
    "the Security tab",
];

const STATES: &[&str] = &[
    "enabled",
    "verified",
    "up to date",
    "saved",
    "active",
    "connected",
    "published",
    "approved",
    "synced",
];

const PLANS: &[&str] = &["Starter", "Team", "Business", "Enterprise"];

const FILLER: &[&str] = &[
    "Changes are saved automatically and apply to everyone in the workspace.",
    "If you do not see the option, ask an admin to check your role.",
    "This can take a few minutes to show up for other people.",
    "You can undo the change from the activity history.",
    "We send an email to confirm the change.",
    "Reload the page if the new value does not appear right away.",
    "The same steps work in the browser and in the apps.",
    "Contact support if the problem persists after these steps.",
    "Older versions of the app may show a slightly different screen.",
    "Keyboard shortcuts are listed under the question mark menu.",
    "Screenshots in this article were taken on a laptop.",
    "Everything in this article also applies to trial workspaces.",
    "Large workspaces may need a little longer to process the request.",
    "For security reasons the link expires after one hour.",
    "Your data is never shared with third parties without your consent.",
];

const SYLLABLES: &[&str] = &[
    "zen", "tri", "xo", "lum", "kar", "vex", "dor", "qua", "pli", "mo", "ras", "tek", "nu", "fi",
    "gal", "bro", "sy", "wex",
];

impl Generator {
    fn new(seed: u64) -> Self {
        Self {
            state: seed,
            serial: 0,
        }
    }

    /// SplitMix64.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A skewed pick: low indexes far more often, like word frequencies.
    fn zipf<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let u = (self.next() % 10_000) as f64 / 10_000.0;
        let i = ((items.len() as f64).powf(u) - 1.0) as usize;
        items[i.min(items.len() - 1)]
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    /// A made-up feature name ("Zentrix"): the long tail of rare words.
    fn codename(&mut self) -> String {
        let n = 2 + (self.next() % 2) as usize;
        let mut s: String = (0..n).map(|_| self.pick(SYLLABLES)).collect();
        if let Some(first) = s.get(0..1) {
            s = first.to_uppercase() + &s[1..];
        }
        s
    }

    fn article(&mut self) -> Article {
        self.serial += 1;
        let product = self.zipf(PRODUCTS);
        let feature = self.zipf(FEATURES);
        let other = self.zipf(FEATURES);
        let action = self.pick(ACTIONS);
        let audience = self.pick(AUDIENCES);
        let codename = self.codename();
        let code = format!("ERR-{}", 1000 + self.next() % 9000);
        let title = match self.next() % 5 {
            0 => format!("How to {action} the {feature} in the {product}"),
            1 => format!("{} not working in the {product}", capitalise(feature)),
            2 => format!("Troubleshooting {feature} errors ({code})"),
            3 => format!(
                "{} for {audience}: {action} the {feature}",
                capitalise(feature)
            ),
            _ => format!("{} your {feature} with {codename}", capitalise(action)),
        };
        let menu = self.pick(MENUS);
        let state = self.pick(STATES);
        let state2 = self.pick(STATES);
        let plan = self.pick(PLANS);
        let n = 2 + self.next() % 28;
        let templates = [
            format!(
                "Open {menu}, choose {}, then select {}.",
                capitalise(feature),
                capitalise(action)
            ),
            format!("If the {feature} is not {state}, check that the {other} is {state2} as well."),
            format!("The {feature} is available on the {plan} plan and above."),
            format!(
                "When something goes wrong the {product} shows error {code}; note it down before contacting support."
            ),
            format!("{codename} keeps the {feature} and the {other} in sync across devices."),
            format!("Only {audience} can {action} the {feature}; everyone else sees it read-only."),
            format!("It can take up to {n} minutes before the {feature} is {state} everywhere."),
            format!("To {action} several at once, select them in the list and use the bulk menu."),
            format!("The {product} remembers your last choice, so you only do this once."),
            format!("You can also {action} the {feature} through the public API."),
            format!("A history of every change to the {feature} is kept for {n} days."),
            format!("On the {plan} plan the {feature} is limited to {n} items per workspace."),
            format!("Turning off the {other} does not affect the {feature}."),
            format!("Ask your administrator if the {action} button is greyed out."),
            format!("We email {audience} whenever the {feature} changes."),
            format!("The {feature} follows the time zone and language of your profile."),
        ];
        let mut sentences = vec![format!(
            "This article explains how {audience} can {action} the {feature} in the {product}."
        )];
        let picks = 3 + (self.next() % 4) as usize;
        let mut used = Vec::new();
        while used.len() < picks {
            let i = (self.next() % templates.len() as u64) as usize;
            if !used.contains(&i) {
                used.push(i);
                sentences.push(templates[i].clone());
            }
        }
        let fillers = 1 + (self.next() % 3) as usize;
        let mut used = Vec::new();
        while used.len() < fillers {
            let f = self.pick(FILLER);
            if !used.contains(&f) {
                used.push(f);
                sentences.push(f.to_string());
            }
        }
        // Shuffle all but the opening sentence.
        for i in (2..sentences.len()).rev() {
            let j = 1 + (self.next() % i as u64) as usize;
            sentences.swap(i, j);
        }
        Article {
            id: Uuid::now_v7(),
            title,
            body: sentences.join(" "),
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
