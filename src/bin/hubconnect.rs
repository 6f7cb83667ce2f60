//! `hubconnect`: the ops tool and scriptable face of hubspot-connect, over the same store as the vendor's app.
//!
//! Every option is global (before or after the subcommand) and has an environment variable; every subcommand takes
//! `--json` and then prints exactly one JSON object on stdout. Failure: exit status 1, `error[CODE]: message` on
//! stderr, and with `--json` also `{"error":{"code":…,"message":…}}` on stdout. Usage errors: exit status 2 (clap).
// A command line tool prints: that is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};
use hubspot_connect::store::{ConnectionFilter, EncryptedStore, KeyRing, MemoryStore, SqliteStore, TokenStore};
use hubspot_connect::testing::FakeHubSpot;
use hubspot_connect::{
    BeginOptions, Callback, ClientSecret, ConnectionId, ConnectionStatus, Connections, Error, ErrorCode,
    HubSpotConnector, Result, Scope, Scopes, hubspot::ApiVersion,
};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(name = "hubconnect", version, about = "Connect HubSpot portals over OAuth and keep them connected")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Token store: sqlite://FILE, memory:, postgres://…, redis://… (a URL with a password: prefer --store-file)
    #[arg(
        long,
        global = true,
        env = "HUBCONNECT_STORE",
        hide_env_values = true,
        default_value = "sqlite://hubconnect.db"
    )]
    store: String,
    /// Read the token store's URL from this file instead of --store (keeps a password out of `ps` and history).
    #[arg(long, global = true, env = "HUBCONNECT_STORE_FILE")]
    store_file: Option<std::path::PathBuf>,
    /// Table or key prefix, so several apps share one server.
    #[arg(long, global = true, env = "HUBCONNECT_STORE_PREFIX", default_value = "hubconnect")]
    store_prefix: String,
    /// The app's client id.
    #[arg(long, global = true, env = "HUBSPOT_CLIENT_ID")]
    client_id: Option<String>,
    /// The app's client secret (prefer --client-secret-file).
    #[arg(long, global = true, env = "HUBSPOT_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// Read the app's client secret from this file.
    #[arg(long, global = true, env = "HUBSPOT_CLIENT_SECRET_FILE")]
    client_secret_file: Option<std::path::PathBuf>,
    /// The app's redirect URI (`fake` takes it more than once: every URL the fake's app registers).
    #[arg(long, global = true, env = "HUBSPOT_REDIRECT_URI", default_value = "http://localhost:3000/oauth/callback")]
    redirect_uri: Vec<String>,
    /// HubSpot's login host.
    #[arg(long, global = true, env = "HUBSPOT_AUTH_BASE", default_value = "https://app.hubspot.com")]
    auth_base: String,
    /// HubSpot's API host.
    #[arg(long, global = true, env = "HUBSPOT_API_BASE", default_value = "https://api.hubapi.com")]
    api_base: String,
    /// OAuth endpoint generation: v1, v3 or 2026-03.
    #[arg(long, global = true, env = "HUBSPOT_OAUTH_VERSION", default_value = "2026-03")]
    api_version: String,
    /// Refresh this many seconds before expiry.
    #[arg(long, global = true, env = "HUBCONNECT_REFRESH_MARGIN", default_value_t = 300)]
    refresh_margin: u64,
    /// Seconds a started authorization is accepted.
    #[arg(long, global = true, env = "HUBCONNECT_AUTH_TTL", default_value_t = 600)]
    auth_ttl: u64,
    /// Most portals one tenant may connect (default: unlimited).
    #[arg(long, global = true, env = "HUBCONNECT_MAX_PORTALS")]
    max_portals_per_tenant: Option<usize>,
    /// Let several tenants connect the same portal.
    #[arg(long, global = true, env = "HUBCONNECT_ALLOW_SHARED_PORTALS")]
    allow_shared_portals: bool,
    /// Encryption keys, id:base64key,… (standard base64 of 32 bytes; the first key encrypts; prefer
    /// --encryption-keys-file).
    #[arg(long, global = true, env = "HUBCONNECT_ENCRYPTION_KEYS", hide_env_values = true)]
    encryption_keys: Option<String>,
    /// Read the encryption keys from this file.
    #[arg(long, global = true, env = "HUBCONNECT_ENCRYPTION_KEYS_FILE")]
    encryption_keys_file: Option<std::path::PathBuf>,
    /// Print exactly one JSON object on stdout.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start connecting a portal: prints the authorize URL (and with --listen, serves the callback).
    Connect {
        /// The tenant the connection belongs to.
        #[arg(long)]
        tenant: String,
        /// Required scopes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "oauth")]
        scopes: Vec<String>,
        /// Optional scopes, comma-separated.
        #[arg(long, value_delimiter = ',')]
        optional_scopes: Vec<String>,
        /// Preselect this portal.
        #[arg(long)]
        portal: Option<u64>,
        /// Serve the callback on this address (host:port) and complete it.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Complete a pending authorization from the full callback URL.
    Complete {
        /// The URL HubSpot redirected to.
        #[arg(long)]
        callback_url: String,
    },
    /// Print a connection.
    Status {
        /// The connection id.
        id: String,
    },
    /// List connections.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Only in this status: connected, needs_reauth, backoff, disconnected.
        #[arg(long)]
        status: Option<String>,
    },
    /// Print a valid access token, refreshing first if due.
    Token {
        /// The connection id.
        id: String,
    },
    /// Refresh a connection's tokens if due (or now, with --force).
    Refresh {
        /// The connection id.
        id: String,
        /// Refresh even if the token is not due.
        #[arg(long)]
        force: bool,
    },
    /// Test a connection against HubSpot.
    Test {
        /// The connection id.
        id: String,
    },
    /// Revoke at HubSpot and purge locally.
    Disconnect {
        /// The connection id.
        id: String,
    },
    /// The whole story against the built-in fake HubSpot, step by step.
    Demo,
    /// Serve the fake HubSpot (login and API hosts, and the control API /__fake/*) until SIGINT or SIGTERM;
    /// prints one JSON line when ready: base_url, client_id, client_secret, redirect_uris, portals.
    Fake {
        /// Listen on this address (host:port, a loopback one: the fake speaks plain http).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// A scenario (JSON: portals, user, refuse_scopes, decline, rotation, access_token_ttl, failures) to start
        /// with.
        #[arg(long)]
        scenario: Option<std::path::PathBuf>,
        /// Answer the authorize step with the clickable consent page instead of consenting at once.
        #[arg(long)]
        interactive: bool,
    },
}

