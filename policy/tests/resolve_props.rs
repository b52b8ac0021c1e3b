//! Properties of resolution and of scope settings that must hold for every input, not
//! only the hand-picked values of the table test: the invariants DESIGN.md section 1
//! promises (forced and disabled are never contradicted, host settings never reach
//! tenant users, switches only exist under `optional`), the validation limits, and the
//! JSON shape the server and the web app exchange.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Home, group, oracle, scope_for};
use proptest::prelude::*;
use twofold_policy::vocab::{MAX_ENROLLMENT_GRACE_DAYS, MAX_REMEMBER_BROWSER_DAYS};
use twofold_policy::{
    ApplicationRule, Behaviour, DecidedBy, EffectivePolicy, GroupRule, PolicyInput, ProviderSet, Rule, Rules,
    ScopeSettings, SettingsError, Strength, TenantFeature, resolve,
};

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop::sample::select(Behaviour::ALL.to_vec())
}

fn providers() -> impl Strategy<Value = ProviderSet> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>())
        .prop_map(|(authenticator, email, sms, passkey)| ProviderSet { authenticator, email, sms, passkey })
}

/// Any settings at all, including ones `validate` would refuse: resolution must not
/// rely on validation having run.
fn settings() -> impl Strategy<Value = ScopeSettings> {
    (
        behaviour(),
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
        any::<u32>(),
        providers(),
        proptest::collection::vec("[+0-9]{0,4}", 0..4),
        strength(),
    )
        .prop_map(|(behaviour, users_can_change, remember_browser, days, grace, allowed_providers, codes, min)| {
            ScopeSettings {
                behaviour,
                users_can_change,
                remember_browser,
                remember_browser_days: days,
                enrollment_grace_days: grace,
                allowed_providers,
                sms_allowed_country_codes: codes,
                min_strength: min,
                passkey_aaguids: Vec::new(),
            }
        })
}

/// Some of the country calling codes, each at most once.
fn calling_codes() -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(vec!["1", "7", "44", "49", "353", "882", "979"], 0..4)
        .prop_map(|codes| codes.into_iter().map(str::to_owned).collect())
}

fn valid_settings() -> impl Strategy<Value = ScopeSettings> {
    (
        settings(),
        1..=MAX_REMEMBER_BROWSER_DAYS,
        0..=MAX_ENROLLMENT_GRACE_DAYS,
        providers().prop_filter("at least one provider", |p| p.iter().next().is_some()),
        calling_codes(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(s, days, grace, allowed_providers, codes, floor)| {
            // A floor the allowed providers can meet: at most their strongest.
            let reachable: Vec<Strength> = Strength::ALL
                .into_iter()
                .filter(|x| allowed_providers.strongest().is_some_and(|top| *x <= top))
                .collect();
            ScopeSettings {
                remember_browser_days: days,
                enrollment_grace_days: grace,
                allowed_providers,
                sms_allowed_country_codes: codes,
                min_strength: *floor.get(&reachable),
                ..s
            }
        })
}

/// The settings of the scope a user lives in.
fn host_or_tenant<'a>(home: &'a OwnedHome, host: &'a ScopeSettings) -> &'a ScopeSettings {
    match home {
        Some((_, tenant)) => tenant,
        None => host,
    }
}

fn feature() -> impl Strategy<Value = TenantFeature> {
    behaviour().prop_map(|behaviour| TenantFeature { behaviour })
}

/// A user as the server stores them: `None` for a host user, else the tenant's ceiling
/// and settings. Owned, because proptest values cannot borrow.
type OwnedHome = Option<(TenantFeature, ScopeSettings)>;

fn home() -> impl Strategy<Value = OwnedHome> {
    prop::option::of((feature(), settings()))
}

fn borrow(home: &OwnedHome) -> Home<'_> {
    match home {
        None => Home::Host,
        Some((feature, settings)) => Home::Tenant { feature: *feature, settings },
    }
}

fn run(home: &OwnedHome, host: &ScopeSettings, flag: bool) -> EffectivePolicy {
    resolve(&PolicyInput::new(scope_for(borrow(home), host), flag))
}

fn run_with(home: &OwnedHome, host: &ScopeSettings, flag: bool, rules: Rules<'_>) -> EffectivePolicy {
    resolve(&PolicyInput { scope: scope_for(borrow(home), host), user_two_factor_enabled: flag, rules })
}

