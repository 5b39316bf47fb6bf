//! Generated files stay in sync: `schema.graphql` with the code, the README's
//! configuration table with the settings; and every schema type and field is
//! described for integrators.

use serde_json::{Value, json};

use crate::helpers::*;

fn repo_file(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn schema_graphql_is_up_to_date() {
    let generated = wayfinder::graphql::sdl();
    let checked_in = repo_file("schema.graphql");
    if generated != checked_in {
        let diff: Vec<String> = generated
            .lines()
            .zip(checked_in.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(10)
            .map(|(i, (a, b))| format!("line {}: code has {a:?}, file has {b:?}", i + 1))
            .collect();
        panic!(
            "schema.graphql is out of date ({} vs {} lines).\n{}\nRegenerate it with:\n    cargo run -p wayfinder-api -- schema > schema.graphql",
            generated.lines().count(),
            checked_in.lines().count(),
            diff.join("\n")
        );
    }
}

/// The README's configuration rows: variable → default column, backticks stripped.
fn readme_settings(readme: &str) -> Vec<(String, String)> {
    let start = readme
        .find("| variable | default | what it does |")
        .expect("README has the configuration table");
    readme[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let unquote = |cell: &str| cell.trim_matches('`').to_string();
            (unquote(cells[1]), unquote(cells[2]))
        })
        .collect()
}

#[test]
fn readme_documents_every_setting() {
    // Arrange: every setting of `Config` with its variable and its default,
    // as clap knows them (not as this process's environment would set them).
    let readme = repo_file("README.md");
    let command =
        <wayfinder::config::Config as clap::Args>::augment_args(clap::Command::new("wayfinder"));
    let code: Vec<(String, Option<String>)> = command
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_string_lossy().to_string();
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().to_string())
                .collect();
            Some((env, (!defaults.is_empty()).then(|| defaults.join(","))))
        })
        .collect();
    assert!(code.len() > 30, "Config's settings were found: {code:?}");
    let rows = readme_settings(&readme);

    // Act: compare both ways.
    let mut problems = vec![];
    for (env, default) in &code {
        let documented: Vec<&String> = rows
            .iter()
            .filter(|(var, _)| var == env)
            .map(|(_, d)| d)
            .collect();
        let expected = default.as_deref().unwrap_or("(unset)");
        match documented.as_slice() {
            [] => problems.push(format!(
                "`{env}`: missing from the README (default `{expected}`)"
            )),
            [d] if d.as_str() == expected => {}
            [d] => problems.push(format!(
                "`{env}`: README says `{d}`, the code's default is `{expected}`"
            )),
            _ => problems.push(format!("`{env}`: {} README rows", documented.len())),
        }
    }
    for (var, default) in &rows {
        if var == "RUST_LOG" {
            // Read by the tracing filter, not a `Config` setting.
            assert_eq!(default, "info", "RUST_LOG's default");
            continue;
        }
        if !code.iter().any(|(env, _)| env == var) {
            problems.push(format!("`{var}`: in the README but not a setting"));
        }
    }

    // Assert
    assert!(
        problems.is_empty(),
        "README's configuration table disagrees with config.rs:\n{}",
        problems.join("\n")
    );
}

#[tokio::test]
async fn introspection_matches_and_everything_is_described() {
    let app = spawn_app(Backend::Sqlite).await;
    let q = "{ __schema { types { name kind description fields { name description args { name description } } inputFields { name description } enumValues { name description } } } }";
    let r: Value = app.gql_as(None, q, json!({})).await;
    let mut undocumented = vec![];
    for t in r["data"]["__schema"]["types"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        if name.starts_with("__") || ["String", "Boolean", "Int", "Float", "ID"].contains(&name) {
            continue;
        }
        if t["description"].as_str().unwrap_or("").is_empty() {
            undocumented.push(name.to_string());
        }
        for list in ["fields", "inputFields", "enumValues"] {
            for f in t[list].as_array().into_iter().flatten() {
                if f["description"].as_str().unwrap_or("").is_empty() {
                    undocumented.push(format!("{name}.{}", f["name"].as_str().unwrap()));
                }
                for a in f["args"].as_array().into_iter().flatten() {
                    if a["description"].as_str().unwrap_or("").is_empty() && a["name"] != "input" {
                        undocumented.push(format!(
                            "{name}.{}({})",
                            f["name"].as_str().unwrap(),
                            a["name"].as_str().unwrap()
                        ));
                    }
                }
            }
        }
    }
    assert!(undocumented.is_empty(), "undocumented: {undocumented:#?}");
    // The operation names of SPEC §4 exist.
    let names = |kind: &str| -> Vec<String> {
        r["data"]["__schema"]["types"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == kind)
            .unwrap()["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    let queries = names("Query");
    for op in [
        "org",
        "bots",
        "bot",
        "knowledgeBases",
        "kbArticles",
        "sites",
        "flows",
        "tooltips",
        "chatWidgets",
        "widgetConfig",
        "chatSessions",
        "chatSession",
        "feedback",
        "supportTickets",
        "credits",
        "events",
    ] {
        assert!(queries.contains(&op.to_string()), "missing query {op}");
    }
    let mutations = names("Mutation");
    for op in [
        "createBot",
        "updateBot",
        "deleteBot",
        "createKnowledgeBase",
        "createKbArticle",
        "createSite",
        "createFlow",
        "createTooltip",
        "createChatWidget",
        "createApiKey",
        "updateOrgSettings",
        "grantCredits",
        "updateSiteMap",
        "publishFlow",
    ] {
        assert!(mutations.contains(&op.to_string()), "missing mutation {op}");
    }
    assert!(names("Subscription").contains(&"orgEvents".to_string()));
}