type Manager = Connections;

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidConfig, message)
}

/// RFC 3339 seconds, clamped to the years RFC 3339 can write: a corrupt stored time must not panic the tool.
fn rfc3339(t: Option<SystemTime>) -> Value {
    let last = SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    t.map_or(Value::Null, |t| {
        Value::String(humantime::format_rfc3339_seconds(t.clamp(SystemTime::UNIX_EPOCH, last)).to_string())
    })
}

/// A secret given directly or in a file (`what` names it in errors; the file's content never appears in one).
/// Giving both is a configuration error. A file's trailing line break is not part of the secret.
fn secret_value(what: &str, value: Option<&str>, file: Option<&std::path::Path>) -> Result<Option<String>> {
    match (value, file) {
        (Some(_), Some(_)) => Err(config_error(format!("{what} is given both directly and as a file; give one"))),
        (Some(v), None) => Ok(Some(v.to_owned())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| config_error(format!("cannot read the {what} file {}: {}", path.display(), e.kind())))?;
            Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()))
        }
        (None, None) => Ok(None),
    }
}

/// The store URL: `--store-file` when given, else `--store` (whose default is the SQLite file).
fn store_url(g: &Global) -> Result<String> {
    match &g.store_file {
        Some(path) => Ok(secret_value("store URL", None, Some(path))?.unwrap_or_default()),
        None => Ok(g.store.clone()),
    }
}

