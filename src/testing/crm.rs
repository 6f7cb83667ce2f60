//! The CRM objects API responder (`/crm/v3/objects/...`): the bearer and scope checks, HubSpot's rolling rate
//! limits per portal, then list, get, search and create on the portal's objects.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Value, json};
use url::Url;
use wiremock::Request;

use super::request::{bearer, percent_decode};
use super::state::crm::{FakeObject, canonical_type, default_properties, last_modified_property};
use super::state::{AccessLookup, State};
use super::types::Endpoint;
use super::wire::{self, Answer, object_json, validation_error};

const LIST_LIMIT_DEFAULT: usize = 10;
const LIST_LIMIT_MAX: usize = 100;
const SEARCH_LIMIT_MAX: usize = 200;

/// The scope an operation needs: `crm.objects.{type}.read` / `.write` (tickets: `tickets`).
fn required_scope(object_type: &str, write: bool) -> String {
    if object_type == "tickets" {
        return "tickets".to_owned();
    }
    format!("crm.objects.{object_type}.{}", if write { "write" } else { "read" })
}

// ---- requests ----

/// `/crm/v3/objects/{type}[/{rest}]`: the type segment and the rest, percent-decoded.
fn route(url: &Url) -> (String, Option<String>) {
    let rest = url.path().strip_prefix("/crm/v3/objects/").unwrap_or_default();
    let mut parts = rest.splitn(2, '/');
    let object_type = percent_decode(parts.next().unwrap_or_default());
    let tail = parts.next().map(percent_decode);
    (object_type, tail)
}

/// The portal of the request's bearer token, if it is live.
fn live_portal(request: &Request, state: &State, now: SystemTime) -> Option<u64> {
    match state.access_lookup(bearer(request)?, now) {
        AccessLookup::Live(record) => Some(record.grant.portal_id),
        _ => None,
    }
}

/// An injected failure answered the request: HubSpot would still have counted it against the portal's limits.
pub(crate) fn note_injected(endpoint: Endpoint, request: &Request, state: &mut State, now: SystemTime) {
    if let Some(portal_id) = live_portal(request, state, now) {
        state.crm.record(portal_id, endpoint == Endpoint::CrmSearch, now);
    }
}

/// Answers a CRM endpoint: bearer, rate limits, object type, scope, then the operation.
pub(crate) fn handle(endpoint: Endpoint, request: &Request, state: &mut State, now: SystemTime) -> Answer {
    let Some(token) = bearer(request) else {
        return wire::credentials_not_found();
    };
    let grant = match state.access_lookup(token, now) {
        AccessLookup::Live(record) => record.grant.clone(),
        AccessLookup::Expired(ago) => return wire::token_expired(ago),
        AccessLookup::Invalid => return wire::credentials_not_found(),
    };
    let portal_id = grant.portal_id;
    let search = endpoint == Endpoint::CrmSearch;
    let limit_headers = match state.crm.admit(portal_id, search, now) {
        Ok(headers) => headers,
        Err(limited) => return wire::rate_limited(&limited),
    };
    let (segment, tail) = route(&request.url);
    let Some(object_type) = canonical_type(&segment) else {
        return validation_error(&format!("Unable to infer object type from: {segment}"));
    };
    let scope = required_scope(object_type, endpoint == Endpoint::CrmCreate);
    if !grant.scopes.contains(&scope) {
        return wire::missing_scopes(&scope);
    }
    if matches!(endpoint, Endpoint::CrmSearch | Endpoint::CrmCreate) && !json_or_unlabelled(request) {
        return Answer::json(
            415,
            &wire::generic_error("Unsupported Media Type: send the body as application/json.", "VALIDATION_ERROR"),
        );
    }
    let answer = match endpoint {
        Endpoint::CrmList => list(&public_url(request), portal_id, object_type, state),
        Endpoint::CrmGet => get(&request.url, tail.as_deref().unwrap_or_default(), portal_id, object_type, state),
        Endpoint::CrmSearch => search_objects(&request.body, portal_id, object_type, state),
        Endpoint::CrmCreate => create(&request.body, portal_id, object_type, state, now),
        _ => validation_error("not a CRM endpoint"),
    };
    // HubSpot sends no rate-limit headers on search answers, and no daily ones for OAuth apps.
    match (limit_headers, search, state.crm.rate_limit) {
        (Some((max, remaining)), false, Some((_, window))) => answer
            .header("X-HubSpot-RateLimit-Interval-Milliseconds", window.as_millis().to_string())
            .header("X-HubSpot-RateLimit-Max", max.to_string())
            .header("X-HubSpot-RateLimit-Remaining", remaining.to_string()),
        _ => answer,
    }
}

