//! A small multi-page web app served on loopback, for the crawler and the
//! generator to map: forms, buttons with and without ids, a generated-looking
//! id, duplicated classes, pages differing only by an id, a page two links
//! deep, a robots.txt disallow, a page behind a cookie, a page whose
//! markup can change (drift), a downloads page linking to non-HTML files
//! (10,000 bytes each), and a single-page app (`/spa`) whose elements
//! and links only exist once its script ran, which also tries to reach a
//! loopback trap listener the outbound guard must keep it away from.

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse},
    routing::get,
};

/// The running app; dropping it stops the server.
pub struct TestWebApp {
    pub base_url: String,
    /// `host:port`, for `WAYFINDER_OUTBOUND_ALLOW`.
    pub allow_entry: String,
    team_page: Arc<Mutex<String>>,
    /// Connections the trap listener (a loopback port no test allows) accepted.
    pub trap_hits: Arc<std::sync::atomic::AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestWebApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><title>{title}</title></head><body><nav><a href=\"/\">Home</a> <a href=\"/settings/team\">Team</a></nav><main>{body}</main></body></html>"
    ))
}

/// The team settings page as it first is: an invite form.
pub const TEAM_PAGE: &str = r#"<h1>Team settings</h1>
<form id="invite-form">
  <label for="invite-email">Teammate email</label><input id="invite-email" name="email" type="email">
  <select name="role" aria-label="Role"><option>Member</option><option>Admin</option></select>
  <button type="submit" data-testid="send-invite" class="btn primary">Send invite</button>
</form>
<button class="btn" id="ember4711">Remove member</button>
<button class="btn">Cancel</button>
<button class="btn">Cancel</button>"#;

/// The single-page app's shell: everything is rendered by `/spa.js`.
const SPA_SHELL: &str = r#"<!doctype html><html><head><title>Acme SPA</title></head><body><div id="root">Loading…</div><script src="/spa.js"></script></body></html>"#;

/// The single-page app: a route per path, rendered late; `TRAP` is the trap's port.
const SPA_JS: &str = r#"
setTimeout(() => {
  const root = document.getElementById("root");
  root.textContent = "";
  const add = (tag, attrs, text) => {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    el.textContent = text;
    root.appendChild(el);
  };
  if (location.pathname === "/spa/billing") {
    add("h1", {}, "Billing");
    add("button", { id: "update-card" }, "Update card");
  } else {
    add("h1", {}, "Projects");
    add("button", { "data-testid": "create-project" }, "Create project");
    add("a", { href: "/spa/billing" }, "Billing");
  }
  // What a hostile page would try: the guard must keep each away.
  for (const u of ["http://localhost:TRAP/steal", "http://127.0.0.1:TRAP/steal", "http://[::1]:TRAP/steal"]) {
    fetch(u).catch(() => {});
  }
  new Image().src = "http://127.0.0.1:TRAP/pixel.gif";
  try { new WebSocket("ws://127.0.0.1:TRAP/ws"); } catch (e) {}
}, 300);
"#;

impl TestWebApp {
    pub async fn start() -> Self {
        let team_page = Arc::new(Mutex::new(TEAM_PAGE.to_string()));
        let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let trap_port = trap.local_addr().unwrap().port();
        let trap_hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        {
            let hits = trap_hits.clone();
            tokio::spawn(async move {
                while trap.accept().await.is_ok() {
                    hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
        let spa_js = SPA_JS.replace("TRAP", &trap_port.to_string());
        let app = Router::new()
            .route(
                "/robots.txt",
                get(|| async { "User-agent: *\nDisallow: /admin\n" }),
            )
            .route(
                "/",
                get(|| async {
                    page(
                        "Acme app",
                        r#"<h1>Dashboard</h1>
                        <a href="/projects/17">Website redesign</a> <a href="/projects/42">Mobile app</a>
                        <a href="/reports">Reports</a> <a href="/admin/users">Admin</a>
                        <a href="/account" id="account-link">Account</a>
                        <a href="https://elsewhere.example.com/">Partner</a>
                        <button type="button" id="new-project">New project</button>"#,
                    )
                }),
            )
            .route(
                "/settings/team",
                get(|State(s): State<Arc<Mutex<String>>>| async move {
                    let body = s.lock().map(|b| b.clone()).unwrap_or_default();
                    page("Team settings", &body)
                }),
            )
            .route(
                "/projects/{id}",
                get(|| async {
                    page(
                        "Project",
                        r#"<h1>Project</h1><button data-cy="archive">Archive project</button>"#,
                    )
                }),
            )
            .route(
                "/reports",
                get(|| async {
                    page(
                        "Reports",
                        r#"<a href="/reports/export">Export</a>"#,
                    )
                }),
            )
            .route(
                "/reports/export",
                get(|| async {
                    page(
                        "Export data",
                        r#"<form><input name="from" placeholder="From date"><button>Download CSV</button></form>"#,
                    )
                }),
            )
            .route(
                "/admin/users",
                get(|| async { page("Admin", r#"<button id="delete-all">Delete all users</button>"#) }),
            )
            .route(
                "/account",
                get(|headers: HeaderMap| async move {
                    let ok = headers
                        .get(header::COOKIE)
                        .and_then(|c| c.to_str().ok())
                        .is_some_and(|c| c.contains("session=staging"));
                    if ok {
                        page("Account", r#"<button id="change-password">Change password</button>"#)
                            .into_response()
                    } else {
                        (StatusCode::FOUND, [(header::LOCATION, "/login")]).into_response()
                    }
                }),
            )
            .route(
                "/downloads",
                get(|| async {
                    let links: String = (1..=6)
                        .map(|i| format!(r#"<a href="/files/export-{i}.csv">Export {i}</a> "#))
                        .collect();
                    Html(format!(
                        "<!doctype html><html><head><title>Downloads</title></head><body>{links}</body></html>"
                    ))
                }),
            )
            .route(
                "/files/{name}",
                get(|| async { ([(header::CONTENT_TYPE, "text/csv")], "x".repeat(10_000)) }),
            )
            .route("/spa", get(|| async { Html(SPA_SHELL) }))
            .route("/spa/billing", get(|| async { Html(SPA_SHELL) }))
            .route(
                "/spa.js",
                get(move || {
                    let js = spa_js.clone();
                    async move { ([(header::CONTENT_TYPE, "text/javascript")], js) }
                }),
            )
            .route(
                "/login",
                get(|| async { page("Sign in", r#"<form><input name="user" placeholder="Email"><button>Sign in</button></form>"#) }),
            )
            .with_state(team_page.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            base_url: format!("http://{addr}"),
            allow_entry: addr.to_string(),
            team_page,
            trap_hits,
            shutdown: Some(tx),
        }
    }

    /// Replaces the team page's markup (a redesign).
    pub fn set_team_page(&self, body: &str) {
        *self.team_page.lock().unwrap() = body.to_string();
    }

    /// The HTML a path serves now (to check locators against).
    pub async fn html(&self, path: &str) -> String {
        reqwest::get(format!("{}{path}", self.base_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}
