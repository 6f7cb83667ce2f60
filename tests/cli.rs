//! The `hubconnect` binary, run for real against the fake HubSpot and a temporary SQLite file.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used)]

use hubspot_connect::store::{ConnectionStore, SqliteStore};
use hubspot_connect::testing::FakeHubSpot;
use serde_json::Value;

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        let lines: Vec<&str> = self.stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "exactly one JSON object on stdout: {:?}", self.stdout);
        serde_json::from_str(lines[0]).unwrap()
    }
}

struct Env {
    fake: FakeHubSpot,
    db: std::path::PathBuf,
    /// Another store than the SQLite file (`--store`, then `--store-prefix`).
    other_store: Option<(String, String)>,
}

impl Env {
    async fn new() -> Self {
        let db = std::env::temp_dir().join(format!("hc-cli-{}.db", hubspot_connect::ConnectionId::random()));
        Env { fake: FakeHubSpot::start().await, db, other_store: None }
    }

    fn store_url(&self) -> String {
        match &self.other_store {
            Some((url, _)) => url.clone(),
            None => format!("sqlite://{}", self.db.display()),
        }
    }

    /// Runs hubconnect with the fake's settings as flags, `args` after them.
    async fn run(&self, args: &[&str]) -> Run {
        let uri = self.fake.uri();
        let mut all = vec![
            "--store",
            &self.store_url(),
            "--client-id",
            self.fake.client_id(),
            "--client-secret",
            self.fake.client_secret(),
            "--redirect-uri",
            self.fake.redirect_uri(),
            "--auth-base",
            &uri,
            "--api-base",
            &uri,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        if let Some((_, prefix)) = &self.other_store {
            all.extend(["--store-prefix".to_owned(), prefix.clone()]);
        }
        all.extend(args.iter().map(|s| (*s).to_owned()));
        self.raw(&all, &[]).await
    }

    async fn raw(&self, args: &[String], env: &[(&str, String)]) -> Run {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hubconnect"));
        cmd.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().await.unwrap();
        Run {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn connect(&self, tenant: &str) -> Value {
        let r =
            self.run(&["connect", "--tenant", tenant, "--scopes", "oauth,crm.objects.contacts.read", "--json"]).await;
        assert_eq!(r.status, 0, "{}", r.stderr);
        let url = r.json()["authorize_url"].as_str().unwrap().to_owned();
        assert!(r.json()["expires_at"].as_str().unwrap().ends_with('Z'));
        let callback = self.fake.consent(&url).await.unwrap();
        let r = self.run(&["complete", "--callback-url", callback.as_str(), "--json"]).await;
        assert_eq!(r.status, 0, "{}", r.stderr);
        r.json()
    }

    /// The refresh token as stored, to check it never appears in any output.
    async fn stored_refresh_token(&self, id: &str) -> String {
        let store = SqliteStore::open(&self.store_url()).await.unwrap();
        let c = store.get(&hubspot_connect::ConnectionId::new(id)).await.unwrap().unwrap();
        c.refresh_token.unwrap().secret().to_owned()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.db.display()));
        }
    }
}

