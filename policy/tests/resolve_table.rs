//! Every combination of the inputs DESIGN.md sections 1 and 5 talk about (the scope
//! levels, the user's switch, and the rules of the user's groups), resolved and compared
//! field by field with the rule-table oracle in `common`, together with the trace each
//! user and admin is shown.
//!
//! One function walks the whole table and counts its cases, so a loop that silently
//! stops iterating (and thereby passes) is caught by the count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Home, group, oracle, scope_for, settings, trace_must_mention, trace_must_not_mention};
use twofold_policy::{Behaviour, GroupRule, PolicyInput, ProviderSet, Rules, Strength, TenantFeature, resolve};

const BOOLS: [bool; 2] = [false, true];

// Each scope gets its own distinctive lifetime, grace and providers so that a value
// leaking from the wrong scope shows up as a mismatch rather than a coincidence.
const HOST_DAYS: u32 = 30;
const HOST_GRACE: u32 = 7;
const HOST_PROVIDERS: ProviderSet = ProviderSet { authenticator: true, email: false, sms: false, passkey: true };
const TENANT_DAYS: u32 = 21;
const TENANT_GRACE: u32 = 3;
const TENANT_PROVIDERS: ProviderSet = ProviderSet { authenticator: false, email: true, sms: true, passkey: true };
// Settings of the host while a tenant user resolves: they must not matter at all.
const STRAY_HOST_DAYS: u32 = 300;
const STRAY_HOST_GRACE: u32 = 60;
const STRAY_HOST_PROVIDERS: ProviderSet = ProviderSet { authenticator: false, email: false, sms: true, passkey: false };
// The floor of the stray host: the strongest, so that a leak raises a tenant user's.
const STRAY_HOST_FLOOR: Strength = Strength::PhishingResistant;

/// The group memberships every scope combination is resolved under: none; groups whose
/// rules only raise the strength; one requiring group among others; several requiring
/// groups (the first one in order names the decision); every strength.
fn group_sets() -> Vec<Vec<GroupRule>> {
    use Strength::{App, OutOfBand, PhishingResistant};
    vec![
        vec![],
        vec![group("readers", false, None)],
        vec![group("auditors", false, Some(App))],
        vec![group("finance", true, None)],
        vec![group("staff", false, Some(OutOfBand)), group("admins", true, Some(PhishingResistant))],
        vec![
            group("ops", true, Some(App)),
            group("finance", true, None),
            group("keys", false, Some(PhishingResistant)),
        ],
    ]
}

fn check(
    label: &str,
    home: Home<'_>,
    host: &twofold_policy::ScopeSettings,
    flag: bool,
    groups: &[GroupRule],
    failures: &mut Vec<String>,
) {
    let rules = Rules { groups, application: None };
    let input = PolicyInput { scope: scope_for(home, host), user_two_factor_enabled: flag, rules };
    let got = resolve(&input);
    let want = oracle(home, host, flag, groups);
    let label = format!("{label} groups={:?}", groups.iter().map(|g| (&g.name, g.rule)).collect::<Vec<_>>());
    if got != want {
        failures.push(format!("{label}\n   got  {got:?}\n   want {want:?}"));
    }
    let trace = got.trace(rules);
    if trace.is_empty() {
        failures.push(format!("{label}: empty trace"));
        return;
    }
    let text = trace.join(" ");
    for phrase in trace_must_mention(home, &got, groups) {
        if !text.contains(&phrase) {
            failures.push(format!("{label}: trace lacks {phrase:?}: {text}"));
        }
    }
    for phrase in trace_must_not_mention(home) {
        if text.contains(phrase) {
            failures.push(format!("{label}: trace mentions {phrase:?}: {text}"));
        }
    }
}

#[test]
fn every_combination_resolves_as_designed() {
    let mut cases = 0usize;
    let mut failures = Vec::new();
    let sets = group_sets();

    for hb in Behaviour::ALL {
        for ucc in BOOLS {
            for rb in BOOLS {
                for flag in BOOLS {
                    for floor in Strength::ALL {
                        let host = settings(hb, ucc, rb, HOST_DAYS, HOST_GRACE, HOST_PROVIDERS, floor);
                        let label = format!("host user: host {hb:?} ucc={ucc} rb={rb} flag={flag} floor={floor:?}");
                        for groups in &sets {
                            check(&label, Home::Host, &host, flag, groups, &mut failures);
                            cases += 1;
                        }
                    }
                }
            }
        }
    }

    let mut stray_hosts = Vec::new();
    for hb in Behaviour::ALL {
        for ucc in BOOLS {
            for rb in BOOLS {
                stray_hosts.push(settings(
                    hb,
                    ucc,
                    rb,
                    STRAY_HOST_DAYS,
                    STRAY_HOST_GRACE,
                    STRAY_HOST_PROVIDERS,
                    STRAY_HOST_FLOOR,
                ));
            }
        }
    }

    for fb in Behaviour::ALL {
        for tb in Behaviour::ALL {
            for ucc in BOOLS {
                for rb in BOOLS {
                    for (flag, floor) in BOOLS.into_iter().flat_map(|f| Strength::ALL.map(|s| (f, s))) {
                        let tenant = settings(tb, ucc, rb, TENANT_DAYS, TENANT_GRACE, TENANT_PROVIDERS, floor);
                        let home = Home::Tenant { feature: TenantFeature { behaviour: fb }, settings: &tenant };
                        for groups in &sets {
                            let rules = Rules { groups, application: None };
                            let first = resolve(&PolicyInput {
                                scope: scope_for(home, &stray_hosts[0]),
                                user_two_factor_enabled: flag,
                                rules,
                            });
                            for host in &stray_hosts {
                                let label = format!(
                                    "tenant user: ceiling {fb:?} tenant {tb:?} ucc={ucc} rb={rb} flag={flag} \
                                     floor={floor:?} (host {:?} ucc={} rb={})",
                                    host.behaviour, host.users_can_change, host.remember_browser
                                );
                                check(&label, home, host, flag, groups, &mut failures);
                                let again = resolve(&PolicyInput {
                                    scope: scope_for(home, host),
                                    user_two_factor_enabled: flag,
                                    rules,
                                });
                                if again != first {
                                    failures.push(format!("{label}: result changed with host settings"));
                                }
                                cases += 1;
                            }
                        }
                    }
                }
            }
        }
    }

    assert!(failures.is_empty(), "{} of {cases} cases failed:\n{}", failures.len(), failures.join("\n"));
    // 3 host behaviours x 2 x 2 x 2 x 3 floors host users, then 3 ceilings x 3 tenant
    // behaviours x 2 x 2 x 2 x 3 floors tenant users, each under 3 x 2 x 2 different
    // host settings; all of it under each of the 6 group memberships.
    assert_eq!(cases, (3 * 2 * 2 * 2 * 3 + (3 * 3 * 2 * 2 * 2 * 3) * (3 * 2 * 2)) * 6);
    assert_eq!(cases, 15984);
}
