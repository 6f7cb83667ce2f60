//! Scopes: [`Scope`] strings, the [`ScopeSet`] trait, the ready-made [`Scopes`], and HubSpot [`presets`].
//!
//! HubSpot adds scopes every month and is migrating coarse scopes (`contacts`, `content`) to granular ones
//! (`crm.objects.contacts.read`), so a scope is a string with helpers, never a closed enum.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One OAuth scope, such as `crm.objects.contacts.read`.
///
/// Scopes are not secrets: `Display` prints the scope.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scope(Cow<'static, str>);

impl Scope {
    /// HubSpot's basic scope, granted to every installation and always requested.
    pub const OAUTH: Scope = Scope::from_static("oauth");

    /// A scope from a string literal.
    pub const fn from_static(scope: &'static str) -> Self {
        Self(Cow::Borrowed(scope))
    }

    /// A scope from any string. Surrounding whitespace is trimmed.
    pub fn new(scope: impl Into<String>) -> Self {
        let scope = scope.into();
        let trimmed = scope.trim();
        if trimmed.len() == scope.len() { Self(Cow::Owned(scope)) } else { Self(Cow::Owned(trimmed.to_owned())) }
    }

    /// The scope string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a read-only scope (`….read`, or `crm.export`).
    pub fn is_read_only(&self) -> bool {
        self.0.ends_with(".read") || self.0 == "crm.export"
    }

    /// Splits a space- or comma-separated list (as in HubSpot's `scope` parameter or a command line) into scopes.
    ///
    /// ```
    /// use hubspot_connect::Scope;
    /// let scopes = Scope::parse_list("oauth crm.objects.contacts.read,  crm.lists.read");
    /// assert_eq!(scopes.len(), 3);
    /// ```
    pub fn parse_list(list: &str) -> Vec<Scope> {
        list.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(Scope::new).collect()
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&'static str> for Scope {
    fn from(scope: &'static str) -> Self {
        Self::from_static(scope)
    }
}

impl From<String> for Scope {
    fn from(scope: String) -> Self {
        Self::new(scope)
    }
}

impl AsRef<str> for Scope {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What an integration asks for: the scopes it requires (HubSpot's `scope`) and the ones it would like
/// (`optional_scope`, which HubSpot drops silently when the account's tier lacks the product).
///
/// Implement it to compute scopes per tenant or plan; [`Scopes`] is the ready implementation.
///
/// ```
/// use hubspot_connect::Scope;
/// use hubspot_connect::scope::ScopeSet;
///
/// /// Every tenant on the "audit" plan connects read-only.
/// #[derive(Debug)]
/// struct AuditPlan;
///
/// impl ScopeSet for AuditPlan {
///     fn required(&self) -> Vec<Scope> {
///         vec![Scope::OAUTH, Scope::from_static("crm.objects.contacts.read")]
///     }
/// }
///
/// let granted = [Scope::OAUTH];
/// let missing = AuditPlan.check(&granted).unwrap_err();
/// assert_eq!(missing.scopes(), &[Scope::from_static("crm.objects.contacts.read")]);
/// ```
pub trait ScopeSet: fmt::Debug + Send + Sync {
    /// Scopes the integration cannot work without. Sent as `scope`; a connection missing any is refused.
    fn required(&self) -> Vec<Scope>;

    /// Scopes the integration uses when granted. Sent as `optional_scope`. None by default.
    fn optional(&self) -> Vec<Scope> {
        Vec::new()
    }

    /// Checks granted scopes against the required ones, naming every required scope that is missing.
    fn check(&self, granted: &[Scope]) -> Result<(), MissingScopes> {
        let granted: BTreeSet<&str> = granted.iter().map(Scope::as_str).collect();
        let mut missing: Vec<Scope> = self.required().into_iter().filter(|s| !granted.contains(s.as_str())).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            missing.sort();
            missing.dedup();
            Err(MissingScopes { missing })
        }
    }
}

const _: Option<&dyn ScopeSet> = None;

/// The required scopes a connection lacks. Returned by [`ScopeSet::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingScopes {
    missing: Vec<Scope>,
}

impl MissingScopes {
    /// The missing scopes, sorted.
    pub fn scopes(&self) -> &[Scope] {
        &self.missing
    }
}

impl fmt::Display for MissingScopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("missing required scopes: ")?;
        write_joined(f, &self.missing, ", ")
    }
}