fn encryption_keys(g: &Global) -> Result<Option<String>> {
    let keys = secret_value("encryption keys", g.encryption_keys.as_deref(), g.encryption_keys_file.as_deref())?;
    Ok(keys.filter(|k| !k.trim().is_empty()))
}

async fn open_store(g: &Global) -> Result<Arc<dyn TokenStore>> {
    let url = store_url(g)?;
    let url = url.trim();
    let store: Arc<dyn TokenStore> = if url == "memory:" || url == "memory" {
        Arc::new(MemoryStore::new())
    } else if url.starts_with("sqlite:") {
        Arc::new(SqliteStore::open_with_prefix(url, &g.store_prefix).await?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        open_postgres(url, &g.store_prefix).await?
    } else if url.starts_with("redis://") || url.starts_with("rediss://") {
        open_redis(url, &g.store_prefix).await?
    } else {
        return Err(config_error("the store must be sqlite://FILE, memory:, postgres://… or redis://…"));
    };
    match encryption_keys(g)? {
        Some(keys) => Ok(Arc::new(EncryptedStore::new(store, KeyRing::parse(&keys)?))),
        None => Ok(store),
    }
}

/// Warns on stderr when a command that may write tokens keeps them in a lasting store without encryption.
fn warn_if_unencrypted(g: &Global) -> Result<()> {
    let url = store_url(g)?;
    let url = url.trim();
    if url == "memory:" || url == "memory" || encryption_keys(g)?.is_some() {
        return Ok(());
    }
    let kind = url.split(':').next().unwrap_or("the");
    eprintln!(
        "warning: tokens are stored unencrypted in the {kind} store; anyone who can read it can use every \
         connection. Set HUBCONNECT_ENCRYPTION_KEYS_FILE (or --encryption-keys-file) to encrypt them at rest."
    );
    Ok(())
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, prefix: &str) -> Result<Arc<dyn TokenStore>> {
    Ok(Arc::new(hubspot_connect::store::PostgresStore::connect_with_prefix(url, prefix).await?))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_: &str, _: &str) -> Result<Arc<dyn TokenStore>> {
    Err(config_error("this hubconnect was built without PostgreSQL support (feature `postgres`)"))
}

#[cfg(feature = "redis")]
async fn open_redis(url: &str, prefix: &str) -> Result<Arc<dyn TokenStore>> {
    Ok(Arc::new(hubspot_connect::store::RedisStore::connect_with_prefix(url, prefix).await?))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(_: &str, _: &str) -> Result<Arc<dyn TokenStore>> {
    Err(config_error("this hubconnect was built without Redis support (feature `redis`)"))
}

/// The one redirect URI of every command but `fake`.
fn redirect_uri(g: &Global) -> Result<String> {
    match g.redirect_uri.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(config_error("give --redirect-uri once (only `fake` registers several)")),
    }
}

/// Builds the manager. `needs_hubspot`: the command talks to HubSpot, so the client credentials are required.
async fn manager(g: &Global, needs_hubspot: bool) -> Result<Manager> {
    let client_secret = secret_value("client secret", g.client_secret.as_deref(), g.client_secret_file.as_deref())?;
    let (id, secret) = match (&g.client_id, client_secret) {
        (Some(id), Some(secret)) if !id.trim().is_empty() && !secret.is_empty() => (id.clone(), secret),
        _ if needs_hubspot => {
            return Err(config_error(
                "the HubSpot client id and secret are required (--client-id and --client-secret-file or \
                 --client-secret, or HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET_FILE or HUBSPOT_CLIENT_SECRET)",
            ));
        }
        _ => ("unset".to_owned(), "unset".to_owned()),
    };
    if needs_hubspot {
        warn_if_unencrypted(g)?;
    }
    let version: ApiVersion = g.api_version.parse()?;
    let connector = HubSpotConnector::builder(id, ClientSecret::new(secret), redirect_uri(g)?)
        .auth_base(g.auth_base.clone())
        .eu_auth_base(g.auth_base.replace("app.hubspot.com", "app-eu1.hubspot.com"))
        .api_base(g.api_base.clone())
        .version(version)
        .build()?;
    let store = open_store(g).await?;
    let mut builder = Connections::builder_shared(Arc::new(connector), store)
        .refresh_margin(Duration::from_secs(g.refresh_margin), Duration::ZERO)
        .auth_ttl(Duration::from_secs(g.auth_ttl))
        .allow_shared_portals(g.allow_shared_portals);
    if let Some(max) = g.max_portals_per_tenant {
        builder = builder.max_portals_per_tenant(max);
    }
    Ok(builder.build())
}

fn connection_json(c: &hubspot_connect::Connection) -> Value {
    // What people and scripts see of a connection: never a token.
    json!({
        "id": c.id.as_str(),
        "tenant": c.tenant,
        "portal_id": c.portal_id,
        "status": c.status.as_str(),
        "scopes": c.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
        "installed_by": c.installed_by,
        "account_type": c.account_type.as_ref().map(|t| t.as_str()),
        "expires_at": rfc3339(c.expires_at),
        "last_error": c.last_error.as_ref().map(|e| json!({"code": e.code.as_str(), "message": e.message})),
    })
}

fn human_connection(c: &hubspot_connect::Connection) -> String {
    format!(
        "{}  tenant={}  portal={}  status={}  installed_by={}  account_type={}  expires_at={}{}",
        c.id,
        c.tenant,
        c.portal_id,
        c.status,
        c.installed_by.as_deref().unwrap_or("-"),
        c.account_type.as_ref().map_or("-", |t| t.as_str()),
        rfc3339(c.expires_at).as_str().unwrap_or("-"),
        c.last_error.as_ref().map(|e| format!("  last_error={}: {}", e.code, e.message)).unwrap_or_default(),
    )
}

/// What a command prints: the JSON object, and the lines for people.
struct Output {
    json: Value,
    text: String,
}

async fn run(cli: Cli) -> Result<Output> {
    let g = &cli.global;
    match &cli.command {
        Command::Connect { tenant, scopes, optional_scopes, portal, listen } => {
            let m = manager(g, true).await?;
            let set = Scopes::new()
                .require_all(scopes.iter().filter(|s| !s.trim().is_empty()).map(|s| Scope::new(s.as_str())))
                .optionally_all(
                    optional_scopes.iter().filter(|s| !s.trim().is_empty()).map(|s| Scope::new(s.as_str())),
                );
            let mut options = BeginOptions::default();
            if let Some(p) = portal {
                options = options.portal(*p);
            }
            let begun = m.begin(tenant, &set, options).await?;
            let url = begun.authorize_url.to_string();
            let Some(addr) = listen else {
                return Ok(Output {
                    json: json!({"authorize_url": url, "expires_at": rfc3339(Some(begun.expires_at))}),
                    text: format!(
                        "Open this URL to connect (valid until {}):\n{url}",
                        rfc3339(Some(begun.expires_at)).as_str().unwrap_or("")
                    ),
                });
            };
            eprintln!("Open this URL to connect:\n{url}\nWaiting for HubSpot's redirect on {addr} …");
            let query = serve_one_callback(addr, Duration::from_secs(g.auth_ttl)).await?;
            let done = m.complete(&Callback::from_query(&query)?).await?;
            Ok(Output { json: connection_json(&done.connection), text: human_connection(&done.connection) })
        }
        Command::Complete { callback_url } => {
            let m = manager(g, true).await?;
            let done = m.complete(&Callback::from_url(callback_url)?).await?;
            Ok(Output { json: connection_json(&done.connection), text: human_connection(&done.connection) })
        }
        Command::Status { id } => {
            let c = manager(g, false).await?.status(&ConnectionId::new(id.as_str())).await?;
            Ok(Output { json: connection_json(&c), text: human_connection(&c) })
        }
        Command::List { tenant, status } => {
            let mut filter = ConnectionFilter::all();
            if let Some(t) = tenant {
                filter = filter.tenant(t.as_str());
            }
            if let Some(s) = status {
                let s = ConnectionStatus::parse(s).ok_or_else(|| {
                    config_error(format!("unknown status {s:?} (connected, needs_reauth, backoff, disconnected)"))
                })?;
                filter = filter.status(s);
            }
            let list = manager(g, false).await?.list(&filter).await?;
            let text = if list.is_empty() {
                "no connections".to_owned()
            } else {
                list.iter().map(human_connection).collect::<Vec<_>>().join("\n")
            };
            Ok(Output { json: json!({"connections": list.iter().map(connection_json).collect::<Vec<_>>()}), text })
        }
        Command::Token { id } => {
            let m = manager(g, true).await?;
            let id = ConnectionId::new(id.as_str());
            let token = m.access_token(&id).await?;
            let c = m.status(&id).await?;
            // The only command that prints a token, and never the refresh token.
            Ok(Output {
                json: json!({"id": id.as_str(), "access_token": token.secret(), "expires_at": rfc3339(c.expires_at)}),
                text: token.secret().to_owned(),
            })
        }
        Command::Refresh { id, force } => {
            let (manager, id) = (manager(g, true).await?, ConnectionId::new(id.as_str()));
            let c = if *force { manager.force_refresh(&id).await? } else { manager.refresh(&id).await? };
            Ok(Output {
                json: json!({"id": c.id.as_str(), "expires_at": rfc3339(c.expires_at)}),
                text: format!("{}  refreshed; expires_at={}", c.id, rfc3339(c.expires_at).as_str().unwrap_or("-")),
            })
        }
        Command::Test { id } => {
            let r = manager(g, true).await?.test(&ConnectionId::new(id.as_str())).await?;
            let scopes: Vec<&str> = r.scopes.iter().map(Scope::as_str).collect();
            Ok(Output {
                json: json!({
                    "id": r.id.as_str(),
                    "portal_id": r.portal_id,
                    "account_type": r.account_type.as_ref().map(|t| t.as_str().to_owned()),
                    "scopes": scopes,
                    "latency_ms": u64::try_from(r.latency.as_millis()).unwrap_or(u64::MAX),
                }),
                text: format!(
                    "{}  OK: portal {} ({}), {} scopes, {} ms",
                    r.id,
                    r.portal_id,
                    r.account_type.as_ref().map_or("?", |t| t.as_str()),
                    scopes.len(),
                    r.latency.as_millis()
                ),
            })
        }
        Command::Disconnect { id } => {
            let d = manager(g, true).await?.disconnect(&ConnectionId::new(id.as_str())).await?;
            let why = d
                .revoke_error
                .as_ref()
                .map(|e| format!(" (revoke failed: error[{}]: {e})", e.code()))
                .unwrap_or_default();
            Ok(Output {
                json: json!({"id": d.id.as_str(), "revoked": d.revoked}),
                text: format!("{}  disconnected; revoked at HubSpot: {}{why}", d.id, d.revoked),
            })
        }
        Command::Demo => demo().await,
        Command::Fake { .. } => Err(config_error("`fake` runs until stopped and prints its own line")),
    }
}

/// The portals `hubconnect fake` starts with (before its `--scenario`): two standard accounts (one in the EU) and
/// the app developer's own account.
const FAKE_PORTALS: &str = r#"{"portals": [
    {"id": 62515, "name": "Acme Inc", "account_type": "STANDARD"},
    {"id": 62516, "name": "Acme Europe", "account_type": "STANDARD", "eu": true},
    {"id": 62517, "name": "Acme Developer", "account_type": "APP_DEVELOPER"}
]}"#;