fn strength() -> impl Strategy<Value = Strength> {
    prop::sample::select(vec![Strength::OutOfBand, Strength::App, Strength::PhishingResistant])
}

fn rule() -> impl Strategy<Value = Rule> {
    (any::<bool>(), prop::option::of(strength()))
        .prop_map(|(require_two_factor, min_strength)| Rule { require_two_factor, min_strength })
}

/// Up to eight groups, each with any rule (including none).
fn groups() -> impl Strategy<Value = Vec<GroupRule>> {
    proptest::collection::vec(rule(), 0..8).prop_map(|rules| {
        rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| group(&format!("g{i}"), r.require_two_factor, r.min_strength))
            .collect()
    })
}

fn application() -> impl Strategy<Value = Option<ApplicationRule>> {
    prop::option::of((rule(), prop::option::of(1u32..100_000)).prop_map(|(rule, max_age_seconds)| ApplicationRule {
        id: "app".to_owned(),
        name: "Payroll".to_owned(),
        rule,
        max_age_seconds,
    }))
}

/// Inputs whose deciding level says `b`: a host user under host settings `b`, a tenant
/// user under a ceiling `b`, or a tenant user whose optional ceiling defers to tenant
/// settings `b`.
fn deciding(b: Behaviour) -> impl Strategy<Value = (OwnedHome, ScopeSettings)> {
    let host_user = settings().prop_map(move |h| (None, ScopeSettings { behaviour: b, ..h }));
    let under_ceiling = (settings(), settings()).prop_map(move |(t, h)| (Some((TenantFeature { behaviour: b }, t)), h));
    let under_tenant = (settings(), settings()).prop_map(move |(t, h)| {
        (Some((TenantFeature { behaviour: Behaviour::Optional }, ScopeSettings { behaviour: b, ..t })), h)
    });
    prop_oneof![host_user, under_ceiling, under_tenant]
}

