//! The CRM objects API (`/crm/v3/objects/...`): objects per portal and type, the bearer and scope checks, HubSpot's
//! rolling rate limits per portal, and the log of API requests for inspection.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use url::Url;
use wiremock::Request;

use super::responder::bearer;
use super::state::{AccessLookup, State};
use super::types::Endpoint;
use super::wire::{self, Answer};

/// HubSpot's limit for OAuth apps: 110 requests per rolling 10 seconds, per portal.
pub(crate) const DEFAULT_RATE_LIMIT: (u32, Duration) = (110, Duration::from_secs(10));
/// HubSpot's CRM search limit: 5 requests per second, per portal.
pub(crate) const DEFAULT_SEARCH_RATE_LIMIT: u32 = 5;

const SEARCH_WINDOW: Duration = Duration::from_secs(1);
const LIST_LIMIT_DEFAULT: usize = 10;
const LIST_LIMIT_MAX: usize = 100;
const SEARCH_LIMIT_MAX: usize = 200;

/// One CRM object.
#[derive(Debug, Clone)]
struct FakeObject {
    properties: BTreeMap<String, String>,
    created_at: SystemTime,
    updated_at: SystemTime,
}

/// The requests of one portal inside the current window of one limit.
#[derive(Debug, Default)]
struct Rolling {
    general: VecDeque<SystemTime>,
    search: VecDeque<SystemTime>,
}

fn prune(log: &mut VecDeque<SystemTime>, window: Duration, now: SystemTime) {
    while log.front().is_some_and(|t| now.duration_since(*t).is_ok_and(|age| age >= window)) {
        log.pop_front();
    }
}

/// The CRM side of the fake's world.
#[derive(Debug)]
pub(crate) struct Crm {
    objects: HashMap<(u64, &'static str), BTreeMap<u64, FakeObject>>,
    seeded: HashSet<u64>,
    next_id: u64,
    /// At most this many requests per window and portal; `None`: no limit.
    pub(crate) rate_limit: Option<(u32, Duration)>,
    /// At most this many searches per second and portal; `None`: no limit.
    pub(crate) search_rate_limit: Option<u32>,
    rolling: HashMap<u64, Rolling>,
    /// Every CRM request with a live token, per portal, at its arrival (cleared by `reset_counts`).
    history: HashMap<u64, Vec<SystemTime>>,
    rate_limited: usize,
}

impl Crm {
    pub(crate) fn new() -> Self {
        Self {
            objects: HashMap::new(),
            seeded: HashSet::new(),
            next_id: 101,
            rate_limit: Some(DEFAULT_RATE_LIMIT),
            search_rate_limit: Some(DEFAULT_SEARCH_RATE_LIMIT),
            rolling: HashMap::new(),
            history: HashMap::new(),
            rate_limited: 0,
        }
    }

    // ---- objects ----

    fn seed(&mut self, portal_id: u64) {
        if !self.seeded.insert(portal_id) {
            return;
        }
        // 2024-01-15T10:00:00Z, a minute apart.
        let base = UNIX_EPOCH + Duration::from_secs(1_705_312_800);
        let contacts: [&[(&str, &str)]; 3] = [
            &[("email", "emailmaria@hubspot.com"), ("firstname", "Maria"), ("lastname", "Johnson (Sample Contact)")],
            &[("email", "bh@hubspot.com"), ("firstname", "Brian"), ("lastname", "Halligan (Sample Contact)")],
            &[("email", "jane.doe@example.com"), ("firstname", "Jane"), ("lastname", "Doe")],
        ];
        let companies: [&[(&str, &str)]; 1] = [&[("name", "HubSpot"), ("domain", "hubspot.com")]];
        let deals: [&[(&str, &str)]; 1] = [&[
            ("dealname", "Sample deal"),
            ("amount", "1500"),
            ("dealstage", "appointmentscheduled"),
            ("pipeline", "default"),
        ]];
        let mut minute = 0;
        for (object_type, seeds) in [("contacts", &contacts[..]), ("companies", &companies[..]), ("deals", &deals[..])]
        {
            for seed in seeds {
                let at = base + Duration::from_secs(60 * minute);
                minute += 1;
                let properties = seed.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
                self.insert(portal_id, object_type, properties, at);
            }
        }
    }

