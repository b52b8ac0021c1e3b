//! Who may do what: casbin RBAC with domains behind a typed `authorize`.
//!
//! The domain is `host` or `tenant:<id>`; roles are `host_admin` (held in `host`, valid
//! everywhere), `tenant_admin` (held in one tenant) and `user` (everyone, and only ever
//! over their own account). The model and the permission rules are embedded once, here;
//! role assignments come from the server's storage through [`Authorizer::grant`]. The
//! server asks [`Authorizer::authorize`] before every admin or account action; nothing
//! else may decide access.

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
use serde::{Deserialize, Serialize};

const MODEL: &str = include_str!("rbac_model.conf");
const POLICY: &str = include_str!("rbac_policy.csv");

/// A role a user can hold in a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    HostAdmin,
    TenantAdmin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::HostAdmin => "host_admin",
            Role::TenantAdmin => "tenant_admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "host_admin" => Some(Role::HostAdmin),
            "tenant_admin" => Some(Role::TenantAdmin),
            _ => None,
        }
    }
}

/// Where an action happens: the host or one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain<'a> {
    Host,
    Tenant(&'a str),
}

impl Domain<'_> {
    fn key(&self) -> String {
        match self {
            Domain::Host => "host".to_owned(),
            Domain::Tenant(id) => format!("tenant:{id}"),
        }
    }
}

/// What an actor wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    ReadSettings,
    UpdateSettings,
    ListTenants,
    CreateTenant,
    ReadTenant,
    /// Suspend, resume or delete a tenant.
    UpdateTenant,
    ReadFeature,
    UpdateFeature,
    ListUsers,
    CreateUser,
    ReadUser,
    UpdateUser,
    AssignRole,
    ReadAudit,
    /// How many emails and texts a scope sent this hour, against its caps.
    ReadMessageUsage,
    /// A scope's groups, their rules and members.
    ReadGroups,
    /// Creating, renaming and deleting groups, their rules and their members.
    UpdateGroups,
    /// The scope's OpenID Connect applications (clients).
    ReadApplications,
    ManageApplications,
    ReadOwnAccount,
    UpdateOwnAccount,
}

impl Action {
    pub const ALL: [Action; 21] = [
        Action::ReadSettings,
        Action::UpdateSettings,
        Action::ListTenants,
        Action::CreateTenant,
        Action::ReadTenant,
        Action::UpdateTenant,
        Action::ReadFeature,
        Action::UpdateFeature,
        Action::ListUsers,
        Action::CreateUser,
        Action::ReadUser,
        Action::UpdateUser,
        Action::AssignRole,
        Action::ReadAudit,
        Action::ReadMessageUsage,
        Action::ReadGroups,
        Action::UpdateGroups,
        Action::ReadApplications,
        Action::ManageApplications,
        Action::ReadOwnAccount,
        Action::UpdateOwnAccount,
    ];

    fn object_and_act(self) -> (&'static str, &'static str) {
        match self {
            Action::ReadSettings => ("settings", "read"),
            Action::UpdateSettings => ("settings", "write"),
            Action::ListTenants => ("tenants", "read"),
            Action::CreateTenant => ("tenants", "write"),
            Action::ReadTenant => ("tenant", "read"),
            Action::UpdateTenant => ("tenant", "write"),
            Action::ReadFeature => ("feature", "read"),
            Action::UpdateFeature => ("feature", "write"),
            Action::ListUsers | Action::ReadUser => ("users", "read"),
            Action::CreateUser | Action::UpdateUser => ("users", "write"),
            Action::AssignRole => ("roles", "write"),
            Action::ReadAudit => ("audit", "read"),
            Action::ReadMessageUsage => ("messages", "read"),
            Action::ReadGroups => ("groups", "read"),
            Action::UpdateGroups => ("groups", "write"),
            Action::ReadApplications => ("applications", "read"),
            Action::ManageApplications => ("applications", "write"),
            Action::ReadOwnAccount => ("account", "read"),
            Action::UpdateOwnAccount => ("account", "write"),
        }
    }

