//! Micro-benchmarks of the pure core: `resolve` for every kind of user, and
//! `authorize` through the casbin enforcer. Run with `cargo bench -p twofold-policy
//! --all-features`; figures and targets are in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use twofold_policy::authz::{Action, Actor, Authorizer, Domain, Role, Target};
use twofold_policy::{
    Behaviour, GroupRule, PolicyInput, Rule, Rules, Scope, ScopeSettings, Strength, TenantFeature, resolve,
};

fn bench_resolve(c: &mut Criterion) {
    let settings = ScopeSettings::default();
    let forced = TenantFeature { behaviour: Behaviour::Forced };
    let optional = TenantFeature::default();
    c.bench_function("resolve/host_user", |b| {
        b.iter(|| resolve(black_box(&PolicyInput::new(Scope::Host { settings: &settings }, true))))
    });
    c.bench_function("resolve/tenant_user_ceiling", |b| {
        b.iter(|| resolve(black_box(&PolicyInput::new(Scope::Tenant { feature: forced, settings: &settings }, false))))
    });
    c.bench_function("resolve/tenant_user_optional", |b| {
        b.iter(|| resolve(black_box(&PolicyInput::new(Scope::Tenant { feature: optional, settings: &settings }, true))))
    });
    // Ten groups, the last one requiring a second factor and the strengths mixed, so
    // resolution has to look at every rule (DESIGN.md section 5; target under 200 ns).
    let groups: Vec<GroupRule> = (0..10)
        .map(|i| GroupRule {
            id: format!("g{i}"),
            name: format!("group {i}"),
            rule: Rule {
                require_two_factor: i == 9,
                min_strength: [None, Some(Strength::OutOfBand), Some(Strength::App)][i % 3],
            },
        })
        .collect();
    c.bench_function("resolve/tenant_user_10_groups", |b| {
        b.iter(|| {
            resolve(black_box(&PolicyInput {
                scope: Scope::Tenant { feature: optional, settings: &settings },
                user_two_factor_enabled: false,
                rules: Rules { groups: black_box(&groups), application: None },
            }))
        })
    });
}

fn bench_authorize(c: &mut Criterion) {
    let Ok(mut authz) = Authorizer::new() else { panic!("the embedded model must load") };
    // A realistic enforcer: many tenants, each with an admin.
    for i in 0..1_000 {
        let tenant = format!("t{i}");
        if authz.grant(&format!("a{i}"), Role::TenantAdmin, Domain::Tenant(&tenant)).is_err() {
            panic!("grant failed");
        }
    }
    if authz.grant("h", Role::HostAdmin, Domain::Host).is_err() {
        panic!("grant failed");
    }
    c.bench_function("authorize/tenant_admin_allowed", |b| {
        b.iter(|| {
            authz.authorize(
                black_box(Actor { user_id: "a500" }),
                Action::UpdateSettings,
                Target::Domain(Domain::Tenant("t500")),
            )
        })
    });
    c.bench_function("authorize/tenant_admin_other_tenant", |b| {
        b.iter(|| {
            authz.authorize(
                black_box(Actor { user_id: "a500" }),
                Action::UpdateSettings,
                Target::Domain(Domain::Tenant("t501")),
            )
        })
    });
    c.bench_function("authorize/own_account", |b| {
        b.iter(|| {
            authz.authorize(
                black_box(Actor { user_id: "u1" }),
                Action::ReadOwnAccount,
                Target::User { id: "u1", domain: Domain::Tenant("t1") },
            )
        })
    });
}

criterion_group!(benches, bench_resolve, bench_authorize);
criterion_main!(benches);
