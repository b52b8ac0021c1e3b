//! Every combination of the inputs DESIGN.md section 1 talks about, resolved and
//! compared field by field with the rule-table oracle in `common`, together with the
//! trace each user and admin is shown.
//!
//! One function walks the whole table and counts its cases, so a loop that silently
//! stops iterating (and thereby passes) is caught by the count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Home, oracle, scope_for, settings, trace_must_mention, trace_must_not_mention};
use twofold_policy::{Behaviour, PolicyInput, ProviderSet, TenantFeature, resolve};

const BOOLS: [bool; 2] = [false, true];

// Each scope gets its own distinctive lifetime, grace and providers so that a value
// leaking from the wrong scope shows up as a mismatch rather than a coincidence.
const HOST_DAYS: u32 = 30;
const HOST_GRACE: u32 = 7;
const HOST_PROVIDERS: ProviderSet = ProviderSet { authenticator: true, email: false, sms: false };
const TENANT_DAYS: u32 = 21;
const TENANT_GRACE: u32 = 3;
const TENANT_PROVIDERS: ProviderSet = ProviderSet { authenticator: false, email: true, sms: true };
// Settings of the host while a tenant user resolves: they must not matter at all.
const STRAY_HOST_DAYS: u32 = 300;
const STRAY_HOST_GRACE: u32 = 60;
const STRAY_HOST_PROVIDERS: ProviderSet = ProviderSet { authenticator: false, email: false, sms: true };

fn check(label: &str, home: Home<'_>, host: &twofold_policy::ScopeSettings, flag: bool, failures: &mut Vec<String>) {
    let input = PolicyInput { scope: scope_for(home, host), user_two_factor_enabled: flag };
    let got = resolve(&input);
    let want = oracle(home, host, flag);
    if got != want {
        failures.push(format!("{label}\n   got  {got:?}\n   want {want:?}"));
    }
    let trace = got.trace();
    if trace.is_empty() {
        failures.push(format!("{label}: empty trace"));
        return;
    }
    let text = trace.join(" ");
    for phrase in trace_must_mention(home, &got) {
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

    for hb in Behaviour::ALL {
        for ucc in BOOLS {
            for rb in BOOLS {
                for flag in BOOLS {
                    let host = settings(hb, ucc, rb, HOST_DAYS, HOST_GRACE, HOST_PROVIDERS);
                    let label = format!("host user: host {hb:?} ucc={ucc} rb={rb} flag={flag}");
                    check(&label, Home::Host, &host, flag, &mut failures);
                    cases += 1;
                }
            }
        }
    }

    let mut stray_hosts = Vec::new();
    for hb in Behaviour::ALL {
        for ucc in BOOLS {
            for rb in BOOLS {
                stray_hosts.push(settings(hb, ucc, rb, STRAY_HOST_DAYS, STRAY_HOST_GRACE, STRAY_HOST_PROVIDERS));
            }
        }
    }

    for fb in Behaviour::ALL {
        for tb in Behaviour::ALL {
            for ucc in BOOLS {
                for rb in BOOLS {
                    for flag in BOOLS {
                        let tenant = settings(tb, ucc, rb, TENANT_DAYS, TENANT_GRACE, TENANT_PROVIDERS);
                        let home = Home::Tenant { feature: TenantFeature { behaviour: fb }, settings: &tenant };
                        let first = resolve(&PolicyInput {
                            scope: scope_for(home, &stray_hosts[0]),
                            user_two_factor_enabled: flag,
                        });
                        for host in &stray_hosts {
                            let label = format!(
                                "tenant user: ceiling {fb:?} tenant {tb:?} ucc={ucc} rb={rb} flag={flag} \
                                 (host {:?} ucc={} rb={})",
                                host.behaviour, host.users_can_change, host.remember_browser
                            );
                            check(&label, home, host, flag, &mut failures);
                            let again =
                                resolve(&PolicyInput { scope: scope_for(home, host), user_two_factor_enabled: flag });
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

    assert!(failures.is_empty(), "{} of {cases} cases failed:\n{}", failures.len(), failures.join("\n"));
    // 3 host behaviours x 2 x 2 x 2 host users, then 3 ceilings x 3 tenant behaviours
    // x 2 x 2 x 2 tenant users, each under 3 x 2 x 2 different host settings.
    assert_eq!(cases, 3 * 2 * 2 * 2 + (3 * 3 * 2 * 2 * 2) * (3 * 2 * 2));
    assert_eq!(cases, 888);
}