    fn is_own_account(self) -> bool {
        matches!(self, Action::ReadOwnAccount | Action::UpdateOwnAccount)
    }
}

/// What an action is aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target<'a> {
    /// A domain as a whole (its settings, its user list, its audit trail).
    Domain(Domain<'a>),
    /// One user, in the domain the user belongs to.
    User { id: &'a str, domain: Domain<'a> },
}

impl Target<'_> {
    fn domain(&self) -> Domain<'_> {
        match self {
            Target::Domain(d) => *d,
            Target::User { domain, .. } => *domain,
        }
    }
}

/// The user asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Actor<'a> {
    pub user_id: &'a str,
}

fn subject(user_id: &str) -> String {
    format!("user:{user_id}")
}

#[derive(Debug, thiserror::Error)]
#[error("authorisation model: {0}")]
pub struct AuthzError(String);

/// Decisions remembered at most. A decision depends on the actor, the domain, the action
/// and whether an own-account action is aimed at the actor, so the working set is the
/// admins times the domains they touch times the actions they take; an entry is about
/// 150 bytes, so this bounds the memory to a few megabytes, and a decision pushed out is
/// made again by casbin (tens of microseconds).
const DECISIONS_KEPT: usize = 16_384;

/// A decision's request, as remembered: every part it depends on, kept whole. casbin's
/// own `CachedEnforcer` keys its decisions by a 64-bit hash of the request, so two
/// requests whose hashes collide would share an answer; these keys compare in full.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Decision {
    actor: Box<str>,
    domain: Option<Box<str>>,
    action: Action,
    on_self: bool,
}

/// A [`Decision`] borrowed from the request, to look one up without copying the ids. Its
/// fields and their order are `Decision`'s, so both hash alike.
#[derive(Hash)]
struct Asked<'a> {
    actor: &'a str,
    domain: Option<&'a str>,
    action: Action,
    on_self: bool,
}

impl quick_cache::Equivalent<Decision> for Asked<'_> {
    fn equivalent(&self, key: &Decision) -> bool {
        self.actor == &*key.actor
            && self.domain == key.domain.as_deref()
            && self.action == key.action
            && self.on_self == key.on_self
    }
}

impl Asked<'_> {
    fn to_owned(&self) -> Decision {
        Decision {
            actor: self.actor.into(),
            domain: self.domain.map(Into::into),
            action: self.action,
            on_self: self.on_self,
        }
    }
}

/// The casbin enforcer with Twofold's model and rules, and the decisions it made. Every
/// request asks for one, and casbin's evaluation of the matcher takes tens of
/// microseconds in its interpreter, so decisions are remembered; they can only change
/// when the roles do, and [`Authorizer::grant`] and [`Authorizer::revoke`] (which take
/// the authorizer exclusively, so no decision is being made meanwhile) forget them all.
pub struct Authorizer {
    enforcer: Enforcer,
    decisions: quick_cache::sync::Cache<Decision, bool>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").finish_non_exhaustive()
    }
}

