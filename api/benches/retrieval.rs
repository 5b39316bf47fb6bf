//! Knowledge-base retrieval, measured: `cargo bench -p wayfinder-api --bench retrieval`.
//!
//! With `EMBEDDING_MODEL_DIR` set (see the README) every section covers the
//! semantic and hybrid modes too; without it, keyword and the baseline only.
//!
//! 1. **Embedding.** Query embedding time (20-word questions), and indexing
//!    throughput (passages per second through the background job's path).
//! 2. **Quality.** The hand-written help centre in `benches/data/faq.txt`
//!    (72 articles) and its labelled questions (`questions.txt`), split in
//!    two: questions whose line number is a multiple of three are the
//!    **report** split, never looked at while tuning; the rest are the
//!    **tune** split that every constant of the ranking was chosen on. Each
//!    mode is scored on both, beside a reference: a plain stemmed BM25F with a
//!    title boost, written here independently of the server's code. Then the
//!    same questions are asked with the 72 articles hidden among 10k and
//!    100k synthetic distractors, which is what large knowledge bases go
//!    through.
//! 3. **Latency.** Synthetic knowledge bases of 1k, 10k and 100k passages
//!    (articles generated from a vocabulary of products, features, actions
//!    and error codes, one passage each, the 72 labelled articles among
//!    them), searched through `retrieval::search` in each mode: p50/p99,
//!    hybrid including the query's embedding. The timed searches are the
//!    labelled questions, and the run prints their recall@3, so a fast
//!    wrong answer shows. Distractor vectors: 512 synthetic articles are
//!    embedded for real, the others get one of those vectors with a small
//!    random perturbation (embedding 100k articles would take a quarter of
//!    an hour and measures nothing more).
//!
//! Tables, not assertions. Knobs: `RETRIEVAL_BENCH_SIZES` (default
//! `1000,10000,100000`), `RETRIEVAL_BENCH_POSTGRES` (admin URL, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; `off` skips PostgreSQL),
//! `RETRIEVAL_BENCH_VERBOSE=1` (list missed questions).

use std::{
    collections::HashMap,
    error::Error,
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, Value};
use uuid::Uuid;
use wayfinder::{
    config::Config,
    domain::Plan,
    embeddings::{indexer, passages},
    service,
    state::AppState,
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
/// Most timed searches per (database, size, mode), and the time budget for them.
const MAX_SAMPLES: usize = 600;
const TIME_BUDGET: Duration = Duration::from_secs(8);
/// Synthetic articles embedded for real; the rest reuse their vectors, perturbed.
const REAL_POOL: usize = 512;

/// Twenty-word questions for the query-embedding timing.
const TWENTY_WORDS: &[&str] = &[
    "hello there, since this morning my colleagues cannot log in to the admin console with our company single sign-on",
    "we were charged twice for the annual plan this month and I would like to know how to get a refund",
    "how can I export all of the invoices of the last year as one spreadsheet for our accountant please",
];

fn main() -> BenchResult<()> {
    if std::env::var_os("EMBEDDING_MODEL_DIR").is_some() {
        // As the server does: candle's thread count fixed before any thread starts.
        wayfinder::embeddings::local::set_thread_count_env();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}

fn modes(semantic: bool) -> Vec<RetrievalMode> {
    let mut m = vec![RetrievalMode::Substring, RetrievalMode::Keyword];
    if semantic {
        m.extend([RetrievalMode::Semantic, RetrievalMode::Hybrid]);
    }
    m
}

fn mode_name(m: RetrievalMode) -> &'static str {
    match m {
        RetrievalMode::Substring => "substring (baseline)",
        RetrievalMode::Keyword => "keyword (BM25F)",
        RetrievalMode::Semantic => "semantic",
        RetrievalMode::Hybrid => "hybrid",
    }
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
    let mut report = Report::default();
    for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
        if backend == DbBackend::Postgres && pg_admin.is_none() {
            continue;
        }
        let tmp = TempDatabase::create(backend, pg_admin.as_deref()).await?;
        let outcome = bench_backend(&tmp, backend, &sizes, &mut report).await;
        tmp.drop_database().await;
        outcome?;
    }
    report.print();
    Ok(())
}

#[derive(Default)]
struct Report {
    embedding: Vec<String>,
    quality: Vec<String>,
    latency: Vec<String>,
    memory: Vec<String>,
}