/// Whether every address `listen` names is a loopback one; the addresses.
fn loopback_addresses(listen: &str) -> Result<Vec<std::net::SocketAddr>> {
    use std::net::ToSocketAddrs as _;
    let addrs: Vec<_> = listen
        .to_socket_addrs()
        .map_err(|e| config_error(format!("--listen {listen:?} is not a host:port address: {e}")))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(config_error(format!(
            "--listen {listen:?}: the fake speaks plain http, so it listens on loopback addresses only \
             (127.0.0.1, [::1], localhost)"
        )));
    }
    Ok(addrs)
}

/// `hubconnect fake`: serves the fake HubSpot until SIGINT or SIGTERM, after one JSON line on stdout.
async fn serve_fake(g: &Global, listen: &str, scenario: Option<&std::path::Path>, interactive: bool) -> Result<()> {
    use hubspot_connect::testing::{AppRegistration, Scenario};
    let signals = StopSignals::new()?;
    let addrs = loopback_addresses(listen)?;
    let mut start =
        Scenario::from_json(FAKE_PORTALS).map_err(|e| config_error(format!("the built-in portals: {e}")))?;
    if let Some(path) = scenario {
        let text = std::fs::read_to_string(path)
            .map_err(|e| config_error(format!("cannot read the scenario {}: {}", path.display(), e.kind())))?;
        start.merge(
            Scenario::from_json(&text)
                .map_err(|e| config_error(format!("the scenario {} is refused: {e}", path.display())))?,
        );
    }
    let mut app = AppRegistration::default();
    let client_secret = secret_value("client secret", g.client_secret.as_deref(), g.client_secret_file.as_deref())?;
    if let Some(id) = g.client_id.as_ref().filter(|id| !id.trim().is_empty()) {
        app.client_id = id.clone();
    }
    if let Some(secret) = client_secret.filter(|s| !s.is_empty()) {
        app.client_secret = secret;
    }
    app.redirect_uris = g.redirect_uri.clone();
    let listener = std::net::TcpListener::bind(addrs.as_slice())
        .map_err(|e| config_error(format!("cannot listen on {listen}: {e}")))?;
    let fake = FakeHubSpot::builder()
        .app(app)
        .listener(listener)
        .interactive(interactive)
        .control_api(true)
        .record_requests(false)
        .scenario(start)
        .start()
        .await;
    let portals: Vec<Value> = fake
        .portals()
        .iter()
        .map(|p| json!({"id": p.id, "name": p.name, "account_type": p.account_type.as_str()}))
        .collect();
    let ready = json!({
        "base_url": fake.uri(),
        "client_id": fake.client_id(),
        "client_secret": fake.client_secret(),
        "redirect_uris": fake.app().redirect_uris,
        "portals": portals,
    });
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{ready}")
            .and_then(|()| stdout.flush())
            .map_err(|e| config_error(format!("cannot print the ready line: {e}")))?;
    }
    signals.wait().await;
    drop(fake);
    Ok(())
}