    fn store(&mut self, portal_id: u64, object_type: &'static str) -> &mut BTreeMap<u64, FakeObject> {
        self.seed(portal_id);
        self.objects.entry((portal_id, object_type)).or_default()
    }

    /// Creates an object and returns its id. `hs_object_id`, `createdate` and the last-modified date are set.
    pub(crate) fn insert(
        &mut self,
        portal_id: u64,
        object_type: &'static str,
        mut properties: BTreeMap<String, String>,
        now: SystemTime,
    ) -> u64 {
        self.seed(portal_id);
        let id = self.next_id;
        self.next_id += 1;
        let stamp = rfc3339_millis(now);
        properties.insert("hs_object_id".to_owned(), id.to_string());
        properties.insert("createdate".to_owned(), stamp.clone());
        properties.insert(last_modified_property(object_type).to_owned(), stamp);
        self.objects
            .entry((portal_id, object_type))
            .or_default()
            .insert(id, FakeObject { properties, created_at: now, updated_at: now });
        id
    }

    /// How many objects of this type the portal has (its sample objects included).
    pub(crate) fn count(&mut self, portal_id: u64, object_type: &str) -> usize {
        match canonical_type(object_type) {
            Some(t) => self.store(portal_id, t).len(),
            None => 0,
        }
    }

    // ---- limits and inspection ----

    /// Counts a request that an injected failure answered: HubSpot counted it too.
    fn record(&mut self, portal_id: u64, search: bool, now: SystemTime) {
        let rolling = self.rolling.entry(portal_id).or_default();
        rolling.general.push_back(now);
        if search {
            rolling.search.push_back(now);
        }
        self.history.entry(portal_id).or_default().push(now);
    }

    /// Admits a request within the portal's limits (and counts it), or answers 429. On success, the general
    /// limit's `(max, remaining)`.
    fn admit(&mut self, portal_id: u64, search: bool, now: SystemTime) -> Result<Option<(u32, usize)>, Answer> {
        let general = self.rate_limit;
        let searches = self.search_rate_limit;
        let rolling = self.rolling.entry(portal_id).or_default();
        if let Some((max, window)) = general {
            prune(&mut rolling.general, window, now);
            if rolling.general.len() >= max as usize {
                self.rate_limited += 1;
                return Err(rate_limited(max, window, false));
            }
        }
        if search {
            if let Some(max) = searches {
                prune(&mut rolling.search, SEARCH_WINDOW, now);
                if rolling.search.len() >= max as usize {
                    self.rate_limited += 1;
                    return Err(rate_limited(max, SEARCH_WINDOW, true));
                }
            }
        }
        self.record(portal_id, search, now);
        let rolling = self.rolling.entry(portal_id).or_default();
        Ok(general.map(|(max, _)| (max, (max as usize).saturating_sub(rolling.general.len()))))
    }

    /// The most requests of the portal inside any window of this length (half-open: `[t, t + window)`).
    pub(crate) fn max_in_window(&self, portal_id: u64, window: Duration) -> usize {
        let Some(log) = self.history.get(&portal_id) else {
            return 0;
        };
        let mut times = log.clone();
        times.sort();
        let mut best = 0;
        let mut end = 0;
        for (start, t) in times.iter().enumerate() {
            let limit = t.checked_add(window);
            end = end.max(start);
            while end < times.len() && limit.is_none_or(|l| times[end] < l) {
                end += 1;
            }
            best = best.max(end - start);
        }
        best
    }

    pub(crate) fn rate_limited(&self) -> usize {
        self.rate_limited
    }

    pub(crate) fn reset_counts(&mut self) {
        self.history.clear();
        self.rate_limited = 0;
    }
}

/// `contacts`, `companies`, `deals`, `tickets`, by name, singular name or object type id.
pub(crate) fn canonical_type(segment: &str) -> Option<&'static str> {
    Some(match segment.to_ascii_lowercase().as_str() {
        "contacts" | "contact" | "0-1" => "contacts",
        "companies" | "company" | "0-2" => "companies",
        "deals" | "deal" | "0-3" => "deals",
        "tickets" | "ticket" | "0-5" => "tickets",
        _ => return None,
    })
}