impl Report {
    fn print(&self) {
        println!("\n## Embedding\n");
        for l in &self.embedding {
            println!("{l}");
        }
        let q = parse_questions(QUESTIONS);
        let report = q.iter().filter(|q| q.2).count();
        println!(
            "\n## Quality ({} labelled questions: {} tune, {} report; top {EVAL_LIMIT})\n",
            q.len(),
            q.len() - report,
            report
        );
        println!(
            "| database | articles | mode | split | nDCG@10 | recall@3 | MRR@10 | none in top 10 |"
        );
        println!("|---|---:|---|---|---:|---:|---:|---:|");
        for l in &self.quality {
            println!("{l}");
        }
        println!("\n## Latency (labelled questions, limit {TURN_LIMIT})\n");
        println!("| database | passages | mode | p50 ms | p99 ms | max ms | samples | recall@3 |");
        println!("|---|---:|---|---:|---:|---:|---:|---:|");
        for l in &self.latency {
            println!("{l}");
        }
        println!("\n## Memory\n");
        for l in &self.memory {
            println!("{l}");
        }
    }
}

fn backend_name(b: DbBackend) -> &'static str {
    if b == DbBackend::Postgres {
        "PostgreSQL"
    } else {
        "SQLite"
    }
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn state_for(url: &str) -> BenchResult<AppState> {
    let mut config = Config::defaults();
    config.database_url = Some(url.to_string());
    config.data_dir = std::env::temp_dir().join("wayfinder-bench-data");
    config.secret = Some("bench-secret-bench-secret-bench-secret-01".into());
    config.demo = false;
    config.embedding_model_dir = std::env::var_os("EMBEDDING_MODEL_DIR").map(Into::into);
    Ok(wayfinder::startup::build_state(config).await?)
}