/// Whether the body is labelled JSON (`application/json`, `application/*+json`), or not labelled at all.
fn json_or_unlabelled(request: &Request) -> bool {
    let Some(value) = request.headers.get(http::header::CONTENT_TYPE) else {
        return true;
    };
    let mime = value.to_str().unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// The request's URL on the host the client called (its `Host` header), for `paging.next.link`.
fn public_url(request: &Request) -> Url {
    let host = request.headers.get(http::header::HOST).and_then(|h| h.to_str().ok());
    host.and_then(|h| Url::parse(&format!("{}://{h}", request.url.scheme())).ok())
        .and_then(|base| base.join(&request.url[url::Position::BeforePath..]).ok())
        .unwrap_or_else(|| request.url.clone())
}

/// The `properties` query parameter: repeated and/or comma-separated.
fn wanted_properties(url: &Url) -> Vec<String> {
    url.query_pairs()
        .filter(|(k, _)| k == "properties")
        .flat_map(|(_, v)| v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

fn query<'a>(url: &'a Url, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn parse_limit(raw: Option<&str>, max: usize) -> Result<usize, Answer> {
    match raw {
        None => Ok(LIST_LIMIT_DEFAULT),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n.min(max)),
            _ => Err(validation_error(&format!("Invalid limit: {v}"))),
        },
    }
}

fn list(url: &Url, portal_id: u64, object_type: &'static str, state: &mut State) -> Answer {
    let limit = match parse_limit(query(url, "limit").as_deref(), LIST_LIMIT_MAX) {
        Ok(l) => l,
        Err(answer) => return answer,
    };
    let after = match query(url, "after") {
        None => 0,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) => n,
            Err(_) => return validation_error(&format!("Invalid after: {v}")),
        },
    };
    let wanted = wanted_properties(url);
    let store = state.crm.store(portal_id, object_type);
    let mut page = store.range(after..);
    let results: Vec<Value> =
        page.by_ref().take(limit).map(|(id, o)| object_json(*id, o, object_type, Some(&wanted))).collect();
    let mut body = json!({ "results": results });
    if let Some((next, _)) = page.next() {
        let mut link = url.clone();
        let kept: Vec<(String, String)> =
            url.query_pairs().filter(|(k, _)| k != "after").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        link.query_pairs_mut().clear().extend_pairs(kept).append_pair("after", &next.to_string());
        body["paging"] = json!({ "next": { "after": next.to_string(), "link": link.as_str() } });
    }
    Answer::json(200, &body)
}

