//! Resolution of the effective 2FA policy of one user (DESIGN.md sections 1 and 5).
//!
//! One pure function folds host settings, a tenant's feature (the ceiling), a tenant's
//! settings, the user's own flag, the rules of the user's groups and, for a sign-in to
//! an application, that application's rule into one value. The precedence is fixed: a
//! ceiling that is forced or disabled is never contradicted by a lower level, host
//! settings never reach tenant users, and a `disabled` scope is never overridden by a
//! group or an application. `resolve` allocates nothing (the groups come in as a slice
//! and the deciding group goes out as its index), so it can run on every request; the
//! explanation in words is produced on demand by [`EffectivePolicy::trace`].

use serde::{Deserialize, Serialize};

use crate::vocab::{Behaviour, ProviderSet, ScopeSettings, Strength, TenantFeature};

/// Where a user lives, with the settings that can reach them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// A host user: only the host settings apply.
    Host { settings: &'a ScopeSettings },
    /// A tenant user: the tenant's feature is a ceiling over the tenant's settings.
    Tenant { feature: TenantFeature, settings: &'a ScopeSettings },
}

/// A 2FA rule carried by a group or an application (DESIGN.md section 5). A rule can only
/// ask for more: it never turns a second factor off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Whether members must present a second factor whatever their own switch says.
    #[serde(default)]
    pub require_two_factor: bool,
    /// The weakest factor strength accepted from members; absent accepts the scope's.
    #[serde(default)]
    pub min_strength: Option<Strength>,
}

impl Rule {
    /// A rule that asks for nothing beyond the scope: the same as no rule.
    pub fn is_empty(&self) -> bool {
        !self.require_two_factor && self.min_strength.is_none()
    }
}

/// One group the user belongs to, with its rule. Only the rule takes part in resolution;
/// the id and name are for the trace and the views.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupRule {
    pub id: String,
    pub name: String,
    pub rule: Rule,
}

/// The rule of the application a sign-in is for (an OpenID Connect client).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ApplicationRule {
    pub id: String,
    pub name: String,
    pub rule: Rule,
    /// How recent the second factor must be, in seconds.
    pub max_age_seconds: Option<u32>,
}

/// The rules below the scope that reach one user: their groups' and, for a sign-in to an
/// application, the application's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rules<'a> {
    /// The user's groups that carry a rule, in a stable order (the server sorts them by
    /// name), so the deciding group is the same one on every node.
    pub groups: &'a [GroupRule],
    pub application: Option<&'a ApplicationRule>,
}

impl Rules<'_> {
    pub const NONE: Rules<'static> = Rules { groups: &[], application: None };
}

/// Everything resolution needs about one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyInput<'a> {
    pub scope: Scope<'a>,
    /// The user's own 2FA switch (`two_factor_enabled`). Kept even when a ceiling
    /// overrides it, so lifting the ceiling restores the user's choice.
    pub user_two_factor_enabled: bool,
    pub rules: Rules<'a>,
}

impl<'a> PolicyInput<'a> {
    /// A user with no group rules, outside any application.
    pub fn new(scope: Scope<'a>, user_two_factor_enabled: bool) -> Self {
        Self { scope, user_two_factor_enabled, rules: Rules::NONE }
    }
}

/// The level whose setting decided whether a second factor is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    HostSettings,
    TenantFeature,
    TenantSettings,
    /// A group the user belongs to requires a second factor.
    Group,
    /// The application being signed in to requires a second factor.
    Application,
    User,
}

impl DecidedBy {
    /// Whether the level is the scope's own (a setting or a ceiling), as opposed to a rule
    /// below it or the user's switch.
    pub fn is_scope_level(self) -> bool {
        matches!(self, DecidedBy::HostSettings | DecidedBy::TenantFeature | DecidedBy::TenantSettings)
    }
}

/// Whether the user is a host user or a tenant user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    Host,
    Tenant,
}