fn assert_error(r: &Run, code: &str) {
    assert_eq!(r.status, 1, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    let line = r.stderr.lines().find(|l| l.starts_with("error[")).unwrap_or("");
    assert!(line.starts_with(&format!("error[{code}]: ")), "stderr: {}", r.stderr);
    if r.stdout.trim().starts_with('{') {
        let j = r.json();
        assert_eq!(j["error"]["code"], code);
        assert!(j["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_lifecycle() {
    let e = Env::new().await;
    let c = e.connect("acme").await;
    let id = c["id"].as_str().unwrap().to_owned();
    assert_eq!(c["tenant"], "acme");
    assert_eq!(c["portal_id"], 62515);
    assert_eq!(c["status"], "connected");
    assert_eq!(c["installed_by"], "admin@example.com");
    assert_eq!(c["account_type"], "STANDARD");
    assert!(c["last_error"].is_null());
    assert!(c["scopes"].as_array().unwrap().iter().any(|s| s == "crm.objects.contacts.read"));
    let refresh_token = e.stored_refresh_token(&id).await;

    let status = e.run(&["status", &id, "--json"]).await;
    assert_eq!(status.json(), c);
    // Options after the subcommand work too.
    let list = e.run(&["list", "--tenant", "acme", "--status", "connected", "--json"]).await.json();
    assert_eq!(list["connections"].as_array().unwrap().len(), 1);
    let none = e.run(&["list", "--tenant", "globex", "--json"]).await.json();
    assert_eq!(none["connections"].as_array().unwrap().len(), 0);

    let token = e.run(&["token", &id, "--json"]).await.json();
    assert_eq!(token["id"], id.as_str());
    let first_token = token["access_token"].as_str().unwrap().to_owned();
    assert!(!first_token.is_empty());

    let before = e.fake.token_requests();
    let refreshed = e.run(&["refresh", &id, "--force", "--json"]).await.json();
    assert_eq!(refreshed["id"], id.as_str());
    assert!(refreshed["expires_at"].is_string());
    assert_eq!(e.fake.token_requests(), before + 1);
    let token = e.run(&["token", &id, "--json"]).await.json();
    assert_ne!(token["access_token"].as_str().unwrap(), first_token);

    let test = e.run(&["test", &id, "--json"]).await.json();
    assert_eq!(test["portal_id"], 62515);
    assert_eq!(test["account_type"], "STANDARD");
    assert!(test["latency_ms"].is_u64());
    assert!(test["scopes"].is_array());

    let human = e.run(&["status", &id]).await;
    assert!(human.stdout.contains("status=connected"));

    let gone = e.run(&["disconnect", &id, "--json"]).await.json();
    assert_eq!(gone["revoked"], true);
    let after = e.run(&["status", &id, "--json"]).await;
    assert_error(&after, "CONNECTION_NOT_FOUND");

    // No output ever held the refresh token or the client secret.
    let everything = format!("{status:?}{list}{human:?}{gone}{test}", status = status.stdout, human = human.stdout);
    assert!(!everything.contains(&refresh_token));
    assert!(!everything.contains(e.fake.client_secret()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_variables_instead_of_flags() {
    let e = Env::new().await;
    let env = vec![
        ("HUBCONNECT_STORE", e.store_url()),
        ("HUBSPOT_CLIENT_ID", e.fake.client_id().to_owned()),
        ("HUBSPOT_CLIENT_SECRET", e.fake.client_secret().to_owned()),
        ("HUBSPOT_REDIRECT_URI", e.fake.redirect_uri().to_owned()),
        ("HUBSPOT_AUTH_BASE", e.fake.uri()),
        ("HUBSPOT_API_BASE", e.fake.uri()),
        ("HUBSPOT_OAUTH_VERSION", "v1".to_owned()),
    ];
    let r = e.raw(&["--json".into(), "connect".into(), "--tenant".into(), "acme".into()], &env).await;
    assert_eq!(r.status, 0, "{}", r.stderr);
    let callback = e.fake.consent(r.json()["authorize_url"].as_str().unwrap()).await.unwrap();
    let r = e.raw(&["complete".into(), "--json".into(), "--callback-url".into(), callback.to_string()], &env).await;
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(e.fake.requests(hubspot_connect::testing::Endpoint::TokenV1), 1, "HUBSPOT_OAUTH_VERSION=v1 was used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_paths() {
    let e = Env::new().await;
    assert_error(&e.run(&["status", "hc_nope", "--json"]).await, "CONNECTION_NOT_FOUND");
    let plain = e.run(&["status", "hc_nope"]).await;
    assert_error(&plain, "CONNECTION_NOT_FOUND");
    assert!(plain.stdout.is_empty(), "without --json nothing on stdout");

    // A replayed callback.
    let r = e.run(&["connect", "--tenant", "acme", "--json"]).await;
    let callback = e.fake.consent(r.json()["authorize_url"].as_str().unwrap()).await.unwrap();
    assert_eq!(e.run(&["complete", "--callback-url", callback.as_str(), "--json"]).await.status, 0);
    assert_error(&e.run(&["complete", "--callback-url", callback.as_str(), "--json"]).await, "INVALID_STATE");

    // Plain http:// to a public host, missing credentials, bad store, bad keys.
    let r = e
        .raw(
            &[
                "--api-base",
                "http://api.example.com",
                "--client-id",
                "x",
                "--client-secret",
                "y",
                "connect",
                "--tenant",
                "t",
                "--json",
            ]
            .map(str::to_owned),
            &[],
        )
        .await;
    assert_error(&r, "INVALID_CONFIG");
    let r = e
        .raw(&["--store".into(), e.store_url(), "connect".into(), "--tenant".into(), "t".into(), "--json".into()], &[])
        .await;
    assert_error(&r, "INVALID_CONFIG");
    assert!(r.stderr.contains("client id"));
    assert_error(&e.raw(&["--store", "ftp://x", "list", "--json"].map(str::to_owned), &[]).await, "INVALID_CONFIG");
    assert_error(&e.run(&["--encryption-keys", "k1:notbase64", "list", "--json"]).await, "INVALID_CONFIG");
    assert_error(&e.run(&["list", "--status", "sleeping", "--json"]).await, "INVALID_CONFIG");
    // A usage error is clap's: exit status 2.
    assert_eq!(e.run(&["frobnicate"]).await.status, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_store_from_the_command_line() {
    let e = Env::new().await;
    let key = hubspot_connect::store::EncryptionKey::generate("k1").unwrap().to_config();
    let r = e.run(&["--encryption-keys", &key, "connect", "--tenant", "acme", "--json"]).await;
    let callback = e.fake.consent(r.json()["authorize_url"].as_str().unwrap()).await.unwrap();
    let c = e.run(&["--encryption-keys", &key, "complete", "--callback-url", callback.as_str(), "--json"]).await.json();
    let id = c["id"].as_str().unwrap();
    let raw = e.stored_refresh_token(id).await;
    assert!(raw.starts_with("enc:v1:k1:"), "stored encrypted");
    let t = e.run(&["--encryption-keys", &key, "token", id, "--json"]).await.json();
    assert!(!t["access_token"].as_str().unwrap().starts_with("enc:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_the_whole_story() {
    let e = Env::new().await;
    let r = e.raw(&["demo".into(), "--json".into()], &[]).await;
    assert_eq!(r.status, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["demo"], "ok");
    assert!(r.stdout.contains("AUTH_SCOPE_DENIED"));
}

/// The same commands over a PostgreSQL database and a Redis server (`--store postgres://…`, `--store redis://…`,
/// each under its own `--store-prefix`), when their URLs are set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_redis_stores_from_the_command_line() {
    for var in ["HUBCONNECT_TEST_POSTGRES_URL", "HUBCONNECT_TEST_REDIS_URL"] {
        let Some(url) = std::env::var(var).ok().filter(|u| !u.is_empty()) else {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("SKIPPED: {var} is not set; hubconnect over that store not run");
            }
            continue;
        };
        let mut e = Env::new().await;
        let prefix = format!("cli{}", std::process::id());
        e.other_store = Some((url.clone(), prefix.clone()));
        let done = e.connect("acme").await;
        let id = done["id"].as_str().unwrap().to_owned();
        let token = e.run(&["token", &id, "--json"]).await;
        assert_eq!(token.status, 0, "{var}: {}", token.stderr);
        let listed = e.run(&["list", "--tenant", "acme", "--json"]).await;
        assert_eq!(listed.status, 0, "{var}: {}", listed.stderr);
        assert!(listed.stdout.contains(&id), "{var}: {}", listed.stdout);
        let refreshed = e.run(&["refresh", &id, "--force", "--json"]).await;
        assert_eq!(refreshed.status, 0, "{var}: {}", refreshed.stderr);
        let gone = e.run(&["disconnect", &id, "--json"]).await;
        assert_eq!(gone.status, 0, "{var}: {}", gone.stderr);
        assert_error(&e.run(&["token", &id, "--json"]).await, "CONNECTION_NOT_FOUND");
        // A URL the tool cannot use is a configuration error that does not echo the password.
        let scheme = url.split("://").next().unwrap();
        let db = if scheme.starts_with("redis") { "0" } else { "test" };
        e.other_store = Some((format!("{scheme}://u:CANARY-pw@127.0.0.1:1/{db}"), prefix.clone()));
        let r = e.run(&["list", "--json"]).await;
        assert_error(&r, "STORE_UNAVAILABLE");
        assert!(!format!("{}{}", r.stdout, r.stderr).contains("CANARY"), "{var}");
        // Leave nothing behind in the shared server.
        if var.contains("POSTGRES") {
            #[cfg(feature = "postgres")]
            {
                let store = hubspot_connect::store::PostgresStore::connect_with_prefix(&url, &prefix).await.unwrap();
                for t in ["connections", "pending", "leases", "events", "schema"] {
                    sqlx::query(&format!("DROP TABLE \"{prefix}_{t}\"")).execute(store.pool()).await.unwrap();
                }
            }
        } else {
            #[cfg(feature = "redis")]
            hubspot_connect::store::RedisStore::connect_with_prefix(&url, &prefix)
                .await
                .unwrap()
                .clear()
                .await
                .unwrap();
        }
    }
}

/// Findings 1 and 2: secrets never in `--help`, each readable from a file, and a warning (and a private file)
/// when tokens are kept without encryption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_files_and_never_in_help() {
    let e = Env::new().await;
    let leaky = [
        ("HUBCONNECT_STORE", "postgres://u:CANARY-pw@127.0.0.1:1/x".to_owned()),
        ("HUBSPOT_CLIENT_SECRET", "CANARY-secret".to_owned()),
        ("HUBCONNECT_ENCRYPTION_KEYS", "k1:CANARY-keys".to_owned()),
    ];
    let help = e.raw(&["--help".to_owned()], &leaky).await;
    assert_eq!(help.status, 0, "{}", help.stderr);
    assert!(!format!("{}{}", help.stdout, help.stderr).contains("CANARY"), "{}", help.stdout);
    for flag in ["--client-secret-file", "--encryption-keys-file", "--store-file"] {
        assert!(help.stdout.contains(flag), "{flag} in --help");
    }

    // Every secret from a file: the client secret (flag and env), the store URL, the encryption keys.
    let dir = std::env::temp_dir().join(format!("hc-cli-files-{}", hubspot_connect::ConnectionId::random()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("client-secret");
    std::fs::write(&secret_file, format!("{}\n", e.fake.client_secret())).unwrap();
    let store_file = dir.join("store-url");
    std::fs::write(&store_file, format!("{}\n", e.store_url())).unwrap();
    let keys_file = dir.join("keys");
    let key = hubspot_connect::store::EncryptionKey::generate("k1").unwrap().to_config();
    std::fs::write(&keys_file, format!("{key}\n")).unwrap();
    let uri = e.fake.uri();
    let common = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--store-file",
            store_file.to_str().unwrap(),
            "--client-id",
            e.fake.client_id(),
            "--redirect-uri",
            e.fake.redirect_uri(),
            "--auth-base",
            &uri,
            "--api-base",
            &uri,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    };
    let begun = e
        .raw(
            &common(&["--client-secret-file", secret_file.to_str().unwrap(), "connect", "--tenant", "acme", "--json"]),
            &[("HUBCONNECT_ENCRYPTION_KEYS_FILE", keys_file.display().to_string())],
        )
        .await;
    assert_eq!(begun.status, 0, "{}", begun.stderr);
    assert!(!begun.stderr.contains("unencrypted"), "no warning with keys: {}", begun.stderr);
    let callback = e.fake.consent(begun.json()["authorize_url"].as_str().unwrap()).await.unwrap();
    let done = e
        .raw(
            &common(&[
                "--encryption-keys-file",
                keys_file.to_str().unwrap(),
                "complete",
                "--callback-url",
                callback.as_str(),
                "--json",
            ]),
            &[("HUBSPOT_CLIENT_SECRET_FILE", secret_file.display().to_string())],
        )
        .await;
    assert_eq!(done.status, 0, "{}", done.stderr);
    let id = done.json()["id"].as_str().unwrap().to_owned();
    assert!(e.stored_refresh_token(&id).await.starts_with("enc:v1:k1:"));

    // Both a secret and its file: refused, naming neither value.
    let both = e.run(&["--client-secret-file", secret_file.to_str().unwrap(), "token", &id, "--json"]).await;
    assert_error(&both, "INVALID_CONFIG");
    let missing = e.run(&["--encryption-keys-file", "/nonexistent/keys", "list", "--json"]).await;
    assert_error(&missing, "INVALID_CONFIG");

    // Without encryption: a warning on stderr, and the SQLite file is the owner's only.
    let r = e.run(&["connect", "--tenant", "acme", "--json"]).await;
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(r.stderr.contains("warning: tokens are stored unencrypted"), "{}", r.stderr);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&e.db).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Finding 7: proxies named in the environment are not used silently (a proxy sees every token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_proxies_are_not_used() {
    let e = Env::new().await;
    let c = e.connect("acme").await;
    let id = c["id"].as_str().unwrap().to_owned();
    let proxy = wiremock::MockServer::start().await;
    let uri = e.fake.uri();
    let mut args: Vec<String> = [
        "--store",
        &e.store_url(),
        "--client-id",
        e.fake.client_id(),
        "--client-secret",
        e.fake.client_secret(),
        "--auth-base",
        &uri,
        "--api-base",
        &uri,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(["test".to_owned(), id, "--json".to_owned()]);
    let env: Vec<(&str, String)> = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .into_iter()
        .map(|k| (k, proxy.uri()))
        .collect();
    let r = e.raw(&args, &env).await;
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(proxy.received_requests().await.unwrap().len(), 0, "a request went through the proxy");
}

/// An operator who forces a refresh learns when it failed, even though the stored token is still valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_refresh_that_fails_exits_1() {
    use hubspot_connect::testing::{Endpoint, Failure};
    let e = Env::new().await;
    let c = e.connect("acme").await;
    let id = c["id"].as_str().unwrap().to_owned();
    e.fake.fail(Endpoint::Token202603, Failure::BadGatewayHtml, 3);
    let r = e.run(&["refresh", &id, "--force", "--json"]).await;
    assert_error(&r, "HUBSPOT_UNAVAILABLE");
    // The still-valid token is still served.
    let token = e.run(&["token", &id, "--json"]).await;
    assert_eq!(token.status, 0, "{}", token.stderr);
}

/// A running `hubconnect fake` and its ready line.
struct FakeServer {
    child: tokio::process::Child,
    ready: Value,
}

impl FakeServer {
    async fn start(args: &[&str]) -> FakeServer {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hubconnect"))
            .arg("fake")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line()).await.unwrap();
        let ready = serde_json::from_str(&line.unwrap().unwrap()).unwrap();
        // Nothing more is printed; keep the pipe drained anyway.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        FakeServer { child, ready }
    }

    fn base(&self) -> &str {
        self.ready["base_url"].as_str().unwrap()
    }

    /// hubconnect with this fake's app and hosts, over `db`.
    async fn hubconnect(&self, db: &std::path::Path, args: &[&str]) -> Run {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hubconnect"))
            .args(["--store", &format!("sqlite://{}", db.display())])
            .args(["--client-id", self.ready["client_id"].as_str().unwrap()])
            .args(["--client-secret", self.ready["client_secret"].as_str().unwrap()])
            .args(["--redirect-uri", self.ready["redirect_uris"][0].as_str().unwrap()])
            .args(["--auth-base", self.base(), "--api-base", self.base()])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .output()
            .await
            .unwrap();
        Run {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Sends the signal and waits for the exit status.
    async fn stop(mut self, signal: &str) -> i32 {
        let pid = self.child.id().unwrap().to_string();
        let sent = tokio::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().await.unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(std::time::Duration::from_secs(10), self.child.wait()).await.unwrap();
        status.unwrap().code().unwrap_or(-1)
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// `hubconnect fake` from another process: the ready line, a scenario file, a whole connect flow driven by
/// `hubconnect connect` / `complete`, the control API, and a clean stop on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_server_serves_a_connect_flow_to_another_process_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("hc-fake-{}", hubspot_connect::ConnectionId::random()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("scenario.json");
    std::fs::write(&scenario, r#"{"portals": [{"id": 4242, "name": "From the file", "account_type": "SANDBOX"}]}"#)
        .unwrap();
    let fake = FakeServer::start(&[
        "--listen",
        "127.0.0.1:0",
        "--redirect-uri",
        "http://localhost:3000/oauth/callback",
        "--redirect-uri",
        "https://app.vendor.example/hubspot/callback",
        "--scenario",
        scenario.to_str().unwrap(),
    ])
    .await;
    let ready = &fake.ready;
    assert!(fake.base().starts_with("http://127.0.0.1:"), "{ready}");
    assert!(!fake.base().ends_with(":0"), "{ready}");
    assert!(ready["client_id"].as_str().is_some_and(|s| !s.is_empty()), "{ready}");
    assert!(ready["client_secret"].as_str().is_some_and(|s| !s.is_empty()), "{ready}");
    assert_eq!(
        ready["redirect_uris"],
        serde_json::json!(["http://localhost:3000/oauth/callback", "https://app.vendor.example/hubspot/callback"])
    );
    let portals = ready["portals"].as_array().unwrap();
    let types: Vec<&str> = portals.iter().map(|p| p["account_type"].as_str().unwrap()).collect();
    assert!(types.iter().filter(|t| **t == "STANDARD").count() >= 2, "{ready}");
    assert!(types.contains(&"APP_DEVELOPER"), "{ready}");
    assert!(portals.iter().any(|p| p["id"] == 4242 && p["name"] == "From the file" && p["account_type"] == "SANDBOX"));
    let first_standard = portals.iter().find(|p| p["account_type"] == "STANDARD").unwrap()["id"].clone();

    let db = dir.join("store.db");
    let http = no_redirects();
    let mut connected = Vec::new();
    for portal in [None, Some("4242")] {
        let mut args = vec!["connect", "--tenant", "acme", "--scopes", "oauth,crm.objects.contacts.read", "--json"];
        if let Some(p) = portal {
            args.extend(["--portal", p]);
        }
        let r = fake.hubconnect(&db, &args).await;
        assert_eq!(r.status, 0, "{}", r.stderr);
        let url = r.json()["authorize_url"].as_str().unwrap().to_owned();
        assert!(url.starts_with(fake.base()), "{url}");
        let answer = http.get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 302, "instant consent");
        let callback = answer.headers()["location"].to_str().unwrap().to_owned();
        let r = fake.hubconnect(&db, &["complete", "--callback-url", &callback, "--json"]).await;
        assert_eq!(r.status, 0, "{}", r.stderr);
        connected.push(r.json());
    }
    assert_eq!(connected[0]["portal_id"], first_standard);
    assert_eq!(connected[0]["account_type"], "STANDARD");
    assert_eq!(connected[1]["portal_id"], 4242);
    assert_eq!(connected[1]["account_type"], "SANDBOX");
    let id = connected[0]["id"].as_str().unwrap();
    let r = fake.hubconnect(&db, &["refresh", id, "--force", "--json"]).await;
    assert_eq!(r.status, 0, "{}", r.stderr);

    let counts: Value = serde_json::from_str(
        &http.get(format!("{}/__fake/requests", fake.base())).send().await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    assert_eq!(counts["counts"]["authorize"], 2, "{counts}");
    assert_eq!(counts["counts"]["token:authorization_code"], 2, "{counts}");
    assert_eq!(counts["counts"]["token:refresh_token"], 1, "{counts}");
    let bad = http
        .post(format!("{}/__fake/scenario", fake.base()))
        .header("content-type", "application/json")
        .body(r#"{"rotation": "sometimes"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("\"field\":\"rotation\""));

    assert_eq!(fake.stop("TERM").await, 0, "a clean stop on SIGTERM");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `hubconnect fake --interactive` answers the consent page, and stops cleanly on SIGINT; bad flags and a bad
/// scenario file are refused with exit status 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interactive_fake_server_shows_the_consent_page_and_stops_on_sigint() {
    let fake = FakeServer::start(&["--interactive", "--client-id", "my-app", "--client-secret", "my-secret"]).await;
    assert_eq!(fake.ready["redirect_uris"], serde_json::json!(["http://localhost:3000/oauth/callback"]));
    assert_eq!((&fake.ready["client_id"], &fake.ready["client_secret"]), (&"my-app".into(), &"my-secret".into()));
    let mut url = url::Url::parse(&format!("{}/oauth/authorize", fake.base())).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", fake.ready["client_id"].as_str().unwrap())
        .append_pair("redirect_uri", "http://localhost:3000/oauth/callback")
        .append_pair("scope", "oauth");
    let answer = no_redirects().get(url).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let page = answer.text().await.unwrap();
    assert!(page.contains("Choose an account") && page.contains("Connect app") && page.contains("Cancel"), "{page}");
    assert_eq!(fake.stop("INT").await, 0, "a clean stop on SIGINT");

    let e = Env::new().await;
    // Only `fake` registers several redirect URIs; every other command takes one.
    let twice = e.run(&["--redirect-uri", "https://other.example/cb", "connect", "--tenant", "t", "--json"]).await;
    assert_error(&twice, "INVALID_CONFIG");
    let refused = e.raw(&["fake".into(), "--listen".into(), "0.0.0.0:0".into()], &[]).await;
    assert_error(&refused, "INVALID_CONFIG");
    assert!(refused.stderr.contains("loopback"), "{}", refused.stderr);
    let file = e.db.with_extension("json");
    std::fs::write(&file, r#"{"portals": [{"id": 1, "account_type": "GOLD"}]}"#).unwrap();
    let refused = e.raw(&["fake".into(), "--scenario".into(), file.display().to_string()], &[]).await;
    assert_error(&refused, "INVALID_CONFIG");
    assert!(refused.stderr.contains("portals[0].account_type"), "{}", refused.stderr);
    let _ = std::fs::remove_file(&file);
}