fn get(url: &Url, id: &str, portal_id: u64, object_type: &'static str, state: &mut State) -> Answer {
    let wanted = wanted_properties(url);
    let store = state.crm.store(portal_id, object_type);
    match id.parse::<u64>().ok().and_then(|n| store.get(&n).map(|o| (n, o))) {
        Some((n, object)) => Answer::json(200, &object_json(n, object, object_type, Some(&wanted))),
        None => wire::object_not_found(object_type, id),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, Answer> {
    serde_json::from_slice::<Value>(body)
        .map_err(|e| validation_error(&format!("Invalid input JSON on line {}, column {}: {e}", e.line(), e.column())))
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn create(body: &[u8], portal_id: u64, object_type: &'static str, state: &mut State, now: SystemTime) -> Answer {
    let value = match parse_json(body) {
        Ok(v) => v,
        Err(answer) => return answer,
    };
    let Some(given) = value.get("properties").and_then(Value::as_object) else {
        return validation_error("Invalid input JSON: the body must be an object with `properties`.");
    };
    let properties: BTreeMap<String, String> =
        given.iter().filter_map(|(k, v)| as_text(v).map(|t| (k.clone(), t))).collect();
    let names: Vec<String> = properties.keys().cloned().collect();
    let id = state.crm.insert(portal_id, object_type, properties, now);
    let store = state.crm.store(portal_id, object_type);
    match store.get(&id) {
        Some(object) => {
            let mut shown = names;
            shown.extend(default_properties(object_type).iter().map(|s| (*s).to_owned()));
            Answer::json(201, &object_json(id, object, object_type, Some(&shown)))
        }
        None => Answer::json(500, &wire::generic_error("internal error", "INTERNAL_ERROR")),
    }
}

/// One filter of a search `filterGroup`.
fn matches_filter(object: &FakeObject, filter: &Value) -> bool {
    let name = filter.get("propertyName").and_then(Value::as_str).unwrap_or_default();
    let operator = filter.get("operator").and_then(Value::as_str).unwrap_or("EQ");
    let have = object.properties.get(name);
    let value = filter.get("value").and_then(as_text).unwrap_or_default();
    let compare = |h: &str| match (h.parse::<f64>(), value.parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b),
        _ => Some(h.cmp(value.as_str())),
    };
    let values: Vec<String> = filter
        .get("values")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(as_text).collect())
        .unwrap_or_default();
    let token = value.trim_matches('*').to_lowercase();
    match operator {
        "EQ" => have.is_some_and(|h| h.eq_ignore_ascii_case(&value)),
        "NEQ" => !have.is_some_and(|h| h.eq_ignore_ascii_case(&value)),
        "LT" => have.is_some_and(|h| compare(h).is_some_and(|o| o.is_lt())),
        "LTE" => have.is_some_and(|h| compare(h).is_some_and(|o| o.is_le())),
        "GT" => have.is_some_and(|h| compare(h).is_some_and(|o| o.is_gt())),
        "GTE" => have.is_some_and(|h| compare(h).is_some_and(|o| o.is_ge())),
        "HAS_PROPERTY" => have.is_some_and(|h| !h.is_empty()),
        "NOT_HAS_PROPERTY" => have.is_none_or(|h| h.is_empty()),
        "CONTAINS_TOKEN" => have.is_some_and(|h| h.to_lowercase().contains(&token)),
        "NOT_CONTAINS_TOKEN" => !have.is_some_and(|h| h.to_lowercase().contains(&token)),
        "IN" => have.is_some_and(|h| values.iter().any(|v| v.eq_ignore_ascii_case(h))),
        "NOT_IN" => !have.is_some_and(|h| values.iter().any(|v| v.eq_ignore_ascii_case(h))),
        _ => false,
    }
}

fn search_objects(body: &[u8], portal_id: u64, object_type: &'static str, state: &mut State) -> Answer {
    let request = match parse_json(body) {
        Ok(v) => v,
        Err(answer) => return answer,
    };
    let limit = match request.get("limit") {
        None | Some(Value::Null) => LIST_LIMIT_DEFAULT,
        Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if n >= 1 => n.min(SEARCH_LIMIT_MAX),
            _ => return validation_error(&format!("Invalid limit: {v}")),
        },
    };
    let offset = match request.get("after").and_then(as_text) {
        None => 0,
        Some(a) => match a.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return validation_error(&format!("Invalid after: {a}")),
        },
    };
    let groups: Vec<&Value> =
        request.get("filterGroups").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    let text = request.get("query").and_then(Value::as_str).map(str::to_lowercase).filter(|q| !q.is_empty());
    let wanted: Vec<String> = request
        .get("properties")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let store = state.crm.store(portal_id, object_type);
    let hits: Vec<(&u64, &FakeObject)> = store
        .iter()
        .filter(|(_, o)| {
            groups.is_empty()
                || groups.iter().any(|g| {
                    g.get("filters").and_then(Value::as_array).is_none_or(|fs| fs.iter().all(|f| matches_filter(o, f)))
                })
        })
        .filter(|(_, o)| text.as_ref().is_none_or(|q| o.properties.values().any(|v| v.to_lowercase().contains(q))))
        .collect();
    let total = hits.len();
    let results: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(id, o)| {
            let mut object = object_json(**id, o, object_type, Some(&wanted));
            if wanted.is_empty() {
                // Search answers carry only the three always-present properties unless asked for more.
                object["properties"] = json!({
                    "createdate": o.properties.get("createdate"),
                    "hs_object_id": o.properties.get("hs_object_id"),
                    last_modified_property(object_type): o.properties.get(last_modified_property(object_type)),
                });
            }
            object
        })
        .collect();
    let mut body = json!({ "total": total, "results": results });
    if offset.saturating_add(limit) < total {
        body["paging"] = json!({ "next": { "after": (offset + limit).to_string() } });
    }
    Answer::json(200, &body)
}
