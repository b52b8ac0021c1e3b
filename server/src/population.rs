//! The users of one scope as resolution sees them, for the views that judge a whole
//! scope at once: the impact preview of a proposed change and the adoption view.
//!
//! Resolution depends on a user only through their switch, their strongest factor and
//! the rules of their groups, so the preview folds the users into classes of those three
//! and resolves each class once, before and after the change. Nothing here writes.

use std::collections::HashMap;

use sqlx::FromRow;
use twofold_policy::wire::{
    Adoption, AdoptionRow, AdoptionTotals, ApplicationImpact, FactorStrength, GroupRef, ImpactPreview, PolicyBrief,
    SignInAsks,
};
use twofold_policy::{
    ApplicationRule, DecidedBy, EffectivePolicy, GroupRule, PolicyInput, Provider, Rule, Rules, Scope, ScopeSettings,
    Strength, TenantFeature, resolve,
};

use crate::app::AppState;
use crate::clock::rfc3339;
use crate::db::UserRow;
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
    pub fn scope(self) -> Scope<'a> {
        match self {
            ScopeInputs::Host(settings) => Scope::Host { settings },
            ScopeInputs::Tenant(feature, settings) => Scope::Tenant { feature, settings },
        }
    }
}

/// A scope's own inputs to resolution, read (through the cache) and owned so that
/// [`ScopeInputs`] can borrow them.
#[derive(Debug)]
pub struct LoadedScope {
    feature: Option<TenantFeature>,
    settings: ScopeSettings,
}

impl LoadedScope {
    pub async fn load(state: &AppState, scope_key: &str) -> AppResult<Self> {
        let settings = state.cache().settings(state.db(), scope_key).await?;
        let feature = if scope_key == crate::db::HOST_SCOPE {
            None
        } else {
            Some(state.cache().feature(state.db(), scope_key).await?)
        };
        Ok(Self { feature, settings })
    }

    pub fn scope(&self) -> ScopeInputs<'_> {
        match self.feature {
            None => ScopeInputs::Host(&self.settings),
            Some(f) => ScopeInputs::Tenant(f, &self.settings),
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
    /// The groups stay; what changes is an application's rule, and the users are judged
    /// as they sign in to it (`before` and `after` are that application).
    Application { before: &'a ApplicationRule, after: &'a ApplicationRule },
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

pub fn resolve_with(
    scope: ScopeInputs<'_>,
    flag: bool,
    groups: &[GroupRule],
    application: Option<&ApplicationRule>,
) -> EffectivePolicy {
    resolve(&PolicyInput { scope: scope.scope(), user_two_factor_enabled: flag, rules: Rules { groups, application } })
}

#[derive(Debug, FromRow)]
struct LightUser {
    id: String,
    two_factor_enabled: i64,
    has_authenticator: i64,
    email_confirmed: i64,
    phone_confirmed: i64,
    passkey_count: i64,
}

/// The confirmed factors of a user, as a value users who hold the same share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Held {
    passkey: bool,
    authenticator: bool,
    email: bool,
    phone: bool,
}

impl LightUser {
    fn held(&self) -> Held {
        Held {
            passkey: self.passkey_count > 0,
            authenticator: self.has_authenticator != 0,
            email: self.email_confirmed != 0,
            phone: self.phone_confirmed != 0,
        }
    }
}

impl Held {
    /// The strongest factor held among those `offered` (all, when `None`).
    fn strongest(self, offered: Option<&twofold_policy::ProviderSet>) -> Option<Strength> {
        let ok = |held: bool, p: Provider| held && offered.is_none_or(|o| o.allows(p));
        if ok(self.passkey, Provider::Passkey) {
            Some(Strength::PhishingResistant)
        } else if ok(self.authenticator, Provider::Authenticator) {
            Some(Strength::App)
        } else if ok(self.email, Provider::Email) || ok(self.phone, Provider::Sms) {
            Some(Strength::OutOfBand)
        } else {
            None
        }
    }
}

/// Users who resolve alike: (switch, factors held, groups before, groups after).
type Class = (bool, Held, Vec<usize>, Vec<usize>);

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
        "SELECT id, two_factor_enabled, has_authenticator, email_confirmed, phone_confirmed, passkey_count FROM users \
         WHERE scope_key = $1",
    )
    .bind(scope_key)
    .fetch_all(&state.db().pool)
    .await?;
    let (app_before, app_after) = match change {
        GroupChange::Application { before, after } => (Some(before), Some(after)),
        _ => (None, None),
    };
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
        *classes.entry((u.two_factor_enabled != 0, u.held(), was, will)).or_default() += 1;
    }
    let mut out = ImpactPreview::default();
    let mut asks = app_before.zip(app_after).map(|_| ApplicationImpact::default());
    for ((flag, held, was_in, will_in), n) in classes {
        let strongest = held.strongest(None);
        let was = resolve_with(old, flag, &rules_for(&before, &was_in), app_before);
        let will = resolve_with(new, flag, &rules_for(&after, &will_in), app_after);
        if let (Some(asks), Some(a_before), Some(a_after)) = (asks.as_mut(), app_before, app_after) {
            // Their usual sign-in: the scope's and groups' policy, no application.
            let usual = resolve_with(old, flag, &rules_for(&before, &was_in), None);
            count_asks(state, &mut asks.before, (&usual, &was), a_before, held, n);
            let usual = resolve_with(new, flag, &rules_for(&after, &will_in), None);
            count_asks(state, &mut asks.after, (&usual, &will), a_after, held, n);
        }
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
    out.application = asks;
    Ok(out)
}

