//! The `wayfinder` command line: `serve` (the default), `migrate`, `schema`,
//! and the operator's admin commands (orgs, API keys, credits, and the
//! operator keys that unlock the same operations over GraphQL). At the shell
//! the operator needs no key: whoever can reach the database runs the server.

use std::io::Write;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use uuid::Uuid;

use crate::{
    config::Config,
    db,
    domain::Plan,
    error::AppError,
    graphql, service,
    startup::{App, StartError, shutdown_signal},
};

/// Wayfinder: the backend of an embeddable AI support chat widget.
#[derive(Debug, Parser)]
#[command(name = "wayfinder", version)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do; `serve` when omitted.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations, seed the demo on an empty database, and serve HTTP and graphql-ws.
    Serve {
        /// Do not seed the demo org (same as WAYFINDER_DEMO=false).
        #[arg(long)]
        no_demo: bool,
    },
    /// Run pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL, sorted): `wayfinder schema > schema.graphql`.
    Schema,
    /// Manage orgs.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Manage API keys.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Manage credits.
    Credits {
        #[command(subcommand)]
        command: CreditsCommand,
    },
    /// Manage operator keys (for the operator-only GraphQL operations: orgs, plans, credits).
    OperatorKey {
        #[command(subcommand)]
        command: OperatorKeyCommand,
    },
    /// Knowledge-base commands.
    Kb {
        #[command(subcommand)]
        command: KbCommand,
    },
}

/// Knowledge-base commands.
#[derive(Debug, Subcommand)]
pub enum KbCommand {
    /// Import a folder of Markdown and HTML files as articles (again: updates, never duplicates),
    /// then compute their embeddings when a model is configured.
    Import {
        /// The org's id.
        #[arg(long)]
        org: Uuid,
        /// The knowledge base's id (it must be the org's).
        #[arg(long)]
        kb: Uuid,
        /// The folder (searched recursively for .md, .markdown, .mdx, .txt, .html, .htm).
        dir: std::path::PathBuf,
        /// Print one JSON summary instead of text and progress bars.
        #[arg(long)]
        json: bool,
    },
}

