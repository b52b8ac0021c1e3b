//! Shared by the policy tests: an oracle for resolution written as a rule table straight
//! from DESIGN.md section 1, and the way the server picks the scope that reaches a user.
//!
//! The oracle is deliberately not a copy of `resolve`: it matches explicit rows rather
//! than folding levels, derives the switch rights from who decided rather than from the
//! behaviour, and checks that its own table is total and unambiguous (rule 7), so a
//! mistake would have to be made twice, in two different shapes, to go unnoticed.

// Each test crate includes this module but uses only part of it.
#![allow(dead_code)]

use twofold_policy::resolve::ScopeKind;
use twofold_policy::{
    Behaviour, DecidedBy, EffectivePolicy, GroupRule, ProviderSet, Rule, Scope, ScopeSettings, Strength, TenantFeature,
};

/// Where a user lives, as the server's storage knows it.
#[derive(Debug, Clone, Copy)]
pub enum Home<'a> {
    Host,
    Tenant { feature: TenantFeature, settings: &'a ScopeSettings },
}

/// The server loads the host settings on every request, so a bug that handed them to
/// a tenant user would live exactly here; the tests go through this helper to show
/// that the shape of `Scope` leaves no room for it.
pub fn scope_for<'a>(home: Home<'a>, host: &'a ScopeSettings) -> Scope<'a> {
    match home {
        Home::Host => Scope::Host { settings: host },
        Home::Tenant { feature, settings } => Scope::Tenant { feature, settings },
    }
}

#[derive(Debug, Clone, Copy)]
enum Pat<T> {
    Any,
    Is(T),
}

impl<T: PartialEq> Pat<T> {
    fn matches(&self, v: &T) -> bool {
        match self {
            Pat::Any => true,
            Pat::Is(want) => want == v,
        }
    }
}

use Behaviour::{Disabled, Forced, Optional};
use Pat::{Any, Is};

/// One line of DESIGN.md section 1 as a row: the inputs it talks about, then the
/// behaviour, whether a second factor is asked, and who decided.
type HostRow = (Pat<Behaviour>, Pat<bool>, Behaviour, bool, DecidedBy);
type TenantRow = (Pat<Behaviour>, Pat<Behaviour>, Pat<bool>, Behaviour, bool, DecidedBy);

/// Rules 1, 3 and 4 for host users: (host behaviour, user flag).
const HOST_RULES: &[HostRow] = &[
    (Is(Forced), Any, Forced, true, DecidedBy::HostSettings),
    (Is(Disabled), Any, Disabled, false, DecidedBy::HostSettings),
    (Is(Optional), Is(true), Optional, true, DecidedBy::User),
    (Is(Optional), Is(false), Optional, false, DecidedBy::User),
];

/// Rules 2, 3, 4 and 7 for tenant users: (ceiling, tenant behaviour, user flag).
const TENANT_RULES: &[TenantRow] = &[
    (Is(Forced), Any, Any, Forced, true, DecidedBy::TenantFeature),
    (Is(Disabled), Any, Any, Disabled, false, DecidedBy::TenantFeature),
    (Is(Optional), Is(Forced), Any, Forced, true, DecidedBy::TenantSettings),
    (Is(Optional), Is(Disabled), Any, Disabled, false, DecidedBy::TenantSettings),
    (Is(Optional), Is(Optional), Is(true), Optional, true, DecidedBy::User),
    (Is(Optional), Is(Optional), Is(false), Optional, false, DecidedBy::User),
];

/// Rule 7 says precedence is total and never says two things at once: exactly one row
/// must fit, or the table itself is wrong.
fn only_match<R: Copy>(rows: &[R], fits: impl Fn(&R) -> bool, what: &str) -> R {
    let found: Vec<R> = rows.iter().copied().filter(|r| fits(r)).collect();
    assert_eq!(found.len(), 1, "oracle table: {} rows fit {what}", found.len());
    found[0]
}

/// DESIGN.md section 5 for groups, as rows: (behaviour reached in section 1, some
/// member group requires a second factor) -> whether the groups decide. Under
/// `disabled` and `forced` the scope already decided; only under `optional` can a group
/// take the decision away from the user's switch.
const GROUP_RULES: &[(Behaviour, Pat<bool>, bool)] =
    &[(Disabled, Any, false), (Forced, Any, false), (Optional, Is(true), true), (Optional, Is(false), false)];

/// The strengths, strongest first: the required strength is the first one any
/// applicable rule asks for.
const STRONGEST_FIRST: [Strength; 3] = [Strength::PhishingResistant, Strength::App, Strength::OutOfBand];

