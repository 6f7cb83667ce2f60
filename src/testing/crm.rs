//! The CRM objects API responder (`/crm/v3/objects/...`): the bearer and scope checks, HubSpot's rolling rate
//! limits per portal, then list, get, search and create on the portal's objects.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Value, json};
use url::Url;
use wiremock::Request;

use super::request::{bearer, percent_decode};
use super::state::crm::{FakeObject, canonical_type, default_properties, last_modified_property, unique_properties};
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

/// `archived=true|false` (default false).
fn parse_archived(url: &Url) -> Result<bool, Answer> {
    match query(url, "archived").as_deref().map(str::trim) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(validation_error(&format!("Invalid archived: {v} (true or false)"))),
    }
}

/// The `associations` query parameter: object types, repeated and/or comma-separated.
fn requested_associations(url: &Url) -> Result<Vec<&'static str>, Answer> {
    let mut types = Vec::new();
    for (_, value) in url.query_pairs().filter(|(k, _)| k == "associations") {
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some(t) = canonical_type(name) else {
                return Err(validation_error(&format!("Unable to infer object type from: {name}")));
            };
            if !types.contains(&t) {
                types.push(t);
            }
        }
    }
    Ok(types)
}

/// The named properties the object type has (HubSpot leaves out names it does not know).
fn known_wanted(url: &Url, object_type: &str, state: &State) -> Vec<String> {
    wanted_properties(url).into_iter().filter(|p| state.crm.has_property(object_type, p)).collect()
}

/// What a read shows beside the object itself.
struct ReadOptions {
    wanted: Vec<String>,
    associations: Vec<&'static str>,
    archived: bool,
}

fn read_options(url: &Url, object_type: &str, state: &State) -> Result<ReadOptions, Answer> {
    Ok(ReadOptions {
        wanted: known_wanted(url, object_type, state),
        associations: requested_associations(url)?,
        archived: parse_archived(url)?,
    })
}