fn last_modified_property(object_type: &str) -> &'static str {
    if object_type == "contacts" { "lastmodifieddate" } else { "hs_lastmodifieddate" }
}

/// The properties an object carries when the request names none.
fn default_properties(object_type: &str) -> &'static [&'static str] {
    match object_type {
        "contacts" => &["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"],
        "companies" => &["createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"],
        "deals" => &[
            "amount",
            "closedate",
            "createdate",
            "dealname",
            "dealstage",
            "hs_lastmodifieddate",
            "hs_object_id",
            "pipeline",
        ],
        _ => &["content", "createdate", "hs_lastmodifieddate", "hs_object_id", "hs_pipeline", "subject"],
    }
}

/// The scope an operation needs: `crm.objects.{type}.read` / `.write` (tickets: `tickets`).
fn required_scope(object_type: &str, write: bool) -> String {
    if object_type == "tickets" {
        return "tickets".to_owned();
    }
    format!("crm.objects.{object_type}.{}", if write { "write" } else { "read" })
}

/// HubSpot's timestamps, RFC 3339 in UTC with milliseconds: `2024-01-15T10:00:00.123Z`. A time outside the years
/// 1970 to 9999 is written as the nearest of them.
pub(crate) fn rfc3339_millis(time: SystemTime) -> String {
    /// The last millisecond of the year 9999, the last time RFC 3339 can write.
    const LAST: Duration = Duration::from_millis(253_402_300_799_999);
    humantime::format_rfc3339_millis(time.clamp(UNIX_EPOCH, UNIX_EPOCH + LAST)).to_string()
}

fn object_json(id: u64, object: &FakeObject, object_type: &str, wanted: Option<&[String]>) -> Value {
    let mut properties = Map::new();
    match wanted {
        Some(names) if !names.is_empty() => {
            for name in names {
                properties.insert(name.clone(), object.properties.get(name).map_or(Value::Null, |v| json!(v)));
            }
            // HubSpot always includes these three.
            for name in ["createdate", "hs_object_id", last_modified_property(object_type)] {
                properties.insert(name.to_owned(), object.properties.get(name).map_or(Value::Null, |v| json!(v)));
            }
        }
        _ => {
            for name in default_properties(object_type) {
                properties.insert((*name).to_owned(), object.properties.get(*name).map_or(Value::Null, |v| json!(v)));
            }
        }
    }
    json!({
        "id": id.to_string(),
        "properties": properties,
        "createdAt": rfc3339_millis(object.created_at),
        "updatedAt": rfc3339_millis(object.updated_at),
        "archived": false,
    })
}

// ---- errors ----

fn unauthorized(message: &str, category: &str) -> Answer {
    Answer::json(401, &wire::generic_error(message, category))
}

fn missing_scopes(scope: &str) -> Answer {
    let mut body = wire::generic_error(
        "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: \
         https://developers.hubspot.com/scopes.",
        "MISSING_SCOPES",
    );
    body["errors"] = json!([{
        "message": "One or more of the following scopes are required.",
        "context": { "requiredGranularScopes": [scope] },
    }]);
    body["links"] = json!({ "scopes": "https://developers.hubspot.com/scopes" });
    Answer::json(403, &body)
}

fn validation_error(message: &str) -> Answer {
    Answer::json(400, &wire::generic_error(message, "VALIDATION_ERROR"))
}

fn not_found(object_type: &str, id: &str) -> Answer {
    let message = format!("Object not found.  objectId are usually numeric. {object_type} {id} does not exist.");
    Answer::json(404, &wire::generic_error(&message, "OBJECT_NOT_FOUND"))
}

/// The 429 of HubSpot's own limiter (no `Retry-After`: HubSpot sends none for these policies).
fn rate_limited(max: u32, window: Duration, search: bool) -> Answer {
    let (message, policy) = if search {
        ("You have reached your secondly limit.", "SECONDLY")
    } else {
        ("You have reached your ten_secondly_rolling limit.", "TEN_SECONDLY_ROLLING")
    };
    let body = json!({
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": super::random::uuid(),
        "policyName": policy,
    });
    let answer = Answer::json(429, &body);
    if search {
        return answer;
    }
    answer
        .header("X-HubSpot-RateLimit-Interval-Milliseconds", window.as_millis().to_string())
        .header("X-HubSpot-RateLimit-Max", max.to_string())
        .header("X-HubSpot-RateLimit-Remaining", "0")
}