/// Counts `n` users holding `held` into what a sign-in to `application` would ask of
/// them beyond their usual sign-in: `usual` is their policy without the application
/// (whose required second factor that sign-in proves, the strongest they can), `policy`
/// the one resolved with its rule. The authorization decision itself, as the endpoint
/// and the what-if make it.
fn count_asks(
    state: &AppState,
    asks: &mut SignInAsks,
    (usual, policy): (&EffectivePolicy, &EffectivePolicy),
    application: &ApplicationRule,
    held: Held,
    n: u64,
) {
    use twofold_policy::authorization::Verdict;
    let strongest = held.strongest(Some(&crate::factors::usable_providers(state, &policy.allowed_providers)));
    let proved = held.strongest(Some(&crate::factors::usable_providers(state, &usual.allowed_providers)));
    let proved = proved.filter(|_| usual.required);
    let decision = crate::oidc::authorize::decide_after_sign_in(policy, application, proved, strongest, state.now());
    let field = match decision.verdict {
        // A session made just now needs no new sign-in; `SignIn` cannot come out here.
        Verdict::Reuse | Verdict::SignIn => &mut asks.nothing_more,
        Verdict::StepUp => &mut asks.second_factor,
        Verdict::Enroll => &mut asks.enroll_first,
        Verdict::Unmet => &mut asks.refused,
    };
    *field += n;
}

/// A user's confirmed second factors with their strength, strongest first.
pub fn factors_of(u: &UserRow) -> Vec<FactorStrength> {
    let mut out = Vec::with_capacity(4);
    for (held, provider) in [
        (u.passkey_count > 0, Provider::Passkey),
        (u.has_authenticator != 0, Provider::Authenticator),
        (u.email_confirmed != 0, Provider::Email),
        (u.phone_confirmed != 0, Provider::Sms),
    ] {
        if held {
            out.push(FactorStrength { provider, strength: provider.strength() });
        }
    }
    out
}

/// What the policy asks of a user, in brief. Ready means what the sign-in would find:
/// a factor it could offer (allowed, strong enough, with a sender), or nothing required.
pub fn brief(state: &AppState, u: &UserRow, policy: &EffectivePolicy, rules: Rules<'_>) -> PolicyBrief {
    PolicyBrief {
        required: policy.required,
        decided_by: policy.decided_by,
        decided_by_group: policy.deciding_group(rules).map(|g| GroupRef { id: g.id.clone(), name: g.name.clone() }),
        required_strength: policy.required_strength,
        ready: !policy.required || !crate::signin::offers(state, u, policy).is_empty(),
    }
}

/// The factor a stored sign-in used, in the words of [`AdoptionRow::last_sign_in_factor`].
pub fn sign_in_factor(methods: &str) -> String {
    match methods.strip_prefix("pwd+") {
        None => "password".to_owned(),
        Some("remembered") => "remembered_browser".to_owned(),
        Some("grace") => "postponed_enrollment".to_owned(),
        Some(rest) => rest.to_owned(),
    }
}

/// Filters of the adoption view.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AdoptionFilter {
    /// Only users who are (true) or are not (false) asked for a second factor.
    #[serde(default)]
    pub required: Option<bool>,
    /// Only users who have (true) or lack (false) a factor the policy accepts.
    #[serde(default)]
    pub ready: Option<bool>,
    /// Only locked (true) or unlocked (false) users.
    #[serde(default)]
    pub locked: Option<bool>,
    /// Only users whose name contains this text.
    #[serde(default)]
    pub q: Option<String>,
}

