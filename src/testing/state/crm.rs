//! The CRM side of the fake's world, without HTTP: objects per portal and type (every portal starts with sample
//! objects), the object types and their properties, and each portal's requests in HubSpot's rolling rate windows.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::window::Rolling;

/// HubSpot's limit for OAuth apps: 110 requests per rolling 10 seconds, per portal.
pub(crate) const DEFAULT_RATE_LIMIT: (u32, Duration) = (110, Duration::from_secs(10));
/// HubSpot's CRM search limit: 5 requests per second, per portal.
pub(crate) const DEFAULT_SEARCH_RATE_LIMIT: u32 = 5;

const SEARCH_WINDOW: Duration = Duration::from_secs(1);

/// One CRM object.
#[derive(Debug, Clone)]
pub(crate) struct FakeObject {
    pub(crate) properties: BTreeMap<String, String>,
    pub(crate) created_at: SystemTime,
    pub(crate) updated_at: SystemTime,
    /// When it was archived (moved to the recycle bin); `None` while live.
    pub(crate) archived_at: Option<SystemTime>,
    /// The ids of associated objects, by their object type.
    pub(crate) associations: BTreeMap<&'static str, BTreeSet<u64>>,
}

/// The requests of one portal inside the current window of one limit.
#[derive(Debug, Default)]
struct PortalWindows {
    general: Rolling<SystemTime>,
    search: Rolling<SystemTime>,
}

