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

#[test]
fn readme_documents_every_setting() {
    use clap::CommandFactory;
    let readme = repo_file("README.md");
    let cmd = wayfinder::cli::Cli::command();
    let mut missing = vec![];
    for arg in cmd.get_arguments() {
        if let Some(env) = arg.get_env() {
            let env = env.to_string_lossy().to_string();
            if !readme.contains(&format!("`{env}`")) {
                missing.push(env);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README's configuration table lacks: {missing:?}"
    );
    assert!(readme.contains("`RUST_LOG`"));
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