/// The resolved policy of one user, with what is needed to explain it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EffectivePolicy {
    /// The behaviour at the deciding scope level.
    pub behaviour: Behaviour,
    /// Whether a second factor is demanded at sign-in.
    pub required: bool,
    pub decided_by: DecidedBy,
    /// When `decided_by` is `group`: the index of that group in the input's groups.
    pub deciding_group: Option<u16>,
    /// The weakest factor strength that satisfies this policy: the strongest of the
    /// scope's and of every applicable rule's.
    pub required_strength: Strength,
    /// The scope's own `min_strength`, the floor of `required_strength`.
    pub scope_min_strength: Strength,
    /// How recent the second factor must be (an application's `max_age`), in seconds.
    pub max_age_seconds: Option<u32>,
    /// An application asks for a second factor that the scope's `disabled` behaviour
    /// cannot give: the request must end in an error, never in a silent downgrade.
    pub application_unmet: bool,
    /// Whether the user may flip their own switch.
    pub user_can_change: bool,
    /// Whether an admin may set the user's switch.
    pub admin_can_override: bool,
    pub remember_browser_allowed: bool,
    pub remember_browser_days: u32,
    pub enrollment_grace_days: u32,
    /// The scope's allowed providers that reach `required_strength`.
    pub allowed_providers: ProviderSet,
    pub scope: ScopeKind,
    /// The tenant's ceiling, for tenant users.
    pub tenant_feature: Option<Behaviour>,
    pub user_two_factor_enabled: bool,
}

/// Resolves the effective policy of one user.
pub fn resolve(input: &PolicyInput<'_>) -> EffectivePolicy {
    let (scope, tenant_feature, settings, behaviour, level) = match input.scope {
        Scope::Host { settings } => (ScopeKind::Host, None, settings, settings.behaviour, DecidedBy::HostSettings),
        Scope::Tenant { feature, settings } => match feature.behaviour {
            ceiling @ (Behaviour::Forced | Behaviour::Disabled) => {
                (ScopeKind::Tenant, Some(ceiling), settings, ceiling, DecidedBy::TenantFeature)
            }
            Behaviour::Optional => {
                (ScopeKind::Tenant, Some(Behaviour::Optional), settings, settings.behaviour, DecidedBy::TenantSettings)
            }
        },
    };
    let flag = input.user_two_factor_enabled;
    let rules = input.rules;
    let app = rules.application.map(|a| a.rule).unwrap_or_default();
    // The first requiring group in the caller's order names the decision; more than
    // 65535 groups cannot be named, and no scope is meant to hold that many.
    let requiring_group =
        rules.groups.iter().position(|g| g.rule.require_two_factor).map(|i| u16::try_from(i).unwrap_or(u16::MAX));
    let (required, decided_by, deciding_group, user_can_change, admin_can_override) = match behaviour {
        Behaviour::Forced => (true, level, None, false, false),
        Behaviour::Disabled => (false, level, None, false, false),
        Behaviour::Optional => match requiring_group {
            // A group's requirement is the admin's decision about the user, so it takes
            // the switch out of both the user's and the admin's hands.
            Some(i) => (true, DecidedBy::Group, Some(i), false, false),
            // An application's requirement holds for sign-ins to it alone; the switch
            // still governs every other sign-in, so it stays changeable.
            None if app.require_two_factor => (true, DecidedBy::Application, None, settings.users_can_change, true),
            None => (flag, DecidedBy::User, None, settings.users_can_change, true),
        },
    };
    let scope_min_strength = settings.min_strength;
    let required_strength = if behaviour == Behaviour::Disabled {
        scope_min_strength
    } else {
        let mut s = scope_min_strength;
        for g in rules.groups {
            if let Some(m) = g.rule.min_strength {
                s = s.max(m);
            }
        }
        app.min_strength.map_or(s, |m| s.max(m))
    };
    let application_asks = app.require_two_factor || app.min_strength.is_some();
    EffectivePolicy {
        behaviour,
        required,
        decided_by,
        deciding_group,
        required_strength,
        scope_min_strength,
        max_age_seconds: if behaviour == Behaviour::Disabled {
            None
        } else {
            rules.application.and_then(|a| a.max_age_seconds)
        },
        application_unmet: behaviour == Behaviour::Disabled && application_asks,
        user_can_change,
        admin_can_override,
        remember_browser_allowed: required && settings.remember_browser,
        remember_browser_days: settings.remember_browser_days,
        enrollment_grace_days: settings.enrollment_grace_days,
        // Providers below the required strength are not offered (DESIGN.md section 5),
        // so every use of the allowed set downstream enforces the strength too.
        allowed_providers: settings.allowed_providers.at_least(required_strength),
        scope,
        tenant_feature,
        user_two_factor_enabled: flag,
    }
}

