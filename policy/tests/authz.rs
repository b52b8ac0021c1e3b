//! Who may do what (DESIGN.md section 2), checked against the embedded casbin model
//! and rules: every actor, every action, every target, compared with an access rule
//! written out here by hand, plus the specific promises the design makes (a tenant
//! admin never reaches another tenant, own-account actions only on oneself) and the
//! behaviour of `grant` and `revoke`.

#![cfg(feature = "authz")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use twofold_policy::authz::{Action, Actor, Authorizer, Domain, Role, Target};

/// What a tenant admin may do inside their own tenant; everything else about a tenant
/// (its ceiling, the tenant list) belongs to the host.
const TENANT_ADMIN_ACTIONS: [Action; 15] = [
    Action::ReadSettings,
    Action::UpdateSettings,
    Action::ListUsers,
    Action::CreateUser,
    Action::ReadUser,
    Action::UpdateUser,
    Action::AssignRole,
    Action::ReadAudit,
    Action::ReadMessageUsage,
    Action::ReadApplications,
    Action::ManageApplications,
    Action::ReadTenant,
    Action::ReadFeature,
    Action::ReadGroups,
    Action::UpdateGroups,
];

const OWN_ACCOUNT: [Action; 2] = [Action::ReadOwnAccount, Action::UpdateOwnAccount];

