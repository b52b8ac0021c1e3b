//! The account page shows a user their own policy: its explanation must speak to them
//! ("your own switch"), never about them ("the user's own switch"), for every way
//! resolution can go, while the admin's view keeps the third person.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use twofold_policy::wire::EffectivePolicyView;
use twofold_policy::{
    ApplicationRule, Behaviour, GroupRule, PolicyInput, Rule, Rules, Scope, ScopeSettings, Strength, TenantFeature,
    resolve,
};

fn rule(require_two_factor: bool, min_strength: Option<Strength>) -> Rule {
    Rule { require_two_factor, min_strength }
}

/// Every sentence the trace can produce, over scope kinds, ceilings, behaviours, switch
/// rights, the user's flag, group rules and an application rule.
fn every_view() -> Vec<(EffectivePolicyView, EffectivePolicyView)> {
    let group_sets: Vec<Vec<GroupRule>> = vec![
        vec![],
        vec![GroupRule { id: "g1".into(), name: "The user's group".into(), rule: rule(true, None) }],
        vec![
            GroupRule { id: "g1".into(), name: "Finance".into(), rule: rule(false, Some(Strength::App)) },
            GroupRule { id: "g2".into(), name: "Ops".into(), rule: rule(true, None) },
        ],
    ];
    let app = ApplicationRule {
        id: "a".into(),
        name: "Payroll".into(),
        rule: rule(true, Some(Strength::App)),
        max_age_seconds: Some(300),
    };
    let mut out = Vec::new();
    for behaviour in Behaviour::ALL {
        for users_can_change in [false, true] {
            let settings = ScopeSettings { behaviour, users_can_change, ..ScopeSettings::default() };
            let mut scopes = vec![Scope::Host { settings: &settings }];
            for ceiling in Behaviour::ALL {
                scopes.push(Scope::Tenant { feature: TenantFeature { behaviour: ceiling }, settings: &settings });
            }
            for scope in scopes {
                for flag in [false, true] {
                    for groups in &group_sets {
                        for application in [None, Some(&app)] {
                            let rules = Rules { groups, application };
                            let p = resolve(&PolicyInput { scope, user_two_factor_enabled: flag, rules });
                            out.push((
                                EffectivePolicyView::new("u".into(), &p, rules),
                                EffectivePolicyView::for_self("u".into(), &p, rules),
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn the_own_view_speaks_to_the_user_everywhere() {
    let views = every_view();
    assert_eq!(views.len(), 3 * 2 * 4 * 2 * 3 * 2);
    for (admin, own) in views {
        assert_eq!(admin.trace.len(), own.trace.len());
        for sentence in &own.trace {
            // Names in quotes are the admins' words and stay as they are.
            let unquoted: String = sentence.split('"').step_by(2).collect::<Vec<_>>().join(" ");
            for about in ["the user", "The user", "This is a host user", "users cannot"] {
                assert!(!unquoted.contains(about), "{sentence:?} speaks of {about:?}");
            }
        }
        // Everything but the person is the same explanation.
        assert_eq!(admin.summary, own.summary);
        assert_eq!(admin.required, own.required);
    }
}

#[test]
fn the_admin_view_keeps_the_third_person_and_group_names_are_untouched() {
    let views = every_view();
    assert!(views.iter().any(|(admin, _)| admin.trace.iter().any(|s| s.contains("the user's own switch"))));
    assert!(views.iter().any(|(_, own)| own.trace.iter().any(|s| s.contains("your own switch"))));
    assert!(views.iter().any(|(_, own)| own.trace.iter().any(|s| s.starts_with("You are a host user"))));
    assert!(views.iter().any(|(_, own)| own.trace.iter().any(|s| s.contains("\"The user's group\""))));
}