impl Authorizer {
    /// Builds the enforcer from the embedded model and rules. The casbin API is async
    /// only because adapters may do I/O; the in-memory adapter never does, so a local
    /// executor suffices and no runtime is needed.
    pub fn new() -> Result<Self, AuthzError> {
        futures_executor::block_on(async {
            let model = DefaultModel::from_str(MODEL).await.map_err(|e| AuthzError(e.to_string()))?;
            let mut enforcer =
                Enforcer::new(model, MemoryAdapter::default()).await.map_err(|e| AuthzError(e.to_string()))?;
            let rules: Vec<Vec<String>> = POLICY
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.split(',').skip(1).map(|f| f.trim().to_owned()).collect())
                .collect();
            enforcer.add_policies(rules).await.map_err(|e| AuthzError(e.to_string()))?;
            Ok(Self { enforcer, decisions: quick_cache::sync::Cache::new(DECISIONS_KEPT) })
        })
    }

    /// Records that `user_id` holds `role` in `domain`. A host admin role can only be
    /// held in the host domain, a tenant admin role only in a tenant.
    pub fn grant(&mut self, user_id: &str, role: Role, domain: Domain<'_>) -> Result<(), AuthzError> {
        match (role, domain) {
            (Role::HostAdmin, Domain::Host) | (Role::TenantAdmin, Domain::Tenant(_)) => {}
            _ => {
                return Err(AuthzError(format!("{} cannot be held in {}", role.as_str(), domain.key())));
            }
        }
        let rule = vec![subject(user_id), role.as_str().to_owned(), domain.key()];
        self.decisions.clear();
        futures_executor::block_on(self.enforcer.add_grouping_policy(rule))
            .map(|_| ())
            .map_err(|e| AuthzError(e.to_string()))
    }

    /// Removes a role assignment; absent assignments are not an error.
    pub fn revoke(&mut self, user_id: &str, role: Role, domain: Domain<'_>) -> Result<(), AuthzError> {
        let rule = vec![subject(user_id), role.as_str().to_owned(), domain.key()];
        self.decisions.clear();
        futures_executor::block_on(self.enforcer.remove_grouping_policy(rule))
            .map(|_| ())
            .map_err(|e| AuthzError(e.to_string()))
    }

    /// Whether `actor` may perform `action` on `target`. Any evaluation error denies.
    pub fn authorize(&self, actor: Actor<'_>, action: Action, target: Target<'_>) -> bool {
        let on_self = if action.is_own_account() {
            match target {
                Target::User { id, .. } => id == actor.user_id,
                // Own-account actions only make sense on a user.
                Target::Domain(_) => return false,
            }
        } else {
            // Other actions are aimed at a domain; which of its users does not matter.
            false
        };
        let domain = match target.domain() {
            Domain::Host => None,
            Domain::Tenant(id) => Some(id),
        };
        let asked = Asked { actor: actor.user_id, domain, action, on_self };
        if let Some(allowed) = self.decisions.get(&asked) {
            return allowed;
        }
        let allowed = self.enforce(actor, action, target);
        self.decisions.insert(asked.to_owned(), allowed);
        allowed
    }

    /// casbin's decision; `authorize` has already denied own-account actions that are not
    /// aimed at a user.
    fn enforce(&self, actor: Actor<'_>, action: Action, target: Target<'_>) -> bool {
        let (obj, act) = action.object_and_act();
        let obj = match target {
            Target::User { id, .. } if action.is_own_account() => subject(id),
            _ => obj.to_owned(),
        };
        self.enforcer.enforce((subject(actor.user_id), target.domain().key(), obj, act)).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A decision made once is found again by the borrowed form of its request: if the
    /// two forms hashed differently every request would go to casbin, still correctly,
    /// so only looking inside tells.
    #[test]
    fn a_decision_is_found_again_by_the_request_it_was_made_for() {
        let mut z = Authorizer::new().unwrap();
        z.grant("a", Role::TenantAdmin, Domain::Tenant("A")).unwrap();
        let requests = [
            (Action::UpdateSettings, Target::Domain(Domain::Tenant("A"))),
            (Action::ListTenants, Target::Domain(Domain::Host)),
            (Action::UpdateOwnAccount, Target::User { id: "a", domain: Domain::Tenant("A") }),
            (Action::ReadOwnAccount, Target::User { id: "b", domain: Domain::Tenant("A") }),
        ];
        for (action, target) in requests {
            z.authorize(Actor { user_id: "a" }, action, target);
        }
        assert_eq!(z.decisions.len(), requests.len());
        let remembered = |actor, domain, action, on_self| z.decisions.get(&Asked { actor, domain, action, on_self });
        assert_eq!(remembered("a", Some("A"), Action::UpdateSettings, false), Some(true));
        assert_eq!(remembered("a", None, Action::ListTenants, false), Some(false));
        assert_eq!(remembered("a", Some("A"), Action::UpdateOwnAccount, true), Some(true));
        assert_eq!(remembered("a", Some("A"), Action::ReadOwnAccount, false), Some(false));
        assert_eq!(remembered("a", Some("B"), Action::UpdateSettings, false), None);

        z.revoke("a", Role::TenantAdmin, Domain::Tenant("A")).unwrap();
        assert_eq!(z.decisions.len(), 0);
    }
}