/// Every user of the fixture with the domain they belong to.
const PEOPLE: [(&str, Domain<'static>); 6] = [
    ("h", Domain::Host),
    ("uh", Domain::Host),
    ("a", Domain::Tenant("A")),
    ("ua", Domain::Tenant("A")),
    ("b", Domain::Tenant("B")),
    ("ub", Domain::Tenant("B")),
];

// "C" has no admin and no users: rights there can only come from the host role.
const DOMAINS: [Domain<'static>; 4] = [Domain::Host, Domain::Tenant("A"), Domain::Tenant("B"), Domain::Tenant("C")];

fn fixture() -> Authorizer {
    let mut z = Authorizer::new().unwrap();
    z.grant("h", Role::HostAdmin, Domain::Host).unwrap();
    z.grant("a", Role::TenantAdmin, Domain::Tenant("A")).unwrap();
    z.grant("b", Role::TenantAdmin, Domain::Tenant("B")).unwrap();
    z
}

fn targets() -> Vec<Target<'static>> {
    let mut out: Vec<Target<'static>> = DOMAINS.into_iter().map(Target::Domain).collect();
    out.extend(PEOPLE.into_iter().map(|(id, domain)| Target::User { id, domain }));
    out
}

fn can(z: &Authorizer, who: &str, action: Action, target: Target<'_>) -> bool {
    z.authorize(Actor { user_id: who }, action, target)
}

fn is_own_account(a: Action) -> bool {
    OWN_ACCOUNT.contains(&a)
}

fn domain_of(t: Target<'_>) -> Domain<'_> {
    match t {
        Target::Domain(d) | Target::User { domain: d, .. } => d,
    }
}

/// The access rule of the fixture, decided by hand from DESIGN.md section 2.
fn expected(who: &str, action: Action, target: Target<'_>) -> bool {
    if is_own_account(action) {
        return matches!(target, Target::User { id, .. } if id == who);
    }
    match who {
        "h" => true,
        "a" => domain_of(target) == Domain::Tenant("A") && TENANT_ADMIN_ACTIONS.contains(&action),
        "b" => domain_of(target) == Domain::Tenant("B") && TENANT_ADMIN_ACTIONS.contains(&action),
        _ => false,
    }
}

#[test]
fn every_actor_action_target_matches_the_rule() {
    let z = fixture();
    let mut cases = 0usize;
    let mut failures = Vec::new();
    for (who, _) in PEOPLE {
        for action in Action::ALL {
            for target in targets() {
                let got = can(&z, who, action, target);
                if got != expected(who, action, target) {
                    failures.push(format!("{who} {action:?} {target:?}: got {got}"));
                }
                cases += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{} of {cases} wrong:\n{}", failures.len(), failures.join("\n"));
    // 6 actors x every action x (4 domains + 6 users).
    assert_eq!(cases, 6 * Action::ALL.len() * 10);
    assert_eq!(Action::ALL.len(), 21);
}

#[test]
fn tenant_admin_never_reaches_another_tenant_or_the_host() {
    let z = fixture();
    for (admin, own) in [("a", "A"), ("b", "B")] {
        for target in targets() {
            let foreign = match target {
                Target::Domain(d) => d != Domain::Tenant(own),
                Target::User { id, domain } => id != admin && domain != Domain::Tenant(own),
            };
            if !foreign {
                continue;
            }
            for action in Action::ALL {
                assert!(!can(&z, admin, action, target), "{admin} may {action:?} on {target:?}");
            }
        }
    }
}

#[test]
fn tenant_admin_manages_own_tenant_but_not_its_ceiling() {
    let z = fixture();
    let own = Target::Domain(Domain::Tenant("A"));
    let own_user = Target::User { id: "ua", domain: Domain::Tenant("A") };
    for action in TENANT_ADMIN_ACTIONS {
        assert!(can(&z, "a", action, own), "{action:?} refused on own tenant");
    }
    for action in [Action::ReadUser, Action::UpdateUser, Action::AssignRole] {
        assert!(can(&z, "a", action, own_user), "{action:?} refused on own tenant's user");
    }
    for action in [Action::UpdateFeature, Action::ListTenants, Action::CreateTenant] {
        assert!(!can(&z, "a", action, own), "{action:?} allowed on own tenant");
        assert!(!can(&z, "a", action, own_user), "{action:?} allowed on own tenant's user");
    }
}

#[test]
fn host_admin_may_administer_everywhere_but_not_others_accounts() {
    let z = fixture();
    for target in targets() {
        for action in Action::ALL.into_iter().filter(|a| !is_own_account(*a)) {
            assert!(can(&z, "h", action, target), "host admin refused {action:?} on {target:?}");
        }
    }
    for (id, domain) in PEOPLE.into_iter().filter(|(id, _)| *id != "h") {
        for action in OWN_ACCOUNT {
            assert!(!can(&z, "h", action, Target::User { id, domain }), "host admin may {action:?} of {id}");
        }
    }
    for action in OWN_ACCOUNT {
        assert!(can(&z, "h", action, Target::User { id: "h", domain: Domain::Host }));
    }
}

#[test]
fn plain_users_only_reach_their_own_account() {
    let z = fixture();
    for (me, my_domain) in [("ua", Domain::Tenant("A")), ("ub", Domain::Tenant("B")), ("uh", Domain::Host)] {
        let mine = Target::User { id: me, domain: my_domain };
        for target in targets() {
            for action in Action::ALL {
                let want = target == mine && is_own_account(action);
                assert_eq!(can(&z, me, action, target), want, "{me} {action:?} {target:?}");
            }
        }
    }
}

/// A user who holds no role at all (the server knows them, casbin does not) still owns
/// their account and nothing more.
#[test]
fn unknown_user_only_reaches_own_account() {
    let z = fixture();
    let mine = Target::User { id: "new", domain: Domain::Tenant("A") };
    for action in Action::ALL {
        assert_eq!(can(&z, "new", action, mine), is_own_account(action), "{action:?}");
        assert!(!can(&z, "new", action, Target::Domain(Domain::Tenant("A"))), "{action:?}");
    }
}

#[test]
fn revoke_removes_rights() {
    let mut z = fixture();
    let a_tenant = Target::Domain(Domain::Tenant("A"));
    let a_self = Target::User { id: "a", domain: Domain::Tenant("A") };
    z.revoke("a", Role::TenantAdmin, Domain::Tenant("A")).unwrap();
    for action in Action::ALL {
        assert!(!can(&z, "a", action, a_tenant), "{action:?} after revoke");
        // Losing the role leaves the account.
        assert_eq!(can(&z, "a", action, a_self), is_own_account(action), "{action:?} on self");
    }
    // The other tenant's admin is untouched.
    assert!(can(&z, "b", Action::UpdateSettings, Target::Domain(Domain::Tenant("B"))));

    z.revoke("h", Role::HostAdmin, Domain::Host).unwrap();
    for domain in DOMAINS {
        for action in Action::ALL {
            assert!(!can(&z, "h", action, Target::Domain(domain)), "{action:?} on {domain:?} after revoke");
        }
    }

    // Revoking what is not held is not an error and changes nothing.
    z.revoke("ua", Role::TenantAdmin, Domain::Tenant("A")).unwrap();
    z.revoke("b", Role::TenantAdmin, Domain::Tenant("A")).unwrap();
    assert!(can(&z, "b", Action::UpdateSettings, Target::Domain(Domain::Tenant("B"))));

    // A grant after a revoke restores the rights.
    z.grant("a", Role::TenantAdmin, Domain::Tenant("A")).unwrap();
    assert!(can(&z, "a", Action::UpdateSettings, a_tenant));
}

#[test]
fn revoke_in_the_wrong_domain_keeps_the_role() {
    let mut z = fixture();
    z.revoke("a", Role::TenantAdmin, Domain::Tenant("B")).unwrap();
    assert!(can(&z, "a", Action::UpdateSettings, Target::Domain(Domain::Tenant("A"))));
}

#[test]
fn roles_only_in_their_own_kind_of_domain() {
    let mut z = fixture();
    assert!(z.grant("x", Role::HostAdmin, Domain::Tenant("A")).is_err());
    assert!(z.grant("y", Role::TenantAdmin, Domain::Host).is_err());
    // A refused grant must leave no trace behind.
    for who in ["x", "y"] {
        for domain in DOMAINS {
            for action in Action::ALL {
                assert!(!can(&z, who, action, Target::Domain(domain)), "{who} {action:?} {domain:?}");
            }
        }
    }
}

/// Granting twice is idempotent, and revoking once is enough.
#[test]
fn double_grant_single_revoke() {
    let mut z = fixture();
    z.grant("a", Role::TenantAdmin, Domain::Tenant("A")).unwrap();
    z.revoke("a", Role::TenantAdmin, Domain::Tenant("A")).unwrap();
    assert!(!can(&z, "a", Action::ReadSettings, Target::Domain(Domain::Tenant("A"))));
}

/// Tenant ids are compared whole: an admin of "A" gains nothing in tenants whose ids
/// merely resemble it, nor in a tenant that happens to be called "host".
#[test]
fn tenant_ids_are_not_prefixes_or_patterns() {
    let z = fixture();
    for other in ["AB", "a", "A ", "", "*", "host", "tenant:A"] {
        let t = Target::Domain(Domain::Tenant(other));
        assert!(!can(&z, "a", Action::ReadSettings, t), "tenant {other:?}");
    }
    let mut z = fixture();
    z.grant("t", Role::TenantAdmin, Domain::Tenant("host")).unwrap();
    assert!(!can(&z, "t", Action::ReadSettings, Target::Domain(Domain::Host)));
    assert!(can(&z, "t", Action::ReadSettings, Target::Domain(Domain::Tenant("host"))));
}

#[test]
fn own_account_actions_need_a_user_target() {
    let z = fixture();
    for who in ["h", "a", "ua", "uh"] {
        for domain in DOMAINS {
            for action in OWN_ACCOUNT {
                assert!(!can(&z, who, action, Target::Domain(domain)), "{who} {action:?} {domain:?}");
            }
        }
    }
}

#[test]
fn roles_are_spelled_as_stored() {
    for r in [Role::HostAdmin, Role::TenantAdmin] {
        assert_eq!(Role::parse(r.as_str()), Some(r));
        assert_eq!(serde_json::to_value(r).unwrap(), serde_json::json!(r.as_str()));
    }
    assert_eq!(Role::parse("user"), None);
}

/// Ids come from users and admins; quotes, operators or separators in them must stay
/// data and never become part of the matcher.
#[test]
fn hostile_ids_stay_data() {
    let hostile =
        ["\" || true || \"", "x\") || (\"1\" == \"1", "host_admin", "user:h", "h, host_admin, host", "*", "self", ""];
    let mut z = fixture();
    for id in hostile {
        for action in Action::ALL.into_iter().filter(|a| !is_own_account(*a)) {
            for domain in DOMAINS {
                assert!(!can(&z, id, action, Target::Domain(domain)), "{id:?} {action:?} {domain:?}");
                let someone = Target::User { id: "ua", domain: Domain::Tenant("A") };
                assert!(!can(&z, id, action, someone), "{id:?} {action:?}");
            }
        }
        for action in OWN_ACCOUNT {
            assert!(!can(&z, id, action, Target::User { id: "ua", domain: Domain::Tenant("A") }), "{id:?}");
            assert!(can(&z, id, action, Target::User { id, domain: Domain::Tenant("A") }), "{id:?}");
        }
        for tenant in hostile {
            z.grant("a2", Role::TenantAdmin, Domain::Tenant(tenant)).unwrap();
            assert!(!can(&z, "a2", Action::ReadSettings, Target::Domain(Domain::Tenant("A"))), "{tenant:?}");
            assert!(!can(&z, "a2", Action::ReadSettings, Target::Domain(Domain::Host)), "{tenant:?}");
            assert!(can(&z, "a2", Action::ReadSettings, Target::Domain(Domain::Tenant(tenant))), "{tenant:?}");
            z.revoke("a2", Role::TenantAdmin, Domain::Tenant(tenant)).unwrap();
        }
    }
}

#[test]
fn remembered_decisions_follow_role_changes() {
    // Decisions are memoised; asking before each change makes sure a remembered answer
    // is never served after the roles it came from changed.
    let mut z = fixture();
    let a_tenant = Target::Domain(Domain::Tenant("A"));
    for _ in 0..2 {
        assert!(can(&z, "a", Action::UpdateSettings, a_tenant));
        assert!(!can(&z, "ua", Action::UpdateSettings, a_tenant));
    }
    z.revoke("a", Role::TenantAdmin, Domain::Tenant("A")).unwrap();
    assert!(!can(&z, "a", Action::UpdateSettings, a_tenant), "a revoked role still allowed");
    z.grant("ua", Role::TenantAdmin, Domain::Tenant("A")).unwrap();
    assert!(can(&z, "ua", Action::UpdateSettings, a_tenant), "a granted role still denied");
    z.grant("a", Role::TenantAdmin, Domain::Tenant("A")).unwrap();
    assert!(can(&z, "a", Action::UpdateSettings, a_tenant));
}

#[test]
fn remembered_decisions_answer_only_the_request_they_were_made_for() {
    // Every request is asked three times over, in three orders, so each answer may come
    // from a decision remembered for a request that differs from it in one part only.
    let z = fixture();
    let mut cases = Vec::new();
    for (who, _) in PEOPLE {
        for action in Action::ALL {
            for target in targets() {
                cases.push((who, action, target));
            }
        }
    }
    let n = cases.len();
    let orders: [Vec<usize>; 3] = [(0..n).collect(), (0..n).rev().collect(), (0..n).map(|i| (i * 7919) % n).collect()];
    for order in orders {
        for i in order {
            let (who, action, target) = cases[i];
            assert_eq!(can(&z, who, action, target), expected(who, action, target), "{who} {action:?} {target:?}");
        }
    }

    // Ids that differ from a remembered one by a character, its case, or its place.
    let near = ["A ", "a", "AA", "", "host", "tenant:A"];
    assert!(can(&z, "a", Action::UpdateSettings, Target::Domain(Domain::Tenant("A"))));
    for tenant in near {
        assert!(!can(&z, "a", Action::UpdateSettings, Target::Domain(Domain::Tenant(tenant))), "{tenant:?}");
        assert!(!can(&z, "a ", Action::UpdateSettings, Target::Domain(Domain::Tenant(tenant))), "{tenant:?}");
    }
    assert!(!can(&z, "A", Action::UpdateSettings, Target::Domain(Domain::Tenant("A"))));
    assert!(!can(&z, "a", Action::UpdateSettings, Target::Domain(Domain::Host)));
    // The host's domain and a tenant whose id is "host" are two domains.
    let mut z = fixture();
    z.grant("t", Role::TenantAdmin, Domain::Tenant("host")).unwrap();
    assert!(can(&z, "t", Action::ReadSettings, Target::Domain(Domain::Tenant("host"))));
    assert!(!can(&z, "t", Action::ReadSettings, Target::Domain(Domain::Host)));
    // One's own account, then someone else's with the same action, and back.
    for _ in 0..2 {
        assert!(can(&z, "ua", Action::UpdateOwnAccount, Target::User { id: "ua", domain: Domain::Tenant("A") }));
        assert!(!can(&z, "ua", Action::UpdateOwnAccount, Target::User { id: "ub", domain: Domain::Tenant("A") }));
        assert!(!can(&z, "ub", Action::UpdateOwnAccount, Target::User { id: "ua", domain: Domain::Tenant("A") }));
    }
}