fn shown(id: u64, object: &FakeObject, object_type: &str, options: &ReadOptions) -> Value {
    let mut body = object_json(id, object, object_type, Some(&options.wanted));
    wire::add_associations(&mut body, object, object_type, &options.associations);
    body
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
    let options = match read_options(url, object_type, state) {
        Ok(o) => o,
        Err(answer) => return answer,
    };
    let store = state.crm.store(portal_id, object_type);
    let mut page = store.range(after..).filter(|(_, o)| o.archived_at.is_some() == options.archived);
    let results: Vec<Value> = page.by_ref().take(limit).map(|(id, o)| shown(*id, o, object_type, &options)).collect();
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
    let options = match read_options(url, object_type, state) {
        Ok(o) => o,
        Err(answer) => return answer,
    };
    let id_property = query(url, "idProperty").map(|p| p.trim().to_owned()).filter(|p| !p.is_empty());
    let by = id_property.as_deref().unwrap_or("hs_object_id");
    if !state.crm.has_property(object_type, by) {
        return validation_error(&format!("Property \"{by}\" does not exist"));
    }
    if !unique_properties(object_type).contains(&by) {
        return validation_error(&format!("Property \"{by}\" is not a unique identifier property of {object_type}"));
    }
    let store = state.crm.store(portal_id, object_type);
    let found = if by == "hs_object_id" {
        id.parse::<u64>().ok().and_then(|n| store.get(&n).map(|o| (n, o)))
    } else {
        store
            .iter()
            .find(|(_, o)| o.properties.get(by).is_some_and(|v| v.eq_ignore_ascii_case(id)))
            .map(|(n, o)| (*n, o))
    };
    match found.filter(|(_, o)| o.archived_at.is_some() == options.archived) {
        Some((n, object)) => Answer::json(200, &shown(n, object, object_type, &options)),
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

/// An email address HubSpot would take: `local@domain.tld`, no spaces, a top-level domain of 2 or more letters.
fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    let labels: Vec<&str> = domain.split('.').collect();
    !local.is_empty()
        && !email.chars().any(char::is_whitespace)
        && !domain.contains('@')
        && labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty())
        && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
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
    let mut problems: Vec<(String, &'static str, String)> = Vec::new();
    for (name, value) in &properties {
        if !state.crm.has_property(object_type, name) {
            problems.push((name.clone(), "PROPERTY_DOESNT_EXIST", format!("Property \"{name}\" does not exist")));
        } else if object_type == "contacts" && name == "email" && !valid_email(value) {
            problems.push((name.clone(), "INVALID_EMAIL", format!("Email address {value} is invalid")));
        }
    }
    if !problems.is_empty() {
        return wire::invalid_property_values(&problems);
    }
    for unique in unique_properties(object_type).iter().filter(|p| **p != "hs_object_id") {
        let Some(value) = properties.get(*unique) else { continue };
        let store = state.crm.store(portal_id, object_type);
        let existing = store.iter().find(|(_, o)| {
            o.archived_at.is_none() && o.properties.get(*unique).is_some_and(|v| v.eq_ignore_ascii_case(value))
        });
        if let Some((id, _)) = existing {
            return wire::already_exists(object_type, *id);
        }
    }
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

/// The operators of HubSpot's CRM search.
const OPERATORS: [&str; 13] = [
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
];
/// HubSpot's search limits: filter groups per search, filters per group, filters in all, results reachable.
const MAX_FILTER_GROUPS: usize = 5;
const MAX_FILTERS_PER_GROUP: usize = 6;
const MAX_FILTERS: usize = 18;
const MAX_SEARCH_RESULTS: usize = 10_000;

/// Numeric comparison when both sides are numbers, else case-insensitive text.
fn compare_values(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.to_lowercase().cmp(&b.to_lowercase()),
    }
}

/// One filter of a search `filterGroup` (its operator already checked).
fn matches_filter(object: &FakeObject, filter: &Value) -> bool {
    let name = filter.get("propertyName").and_then(Value::as_str).unwrap_or_default();
    let operator = filter.get("operator").and_then(Value::as_str).unwrap_or_default();
    let have = object.properties.get(name);
    let value = filter.get("value").and_then(as_text).unwrap_or_default();
    let high = filter.get("highValue").and_then(as_text).unwrap_or_default();
    let compare = |h: &str| compare_values(h, &value);
    let values: Vec<String> = filter
        .get("values")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(as_text).collect())
        .unwrap_or_default();
    let token = value.trim_matches('*').to_lowercase();
    match operator {
        "EQ" => have.is_some_and(|h| h.eq_ignore_ascii_case(&value)),
        "NEQ" => !have.is_some_and(|h| h.eq_ignore_ascii_case(&value)),
        "LT" => have.is_some_and(|h| compare(h).is_lt()),
        "LTE" => have.is_some_and(|h| compare(h).is_le()),
        "GT" => have.is_some_and(|h| compare(h).is_gt()),
        "GTE" => have.is_some_and(|h| compare(h).is_ge()),
        "BETWEEN" => have.is_some_and(|h| compare(h).is_ge() && compare_values(h, &high).is_le()),
        "HAS_PROPERTY" => have.is_some_and(|h| !h.is_empty()),
        "NOT_HAS_PROPERTY" => have.is_none_or(|h| h.is_empty()),
        "CONTAINS_TOKEN" => have.is_some_and(|h| h.to_lowercase().contains(&token)),
        "NOT_CONTAINS_TOKEN" => !have.is_some_and(|h| h.to_lowercase().contains(&token)),
        "IN" => have.is_some_and(|h| values.iter().any(|v| v.eq_ignore_ascii_case(h))),
        "NOT_IN" => !have.is_some_and(|h| values.iter().any(|v| v.eq_ignore_ascii_case(h))),
        _ => false,
    }
}