fn unknown_key() -> impl Strategy<Value = String> {
    "[a-z_]{1,24}".prop_filter("not a known field", |k| {
        ![
            "behaviour",
            "users_can_change",
            "remember_browser",
            "remember_browser_days",
            "enrollment_grace_days",
            "allowed_providers",
            "authenticator",
            "email",
            "sms",
        ]
        .contains(&k.as_str())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_the_oracle(home in home(), host in settings(), flag in any::<bool>(), groups in groups()) {
        let rules = Rules { groups: &groups, application: None };
        prop_assert_eq!(run_with(&home, &host, flag, rules), oracle(borrow(&home), &host, flag, &groups));
    }

    /// DESIGN.md section 5: a group can only ask for more. Whatever the scope levels
    /// required stays required, at least as strong, and a forced or disabled level stays
    /// the one that decided.
    #[test]
    fn a_group_never_lowers_what_a_higher_level_requires(
        home in home(),
        host in settings(),
        flag in any::<bool>(),
        groups in groups(),
        app in application(),
    ) {
        let without = run(&home, &host, flag);
        let with = run_with(&home, &host, flag, Rules { groups: &groups, application: app.as_ref() });
        prop_assert!(!without.required || with.required);
        prop_assert!(with.required_strength >= without.required_strength);
        prop_assert_eq!(with.behaviour, without.behaviour);
        if without.decided_by.is_scope_level() {
            prop_assert_eq!(with.decided_by, without.decided_by);
            prop_assert_eq!(with.required, without.required);
        }
        prop_assert!(!with.user_can_change || without.user_can_change);
        prop_assert!(!with.admin_can_override || without.admin_can_override);
    }

    /// `disabled`, wherever it comes from, is never overridden by a group or an
    /// application, and the trace says which level overrode each group's rule.
    #[test]
    fn disabled_is_never_overridden(
        (home, host) in deciding(Behaviour::Disabled),
        flag in any::<bool>(),
        groups in groups(),
        app in application(),
    ) {
        let rules = Rules { groups: &groups, application: app.as_ref() };
        let p = run_with(&home, &host, flag, rules);
        prop_assert!(!p.required);
        prop_assert!(p.decided_by.is_scope_level());
        prop_assert_eq!(p.deciding_group, None);
        prop_assert_eq!(p.required_strength, p.scope_min_strength);
        prop_assert_eq!(p.max_age_seconds, None);
        let asks = app.as_ref().is_some_and(|a| a.rule.require_two_factor || a.rule.min_strength.is_some());
        prop_assert_eq!(p.application_unmet, asks);
        let trace = p.trace(rules).join(" ");
        for g in &groups {
            let overridden = format!("Group \"{}\"", g.name);
            prop_assert!(trace.contains(&overridden), "{} missing from {}", overridden, trace);
        }
        if !groups.is_empty() {
            prop_assert!(trace.contains("overrides the group's rule"), "{}", trace);
        }
    }

    /// The required strength is the strongest of the scope's and of every applicable
    /// rule's; under `disabled` no rule applies.
    #[test]
    fn strength_is_the_strongest_applicable(
        home in home(),
        host in settings(),
        flag in any::<bool>(),
        groups in groups(),
        app in application(),
    ) {
        let p = run_with(&home, &host, flag, Rules { groups: &groups, application: app.as_ref() });
        let asked = groups
            .iter()
            .map(|g| g.rule)
            .chain(app.as_ref().map(|a| a.rule))
            .filter_map(|r| r.min_strength)
            .fold(host_or_tenant(&home, &host).min_strength, Strength::max);
        let floor = host_or_tenant(&home, &host).min_strength;
        prop_assert_eq!(p.scope_min_strength, floor);
        let want = if p.behaviour == Behaviour::Disabled { floor } else { asked };
        prop_assert_eq!(p.required_strength, want);
        // Providers below it are not offered.
        for provider in p.allowed_providers.iter() {
            prop_assert!(provider.strength() >= want, "{:?} offered under {:?}", provider, want);
        }
    }

    /// A requiring group makes a second factor required under `optional`, names the
    /// first such group, and takes the switch from both the user and the admin.
    #[test]
    fn a_requiring_group_decides_under_optional(
        (home, host) in deciding(Behaviour::Optional),
        flag in any::<bool>(),
        mut groups in groups(),
        at in any::<prop::sample::Index>(),
    ) {
        // An optional ceiling may still defer to tenant settings that are not.
        prop_assume!(run(&home, &host, flag).behaviour == Behaviour::Optional);
        groups.insert(at.index(groups.len() + 1), group("required", true, None));
        let first = groups.iter().position(|g| g.rule.require_two_factor).unwrap();
        let rules = Rules { groups: &groups, application: None };
        let p = run_with(&home, &host, flag, rules);
        prop_assert!(p.required);
        prop_assert_eq!(p.decided_by, DecidedBy::Group);
        prop_assert_eq!(p.deciding_group, Some(u16::try_from(first).unwrap()));
        prop_assert_eq!(p.deciding_group(rules).map(|g| g.name.as_str()), Some(groups[first].name.as_str()));
        prop_assert!(!p.user_can_change);
        prop_assert!(!p.admin_can_override);
        prop_assert_eq!(p.user_two_factor_enabled, flag);
    }

    /// Under a forced level a requiring group is consulted but does not decide.
    #[test]
    fn forced_levels_keep_the_decision(
        (home, host) in deciding(Behaviour::Forced),
        flag in any::<bool>(),
        groups in groups(),
    ) {
        let p = run_with(&home, &host, flag, Rules { groups: &groups, application: None });
        prop_assert!(p.required);
        prop_assert!(p.decided_by.is_scope_level());
        prop_assert_eq!(p.deciding_group, None);
    }

    /// An application's rule is resolved like a group's, but decides only for sign-ins
    /// to it: the user's switch stays as the scope left it.
    #[test]
    fn an_application_asks_only_for_more(
        (home, host) in deciding(Behaviour::Optional),
        flag in any::<bool>(),
        app in application(),
    ) {
        let plain = run(&home, &host, flag);
        prop_assume!(plain.behaviour == Behaviour::Optional);
        let p = run_with(&home, &host, flag, Rules { groups: &[], application: app.as_ref() });
        let requires = app.as_ref().is_some_and(|a| a.rule.require_two_factor);
        prop_assert_eq!(p.required, plain.required || requires);
        if requires {
            prop_assert_eq!(p.decided_by, DecidedBy::Application);
        }
        prop_assert_eq!(p.user_can_change, plain.user_can_change);
        prop_assert_eq!(p.admin_can_override, plain.admin_can_override);
        prop_assert_eq!(p.max_age_seconds, app.as_ref().and_then(|a| a.max_age_seconds));
        prop_assert!(!p.application_unmet);
    }

    #[test]
    fn the_trace_lists_every_rule_consulted(
        home in home(),
        host in settings(),
        flag in any::<bool>(),
        groups in groups(),
        app in application(),
    ) {
        let rules = Rules { groups: &groups, application: app.as_ref() };
        let trace = run_with(&home, &host, flag, rules).trace(rules).join(" ");
        for g in &groups {
            let named = format!("Group \"{}\"", g.name);
            prop_assert!(trace.contains(&named), "{} missing from {}", named, trace);
        }
        if app.is_some() {
            prop_assert!(trace.contains("\"Payroll\""), "{}", trace);
        }
    }

    #[test]
    fn disabled_never_requires((home, host) in deciding(Behaviour::Disabled), flag in any::<bool>()) {
        let p = run(&home, &host, flag);
        prop_assert_eq!(p.behaviour, Behaviour::Disabled);
        prop_assert!(!p.required);
        prop_assert!(!p.remember_browser_allowed);
        // Rule 4: the flag is kept so lifting the setting restores the user's choice.
        prop_assert_eq!(p.user_two_factor_enabled, flag);
    }

    #[test]
    fn forced_always_requires((home, host) in deciding(Behaviour::Forced), flag in any::<bool>()) {
        let p = run(&home, &host, flag);
        prop_assert_eq!(p.behaviour, Behaviour::Forced);
        prop_assert!(p.required);
        prop_assert_eq!(p.user_two_factor_enabled, flag);
    }

    #[test]
    fn tenant_users_ignore_host_settings(
        feature in feature(),
        tenant in settings(),
        host_a in settings(),
        host_b in settings(),
        flag in any::<bool>(),
    ) {
        let home = Some((feature, tenant.clone()));
        let a = run(&home, &host_a, flag);
        prop_assert_eq!(a, run(&home, &host_b, flag));
        prop_assert_eq!(a, oracle(borrow(&home), &host_a, flag, &[]));
        // Spelled out, since these are the values a leak would most likely corrupt.
        prop_assert_eq!(a.tenant_feature, Some(feature.behaviour));
        prop_assert_eq!(a.remember_browser_days, tenant.remember_browser_days);
        prop_assert_eq!(a.enrollment_grace_days, tenant.enrollment_grace_days);
        // The tenant's providers, less those below the tenant's own floor.
        prop_assert_eq!(a.allowed_providers, tenant.allowed_providers.at_least(tenant.min_strength));
        prop_assert_eq!(a.scope_min_strength, tenant.min_strength);
        prop_assert!(a.decided_by != DecidedBy::HostSettings);
    }

    #[test]
    fn never_forced_and_disabled_at_once(home in home(), host in settings(), flag in any::<bool>()) {
        let p = run(&home, &host, flag);
        prop_assert_eq!(Behaviour::ALL.iter().filter(|b| **b == p.behaviour).count(), 1);
        if p.required {
            prop_assert_ne!(p.behaviour, Behaviour::Disabled);
        } else {
            prop_assert_ne!(p.behaviour, Behaviour::Forced);
        }
        prop_assert_eq!(p.decided_by == DecidedBy::User, p.behaviour == Behaviour::Optional);
    }

    /// ABP's rule ("forced if feature OR setting is forced, disabled if feature OR
    /// setting is disabled") says both for these two inputs; ours must follow the ceiling.
    #[test]
    fn ceiling_wins_where_abp_contradicts_itself(
        tenant in settings(),
        ceiling_forced in any::<bool>(),
        flag in any::<bool>(),
        host in settings(),
    ) {
        let (ceiling, below) = if ceiling_forced {
            (Behaviour::Forced, Behaviour::Disabled)
        } else {
            (Behaviour::Disabled, Behaviour::Forced)
        };
        let home = Some((TenantFeature { behaviour: ceiling }, ScopeSettings { behaviour: below, ..tenant }));
        let p = run(&home, &host, flag);
        prop_assert_eq!(p.behaviour, ceiling);
        prop_assert_eq!(p.required, ceiling_forced);
    }

    #[test]
    fn remember_browser_only_when_required(home in home(), host in settings(), flag in any::<bool>()) {
        let p = run(&home, &host, flag);
        prop_assert!(!p.remember_browser_allowed || p.required);
    }

    #[test]
    fn switches_exist_only_under_optional(home in home(), host in settings(), flag in any::<bool>()) {
        let p = run(&home, &host, flag);
        prop_assert!(!p.user_can_change || p.behaviour == Behaviour::Optional);
        prop_assert_eq!(p.admin_can_override, p.behaviour == Behaviour::Optional);
    }

    #[test]
    fn forced_or_disabled_ceiling_decides(
        ceiling in prop::sample::select(vec![Behaviour::Forced, Behaviour::Disabled]),
        tenant in settings(),
        host in settings(),
        flag in any::<bool>(),
    ) {
        let p = run(&Some((TenantFeature { behaviour: ceiling }, tenant)), &host, flag);
        prop_assert_eq!(p.decided_by, DecidedBy::TenantFeature);
        prop_assert_eq!(p.behaviour, ceiling);
        prop_assert!(!p.user_can_change);
        prop_assert!(!p.admin_can_override);
    }

    #[test]
    fn trace_is_never_empty(home in home(), host in settings(), flag in any::<bool>()) {
        prop_assert!(!run(&home, &host, flag).trace(Rules::NONE).is_empty());
    }

    #[test]
    fn validate_accepts_settings_within_limits(s in valid_settings()) {
        prop_assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_remember_browser_days_out_of_range(
        s in valid_settings(),
        days in prop_oneof![Just(0u32), (MAX_REMEMBER_BROWSER_DAYS + 1)..=u32::MAX],
    ) {
        let err = ScopeSettings { remember_browser_days: days, ..s }.validate();
        prop_assert_eq!(err.clone(), Err(SettingsError::RememberBrowserDays));
        prop_assert_eq!(err.unwrap_err().field(), "remember_browser_days");
    }

    #[test]
    fn validate_rejects_long_grace(s in valid_settings(), grace in (MAX_ENROLLMENT_GRACE_DAYS + 1)..=u32::MAX) {
        let err = ScopeSettings { enrollment_grace_days: grace, ..s }.validate();
        prop_assert_eq!(err.clone(), Err(SettingsError::EnrollmentGraceDays));
        prop_assert_eq!(err.unwrap_err().field(), "enrollment_grace_days");
    }

    #[test]
    fn validate_rejects_no_provider(s in valid_settings()) {
        let none = ProviderSet { authenticator: false, email: false, sms: false, passkey: false };
        let err = ScopeSettings { allowed_providers: none, ..s }.validate();
        prop_assert_eq!(err.clone(), Err(SettingsError::NoProvider));
        prop_assert_eq!(err.unwrap_err().field(), "allowed_providers");
    }

    /// A floor no allowed provider reaches is refused, and one any allowed provider
    /// reaches is accepted (DESIGN.md section 5).
    #[test]
    fn validate_refuses_an_unreachable_floor(s in valid_settings(), floor in strength()) {
        let reachable = s.allowed_providers.iter().any(|p| p.strength() >= floor);
        let err = ScopeSettings { min_strength: floor, ..s }.validate();
        prop_assert_eq!(err.is_ok(), reachable);
        if let Err(e) = err {
            prop_assert_eq!(e.clone(), SettingsError::StrengthUnreachable(floor.as_str()));
            prop_assert_eq!(e.field(), "min_strength");
        }
    }

    #[test]
    fn validate_accepts_only_lowercase_aaguids(s in valid_settings(), typed in "[0-9a-fA-F-]{30,40}") {
        let err = ScopeSettings { passkey_aaguids: vec![typed.clone()], ..s }.validate();
        prop_assert_eq!(err.is_ok(), twofold_policy::vocab::is_aaguid(&typed));
        if let Err(e) = err {
            prop_assert_eq!(e.field(), "passkey_aaguids");
        }
    }

    #[test]
    fn validate_accepts_only_calling_codes(s in valid_settings(), typed in "[+0-9a-z]{0,4}") {
        let mut codes = s.sms_allowed_country_codes.clone();
        let fresh = !codes.contains(&typed);
        codes.push(typed.clone());
        let err = ScopeSettings { sms_allowed_country_codes: codes, ..s }.validate();
        prop_assert_eq!(err.is_ok(), fresh && twofold_policy::vocab::is_calling_code(&typed));
        if let Err(e) = err {
            prop_assert_eq!(e.field(), "sms_allowed_country_codes");
        }
    }

    #[test]
    fn settings_round_trip_through_json(s in settings()) {
        let json = serde_json::to_string(&s).unwrap();
        prop_assert_eq!(serde_json::from_str::<ScopeSettings>(&json).unwrap(), s);
    }

    #[test]
    fn settings_reject_unknown_fields(s in settings(), key in unknown_key(), nested in any::<bool>()) {
        let mut value = serde_json::to_value(&s).unwrap();
        let object = if nested { &mut value["allowed_providers"] } else { &mut value };
        object.as_object_mut().unwrap().insert(key.clone(), serde_json::Value::Bool(true));
        prop_assert!(
            serde_json::from_value::<ScopeSettings>(value).is_err(),
            "unknown field {} accepted (nested: {})", key, nested
        );
    }

    #[test]
    fn feature_rejects_unknown_fields(f in feature(), key in unknown_key()) {
        let mut value = serde_json::to_value(f).unwrap();
        value.as_object_mut().unwrap().insert(key, serde_json::Value::Null);
        prop_assert!(serde_json::from_value::<TenantFeature>(value).is_err());
    }
}

#[test]
fn defaults_are_the_designed_ones_and_valid() {
    let d = ScopeSettings::default();
    assert_eq!(d.behaviour, Behaviour::Optional);
    assert!(d.users_can_change);
    assert!(d.remember_browser);
    assert_eq!(d.remember_browser_days, 14);
    assert_eq!(d.enrollment_grace_days, 0);
    assert_eq!(d.validate(), Ok(()));
    assert_eq!(TenantFeature::default().behaviour, Behaviour::Optional);
}

#[test]
fn validate_limits_are_inclusive() {
    let d = ScopeSettings::default();
    for days in [1, MAX_REMEMBER_BROWSER_DAYS] {
        assert_eq!(ScopeSettings { remember_browser_days: days, ..d.clone() }.validate(), Ok(()));
    }
    assert_eq!(ScopeSettings { enrollment_grace_days: MAX_ENROLLMENT_GRACE_DAYS, ..d }.validate(), Ok(()));
    assert_eq!(MAX_REMEMBER_BROWSER_DAYS, 365);
    assert_eq!(MAX_ENROLLMENT_GRACE_DAYS, 90);
}

/// The web app and stored rows spell behaviours as DESIGN.md does; a renamed variant
/// would silently break both.
#[test]
fn behaviours_are_spelled_as_designed() {
    for (b, word) in
        [(Behaviour::Optional, "optional"), (Behaviour::Disabled, "disabled"), (Behaviour::Forced, "forced")]
    {
        assert_eq!(b.as_str(), word);
        assert_eq!(Behaviour::parse(word), Some(b));
        assert_eq!(serde_json::to_value(b).unwrap(), serde_json::json!(word));
    }
    assert_eq!(Behaviour::parse("Forced"), None);
}

#[test]
fn settings_json_is_the_designed_shape() {
    let json = serde_json::json!({
        "behaviour": "forced",
        "users_can_change": false,
        "remember_browser": true,
        "remember_browser_days": 30,
        "enrollment_grace_days": 7,
        "allowed_providers": { "authenticator": true, "email": false, "sms": true, "passkey": true },
        "sms_allowed_country_codes": ["1", "44"],
        "min_strength": "app",
        "passkey_aaguids": ["cb69481e-8ff7-4039-93ec-0a2729a154a8"]
    });
    let s: ScopeSettings = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(s.behaviour, Behaviour::Forced);
    assert_eq!(s.remember_browser_days, 30);
    assert_eq!(s.min_strength, Strength::App);
    assert_eq!(serde_json::to_value(&s).unwrap(), json);
    // Written before the country list, passkeys and strengths existed: every country,
    // passkeys allowed, any factor, any authenticator model.
    let mut older = json;
    for field in ["sms_allowed_country_codes", "min_strength", "passkey_aaguids"] {
        older.as_object_mut().unwrap().remove(field);
    }
    older["allowed_providers"].as_object_mut().unwrap().remove("passkey");
    let s: ScopeSettings = serde_json::from_value(older).unwrap();
    assert!(s.sms_allowed_country_codes.is_empty());
    assert!(s.allowed_providers.passkey);
    assert_eq!(s.min_strength, Strength::OutOfBand);
    assert!(s.passkey_aaguids.is_empty());
}
