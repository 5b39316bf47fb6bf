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
    }
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
    let conn = db::connect(&config.database_url()).await?;
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