impl EffectivePolicy {
    /// The group that decided, when one did. `rules` must be the rules this policy was
    /// resolved from.
    pub fn deciding_group<'r>(&self, rules: Rules<'r>) -> Option<&'r GroupRule> {
        self.deciding_group.and_then(|i| rules.groups.get(usize::from(i)))
    }

    /// The explanation in plain words, one sentence per level and rule that was
    /// consulted, in the order resolution consulted them. `rules` must be the rules this
    /// policy was resolved from: the result names groups by position only.
    pub fn trace(&self, rules: Rules<'_>) -> Vec<String> {
        let mut out = Vec::with_capacity(6 + rules.groups.len());
        let level = match (self.scope, self.tenant_feature) {
            (ScopeKind::Host, _) | (ScopeKind::Tenant, None) => {
                out.push(format!(
                    "This is a host user, so the host settings apply; they make two-factor sign-in {}.",
                    self.behaviour.as_str()
                ));
                "the host settings"
            }
            (ScopeKind::Tenant, Some(ceiling @ (Behaviour::Forced | Behaviour::Disabled))) => {
                out.push(format!(
                    "The host has set this tenant's two-factor feature to {}; that ceiling decides and the tenant's own settings cannot override it.",
                    ceiling.as_str()
                ));
                "the host's ceiling"
            }
            (ScopeKind::Tenant, Some(Behaviour::Optional)) => {
                out.push(
                    "The host leaves two-factor sign-in optional for this tenant, so the tenant's own settings apply."
                        .to_owned(),
                );
                out.push(format!("The tenant's settings make two-factor sign-in {}.", self.behaviour.as_str()));
                "the tenant's settings"
            }
        };
        let flag = if self.user_two_factor_enabled { "on" } else { "off" };
        match self.behaviour {
            Behaviour::Forced => out.push(
                "A second factor is required for every sign-in; the user's own switch does not matter.".to_owned(),
            ),
            Behaviour::Disabled => {
                out.push(format!("No second factor is asked; the user's own switch ({flag}) is kept but ignored."))
            }
            Behaviour::Optional => {}
        }
        for (i, g) in rules.groups.iter().enumerate() {
            out.push(self.group_sentence(i, g, level));
        }
        if let Some(app) = rules.application {
            out.push(self.application_sentence(app, level));
        }
        if self.behaviour == Behaviour::Optional {
            match self.decided_by {
                DecidedBy::Group => out.push(format!(
                    "The user's own switch ({flag}) does not matter while a group requires a second factor; neither the user nor an admin can change it."
                )),
                DecidedBy::Application => out.push(format!(
                    "The user's own switch ({flag}) still decides for sign-ins elsewhere."
                )),
                _ => {
                    out.push(format!(
                        "The user's own switch is {flag}, so a second factor is {}.",
                        if self.required { "required" } else { "not required" }
                    ));
                    out.push(if self.user_can_change {
                        "The user may change the switch; an admin may too.".to_owned()
                    } else {
                        "Only an admin may change the switch; users cannot.".to_owned()
                    });
                }
            }
        }
        if self.required {
            if self.scope_min_strength > Strength::OutOfBand {
                out.push(format!(
                    "The scope accepts only factors of strength {} or stronger.",
                    self.scope_min_strength.as_str()
                ));
            }
            if self.required_strength > self.scope_min_strength {
                out.push(format!(
                    "Only a factor of strength {} or stronger is accepted.",
                    self.required_strength.as_str()
                ));
            }
            out.push(if self.remember_browser_allowed {
                format!(
                    "A browser may be remembered for {} days to skip the second factor.",
                    self.remember_browser_days
                )
            } else {
                "Remembering a browser is not allowed; every sign-in asks for the second factor.".to_owned()
            });
        }
        out
    }

    fn group_sentence(&self, index: usize, g: &GroupRule, level: &str) -> String {
        let name = &g.name;
        let asks = rule_words(&g.rule);
        if self.behaviour == Behaviour::Disabled {
            return format!(
                "Group \"{name}\" {asks}, but two-factor sign-in is disabled by {level}, which overrides the group's rule."
            );
        }
        let decided_here = self.deciding_group.is_some_and(|i| usize::from(i) == index);
        if decided_here {
            format!("Group \"{name}\" {asks}; that rule makes a second factor required.")
        } else if g.rule.require_two_factor && self.behaviour == Behaviour::Forced {
            format!("Group \"{name}\" {asks}; two-factor sign-in is already forced by {level}.")
        } else if g.rule.require_two_factor {
            format!("Group \"{name}\" {asks}; another group already decided.")
        } else {
            format!("Group \"{name}\" {asks}.")
        }
    }

    fn application_sentence(&self, app: &ApplicationRule, level: &str) -> String {
        let name = &app.name;
        let mut asks = rule_words(&app.rule);
        if let Some(age) = app.max_age_seconds {
            asks.push_str(&format!(", with a second factor at most {age} seconds old"));
        }
        if self.behaviour == Behaviour::Disabled {
            if self.application_unmet {
                format!(
                    "The application \"{name}\" {asks}, but two-factor sign-in is disabled by {level}, so its requirement cannot be met."
                )
            } else {
                format!("The application \"{name}\" {asks}; two-factor sign-in is disabled by {level}.")
            }
        } else if self.decided_by == DecidedBy::Application {
            format!("The application \"{name}\" {asks}; that rule makes a second factor required for sign-ins to it.")
        } else {
            format!("The application \"{name}\" {asks}.")
        }
    }

    /// One sentence for an end user's account page.
    pub fn summary(&self, rules: Rules<'_>) -> String {
        match (self.decided_by, self.behaviour, self.required) {
            (DecidedBy::TenantFeature, Behaviour::Forced, _) | (DecidedBy::TenantSettings, Behaviour::Forced, _) => {
                "Your organisation requires two-factor sign-in.".to_owned()
            }
            (DecidedBy::HostSettings, Behaviour::Forced, _) => {
                "This platform requires two-factor sign-in for host users.".to_owned()
            }
            (_, Behaviour::Disabled, _) => {
                "Two-factor sign-in is turned off for your account's organisation.".to_owned()
            }
            (DecidedBy::Group, _, _) => match self.deciding_group(rules) {
                Some(g) => format!("Your group \"{}\" requires two-factor sign-in.", g.name),
                None => "One of your groups requires two-factor sign-in.".to_owned(),
            },
            (DecidedBy::Application, _, _) => "This application requires two-factor sign-in.".to_owned(),
            (_, _, true) => "Two-factor sign-in is on for your account.".to_owned(),
            (_, _, false) => "Two-factor sign-in is off for your account.".to_owned(),
        }
    }
}

/// What a rule asks for, as the middle of a sentence ("requires a second factor of
/// strength app or stronger").
fn rule_words(rule: &Rule) -> String {
    match (rule.require_two_factor, rule.min_strength) {
        (true, Some(s)) => format!("requires a second factor of strength {} or stronger", s.as_str()),
        (true, None) => "requires a second factor".to_owned(),
        (false, Some(s)) => format!("accepts only factors of strength {} or stronger", s.as_str()),
        (false, None) => "carries no rule".to_owned(),
    }
}
