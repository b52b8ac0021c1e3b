//! Micro-benchmarks of the server's hot paths that do not need the network: TOTP
//! verification, the cached policy lookup, a token's signature (RS256 and ES256, with the
//! key kept parsed as the server keeps it, and parsed afresh as it did before), and the
//! ceiling every password sign-in is bound by, one argon2id hash at Twofold's
//! parameters. Run with `cargo bench -p
//! twofold-server`; figures and targets are in BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use twofold_policy::wire::TokenAlg;
use twofold_policy::{PolicyInput, Scope, resolve};
use twofold_server::cache::PolicyCache;
use twofold_server::db::{Db, HOST_SCOPE};
use twofold_server::oidc::keys::{Signer, private_der};
use twofold_server::{auth, totp};

fn bench_totp(c: &mut Criterion) {
    let secret = totp::generate_secret();
    let now = 1_900_000_000u64;
    let code = totp::code_at(&secret, now);
    c.bench_function("totp/verify", |b| b.iter(|| totp::verify(black_box(&secret), black_box(&code), now, None)));
}

fn bench_cached_lookup(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Runtime::new() else { panic!("runtime") };
    let Ok(dir) = tempfile::tempdir() else { panic!("tempdir") };
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let db = rt.block_on(async {
        let Ok(db) = Db::connect(&url, 2).await else { panic!("connect") };
        if db.migrate().await.is_err() {
            panic!("migrate");
        }
        db
    });
    let cache = PolicyCache::new(Duration::from_secs(3600), Duration::from_secs(3600));
    if rt.block_on(cache.settings(&db, HOST_SCOPE)).is_err() {
        panic!("warm-up");
    }
    // What every effective-policy read does once the scope is cached: one cache hit and
    // one resolution.
    c.bench_function("cache/effective_policy_cached", |b| {
        b.iter(|| {
            let Some(settings) = cache.get_settings_cached(black_box(HOST_SCOPE)) else { panic!("cold cache") };
            resolve(&PolicyInput::new(Scope::Host { settings: &settings }, true))
        })
    });
}

fn bench_signing(c: &mut Criterion) {
    let claims = serde_json::json!({ "iss": "https://id.example.com/t/acme", "sub": "0190f5c2-7a1e-7000-8000-000000000001",
        "aud": "wiki", "iat": 1_900_000_000, "exp": 1_900_000_600, "auth_time": 1_900_000_000,
        "acr": "urn:twofold:acr:pwd+authenticator" });
    let mut group = c.benchmark_group("sign");
    for (alg, name) in [(TokenAlg::RS256, "rs256"), (TokenAlg::ES256, "es256")] {
        let Ok(der) = private_der(alg) else { panic!("key") };
        let Ok(signer) = Signer::from_der("bench", alg, &der) else { panic!("parse") };
        group.bench_function(format!("{name}_parsed_key"), |b| b.iter(|| signer.sign("JWT", black_box(&claims))));
        group.bench_function(format!("{name}_key_parsed_each_time"), |b| {
            b.iter(|| {
                let Ok(signer) = Signer::from_der("bench", alg, black_box(&der)) else { panic!("parse") };
                signer.sign("JWT", black_box(&claims))
            })
        });
    }
    group.finish();
}

fn bench_argon2(c: &mut Criterion) {
    let Ok(phc) = auth::hash_password_blocking("correct horse battery") else { panic!("hash") };
    let mut group = c.benchmark_group("argon2id");
    group.sample_size(20);
    group.bench_function("verify_one", |b| {
        b.iter(|| auth::verify_password_blocking(black_box("correct horse battery"), black_box(&phc)))
    });
    group.finish();
}

criterion_group!(benches, bench_totp, bench_cached_lookup, bench_signing, bench_argon2);
criterion_main!(benches);