/// Operator key commands.
#[derive(Debug, Subcommand)]
pub enum OperatorKeyCommand {
    /// Mint an operator key (`wf_op_…`), shown once: only its hash is stored.
    Create {
        /// A name for the key ("billing", "ops laptop").
        #[arg(long, default_value = "operator")]
        name: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List operator keys (never the keys themselves).
    List {
        /// Include revoked keys.
        #[arg(long)]
        all: bool,
        /// Print one JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an operator key at once.
    Revoke {
        /// The key's id (from `create` or `list`).
        #[arg(long)]
        id: Uuid,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Org commands.
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an org and its first API key.
    Create {
        /// Org name.
        #[arg(long)]
        name: String,
        /// Plan.
        #[arg(long, value_enum, ignore_case = true, default_value = "free")]
        plan: PlanArg,
        /// Owner's email (gets notifications).
        #[arg(long)]
        owner_email: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// API key commands.
#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Mint a new API key for an org.
    Create {
        /// The org's id.
        #[arg(long)]
        org: Uuid,
        /// A name for the key.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Credit commands.
#[derive(Debug, Subcommand)]
pub enum CreditsCommand {
    /// Add credits to an org.
    Grant {
        /// The org's id.
        #[arg(long)]
        org: Uuid,
        /// How many credits.
        #[arg(long)]
        amount: i64,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Take credits from an org (at most its balance: it never goes below zero).
    Revoke {
        /// The org's id.
        #[arg(long)]
        org: Uuid,
        /// How many credits.
        #[arg(long)]
        amount: i64,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// A plan on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PlanArg {
    Free,
    Growth,
    Pro,
    Enterprise,
}

impl From<PlanArg> for Plan {
    fn from(p: PlanArg) -> Self {
        match p {
            PlanArg::Free => Plan::Free,
            PlanArg::Growth => Plan::Growth,
            PlanArg::Pro => Plan::Pro,
            PlanArg::Enterprise => Plan::Enterprise,
        }
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("{0}")]
    App(#[from] AppError),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
}

fn fail(err: AppError) -> CliError {
    match err {
        AppError::Internal(cause) => CliError::App(AppError::Internal(cause)),
        other => CliError::App(other),
    }
}

/// Runs the command, printing to `out`.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let mut config = cli.config;
    match cli.command.unwrap_or(Command::Serve { no_demo: false }) {
        Command::Serve { no_demo } => {
            if no_demo {
                config.demo = false;
            }
            serve(config, out).await
        }
        Command::Schema => {
            write!(out, "{}", graphql::sdl())?;
            Ok(())
        }
        Command::Migrate => {
            let state = crate::startup::build_state(config).await?;
            writeln!(out, "migrations applied")?;
            state.db.clone().close().await?;
            Ok(())
        }
        Command::Org {
            command:
                OrgCommand::Create {
                    name,
                    plan,
                    owner_email,
                    json,
                },
        } => {
            let conn = admin_db(&config).await?;
            let (org, _, key) = service::org::create(&conn, &name, plan.into(), &owner_email)
                .await
                .map_err(fail)?;
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({ "orgId": org.id, "name": org.name, "plan": org.plan, "apiKey": key.key })
                )?;
            } else {
                writeln!(
                    out,
                    "org id:  {}\napi key: {}   (shown once: store it now)",
                    org.id, key.key
                )?;
            }
            Ok(())
        }
        Command::Apikey {
            command: ApikeyCommand::Create { org, name, json },
        } => {
            let conn = admin_db(&config).await?;
            service::org::find(&conn, org).await.map_err(fail)?;
            let name = crate::domain::name("--name", &name).map_err(fail)?;
            let (row, key) = service::api_key::insert_key(&conn, org, &name)
                .await
                .map_err(fail)?;
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({ "orgId": org, "apiKeyId": row.id, "apiKey": key.key })
                )?;
            } else {
                writeln!(out, "api key: {}   (shown once: store it now)", key.key)?;
            }
            Ok(())
        }
        Command::Credits {
            command: CreditsCommand::Grant { org, amount, json },
        } => {
            let conn = admin_db(&config).await?;
            let balance =
                service::credits::grant(&conn, org, amount, Some("granted by operator".into()))
                    .await
                    .map_err(fail)?
                    .balance;
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({ "orgId": org, "granted": amount, "balance": balance })
                )?;
            } else {
                writeln!(out, "granted {amount} credits; balance {balance}")?;
            }
            Ok(())
        }
        Command::Credits {
            command: CreditsCommand::Revoke { org, amount, json },
        } => {
            let conn = admin_db(&config).await?;
            let done =
                service::credits::revoke(&conn, org, amount, Some("revoked by operator".into()))
                    .await
                    .map_err(fail)?;
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({ "orgId": org, "requested": amount, "revoked": done.applied, "balance": done.balance })
                )?;
            } else {
                writeln!(
                    out,
                    "revoked {} credits; balance {}",
                    done.applied, done.balance
                )?;
            }
            Ok(())
        }
        Command::OperatorKey { command } => {
            let conn = admin_db(&config).await?;
            operator_key(&conn, command, out).await
        }
        Command::Kb {
            command: KbCommand::Import { org, kb, dir, json },
        } => kb_import(config, org, kb, &dir, json, out).await,
    }
}