/// SIGINT and SIGTERM, caught from the moment this is built (before the server starts, so that an early signal
/// still stops it cleanly).
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let error = |e: std::io::Error| config_error(format!("cannot catch SIGINT and SIGTERM: {e}"));
            Ok(StopSignals {
                term: signal(SignalKind::terminate()).map_err(error)?,
                int: signal(SignalKind::interrupt()).map_err(error)?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Waits for the first of them.
    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serves one OAuth callback on `addr`: reads the request line, answers a small page, returns the query.
async fn serve_one_callback(addr: &str, timeout: Duration) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| config_error(format!("cannot listen on {addr}: {e}")))?;
    let accept = async {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { continue };
            let mut buf = vec![0u8; 16 * 1024];
            let Ok(n) = socket.read(&mut buf).await else { continue };
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let target = head.lines().next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or("").to_owned();
            let query = target.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
            let is_callback = query.contains("code=") || query.contains("error=");
            let body = if is_callback {
                "<html><body>Received. You can close this tab and return to the terminal.</body></html>"
            } else {
                "<html><body>Waiting for HubSpot's redirect.</body></html>"
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            if is_callback {
                return query;
            }
        }
    };
    tokio::time::timeout(timeout, accept)
        .await
        .map_err(|_| Error::new(ErrorCode::TokenExpired, "no callback arrived before the authorization expired"))
}