/// The filter groups of a search, checked against HubSpot's limits and operators.
fn filter_groups(request: &Value) -> Result<Vec<Vec<Value>>, Answer> {
    let groups = match request.get("filterGroups") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(groups)) => groups,
        Some(other) => return Err(validation_error(&format!("Invalid filterGroups: {other} (an array)"))),
    };
    if groups.len() > MAX_FILTER_GROUPS {
        return Err(validation_error(&format!(
            "Too many filter groups: {} (at most {MAX_FILTER_GROUPS})",
            groups.len()
        )));
    }
    let mut checked = Vec::new();
    let mut total = 0;
    for (i, group) in groups.iter().enumerate() {
        let filters = match group.get("filters") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(filters)) => filters.clone(),
            Some(other) => return Err(validation_error(&format!("Invalid filters: {other} (an array)"))),
        };
        if filters.len() > MAX_FILTERS_PER_GROUP {
            return Err(validation_error(&format!(
                "Too many filters in filter group {i}: {} (at most {MAX_FILTERS_PER_GROUP})",
                filters.len()
            )));
        }
        total += filters.len();
        for filter in &filters {
            match filter.get("operator").and_then(Value::as_str) {
                None => return Err(validation_error(&format!("A filter needs an operator: {filter}"))),
                Some(op) if !OPERATORS.contains(&op) => {
                    return Err(validation_error(&format!(
                        "Unknown filter operator {op}; one of {}",
                        OPERATORS.join(", ")
                    )));
                }
                Some(_) => {}
            }
        }
        checked.push(filters);
    }
    if total > MAX_FILTERS {
        return Err(validation_error(&format!("Too many filters: {total} in all (at most {MAX_FILTERS})")));
    }
    Ok(checked)
}

/// The one sort a search may carry: `(property, descending)`.
fn sort_of(request: &Value) -> Result<Option<(String, bool)>, Answer> {
    let sorts = match request.get("sorts") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(sorts)) => sorts,
        Some(other) => return Err(validation_error(&format!("Invalid sorts: {other} (an array)"))),
    };
    if sorts.len() > 1 {
        return Err(validation_error(&format!("Only one sort is allowed, not {}", sorts.len())));
    }
    let Some(sort) = sorts.first() else { return Ok(None) };
    match sort {
        Value::String(name) => Ok(Some((name.clone(), false))),
        Value::Object(o) => {
            let Some(name) = o.get("propertyName").and_then(Value::as_str) else {
                return Err(validation_error(&format!("A sort needs a propertyName: {sort}")));
            };
            let descending = match o.get("direction").and_then(Value::as_str) {
                None | Some("ASCENDING") => false,
                Some("DESCENDING") => true,
                Some(other) => {
                    return Err(validation_error(&format!("Invalid sort direction {other}; ASCENDING or DESCENDING")));
                }
            };
            Ok(Some((name.to_owned(), descending)))
        }
        other => Err(validation_error(&format!("Invalid sort: {other}"))),
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
    if offset.saturating_add(limit) > MAX_SEARCH_RESULTS {
        return validation_error(&format!(
            "Search results are limited to {MAX_SEARCH_RESULTS}: after {offset} with limit {limit} pages past them"
        ));
    }
    let groups = match filter_groups(&request) {
        Ok(g) => g,
        Err(answer) => return answer,
    };
    let sort = match sort_of(&request) {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let text = request.get("query").and_then(Value::as_str).map(str::to_lowercase).filter(|q| !q.is_empty());
    let wanted: Vec<String> = request
        .get("properties")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let store = state.crm.store(portal_id, object_type);
    let mut hits: Vec<(&u64, &FakeObject)> = store
        .iter()
        .filter(|(_, o)| o.archived_at.is_none())
        .filter(|(_, o)| groups.is_empty() || groups.iter().any(|g| g.iter().all(|f| matches_filter(o, f))))
        .filter(|(_, o)| text.as_ref().is_none_or(|q| o.properties.values().any(|v| v.to_lowercase().contains(q))))
        .collect();
    if let Some((property, descending)) = &sort {
        // Objects without the property come last either way (the fake's choice); ties keep id order.
        hits.sort_by(|(_, a), (_, b)| match (a.properties.get(property), b.properties.get(property)) {
            (Some(x), Some(y)) if *descending => compare_values(y, x),
            (Some(x), Some(y)) => compare_values(x, y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_hubspot_would_take() {
        for good in ["a@b.co", "jane.doe+x@mail.example.com", "A@EXAMPLE.ORG"] {
            assert!(valid_email(good), "{good}");
        }
        for bad in ["", "a", "a@", "@b.co", "a@b", "a@b.c", "a b@c.de", "a@b..de", "a@b@c.de", "a@b.c0m"] {
            assert!(!valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn numbers_compare_as_numbers_and_text_ignores_case() {
        assert!(compare_values("9", "10").is_lt());
        assert!(compare_values("b", "A").is_gt());
    }
}