// ---- requests ----

/// `/crm/v3/objects/{type}[/{rest}]`: the type segment and the rest, percent-decoded.
fn route(url: &Url) -> (String, Option<String>) {
    let rest = url.path().strip_prefix("/crm/v3/objects/").unwrap_or_default();
    let mut parts = rest.splitn(2, '/');
    let object_type = super::responder::percent_decode(parts.next().unwrap_or_default());
    let tail = parts.next().map(super::responder::percent_decode);
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
        return unauthorized(
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more \
             details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            "INVALID_AUTHENTICATION",
        );
    };
    let grant = match state.access_lookup(token, now) {
        AccessLookup::Live(record) => record.grant.clone(),
        AccessLookup::Expired(ago) => {
            return unauthorized(
                &format!("The OAuth token used to make this call expired {} second(s) ago.", ago.as_secs()),
                "EXPIRED_AUTHENTICATION",
            );
        }
        AccessLookup::Invalid => {
            return unauthorized(
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find \
                 more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                "INVALID_AUTHENTICATION",
            );
        }
    };
    let portal_id = grant.portal_id;
    let search = endpoint == Endpoint::CrmSearch;
    let limit_headers = match state.crm.admit(portal_id, search, now) {
        Ok(headers) => headers,
        Err(answer) => return answer,
    };
    let (segment, tail) = route(&request.url);
    let Some(object_type) = canonical_type(&segment) else {
        return validation_error(&format!("Unable to infer object type from: {segment}"));
    };
    let scope = required_scope(object_type, endpoint == Endpoint::CrmCreate);
    if !grant.scopes.contains(&scope) {
        return missing_scopes(&scope);
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
        None => not_found(object_type, id),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(UNIX_EPOCH - Duration::from_secs(1)), "1970-01-01T00:00:00.000Z", "clamped");
        assert_eq!(rfc3339_millis(UNIX_EPOCH + Duration::from_millis(1_705_312_800_123)), "2024-01-15T10:00:00.123Z");
        assert_eq!(rfc3339_millis(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn windows_are_half_open() {
        let mut crm = Crm::new();
        let t = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        for ms in [0, 0, 500, 1000, 1000, 1999, 5000] {
            crm.record(1, false, t(ms));
        }
        assert_eq!(crm.max_in_window(1, Duration::from_secs(1)), 3, "[1000, 2000) holds 1000, 1000, 1999");
        assert_eq!(crm.max_in_window(1, Duration::from_secs(10)), 7);
        assert_eq!(crm.max_in_window(2, Duration::from_secs(10)), 0);
    }

    #[test]
    fn the_limiter_refuses_past_the_window() {
        let mut crm = Crm::new();
        crm.rate_limit = Some((2, Duration::from_secs(10)));
        let t0 = UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(crm.admit(1, false, t0).unwrap(), Some((2, 1)));
        assert_eq!(crm.admit(1, false, t0).unwrap(), Some((2, 0)));
        assert_eq!(crm.admit(1, false, t0).unwrap_err().status, 429);
        assert!(crm.admit(2, false, t0).is_ok(), "per portal");
        assert!(crm.admit(1, false, t0 + Duration::from_secs(10)).is_ok());
        assert_eq!(crm.rate_limited(), 1);
        crm.rate_limit = None;
        for _ in 0..5 {
            assert!(crm.admit(3, true, t0).is_ok());
        }
        assert_eq!(crm.admit(3, true, t0 + Duration::from_millis(999)).unwrap_err().status, 429);
        assert!(crm.admit(3, true, t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn portals_start_with_sample_objects() {
        let mut crm = Crm::new();
        assert_eq!(crm.count(1, "contacts"), 3);
        assert_eq!(crm.count(1, "0-2"), 1);
        assert_eq!(crm.count(1, "unknown"), 0);
        crm.insert(1, "contacts", BTreeMap::new(), UNIX_EPOCH);
        assert_eq!(crm.count(1, "contacts"), 4);
        assert_eq!(crm.count(2, "contacts"), 3);
    }
}