/// What DESIGN.md sections 1 and 5 say the effective policy of one user is.
pub fn oracle(home: Home<'_>, host: &ScopeSettings, flag: bool, groups: &[GroupRule]) -> EffectivePolicy {
    let (behaviour, required, decided_by, own, scope, tenant_feature) = match home {
        Home::Host => {
            let (_, _, b, r, d) = only_match(
                HOST_RULES,
                |(hb, f, ..)| hb.matches(&host.behaviour) && f.matches(&flag),
                &format!("host {:?} flag {flag}", host.behaviour),
            );
            (b, r, d, host, ScopeKind::Host, None)
        }
        Home::Tenant { feature, settings } => {
            let (_, _, _, b, r, d) = only_match(
                TENANT_RULES,
                |(c, tb, f, ..)| c.matches(&feature.behaviour) && tb.matches(&settings.behaviour) && f.matches(&flag),
                &format!("ceiling {:?} tenant {:?} flag {flag}", feature.behaviour, settings.behaviour),
            );
            (b, r, d, settings, ScopeKind::Tenant, Some(feature.behaviour))
        }
    };
    let some_group_requires = groups.iter().any(|g| g.rule.require_two_factor);
    let (_, _, groups_decide) = only_match(
        GROUP_RULES,
        |(b, r, _)| *b == behaviour && r.matches(&some_group_requires),
        &format!("behaviour {behaviour:?}, a group requires: {some_group_requires}"),
    );
    let (required, decided_by, deciding_group) = if groups_decide {
        let first = groups.iter().position(|g| g.rule.require_two_factor).map(|i| u16::try_from(i).unwrap());
        (true, DecidedBy::Group, first)
    } else {
        (required, decided_by, None)
    };
    // Section 5: the scope's own floor, raised by any member group's rule.
    let scope_min_strength = own.min_strength;
    let required_strength = if behaviour == Disabled {
        scope_min_strength
    } else {
        STRONGEST_FIRST
            .into_iter()
            .find(|s| *s == scope_min_strength || groups.iter().any(|g| g.rule.min_strength == Some(*s)))
            .unwrap_or(scope_min_strength)
    };
    // Rule 3: the switch matters only where the user's flag is what decides.
    let flag_decides = decided_by == DecidedBy::User;
    EffectivePolicy {
        behaviour,
        required,
        decided_by,
        deciding_group,
        required_strength,
        scope_min_strength,
        max_age_seconds: None,
        application_unmet: false,
        user_can_change: flag_decides && own.users_can_change,
        admin_can_override: flag_decides,
        // Rule 5: the user's own scope, never the host's for a tenant user.
        remember_browser_allowed: required && own.remember_browser,
        remember_browser_days: own.remember_browser_days,
        enrollment_grace_days: own.enrollment_grace_days,
        // Section 5: providers below the required strength are not offered.
        allowed_providers: ProviderSet {
            authenticator: own.allowed_providers.authenticator && required_strength <= Strength::App,
            email: own.allowed_providers.email && required_strength == Strength::OutOfBand,
            sms: own.allowed_providers.sms && required_strength == Strength::OutOfBand,
            passkey: own.allowed_providers.passkey,
        },
        scope,
        tenant_feature,
        user_two_factor_enabled: flag,
    }
}

/// Phrases the trace must contain so that admins and users can see which level decided.
pub fn trace_must_mention(home: Home<'_>, p: &EffectivePolicy, groups: &[GroupRule]) -> Vec<String> {
    let mut out = vec![p.behaviour.as_str().to_owned()];
    out.push(
        match p.decided_by {
            DecidedBy::HostSettings => "host settings",
            DecidedBy::TenantFeature => "ceiling",
            DecidedBy::TenantSettings => "tenant's settings",
            DecidedBy::Group => "makes a second factor required",
            DecidedBy::Application => "application",
            DecidedBy::User => "switch",
        }
        .to_owned(),
    );
    // Every rule consulted is listed by its group's name.
    for g in groups {
        out.push(format!("Group \"{}\"", g.name));
    }
    if let Some(i) = p.deciding_group {
        out.push(format!("Group \"{}\" requires", groups[usize::from(i)].name));
    }
    // Under `disabled`, the trace says which level overrode the groups.
    if p.behaviour == Disabled && !groups.is_empty() {
        out.push("overrides the group's rule".to_owned());
        out.push(
            match p.decided_by {
                DecidedBy::HostSettings => "disabled by the host settings",
                DecidedBy::TenantFeature => "disabled by the host's ceiling",
                _ => "disabled by the tenant's settings",
            }
            .to_owned(),
        );
    }
    if p.required && p.scope_min_strength > Strength::OutOfBand {
        out.push(format!("The scope accepts only factors of strength {}", p.scope_min_strength.as_str()));
    }
    if p.required && p.required_strength > p.scope_min_strength {
        out.push(format!("strength {} or stronger is accepted", p.required_strength.as_str()));
    }
    // When the user decides, the trace must still say which scope handed it over.
    match (home, p.decided_by) {
        (Home::Host, _) => out.push("host settings".to_owned()),
        (Home::Tenant { .. }, DecidedBy::User) => out.push("tenant's own settings".to_owned()),
        _ => {}
    }
    if p.remember_browser_allowed {
        out.push(format!("{} days", p.remember_browser_days));
    }
    out
}

/// Phrases that would mean the trace blames a level that cannot reach this user.
pub fn trace_must_not_mention(home: Home<'_>) -> &'static [&'static str] {
    match home {
        Home::Host => &["ceiling", "tenant"],
        Home::Tenant { .. } => &["host settings"],
    }
}

/// A group with a rule, for the tests.
pub fn group(name: &str, require_two_factor: bool, min_strength: Option<Strength>) -> GroupRule {
    GroupRule { id: format!("id-{name}"), name: name.to_owned(), rule: Rule { require_two_factor, min_strength } }
}

pub fn settings(
    behaviour: Behaviour,
    users_can_change: bool,
    remember_browser: bool,
    remember_browser_days: u32,
    enrollment_grace_days: u32,
    allowed_providers: ProviderSet,
    min_strength: Strength,
) -> ScopeSettings {
    ScopeSettings {
        behaviour,
        users_can_change,
        remember_browser,
        remember_browser_days,
        enrollment_grace_days,
        allowed_providers,
        sms_allowed_country_codes: Vec::new(),
        min_strength,
        passkey_aaguids: Vec::new(),
    }
}