impl std::error::Error for MissingScopes {}

pub(crate) fn write_joined(f: &mut fmt::Formatter<'_>, scopes: &[Scope], sep: &str) -> fmt::Result {
    for (i, s) in scopes.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        f.write_str(s.as_str())?;
    }
    Ok(())
}

/// The ready [`ScopeSet`]: required and optional scopes, deduplicated and sorted. `oauth` is always required.
///
/// ```
/// use hubspot_connect::Scopes;
/// use hubspot_connect::scope::{ScopeSet, presets};
///
/// let scopes = Scopes::new()
///     .require("crm.objects.contacts.read")
///     .optionally("crm.objects.deals.read")
///     .merge(&presets::settings::read_only());
/// assert!(scopes.required().iter().any(|s| s.as_str() == "oauth"));
/// assert!(scopes.optional().iter().any(|s| s.as_str() == "crm.objects.deals.read"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes {
    required: BTreeSet<Scope>,
    optional: BTreeSet<Scope>,
}

impl Default for Scopes {
    fn default() -> Self {
        Self::new()
    }
}

impl Scopes {
    /// Just `oauth`.
    pub fn new() -> Self {
        Self { required: BTreeSet::from([Scope::OAUTH]), optional: BTreeSet::new() }
    }

    /// Adds a required scope (and removes it from the optional ones).
    pub fn require(mut self, scope: impl Into<Scope>) -> Self {
        let scope = scope.into();
        self.optional.remove(&scope);
        self.required.insert(scope);
        self
    }

    /// Adds several required scopes.
    pub fn require_all<S: Into<Scope>>(self, scopes: impl IntoIterator<Item = S>) -> Self {
        scopes.into_iter().fold(self, Self::require)
    }

    /// Adds an optional scope (ignored if it is already required).
    pub fn optionally(mut self, scope: impl Into<Scope>) -> Self {
        let scope = scope.into();
        if !self.required.contains(&scope) {
            self.optional.insert(scope);
        }
        self
    }

    /// Adds several optional scopes.
    pub fn optionally_all<S: Into<Scope>>(self, scopes: impl IntoIterator<Item = S>) -> Self {
        scopes.into_iter().fold(self, Self::optionally)
    }

    /// Adds every required and optional scope of `other`.
    pub fn merge(self, other: &dyn ScopeSet) -> Self {
        self.require_all(other.required()).optionally_all(other.optional())
    }

    /// The same set with every required scope turned optional except `oauth` (for "connect with what you can").
    pub fn all_optional(self) -> Self {
        let optional: Vec<Scope> = self.required.iter().filter(|s| **s != Scope::OAUTH).cloned().collect();
        Self::new().optionally_all(optional).optionally_all(self.optional)
    }

    /// Only the read-only scopes of this set (`….read`), plus `oauth`.
    pub fn read_only(self) -> Self {
        let keep = |s: &Scope| s.is_read_only();
        Self {
            required: self.required.into_iter().filter(|s| keep(s) || *s == Scope::OAUTH).collect(),
            optional: self.optional.into_iter().filter(keep).collect(),
        }
    }
}

impl ScopeSet for Scopes {
    fn required(&self) -> Vec<Scope> {
        self.required.iter().cloned().collect()
    }
    fn optional(&self) -> Vec<Scope> {
        self.optional.iter().cloned().collect()
    }
}

/// HubSpot scope presets by product area, each as `full()` (read and write) and `read_only()`.
///
/// Presets require every scope they list; combine them with [`Scopes::merge`], or turn them optional with
/// [`Scopes::all_optional`]. HubSpot adds and renames scopes: check the app's scope list in the developer portal.
pub mod presets {
    use super::Scopes;