async fn bench_backend(
    tmp: &TempDatabase,
    backend: DbBackend,
    sizes: &[usize],
    report: &mut Report,
) -> BenchResult<()> {
    let st = state_for(&tmp.url).await?;
    let conn = &st.db;
    let name = backend_name(backend);
    let embedder = st.retriever.embedder.clone();
    let semantic = embedder.is_some();
    if !semantic {
        eprintln!("EMBEDDING_MODEL_DIR not set: keyword modes only");
    }

    // Query embedding time.
    if let (Some(e), DbBackend::Sqlite) = (&embedder, backend) {
        let mut samples = Vec::new();
        for i in 0..200 {
            let q = vec![TWENTY_WORDS[i % TWENTY_WORDS.len()].to_string()];
            let t = Instant::now();
            let v = e.embed(&q).await?;
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(v[0].len(), e.dimension(), "an embedding of the right size");
        }
        samples.sort_by(f64::total_cmp);
        report.embedding.push(format!(
            "- query embedding (20 words, {}): p50 {:.2} ms, p99 {:.2} ms",
            e.model(),
            percentile(&samples, 0.5),
            percentile(&samples, 0.99)
        ));
    }

    // The labelled help centre, in an org of its own.
    let (faq_org, _, _) =
        service::org::create(conn, "FAQ org", Plan::Pro, "faq@example.com").await?;
    let faq_kb = insert_knowledge_base(conn, faq_org.id, "Help centre").await?;
    let (rows, slugs) = faq_rows();
    insert_articles(conn, faq_org.id, faq_kb, &rows, None).await?;
    if let (Some(e), DbBackend::Sqlite) = (&embedder, backend) {
        let passages: usize = rows.iter().map(|a| passages::split(&a.body).len()).sum();
        let t = Instant::now();
        indexer::embed_all(&st, e.as_ref(), |_, _| {}).await?;
        let secs = t.elapsed().as_secs_f64();
        report.embedding.push(format!(
            "- indexing: {passages} passages of {} articles in {secs:.2} s = {:.0} passages/s",
            rows.len(),
            passages as f64 / secs
        ));
    } else if let Some(e) = &embedder {
        indexer::embed_all(&st, e.as_ref(), |_, _| {}).await?;
    }
    let questions = parse_questions(QUESTIONS);
    for mode in modes(semantic) {
        for (split, report_split) in [("tune", false), ("report", true)] {
            let qs: Vec<_> = questions.iter().filter(|q| q.2 == report_split).collect();
            let q = evaluate(&st, faq_org.id, faq_kb, &qs, &slugs, mode).await?;
            report
                .quality
                .push(q.row(name, rows.len(), mode_name(mode), split));
        }
    }
    for (split, report_split) in [("tune", false), ("report", true)] {
        let qs: Vec<_> = questions.iter().filter(|q| q.2 == report_split).collect();
        let q = reference_bm25f(&rows, &slugs, &qs);
        report.quality.push(q.row(
            name,
            rows.len(),
            "reference: plain BM25F, title boost",
            split,
        ));
    }

    // Scale: one knowledge base growing through the sizes, the labelled articles among the distractors.
    let (org, _, _) =
        service::org::create(conn, "Bench org", Plan::Pro, "bench@example.com").await?;
    let kb = insert_knowledge_base(conn, org.id, "Synthetic").await?;
    let (labelled, labelled_slugs) = faq_rows();
    insert_articles(conn, org.id, kb, &labelled, None).await?;
    let mut pool: Vec<Vec<f32>> = Vec::new();
    let mut generator = Generator::new(0x5eed);
    if let Some(e) = &embedder {
        let real: Vec<Article> = (0..REAL_POOL).map(|_| generator.article()).collect();
        insert_articles(conn, org.id, kb, &real, None).await?;
        let passages: usize = labelled
            .iter()
            .chain(&real)
            .map(|a| passages::split(&a.body).len())
            .sum();
        let t = Instant::now();
        indexer::embed_all(&st, e.as_ref(), |_, _| {}).await?;
        let secs = t.elapsed().as_secs_f64();
        if backend == DbBackend::Sqlite {
            report.embedding.push(format!(
                "- indexing, larger sample: {passages} passages of {} articles (the labelled and {REAL_POOL} synthetic) in {secs:.2} s = {:.0} passages/s",
                labelled.len() + real.len(),
                passages as f64 / secs
            ));
        }
        for a in &real {
            let input = passages::embedding_input(&a.title, &passages::split(&a.body)[0].text);
            pool.push(e.embed(&[input]).await?.remove(0));
        }
    }
    let mut loaded = labelled.len() + pool.len();
    for &size in sizes {
        let started = Instant::now();
        while loaded < size {
            let n = BATCH.min(size - loaded);
            let batch: Vec<Article> = (0..n).map(|_| generator.article()).collect();
            let vectors = embedder.as_ref().map(|e| {
                (
                    e.model().to_string(),
                    batch
                        .iter()
                        .map(|_| perturbed(&pool, &mut generator))
                        .collect::<Vec<_>>(),
                )
            });
            insert_articles(conn, org.id, kb, &batch, vectors.as_ref()).await?;
            loaded += n;
        }
        service::kb::bump_revision(conn, kb).await?;
        let t = Instant::now();
        let held =
            retrieval::search(&st, org.id, &[kb], "warm up", 1, RetrievalMode::Keyword).await?;
        drop(held);
        eprintln!(
            "{name}: {size} passages loaded in {:.1} s, indexed in memory in {:.1} s",
            started.elapsed().as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        let all: Vec<_> = questions.iter().collect();
        for mode in modes(semantic) {
            if size >= 10_000 {
                let q = evaluate(&st, org.id, kb, &all, &labelled_slugs, mode).await?;
                report
                    .quality
                    .push(q.row(name, size, mode_name(mode), "all"));
            }
            if mode == RetrievalMode::Substring && size > 10_000 {
                continue; // a full scan per question: minutes at 100k, and known to be slow
            }
            let (mut samples, recall) =
                time_queries(&st, org.id, kb, &all, &labelled_slugs, mode).await?;
            samples.sort_by(f64::total_cmp);
            report.latency.push(format!(
                "| {name} | {size} | {} | {:.2} | {:.2} | {:.2} | {} | {recall:.3} |",
                mode_name(mode),
                percentile(&samples, 0.50),
                percentile(&samples, 0.99),
                samples.last().copied().unwrap_or_default(),
                samples.len()
            ));
        }
        report.memory.push(format!(
            "- {name}, {size} passages: index {:.1} MiB (estimate), process RSS {:.0} MiB",
            st.retriever.index.bytes() as f64 / 1048576.0,
            rss_mib()
        ));
    }
    Ok(())
}

/// A vector of `pool`, perturbed and normalised.
fn perturbed(pool: &[Vec<f32>], g: &mut Generator) -> Vec<f32> {
    let base = &pool[(g.next() % pool.len() as u64) as usize];
    let mut v: Vec<f32> = base
        .iter()
        .map(|x| x + ((g.next() % 2001) as f32 / 1000.0 - 1.0) * 0.03)
        .collect();
    wayfinder::embeddings::normalize(&mut v);
    v
}

/// The labelled articles, and their slugs by id.
fn faq_rows() -> (Vec<Article>, HashMap<Uuid, String>) {
    let mut slugs = HashMap::new();
    let rows = parse_faq(FAQ)
        .into_iter()
        .map(|(slug, title, body)| {
            let id = Uuid::now_v7();
            slugs.insert(id, slug);
            Article { id, title, body }
        })
        .collect();
    (rows, slugs)
}

/// Milliseconds per search over the labelled questions (after one warm-up
/// pass), and the recall@3 of those searches.
async fn time_queries(
    st: &AppState,
    org: Uuid,
    kb: Uuid,
    questions: &[&Question],
    slugs: &HashMap<Uuid, String>,
    mode: RetrievalMode,
) -> BenchResult<(Vec<f64>, f64)> {
    for q in questions.iter().take(20) {
        retrieval::search(st, org, &[kb], &q.1, TURN_LIMIT, mode).await?;
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    let (mut recall, mut asked) = (0.0, 0);
    'outer: loop {
        for q in questions {
            let t = Instant::now();
            let hits = retrieval::search(st, org, &[kb], &q.1, TURN_LIMIT, mode).await?;
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
            let found = hits
                .iter()
                .take(3)
                .filter(|h| slugs.get(&h.article_id).is_some_and(|s| q.0.contains(s)))
                .count();
            recall += found as f64 / q.0.len() as f64;
            asked += 1;
            if samples.len() >= MAX_SAMPLES {
                break 'outer;
            }
        }
        if started.elapsed() > TIME_BUDGET {
            break;
        }
    }
    Ok((samples, recall / asked.max(1) as f64))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Quality {
    ndcg10: f64,
    recall3: f64,
    mrr: f64,
    misses: usize,
    questions: usize,
}

impl Quality {
    fn row(&self, db: &str, articles: usize, mode: &str, split: &str) -> String {
        format!(
            "| {db} | {articles} | {mode} | {split} | {:.3} | {:.3} | {:.3} | {} / {} |",
            self.ndcg10, self.recall3, self.mrr, self.misses, self.questions
        )
    }

    /// nDCG@10 (binary relevance), recall@3 and MRR@10 of ranked slug lists.
    fn of(runs: &[(Vec<String>, Vec<String>)]) -> Self {
        let (mut ndcg, mut recall, mut mrr, mut misses) = (0.0, 0.0, 0.0, 0);
        for (relevant, ranked) in runs {
            let is_relevant = |s: &String| relevant.contains(s);
            let dcg: f64 = ranked
                .iter()
                .take(EVAL_LIMIT)
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
            match ranked.iter().take(EVAL_LIMIT).position(is_relevant) {
                Some(i) => mrr += 1.0 / (i as f64 + 1.0),
                None => misses += 1,
            }
        }
        let n = runs.len().max(1) as f64;
        Self {
            ndcg10: ndcg / n,
            recall3: recall / n,
            mrr: mrr / n,
            misses,
            questions: runs.len(),
        }
    }
}

async fn evaluate(
    st: &AppState,
    org: Uuid,
    kb: Uuid,
    questions: &[&Question],
    slugs: &HashMap<Uuid, String>,
    mode: RetrievalMode,
) -> BenchResult<Quality> {
    let verbose = std::env::var("RETRIEVAL_BENCH_VERBOSE").is_ok_and(|v| v == "1");
    let mut runs = Vec::new();
    for (relevant, question, _) in questions.iter().copied() {
        let hits = retrieval::search(st, org, &[kb], question, EVAL_LIMIT, mode).await?;
        // Distractors have no slug: they stay in the ranking as misses.
        let ranked: Vec<String> = hits
            .iter()
            .map(|h| slugs.get(&h.article_id).cloned().unwrap_or_default())
            .collect();
        if verbose && !ranked.iter().take(3).any(|s| relevant.contains(s)) {
            eprintln!(
                "[{}] miss: {question:?} wants {relevant:?}, got {:?}",
                mode_name(mode),
                &ranked[..ranked.len().min(3)]
            );
        }
        runs.push((relevant.clone(), ranked));
    }
    Ok(Quality::of(&runs))
}

/// The reference ranking: plain BM25F (k1 1.2, b 0.75, the title's words
/// counting twice), Snowball-stemmed words, no stop list, no synonyms.
fn reference_bm25f(
    articles: &[Article],
    slugs: &HashMap<Uuid, String>,
    questions: &[&Question],
) -> Quality {
    let stemmer = rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English);
    let tokens = |t: &str| -> Vec<String> {
        t.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| stemmer.stem(&w.to_lowercase()).into_owned())
            .collect()
    };
    let docs: Vec<(Vec<String>, Vec<String>)> = articles
        .iter()
        .map(|a| (tokens(&a.title), tokens(&a.body)))
        .collect();
    let n = docs.len() as f64;
    let avg_t = docs.iter().map(|d| d.0.len()).sum::<usize>() as f64 / n;
    let avg_b = docs.iter().map(|d| d.1.len()).sum::<usize>() as f64 / n;
    let mut df: HashMap<&str, f64> = HashMap::new();
    for (t, b) in &docs {
        let mut seen: Vec<&str> = t.iter().chain(b).map(String::as_str).collect();
        seen.sort_unstable();
        seen.dedup();
        for w in seen {
            *df.entry(w).or_default() += 1.0;
        }
    }
    let (k1, b) = (1.2, 0.75);
    let mut runs = Vec::new();
    for (relevant, question, _) in questions.iter().copied() {
        let mut q = tokens(question);
        q.sort_unstable();
        q.dedup();
        let mut scored: Vec<(f64, usize)> = docs
            .iter()
            .enumerate()
            .map(|(i, (t, body))| {
                let s: f64 = q
                    .iter()
                    .map(|w| {
                        let tf_t = t.iter().filter(|x| *x == w).count() as f64;
                        let tf_b = body.iter().filter(|x| *x == w).count() as f64;
                        let tf = 2.0 * tf_t / (1.0 - b + b * t.len() as f64 / avg_t)
                            + tf_b / (1.0 - b + b * body.len() as f64 / avg_b);
                        let d = df.get(w.as_str()).copied().unwrap_or(0.0);
                        let idf = (1.0 + (n - d + 0.5) / (d + 0.5)).ln();
                        idf * tf * (k1 + 1.0) / (k1 + tf)
                    })
                    .sum();
                (s, i)
            })
            .filter(|(s, _)| *s > 0.0)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let ranked = scored
            .iter()
            .take(EVAL_LIMIT)
            .map(|(_, i)| slugs.get(&articles[*i].id).cloned().unwrap_or_default())
            .collect();
        runs.push((relevant.clone(), ranked));
    }
    Quality::of(&runs)
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

/// Relevant slugs, the question, and whether it is in the report split.
type Question = (Vec<String>, String, bool);

/// Every labelled line of `questions.txt`; every third is the report split.
fn parse_questions(text: &str) -> Vec<Question> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('|'))
        .enumerate()
        .map(|(i, (slugs, q))| {
            let slugs = slugs.split(',').map(|s| s.trim().to_string()).collect();
            (slugs, q.trim().to_string(), i % 3 == 2)
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

/// Inserts `articles` (published) in one transaction, [`BATCH`] rows per
/// statement; with `vectors` (model, one per article) also their single
/// passage, marked embedded.
async fn insert_articles(
    conn: &DatabaseConnection,
    org: Uuid,
    kb: Uuid,
    articles: &[Article],
    vectors: Option<&(String, Vec<Vec<f32>>)>,
) -> BenchResult<()> {
    use sea_orm::TransactionTrait;
    let backend = conn.get_database_backend();
    let txn = conn.begin().await?;
    let now = chrono::Utc::now();
    let model = vectors.map(|v| v.0.clone());
    for chunk in articles.chunks(BATCH) {
        let mut rows = Vec::with_capacity(chunk.len());
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 9);
        for a in chunk {
            let mut p = Vec::with_capacity(9);
            for v in [
                Value::from(a.id),
                org.into(),
                kb.into(),
                a.title.clone().into(),
                a.body.clone().into(),
                true.into(),
                model.clone().into(),
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
             embedding_model, created_at, updated_at) VALUES {}",
            rows.join(", ")
        );
        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
    if let Some((model, vectors)) = vectors {
        for (chunk, vchunk) in articles.chunks(BATCH / 2).zip(vectors.chunks(BATCH / 2)) {
            let mut rows = Vec::new();
            let mut values: Vec<Value> = Vec::new();
            for (a, v) in chunk.iter().zip(vchunk) {
                let text = passages::split(&a.body).remove(0).text;
                let mut p = Vec::with_capacity(9);
                for value in [
                    Value::from(Uuid::now_v7()),
                    org.into(),
                    a.id.into(),
                    0i32.into(),
                    text.into(),
                    model.clone().into(),
                    (v.len() as i32).into(),
                    v.iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect::<Vec<u8>>()
                        .into(),
                    now.into(),
                ] {
                    values.push(value);
                    p.push(placeholder(backend, values.len()));
                }
                rows.push(format!("({})", p.join(", ")));
            }
            let sql = format!(
                "INSERT INTO kb_passages (id, org_id, article_id, position, text, model, \
                 dimension, vector, created_at) VALUES {}",
                rows.join(", ")
            );
            txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?;
        }
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