/// The whole story against the built-in fake HubSpot, with a memory store.
async fn demo() -> Result<Output> {
    let fake = FakeHubSpot::start().await;
    let connector = fake.connector_builder().build()?;
    let m: Manager = Connections::builder(connector, MemoryStore::new()).build();
    let mut steps: Vec<Value> = Vec::new();
    let mut lines: Vec<String> = vec![format!("fake HubSpot on {}", fake.uri())];
    let scopes = Scopes::new().require("crm.objects.contacts.read");

    let begun = m.begin("demo-tenant", &scopes, BeginOptions::default()).await?;
    lines.push("1. connect      authorize URL issued".into());
    steps.push(json!({"step": "connect", "expires_at": rfc3339(Some(begun.expires_at))}));
    let callback = fake
        .consent(begun.authorize_url.as_str())
        .await
        .map_err(|e| Error::new(ErrorCode::AccessDenied, e.to_string()))?;
    let done = m.complete(&Callback::from_url(callback.as_str())?).await?;
    let id = done.connection.id.clone();
    lines.push(format!("2. complete     {}", human_connection(&done.connection)));
    steps.push(json!({"step": "complete", "connection": connection_json(&done.connection)}));
    let token = m.access_token(&id).await?;
    lines.push(format!("3. token        {token:?} (the real value is printed by `hubconnect token`)"));
    steps.push(json!({"step": "token", "ok": true}));
    let refreshed = m.force_refresh(&id).await?;
    lines.push(format!("4. refresh      version {} → {}", done.connection.version, refreshed.version));
    steps.push(json!({"step": "refresh", "expires_at": rfc3339(refreshed.expires_at)}));
    let report = m.test(&id).await?;
    lines.push(format!("5. test         portal {} OK in {} ms", report.portal_id, report.latency.as_millis()));
    steps.push(json!({"step": "test", "portal_id": report.portal_id, "latency_ms": u64::try_from(report.latency.as_millis()).unwrap_or(0)}));
    fake.refuse_scopes(&["crm.objects.contacts.read"]);
    let begun = m.begin("other-tenant", &scopes, BeginOptions::default()).await?;
    let callback = fake
        .consent(begun.authorize_url.as_str())
        .await
        .map_err(|e| Error::new(ErrorCode::AccessDenied, e.to_string()))?;
    let refused = m.complete(&Callback::from_url(callback.as_str())?).await;
    let code = refused.as_ref().err().map(|e| e.code().as_str()).unwrap_or("none");
    lines.push(format!("6. refused      a user unticked a required scope: error[{code}]"));
    steps.push(json!({"step": "refused_scope", "error": code}));
    let gone = m.disconnect(&id).await?;
    lines.push(format!("7. disconnect   revoked at HubSpot: {}", gone.revoked));
    steps.push(json!({"step": "disconnect", "revoked": gone.revoked}));
    Ok(Output { json: json!({"demo": "ok", "steps": steps}), text: lines.join("\n") })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_out = cli.global.json;
    let result = match &cli.command {
        Command::Fake { listen, scenario, interactive } => {
            serve_fake(&cli.global, listen, scenario.as_deref(), *interactive).await.map(|()| None)
        }
        _ => run(cli).await.map(Some),
    };
    match result {
        Ok(out) => {
            match out {
                Some(out) if json_out => println!("{}", out.json),
                Some(out) => println!("{}", out.text),
                None => {}
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error[{}]: {}", e.code().as_str(), e.message());
            if json_out {
                println!("{}", json!({"error": {"code": e.code().as_str(), "message": e.message()}}));
            }
            ExitCode::from(1)
        }
    }
}
