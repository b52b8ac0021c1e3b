//! Cached policy inputs: scope settings and tenant features, which every effective
//! policy read needs and which change rarely. Every write through this node
//! invalidates the entry it changed before answering, so the next request sees it; the
//! time-to-live bounds staleness for changes made elsewhere.

use std::time::Duration;

use moka::sync::Cache;
use twofold_policy::{ScopeSettings, TenantFeature};

use crate::db::{self, Db};
use crate::error::{AppError, AppResult};

#[derive(Debug, Clone)]
pub struct PolicyCache {
    settings: Cache<String, ScopeSettings>,
    features: Cache<String, TenantFeature>,
}

impl PolicyCache {
    pub fn new(ttl: Duration) -> Self {
        // One entry per tenant is small (tens of bytes); 100k entries bounds memory to a
        // few megabytes even with very many tenants.
        Self {
            settings: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            features: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
        }
    }

    pub async fn settings(&self, db: &Db, scope_key: &str) -> AppResult<ScopeSettings> {
        let cached = self.settings.get(scope_key);
        crate::metrics::cache_read("settings", cached.is_some());
        if let Some(s) = cached {
            return Ok(s);
        }
        let s = db::load_settings(&db.pool, scope_key).await?;
        self.settings.insert(scope_key.to_owned(), s.clone());
        Ok(s)
    }

    pub async fn feature(&self, db: &Db, tenant_id: &str) -> AppResult<TenantFeature> {
        let cached = self.features.get(tenant_id);
        crate::metrics::cache_read("features", cached.is_some());
        if let Some(f) = cached {
            return Ok(f);
        }
        let tenant = db::get_tenant(&db.pool, tenant_id).await?.ok_or(AppError::NotFound("tenant"))?;
        let f = tenant.feature()?;
        self.features.insert(tenant_id.to_owned(), f);
        Ok(f)
    }

    pub fn get_settings_cached(&self, scope_key: &str) -> Option<ScopeSettings> {
        self.settings.get(scope_key)
    }

    pub fn invalidate_settings(&self, scope_key: &str) {
        self.settings.invalidate(scope_key);
    }

    pub fn invalidate_feature(&self, tenant_id: &str) {
        self.features.invalidate(tenant_id);
    }

    pub fn invalidate_all(&self) {
        self.settings.invalidate_all();
        self.features.invalidate_all();
    }
}