/// A progress bar on stderr (hidden when it is not a terminal or `quiet`).
fn bar(len: u64, what: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

async fn kb_import(
    config: Config,
    org: Uuid,
    kb: Uuid,
    dir: &std::path::Path,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    use service::kb_import::{self, Outcome};
    let state = crate::startup::build_state(config).await?;
    kb_import::check_target(&state, org, kb)
        .await
        .map_err(fail)?;
    let (files, truncated) = kb_import::list_files(dir)?;
    let progress = bar(files.len() as u64, "importing", json);
    let (mut created, mut updated, mut unchanged) = (0u64, 0u64, 0u64);
    let mut skipped: Vec<(String, String)> = Vec::new();
    let mut warnings: Vec<(String, String)> = Vec::new();
    for path in &files {
        let shown = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        match kb_import::read_file(dir, path) {
            Err(why) => skipped.push((shown, why)),
            Ok(file) => {
                if let Some(w) = &file.warning {
                    warnings.push((shown.clone(), w.clone()));
                }
                match kb_import::upsert(&state, org, kb, &file).await {
                    Ok(Outcome::Created) => created += 1,
                    Ok(Outcome::Updated) => updated += 1,
                    Ok(Outcome::Unchanged) => unchanged += 1,
                    Err(err) => skipped.push((shown, err.to_string())),
                }
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    let mut embedded = None;
    if let Some(embedder) = state.retriever.embedder.clone() {
        let progress = bar(0, "embedding", json);
        let done =
            crate::embeddings::indexer::embed_all(&state, embedder.as_ref(), |done, total| {
                progress.set_length(total);
                progress.set_position(done);
            })
            .await
            .map_err(fail)?;
        progress.finish_and_clear();
        embedded = Some(done);
    }
    if json {
        let list = |v: &[(String, String)]| {
            v.iter()
                .map(|(f, w)| json!({ "file": f, "reason": w }))
                .collect::<Vec<_>>()
        };
        writeln!(
            out,
            "{}",
            json!({
                "files": files.len(), "created": created, "updated": updated,
                "unchanged": unchanged, "skipped": list(&skipped), "warnings": list(&warnings),
                "embedded": embedded, "truncated": truncated,
            })
        )?;
    } else {
        for (f, w) in &warnings {
            writeln!(out, "warning: {f}: {w}")?;
        }
        for (f, why) in &skipped {
            writeln!(out, "skipped: {f}: {why}")?;
        }
        if truncated {
            writeln!(
                out,
                "warning: only the first {} files were imported",
                kb_import::MAX_FILES
            )?;
        }
        writeln!(
            out,
            "{} files: {created} created, {updated} updated, {unchanged} unchanged, {} skipped",
            files.len(),
            skipped.len()
        )?;
        match embedded {
            Some(n) => writeln!(out, "{n} articles embedded")?,
            None => writeln!(
                out,
                "no embedding model configured: articles are found by keywords (set EMBEDDING_MODEL_DIR)"
            )?,
        }
    }
    state.db.clone().close().await?;
    Ok(())
}

async fn operator_key(
    conn: &sea_orm::DatabaseConnection,
    command: OperatorKeyCommand,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let described = |k: &entity::operator_key::Model| {
        json!({
            "operatorKeyId": k.id, "name": k.name, "prefix": k.prefix,
            "createdAt": k.created_at, "lastUsedAt": k.last_used_at, "revokedAt": k.revoked_at,
        })
    };
    match command {
        OperatorKeyCommand::Create { name, json } => {
            let (row, key) = service::operator_key::create(conn, &name)
                .await
                .map_err(fail)?;
            if json {
                let mut v = described(&row);
                v["operatorKey"] = json!(key.key);
                writeln!(out, "{v}")?;
            } else {
                writeln!(
                    out,
                    "operator key id: {}\noperator key:    {}   (shown once: store it now)",
                    row.id, key.key
                )?;
            }
        }
        OperatorKeyCommand::List { all, json } => {
            let keys = service::operator_key::list(conn, all).await.map_err(fail)?;
            if json {
                let list: Vec<_> = keys.iter().map(described).collect();
                writeln!(out, "{}", json!(list))?;
            } else {
                for k in &keys {
                    let state = if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    writeln!(out, "{}  {}…  {}  {state}", k.id, k.prefix, k.name)?;
                }
            }
        }
        OperatorKeyCommand::Revoke { id, json } => {
            let row = service::operator_key::revoke(conn, id)
                .await
                .map_err(fail)?;
            if json {
                writeln!(out, "{}", described(&row))?;
            } else {
                writeln!(out, "revoked operator key {} ({})", row.id, row.name)?;
            }
        }
    }
    Ok(())
}

async fn admin_db(config: &Config) -> Result<sea_orm::DatabaseConnection, CliError> {
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir)?;
    }
    let conn = db::connect(&config.database_url(), config.database_max_connections).await?;
    db::migrate(&conn).await?;
    Ok(conn)
}

async fn serve(config: Config, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    if config.secret.is_none() {
        tracing::warn!(
            "WAYFINDER_SECRET is not set: using a generated local secret (fine for development; set one in production)"
        );
    }
    let app = App::build(config).await?;
    let base = format!("http://{}", app.addr());
    writeln!(out, "Wayfinder is listening on {base}")?;
    writeln!(out, "  GraphiQL:  {base}/graphql")?;
    writeln!(out, "  health:    {base}/healthz")?;
    if let Some(demo) = &app.demo {
        writeln!(out, "\nDemo org seeded (this is shown only once):")?;
        writeln!(out, "  org id:     {}", demo.org_id)?;
        writeln!(out, "  API key:    {}", demo.api_key)?;
        writeln!(out, "  widget id:  {}", demo.widget_id)?;
        writeln!(
            out,
            "  try:        curl -s {base}/graphql -H 'x-api-key: {}' -H 'content-type: application/json' -d '{{\"query\":\"{{ org {{ name plan }} }}\"}}'",
            demo.api_key
        )?;
    }
    out.flush()?;
    app.run_until(shutdown_signal()).await?;
    Ok(())
}