/// A request refused by one of the portal's rolling limits: at most `max` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limited {
    pub(crate) max: u32,
    pub(crate) window: Duration,
    /// The search limit (else the general one).
    pub(crate) search: bool,
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
    rolling: HashMap<u64, PortalWindows>,
    /// Every CRM request with a live token, per portal, at its arrival (cleared by `reset_counts`).
    history: HashMap<u64, Vec<SystemTime>>,
    rate_limited: usize,
    /// Properties added beside HubSpot's own, per object type (every portal has them).
    custom_properties: HashMap<&'static str, BTreeSet<String>>,
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
            custom_properties: HashMap::new(),
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

    /// The portal's objects of this type, by id (its sample objects seeded on first use).
    pub(crate) fn store(&mut self, portal_id: u64, object_type: &'static str) -> &mut BTreeMap<u64, FakeObject> {
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
        for name in properties.keys() {
            if !self.has_property(object_type, name) {
                self.add_property(object_type, name);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let stamp = crate::clock::rfc3339::millis(now);
        properties.insert("hs_object_id".to_owned(), id.to_string());
        properties.insert("createdate".to_owned(), stamp.clone());
        properties.insert(last_modified_property(object_type).to_owned(), stamp);
        self.objects.entry((portal_id, object_type)).or_default().insert(
            id,
            FakeObject {
                properties,
                created_at: now,
                updated_at: now,
                archived_at: None,
                associations: BTreeMap::new(),
            },
        );
        id
    }

    /// Whether the object type has this property: one of HubSpot's own, or one added.
    pub(crate) fn has_property(&self, object_type: &str, name: &str) -> bool {
        known_properties(object_type).contains(&name)
            || self.custom_properties.get(object_type).is_some_and(|names| names.contains(name))
    }

    /// Adds a property to an object type (in every portal).
    pub(crate) fn add_property(&mut self, object_type: &'static str, name: &str) {
        self.custom_properties.entry(object_type).or_default().insert(name.to_owned());
    }

    /// Archives a live object. Returns whether there was one.
    pub(crate) fn archive(&mut self, portal_id: u64, object_type: &'static str, id: u64, now: SystemTime) -> bool {
        match self.store(portal_id, object_type).get_mut(&id) {
            Some(object) if object.archived_at.is_none() => {
                object.archived_at = Some(now);
                true
            }
            _ => false,
        }
    }

    /// Associates two objects of the portal, both ways. Returns whether both exist.
    pub(crate) fn associate(&mut self, portal_id: u64, a: (&'static str, u64), b: (&'static str, u64)) -> bool {
        if !self.store(portal_id, a.0).contains_key(&a.1) || !self.store(portal_id, b.0).contains_key(&b.1) {
            return false;
        }
        for ((from_type, from), (to_type, to)) in [(a, b), (b, a)] {
            if let Some(object) = self.store(portal_id, from_type).get_mut(&from) {
                object.associations.entry(to_type).or_default().insert(to);
            }
        }
        true
    }

    /// How many objects of this type the portal has (its sample objects included).
    pub(crate) fn count(&mut self, portal_id: u64, object_type: &str) -> usize {
        match canonical_type(object_type) {
            Some(t) => self.store(portal_id, t).len(),
            None => 0,
        }
    }

    // ---- limits and inspection ----

    /// Counts a request against the portal's limits without checking them (an injected failure answered it:
    /// HubSpot counted it too).
    pub(crate) fn record(&mut self, portal_id: u64, search: bool, now: SystemTime) {
        let rolling = self.rolling.entry(portal_id).or_default();
        rolling.general.record(now);
        if search {
            rolling.search.record(now);
        }
        self.history.entry(portal_id).or_default().push(now);
    }

    /// Admits a request within the portal's limits (and counts it), or names the limit that refuses it. On
    /// success, the general limit's `(max, remaining)`.
    pub(crate) fn admit(
        &mut self,
        portal_id: u64,
        search: bool,
        now: SystemTime,
    ) -> Result<Option<(u32, usize)>, Limited> {
        let general = self.rate_limit;
        let searches = self.search_rate_limit;
        let rolling = self.rolling.entry(portal_id).or_default();
        if let Some((max, window)) = general {
            rolling.general.prune(window, now);
            if rolling.general.len() >= max as usize {
                self.rate_limited += 1;
                return Err(Limited { max, window, search: false });
            }
        }
        if search && let Some(max) = searches {
            rolling.search.prune(SEARCH_WINDOW, now);
            if rolling.search.len() >= max as usize {
                self.rate_limited += 1;
                return Err(Limited { max, window: SEARCH_WINDOW, search: true });
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

// ---- object types and their properties ----

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

pub(crate) fn last_modified_property(object_type: &str) -> &'static str {
    if object_type == "contacts" { "lastmodifieddate" } else { "hs_lastmodifieddate" }
}

/// The singular name HubSpot uses in association type labels (`contact_to_company`).
pub(crate) fn singular(object_type: &str) -> &'static str {
    match object_type {
        "contacts" => "contact",
        "companies" => "company",
        "deals" => "deal",
        _ => "ticket",
    }
}

/// The properties whose values HubSpot keeps unique per portal, usable as `idProperty`.
pub(crate) fn unique_properties(object_type: &str) -> &'static [&'static str] {
    match object_type {
        "contacts" => &["hs_object_id", "email"],
        _ => &["hs_object_id"],
    }
}

/// HubSpot's own properties of each object type that the fake knows (a selection of HubSpot's defaults; add
/// others with `FakeHubSpot::add_property`).
pub(crate) fn known_properties(object_type: &str) -> &'static [&'static str] {
    match object_type {
        "contacts" => &[
            "address",
            "city",
            "company",
            "country",
            "createdate",
            "email",
            "fax",
            "firstname",
            "hs_lead_status",
            "hs_object_id",
            "hubspot_owner_id",
            "industry",
            "jobtitle",
            "lastmodifieddate",
            "lastname",
            "lifecyclestage",
            "mobilephone",
            "phone",
            "state",
            "website",
            "zip",
        ],
        "companies" => &[
            "address",
            "annualrevenue",
            "city",
            "country",
            "createdate",
            "description",
            "domain",
            "hs_lastmodifieddate",
            "hs_object_id",
            "hubspot_owner_id",
            "industry",
            "lifecyclestage",
            "name",
            "numberofemployees",
            "phone",
            "state",
            "website",
            "zip",
        ],
        "deals" => &[
            "amount",
            "closedate",
            "createdate",
            "dealname",
            "dealstage",
            "dealtype",
            "description",
            "hs_lastmodifieddate",
            "hs_object_id",
            "hs_priority",
            "hubspot_owner_id",
            "pipeline",
        ],
        _ => &[
            "content",
            "createdate",
            "hs_lastmodifieddate",
            "hs_object_id",
            "hs_pipeline",
            "hs_pipeline_stage",
            "hs_ticket_category",
            "hs_ticket_priority",
            "hubspot_owner_id",
            "subject",
        ],
    }
}

/// The properties an object carries when the request names none.
pub(crate) fn default_properties(object_type: &str) -> &'static [&'static str] {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
        assert_eq!(
            crm.admit(1, false, t0).unwrap_err(),
            Limited { max: 2, window: Duration::from_secs(10), search: false }
        );
        assert!(crm.admit(2, false, t0).is_ok(), "per portal");
        assert!(crm.admit(1, false, t0 + Duration::from_secs(10)).is_ok());
        assert_eq!(crm.rate_limited(), 1);
        crm.rate_limit = None;
        for _ in 0..5 {
            assert!(crm.admit(3, true, t0).is_ok());
        }
        assert_eq!(
            crm.admit(3, true, t0 + Duration::from_millis(999)).unwrap_err(),
            Limited { max: 5, window: SEARCH_WINDOW, search: true }
        );
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