/// The adoption view of a scope: every user resolved with their groups, totals over all
/// of them, the rows the filter lets through.
pub async fn adoption(
    state: &AppState,
    scope_key: &str,
    scope: ScopeInputs<'_>,
    filter: &AdoptionFilter,
) -> AppResult<Adoption> {
    let rows = gdb::list_groups(&state.db().pool, scope_key).await?;
    let groups = group_rules(&rows)?;
    let members = memberships(state, scope_key, &groups).await?;
    let users = crate::db::scope_users(&state.db().pool, scope_key).await?;
    let q = filter.q.as_deref().map(|s| s.trim().to_lowercase()).unwrap_or_default();
    let mut totals = AdoptionTotals::default();
    let mut out = Vec::new();
    for u in &users {
        let mine = rules_for(&groups, members.get(&u.id).map(Vec::as_slice).unwrap_or(&[]));
        let rules = Rules { groups: &mine, application: None };
        let policy = resolve_with(scope, u.two_factor_enabled != 0, &mine, None);
        let brief = brief(state, u, &policy, rules);
        let lock = crate::routes::lock_view(state, u);
        totals.users += 1;
        totals.with_factor += u64::from(u.has_factor());
        totals.with_app_or_stronger += u64::from(meets(u.strongest_factor(), Strength::App));
        totals.required += u64::from(brief.required);
        totals.required_not_ready += u64::from(brief.required && !brief.ready);
        totals.locked += u64::from(lock.locked);
        let keep = filter.required.is_none_or(|r| r == brief.required)
            && filter.ready.is_none_or(|r| r == brief.ready)
            && filter.locked.is_none_or(|l| l == lock.locked)
            && (q.is_empty() || u.username.to_lowercase().contains(&q));
        if keep {
            out.push(AdoptionRow {
                user_id: u.id.clone(),
                username: u.username.clone(),
                policy: brief,
                factors: factors_of(u),
                last_sign_in_at: u.last_sign_in_at.map(rfc3339),
                last_sign_in_factor: u.last_sign_in_methods.as_deref().map(sign_in_factor),
                lock,
            });
        }
    }
    Ok(Adoption { totals, users: out })
}

/// The adoption view's rows as CSV (RFC 4180), with the totals left to the reader.
pub fn adoption_csv(a: &Adoption) -> String {
    let mut out = String::from(
        "username,user_id,required,decided_by,decided_by_group,required_strength,ready,factors,last_sign_in_at,last_sign_in_factor,locked,locked_until\r\n",
    );
    for r in &a.users {
        let factors: Vec<&str> = r.factors.iter().map(|f| f.provider.as_str()).collect();
        let fields = [
            r.username.clone(),
            r.user_id.clone(),
            r.policy.required.to_string(),
            decided_by_word(r.policy.decided_by).to_owned(),
            r.policy.decided_by_group.as_ref().map(|g| g.name.clone()).unwrap_or_default(),
            r.policy.required_strength.as_str().to_owned(),
            r.policy.ready.to_string(),
            factors.join(" "),
            r.last_sign_in_at.clone().unwrap_or_default(),
            r.last_sign_in_factor.clone().unwrap_or_default(),
            r.lock.locked.to_string(),
            r.lock.locked_until.clone().unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

fn decided_by_word(d: DecidedBy) -> &'static str {
    match d {
        DecidedBy::HostSettings => "host_settings",
        DecidedBy::TenantFeature => "tenant_feature",
        DecidedBy::TenantSettings => "tenant_settings",
        DecidedBy::Group => "group",
        DecidedBy::Application => "application",
        DecidedBy::User => "user",
    }
}

/// One CSV field: quoted when it holds a separator, a quote or a line break. A leading
/// `=`, `+`, `-` or `@` is prefixed with `'` so a spreadsheet never runs a user or group
/// name as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\r', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("alice"), "alice");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=1+1"), "'=1+1");
        assert_eq!(csv_field("-x,y"), "\"'-x,y\"");
    }

    #[test]
    fn stored_methods_name_the_factor() {
        assert_eq!(sign_in_factor("pwd"), "password");
        assert_eq!(sign_in_factor("pwd+authenticator"), "authenticator");
        assert_eq!(sign_in_factor("pwd+remembered"), "remembered_browser");
        assert_eq!(sign_in_factor("pwd+grace"), "postponed_enrollment");
        assert_eq!(sign_in_factor("pwd+enrolled_email"), "enrolled_email");
    }
}
