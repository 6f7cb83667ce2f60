//! The JSON routes: list, status, test, reconnect and remove, each through the signed-in tenant's
//! [`TenantConnections`](crate::TenantConnections).

use std::sync::Arc;

use axum::extract::Path;
use axum::extract::Query;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::{Inner, json};
use crate::connection::{Connection, ConnectionId};
use crate::error::{Error, ErrorCode};
use crate::manager::BeginOptions;
use crate::scope::Scope;

/// A connection as the routes show it: never a token (the fields of the CLI's connection object).
#[derive(Serialize)]
struct ConnectionView<'a> {
    id: &'a str,
    tenant: &'a str,
    portal_id: u64,
    status: &'static str,
    scopes: Vec<&'a str>,
    installed_by: Option<&'a str>,
    account_type: Option<&'a str>,
    expires_at: Option<String>,
    last_error: Option<LastErrorView<'a>>,
}

#[derive(Serialize)]
struct LastErrorView<'a> {
    code: &'static str,
    message: &'a str,
    advice: &'static str,
}

impl<'a> From<&'a Connection> for ConnectionView<'a> {
    fn from(c: &'a Connection) -> Self {
        Self {
            id: c.id.as_str(),
            tenant: &c.tenant,
            portal_id: c.portal_id,
            status: c.status.as_str(),
            scopes: c.scopes.iter().map(Scope::as_str).collect(),
            installed_by: c.installed_by.as_deref(),
            account_type: c.account_type.as_ref().map(|t| t.as_str()),
            expires_at: c.expires_at.map(crate::clock::rfc3339::seconds),
            last_error: c.last_error.as_ref().map(|e| LastErrorView {
                code: e.code.as_str(),
                message: &e.message,
                advice: e.code.advice(),
            }),
        }
    }
}

/// The connection id from the path; one that cannot be read is, to the caller, a connection that does not exist.
fn id_of(path: Result<Path<String>, PathRejection>) -> Result<ConnectionId, ApiError> {
    match path {
        Ok(Path(id)) => Ok(ConnectionId::new(id)),
        Err(_) => Err(Error::new(ErrorCode::ConnectionNotFound, "no such connection").into()),
    }
}

fn answer(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(axum::response::IntoResponse::into_response)
}

pub(super) async fn list(i: Arc<Inner>, tenant: String) -> Response {
    answer(
        async {
            let connections = i.connections.tenant(tenant).list().await?;
            #[derive(Serialize)]
            struct List<'a> {
                connections: Vec<ConnectionView<'a>>,
            }
            Ok(json(StatusCode::OK, &List { connections: connections.iter().map(ConnectionView::from).collect() }))
        }
        .await,
    )
}

pub(super) async fn status(i: Arc<Inner>, tenant: String, path: Result<Path<String>, PathRejection>) -> Response {
    answer(
        async {
            let id = id_of(path)?;
            let c = i.connections.tenant(tenant).status(&id).await?;
            Ok(json(StatusCode::OK, &ConnectionView::from(&c)))
        }
        .await,
    )
}

pub(super) async fn test(i: Arc<Inner>, tenant: String, path: Result<Path<String>, PathRejection>) -> Response {
    answer(
        async {
            let id = id_of(path)?;
            let report = i.connections.tenant(tenant).test(&id).await?;
            // `TestReport` serializes as `{id, portal_id, account_type, scopes, latency_ms}`.
            Ok(json(StatusCode::OK, &report))
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct ReconnectQuery {
    return_to: Option<String>,
}

pub(super) async fn reconnect(
    i: Arc<Inner>,
    tenant: String,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ReconnectQuery>, QueryRejection>,
) -> Response {
    answer(
        async {
            let id = id_of(path)?;
            let Ok(Query(query)) = query else {
                return Err(
                    Error::new(ErrorCode::InvalidConfig, "the reconnect request's parameters are malformed").into()
                );
            };
            let return_to = query.return_to.unwrap_or_else(|| i.default_return.clone());
            let options = BeginOptions::default().return_to(return_to);
            let begun = i.connections.tenant(tenant).reconnect(&id, &i.scopes, options).await?;
            #[derive(Serialize)]
            struct Redirect<'a> {
                authorize_url: &'a str,
                expires_at: String,
            }
            Ok(json(
                StatusCode::OK,
                &Redirect {
                    authorize_url: begun.authorize_url.as_str(),
                    expires_at: crate::clock::rfc3339::seconds(begun.expires_at),
                },
            ))
        }
        .await,
    )
}

pub(super) async fn remove(i: Arc<Inner>, tenant: String, path: Result<Path<String>, PathRejection>) -> Response {
    answer(
        async {
            let id = id_of(path)?;
            let report = i.connections.tenant(tenant).disconnect(&id).await?;
            if let Some(e) = &report.revoke_error {
                tracing::info!(
                    connection = report.id.as_str(),
                    code = e.code().as_str(),
                    "revoke failed; removed anyway"
                );
            }
            #[derive(Serialize)]
            struct Removed<'a> {
                id: &'a str,
                revoked: bool,
            }
            Ok(json(StatusCode::OK, &Removed { id: report.id.as_str(), revoked: report.revoked }))
        }
        .await,
    )
}