    macro_rules! area {
        ($(#[$meta:meta])* $name:ident, read: [$($r:literal),* $(,)?], write: [$($w:literal),* $(,)?]) => {
            $(#[$meta])*
            pub mod $name {
                use super::Scopes;
                /// The read scopes of this area, plus `oauth`.
                pub fn read_only() -> Scopes {
                    Scopes::new().require_all([$($r),*])
                }
                /// The read and write scopes of this area, plus `oauth`.
                pub fn full() -> Scopes {
                    read_only().require_all::<&'static str>([$($w),*])
                }
            }
        };
    }

    area!(
        /// CRM objects, schemas, lists and owners.
        crm,
        read: [
            "crm.objects.contacts.read",
            "crm.objects.companies.read",
            "crm.objects.deals.read",
            "crm.objects.owners.read",
            "crm.schemas.contacts.read",
            "crm.schemas.companies.read",
            "crm.schemas.deals.read",
            "crm.lists.read",
        ],
        write: [
            "crm.objects.contacts.write",
            "crm.objects.companies.write",
            "crm.objects.deals.write",
            "crm.schemas.contacts.write",
            "crm.schemas.companies.write",
            "crm.schemas.deals.write",
            "crm.lists.write",
        ]
    );
    area!(
        /// Marketing campaigns, marketing email and forms.
        marketing,
        read: ["marketing.campaigns.read", "marketing.email.read"],
        write: ["marketing.campaigns.write", "forms"]
    );
    area!(
        /// CMS content: pages, blog posts, templates, HubDB.
        content,
        read: ["cms.domains.read"],
        write: ["content", "hubdb"]
    );
    area!(
        /// Workflows and sequences.
        automation,
        read: ["automation.sequences.read"],
        write: ["automation"]
    );
    area!(
        /// Analytics and reporting.
        reporting,
        read: ["business-intelligence", "crm.export"],
        write: []
    );
    area!(
        /// Account settings: users and currencies.
        settings,
        read: ["settings.users.read", "settings.currencies.read"],
        write: ["settings.users.write", "settings.currencies.write"]
    );
    area!(
        /// The file manager.
        files,
        read: ["files.ui_hidden.read"],
        write: ["files"]
    );

    /// Every area's read-only scopes: an audit-style connection.
    pub fn read_only_everything() -> Scopes {
        [
            crm::read_only(),
            marketing::read_only(),
            content::read_only(),
            automation::read_only(),
            reporting::read_only(),
            settings::read_only(),
            files::read_only(),
        ]
        .iter()
        .fold(Scopes::new(), |acc, s| acc.merge(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_always_required() {
        assert_eq!(Scopes::new().required(), vec![Scope::OAUTH]);
        assert!(Scopes::new().all_optional().required().contains(&Scope::OAUTH));
    }

    #[test]
    fn require_wins_over_optional() {
        let s = Scopes::new().optionally("a").require("a").optionally("a");
        assert!(s.required().contains(&Scope::from_static("a")));
        assert!(s.optional().is_empty());
    }

    #[test]
    fn check_names_every_missing_scope_sorted() {
        let s = Scopes::new().require("b").require("a").optionally("c");
        let err = s.check(&[Scope::OAUTH]).unwrap_err();
        assert_eq!(err.scopes(), &[Scope::from_static("a"), Scope::from_static("b")]);
        assert_eq!(err.to_string(), "missing required scopes: a, b");
        assert!(s.check(&[Scope::OAUTH, "a".into(), "b".into()]).is_ok());
    }

    #[test]
    fn optional_scopes_are_not_required() {
        let s = Scopes::new().optionally("c");
        assert!(s.check(&[Scope::OAUTH]).is_ok());
    }

    #[test]
    fn read_only_subsets_only_hold_read_scopes() {
        for preset in [
            presets::crm::read_only(),
            presets::marketing::read_only(),
            presets::settings::read_only(),
            presets::files::read_only(),
            presets::read_only_everything(),
        ] {
            for s in preset.required() {
                assert!(s == Scope::OAUTH || s.is_read_only() || s.as_str() == "business-intelligence", "{s}");
            }
        }
        let full = presets::crm::full();
        assert!(full.required().iter().any(|s| s.as_str() == "crm.objects.contacts.write"));
        assert!(full.clone().read_only().required().iter().all(|s| *s == Scope::OAUTH || s.is_read_only()));
    }

    #[test]
    fn parse_list_accepts_spaces_and_commas() {
        let v = Scope::parse_list(" oauth,crm.lists.read  files\tcontent ");
        let names: Vec<&str> = v.iter().map(Scope::as_str).collect();
        assert_eq!(names, ["oauth", "crm.lists.read", "files", "content"]);
        assert!(Scope::parse_list(" , ").is_empty());
    }
}
