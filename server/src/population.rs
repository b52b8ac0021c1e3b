//! The users of one scope as resolution sees them, for the views that judge a whole
//! scope at once: the impact preview of a proposed change and the adoption view.
//!
//! Resolution depends on a user only through their switch, their strongest factor and
//! the rules of their groups, so the preview folds the users into classes of those three
//! and resolves each class once, before and after the change. Nothing here writes.

use std::collections::HashMap;

use sqlx::FromRow;
use twofold_policy::wire::ImpactPreview;
use twofold_policy::{
    EffectivePolicy, GroupRule, PolicyInput, Rule, Rules, Scope, ScopeSettings, Strength, TenantFeature, resolve,
};

use crate::app::AppState;
use crate::db::groups::{self as gdb, GroupRow};
use crate::error::AppResult;

/// The scope-level inputs of one scope: the host's settings, or a tenant's ceiling and
/// settings.
#[derive(Debug, Clone, Copy)]
pub enum ScopeInputs<'a> {
    Host(&'a ScopeSettings),
    Tenant(TenantFeature, &'a ScopeSettings),
}

impl<'a> ScopeInputs<'a> {
    fn scope(self) -> Scope<'a> {
        match self {
            ScopeInputs::Host(settings) => Scope::Host { settings },
            ScopeInputs::Tenant(feature, settings) => Scope::Tenant { feature, settings },
        }
    }
}

/// A change to a scope's groups whose impact is previewed.
#[derive(Debug, Clone, Copy)]
pub enum GroupChange<'a> {
    /// The groups stay as they are (the scope's settings or ceiling change).
    Nothing,
    /// A group's rule becomes `rule`; `None` deletes the group.
    Rule { group_id: &'a str, rule: Option<Rule> },
    /// A user joins (`add`) or leaves a group.
    Member { group_id: &'a str, user_id: &'a str, add: bool },
}

/// The rules of the groups among `groups` (a scope's, by name) whose indices are
/// `member_of`, skipping groups without a rule: what resolution consults for a user.
pub fn rules_for(groups: &[GroupRule], member_of: &[usize]) -> Vec<GroupRule> {
    let mut ids: Vec<usize> = member_of.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter().filter_map(|i| groups.get(i)).filter(|g| !g.rule.is_empty()).cloned().collect()
}

/// A scope's groups as rules, in the order resolution consults them (by name).
pub fn group_rules(rows: &[GroupRow]) -> anyhow::Result<Vec<GroupRule>> {
    rows.iter().map(|g| Ok(GroupRule { id: g.id.clone(), name: g.name.clone(), rule: g.rule()? })).collect()
}

/// Which groups each user of a scope belongs to, as indices into `groups`.
pub async fn memberships(
    state: &AppState,
    scope_key: &str,
    groups: &[GroupRule],
) -> AppResult<HashMap<String, Vec<usize>>> {
    let index: HashMap<&str, usize> = groups.iter().enumerate().map(|(i, g)| (g.id.as_str(), i)).collect();
    let mut out: HashMap<String, Vec<usize>> = HashMap::new();
    for m in gdb::scope_memberships(&state.db().pool, scope_key).await? {
        if let Some(i) = index.get(m.group_id.as_str()) {
            out.entry(m.user_id).or_default().push(*i);
        }
    }
    Ok(out)
}

pub fn resolve_with(scope: ScopeInputs<'_>, flag: bool, groups: &[GroupRule]) -> EffectivePolicy {
    resolve(&PolicyInput {
        scope: scope.scope(),
        user_two_factor_enabled: flag,
        rules: Rules { groups, application: None },
    })
}

#[derive(Debug, FromRow)]
struct LightUser {
    id: String,
    two_factor_enabled: i64,
    has_authenticator: i64,
    email_confirmed: i64,
    phone_confirmed: i64,
}

impl LightUser {
    fn strongest(&self) -> Option<Strength> {
        if self.has_authenticator != 0 {
            Some(Strength::App)
        } else if self.email_confirmed != 0 || self.phone_confirmed != 0 {
            Some(Strength::OutOfBand)
        } else {
            None
        }
    }
}

/// Users who resolve alike: (switch, strongest factor, groups before, groups after).
type Class = (bool, Option<Strength>, Vec<usize>, Vec<usize>);

/// Whether a user whose strongest factor is `have` can meet `need`.
pub fn meets(have: Option<Strength>, need: Strength) -> bool {
    have.is_some_and(|h| h >= need)
}

/// Counts what a change would do to the users of a scope, without saving anything.
pub async fn impact(
    state: &AppState,
    scope_key: &str,
    old: ScopeInputs<'_>,
    new: ScopeInputs<'_>,
    change: GroupChange<'_>,
) -> AppResult<ImpactPreview> {
    let rows = gdb::list_groups(&state.db().pool, scope_key).await?;
    let before = group_rules(&rows)?;
    let mut after = before.clone();
    if let GroupChange::Rule { group_id, rule } = change
        && let Some(g) = after.iter_mut().find(|g| g.id == group_id)
    {
        // A deleted group keeps its place but asks for nothing, which is what losing it
        // means for its members.
        g.rule = rule.unwrap_or_default();
    }
    let members = memberships(state, scope_key, &before).await?;
    let users: Vec<LightUser> = sqlx::query_as(
        "SELECT id, two_factor_enabled, has_authenticator, email_confirmed, phone_confirmed FROM users \
         WHERE scope_key = $1",
    )
    .bind(scope_key)
    .fetch_all(&state.db().pool)
    .await?;
    let changed_group = match change {
        GroupChange::Member { group_id, .. } => before.iter().position(|g| g.id == group_id),
        _ => None,
    };
    // Users who resolve alike are counted together: (switch, strongest factor, groups
    // before, groups after) decide everything the preview reports.
    let mut classes: HashMap<Class, u64> = HashMap::new();
    for u in &users {
        let mut was: Vec<usize> = members.get(&u.id).cloned().unwrap_or_default();
        was.sort_unstable();
        let mut will = was.clone();
        if let (GroupChange::Member { user_id, add, .. }, Some(i)) = (change, changed_group)
            && user_id == u.id
        {
            will.retain(|g| *g != i);
            if add {
                will.push(i);
                will.sort_unstable();
            }
        }
        *classes.entry((u.two_factor_enabled != 0, u.strongest(), was, will)).or_default() += 1;
    }
    let mut out = ImpactPreview::default();
    for ((flag, strongest, was_in, will_in), n) in classes {
        let was = resolve_with(old, flag, &rules_for(&before, &was_in));
        let will = resolve_with(new, flag, &rules_for(&after, &will_in));
        out.users_in_scope += n;
        if !was.required && will.required {
            out.newly_required += n;
            if strongest.is_none() {
                out.newly_required_without_factor += n;
            }
            if !meets(strongest, will.required_strength) {
                out.newly_required_without_strength += n;
            }
        }
        if was.required && !will.required {
            out.no_longer_required += n;
        }
        if was.required
            && will.required
            && meets(strongest, was.required_strength)
            && !meets(strongest, will.required_strength)
        {
            out.newly_short_of_strength += n;
        }
    }
    Ok(out)
}
