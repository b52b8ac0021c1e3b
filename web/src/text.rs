//! The words the screens show, computed from the API's values. Kept free of the browser
//! so the phrasing (numbers, times, error sentences) is unit-tested natively and stays
//! the same on every screen.

use twofold_policy::resolve::DecidedBy;
use twofold_policy::vocab::{Behaviour, Provider};
use twofold_policy::wire::{ChannelUsage, ErrorBody, ErrorCode, ImpactPreview, SecondFactorMethod, SenderState};

/// `1204` -> `1,204`: impact counts are read at a glance, often in the thousands.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `count(1, "user", "users")` -> `1 user`; `count(1204, ...)` -> `1,204 users`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

/// The impact preview as one sentence an admin reads before saving.
pub fn impact_sentence(p: &ImpactPreview) -> String {
    let mut parts = Vec::with_capacity(2);
    if p.newly_required > 0 {
        let who = count(p.newly_required, "user", "users");
        parts.push(match p.newly_required_without_factor {
            0 if p.newly_required == 1 => format!("This will require 2FA for {who}, who already has a factor."),
            0 => format!("This will require 2FA for {who}; all of them already have a factor."),
            n => format!(
                "This will require 2FA for {who}; {} of them {} no factor yet and will have to enrol at the next sign-in.",
                thousands(n),
                if n == 1 { "has" } else { "have" }
            ),
        });
        let weaker = p.newly_required_without_strength.saturating_sub(p.newly_required_without_factor);
        if weaker > 0 {
            parts.push(format!(
                "{} only a weaker factor than required and will have to enrol a stronger one.",
                count_verb(weaker, "has", "have")
            ));
        }
    }
    if p.newly_short_of_strength > 0 {
        parts.push(format!(
            "{} already asked for 2FA but {} no factor of the newly required strength and will have to enrol one.",
            count_verb(p.newly_short_of_strength, "is", "are"),
            if p.newly_short_of_strength == 1 { "has" } else { "have" }
        ));
    }
    if p.no_longer_required > 0 {
        parts.push(format!("2FA will no longer be asked of {}.", count(p.no_longer_required, "user", "users")));
    }
    if parts.is_empty() {
        return format!(
            "This does not change who is asked for a second factor ({} in this scope).",
            count(p.users_in_scope, "user", "users")
        );
    }
    parts.join(" ")
}

/// What an application's sign-ins would ask after a rule change, from the preview's
/// `application` counts; empty for previews of other changes.
pub fn application_asks_sentence(p: &ImpactPreview) -> String {
    let Some(a) = p.application else { return String::new() };
    let after = a.after;
    let mut parts = Vec::with_capacity(4);
    if after.nothing_more > 0 {
        parts.push(format!("{} nothing more", count(after.nothing_more, "user", "users")));
    }
    if after.second_factor > 0 {
        parts.push(format!("{} a second factor they have", count(after.second_factor, "user", "users")));
    }
    if after.enroll_first > 0 {
        parts.push(format!("{} to set up a stronger factor first", count(after.enroll_first, "user", "users")));
    }
    if after.refused > 0 {
        parts.push(format!("{} refused (the scope cannot meet the rule)", count(after.refused, "user", "users")));
    }
    if parts.is_empty() {
        return String::new();
    }
    let changed = if a.after == a.before { " (as now)" } else { "" };
    format!("Signing in to this application would then ask, beyond the usual sign-in: {}{changed}.", parts.join("; "))
}

/// What a factor strength means, for people.
pub fn strength_label(s: twofold_policy::Strength) -> &'static str {
    match s {
        twofold_policy::Strength::OutOfBand => "any factor (email or SMS code included)",
        twofold_policy::Strength::App => "an authenticator app or stronger",
        twofold_policy::Strength::PhishingResistant => "a passkey",
    }
}

/// A factor in a list: "authenticator (app)", "email (weaker)".
pub fn factor_label(f: &twofold_policy::wire::FactorStrength) -> String {
    let p = f.provider.as_str();
    match f.strength {
        twofold_policy::Strength::OutOfBand => format!("{p} (weaker)"),
        twofold_policy::Strength::App => format!("{p} (app)"),
        twofold_policy::Strength::PhishingResistant => format!("{p} (passkey)"),
    }
}

/// Whether 2FA is required of a user and what decided it, in a few words for a table.
pub fn requirement_label(p: &twofold_policy::wire::PolicyBrief) -> String {
    use twofold_policy::DecidedBy as D;
    let by = match (&p.decided_by_group, p.decided_by) {
        (Some(g), _) => format!("group \"{}\"", g.name),
        (None, D::User) => "own switch".to_owned(),
        (None, d) => decided_by_label(d).to_owned(),
    };
    if p.required { format!("Required · {by}") } else { format!("Not required · {by}") }
}

/// The line on top of the adoption view: "42 of 50 users have an authenticator or passkey".
pub fn adoption_headline(t: &twofold_policy::wire::AdoptionTotals) -> String {
    let mut out = format!(
        "{} of {} {} an authenticator or passkey; {} {} some second factor.",
        thousands(t.with_app_or_stronger),
        count(t.users, "user", "users"),
        if t.with_app_or_stronger == 1 { "has" } else { "have" },
        thousands(t.with_factor),
        if t.with_factor == 1 { "has" } else { "have" },
    );
    out.push_str(&format!(" {} asked for a second factor", count_verb(t.required, "is", "are")));
    if t.required_not_ready > 0 {
        out.push_str(&format!(
            "; {} of them {} no factor the policy accepts and will have to enrol.",
            thousands(t.required_not_ready),
            if t.required_not_ready == 1 { "has" } else { "have" }
        ));
    } else {
        out.push('.');
    }
    if t.locked > 0 {
        out.push_str(&format!(" {} locked.", count_verb(t.locked, "is", "are")));
    }
    out
}

/// "1 user has", "3 users have".
fn count_verb(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n, "user", "users"), if n == 1 { one } else { many })
}

/// A wait in words: "45 seconds", "5 minutes", "1 hour 5 minutes". Rounded up, because
/// "try again in 0 minutes" invites a retry that fails.
pub fn duration_words(secs: u64) -> String {
    if secs < 60 {
        return count(secs.max(1), "second", "seconds");
    }
    let minutes = secs.div_ceil(60);
    if minutes < 60 {
        return count(minutes, "minute", "minutes");
    }
    let (h, m) = (minutes / 60, minutes % 60);
    if m == 0 {
        count(h, "hour", "hours")
    } else {
        format!("{} {}", count(h, "hour", "hours"), count(m, "minute", "minutes"))
    }
}

/// A server message (lowercase, no full stop, made to be embedded) as a sentence.
pub fn sentence(s: &str) -> String {
    let s = s.trim();
    let mut chars = s.chars();
    let Some(first) = chars.next() else { return String::new() };
    let mut out: String = first.to_uppercase().chain(chars).collect();
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

/// The sentence shown for an API error. Wrong codes, lockouts and rate limits get the
/// numbers a person needs (attempts left, time to wait); anything else uses the
/// server's own message.
pub fn error_text(e: &ErrorBody) -> String {
    let code = serde_json::from_value::<ErrorCode>(serde_json::Value::String(e.error.clone())).ok();
    match code {
        Some(ErrorCode::InvalidCode) => match e.attempts_left {
            Some(0) => "That code is wrong, expired or already used. No attempts left.".to_owned(),
            Some(n) => format!(
                "That code is wrong, expired or already used. {} left before second-factor sign-in is locked.",
                count(u64::from(n), "attempt", "attempts")
            ),
            None => "That code is wrong, expired or already used.".to_owned(),
        },
        Some(ErrorCode::LockedOut) => match e.retry_after_seconds {
            Some(s) => {
                format!("Too many wrong codes: second-factor sign-in is locked. Try again in {}.", duration_words(s))
            }
            // Without a time the lock lasts until an administrator lifts it; the server
            // says so.
            None => sentence(&e.message),
        },
        Some(ErrorCode::RateLimited) => match e.retry_after_seconds {
            Some(s) => format!("Too many attempts. Wait {} before trying again.", duration_words(s)),
            None => "Too many attempts. Wait a moment before trying again.".to_owned(),
        },
        // Where only a password was typed the server names the field.
        Some(ErrorCode::InvalidCredentials) if e.field.is_some() => "The password is incorrect.".to_owned(),
        Some(ErrorCode::InvalidCredentials) => "The user name or password is incorrect.".to_owned(),
        _ => sentence(&e.message),
    }
}

/// A countdown for a lock: `4:05`, or `0:09`.
pub fn countdown(seconds: u64) -> String {
    format!("{}:{:02}", seconds / 60, seconds % 60)
}

pub fn provider_label(p: Provider) -> &'static str {
    match p {
        Provider::Authenticator => "Authenticator app",
        Provider::Email => "Email code",
        Provider::Sms => "SMS code",
        Provider::Passkey => "Passkey",
    }
}

pub fn method_label(m: SecondFactorMethod) -> &'static str {
    match m {
        SecondFactorMethod::Authenticator => "Authenticator app",
        SecondFactorMethod::Email => "Email code",
        SecondFactorMethod::Sms => "SMS code",
        SecondFactorMethod::RecoveryCode => "Recovery code",
        SecondFactorMethod::Passkey => "Passkey",
    }
}

/// The `method` value of a verify or reauthenticate request, as serde writes it.
pub fn method_value(m: SecondFactorMethod) -> &'static str {
    match m {
        SecondFactorMethod::Authenticator => "authenticator",
        SecondFactorMethod::Email => "email",
        SecondFactorMethod::Sms => "sms",
        SecondFactorMethod::RecoveryCode => "recovery_code",
        SecondFactorMethod::Passkey => "passkey",
    }
}

pub fn parse_method(s: &str) -> Option<SecondFactorMethod> {
    [
        SecondFactorMethod::Authenticator,
        SecondFactorMethod::Email,
        SecondFactorMethod::Sms,
        SecondFactorMethod::RecoveryCode,
        SecondFactorMethod::Passkey,
    ]
    .into_iter()
    .find(|m| method_value(*m) == s)
}

/// What an application may learn or do with an OpenID Connect scope, for the consent
/// screen.
pub fn scope_label(scope: &str) -> String {
    match scope {
        "openid" => "Know who you are (your account's id)".to_owned(),
        "profile" => "See your user name".to_owned(),
        "email" => "See your email address".to_owned(),
        "phone" => "See your phone number".to_owned(),
        "offline_access" => "Stay connected while you are away (until you revoke it)".to_owned(),
        other => format!("Use the scope {other}"),
    }
}

pub fn behaviour_label(b: Behaviour) -> &'static str {
    match b {
        Behaviour::Optional => "Optional",
        Behaviour::Disabled => "Disabled",
        Behaviour::Forced => "Forced",
    }
}

/// What a behaviour means for the users of a scope.
pub fn behaviour_help(b: Behaviour) -> &'static str {
    match b {
        Behaviour::Optional => "Each user's own switch decides whether a second factor is asked.",
        Behaviour::Disabled => "No second factor is asked, whatever a user's switch says (the switch is kept).",
        Behaviour::Forced => "Every user must present a second factor; users without one enrol at sign-in.",
    }
}

/// What a tenant's ceiling means, for the host admin's Features dialog.
pub fn ceiling_help(b: Behaviour) -> &'static str {
    match b {
        Behaviour::Optional => "The tenant's own admins decide, in the tenant's settings.",
        Behaviour::Disabled => "Two-factor sign-in is off for every user of the tenant; its admins cannot turn it on.",
        Behaviour::Forced => "Every user of the tenant must use a second factor; its admins cannot turn it off.",
    }
}

pub fn decided_by_label(d: DecidedBy) -> &'static str {
    match d {
        DecidedBy::HostSettings => "host settings",
        DecidedBy::TenantFeature => "the host's ceiling for the tenant",
        DecidedBy::TenantSettings => "tenant settings",
        DecidedBy::Group => "a group's rule",
        DecidedBy::Application => "the application's rule",
        DecidedBy::User => "the user's own switch",
    }
}

/// `2025-11-23T11:31:07.123Z` -> `2025-11-23 11:31 UTC`. The server always answers in
/// UTC; showing it as such avoids pretending to know the reader's zone.
pub fn format_time(rfc3339: &str) -> String {
    let b = rfc3339.as_bytes();
    let shaped = b.len() >= 16 && b[4] == b'-' && b[7] == b'-' && matches!(b[10], b'T' | b't' | b' ') && b[13] == b':';
    if !shaped {
        return rfc3339.to_owned();
    }
    let utc = rfc3339.ends_with('Z') || rfc3339.ends_with('z') || rfc3339.ends_with("+00:00");
    let (date, time) = (&rfc3339[..10], &rfc3339[11..16]);
    if utc { format!("{date} {time} UTC") } else { format!("{date} {time}") }
}

/// A short name for a remembered browser from its user agent: "Firefox on Linux".
pub fn browser_label(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|s| !s.trim().is_empty()) else {
        return "Unknown browser".to_owned();
    };
    // Order matters: Edge and Opera also say "Chrome", Chrome also says "Safari".
    let browser = if ua.contains("Edg/") || ua.contains("Edge/") {
        "Edge"
    } else if ua.contains("OPR/") || ua.contains("Opera") {
        "Opera"
    } else if ua.contains("Firefox/") {
        "Firefox"
    } else if ua.contains("HeadlessChrome") {
        "Headless Chrome"
    } else if ua.contains("Chromium/") {
        "Chromium"
    } else if ua.contains("Chrome/") || ua.contains("CriOS/") {
        "Chrome"
    } else if ua.contains("Safari/") {
        "Safari"
    } else {
        "A browser"
    };
    let os = if ua.contains("Windows") {
        Some("Windows")
    } else if ua.contains("iPhone") || ua.contains("iPad") {
        Some("iOS")
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        Some("macOS")
    } else if ua.contains("Android") {
        Some("Android")
    } else if ua.contains("CrOS") {
        Some("ChromeOS")
    } else if ua.contains("Linux") {
        Some("Linux")
    } else {
        None
    };
    match os {
        Some(os) => format!("{browser} on {os}"),
        None => browser.to_owned(),
    }
}

/// The text file a user downloads to keep their recovery codes.
pub fn recovery_codes_file(account: &str, codes: &[String]) -> String {
    let mut out = format!(
        "Twofold recovery codes for {account}\n\nEach code works once, in place of your second factor.\nKeep them somewhere safe and private.\n\n"
    );
    for c in codes {
        out.push_str(c);
        out.push('\n');
    }
    out
}

/// A file name without characters that file systems or browsers reject.
pub fn safe_file_name(stem: &str) -> String {
    let cleaned: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' }).collect();
    format!("twofold-recovery-codes-{}.txt", cleaned.trim_matches('-'))
}

/// A readable label for an audit action code, falling back to the code itself so new
/// actions still show.
pub fn audit_action_label(action: &str) -> String {
    let known = match action {
        "host_settings.updated" => "Host settings changed",
        "tenant_settings.updated" => "Tenant settings changed",
        "tenant_feature.updated" => "Tenant feature (ceiling) changed",
        "tenant.created" => "Tenant created",
        "user.created" => "User created",
        "user.two_factor_set" => "Two-factor switch set",
        "user.password_changed" => "Password changed",
        "user.unlocked" => "User unlocked",
        "user.second_factors_reset" => "Second factors reset",
        "user.sessions_ended" => "Sessions ended",
        "role.granted" => "Role granted",
        "role.revoked" => "Role revoked",
        "factor.added" => "Second factor added",
        "factor.removed" => "Second factor removed",
        "recovery_codes.regenerated" => "Recovery codes regenerated",
        "browser.forgotten" => "Remembered browser forgotten",
        "reauthentication.succeeded" => "Reauthenticated",
        "reauthentication.failed" => "Reauthentication failed",
        "sign_in.succeeded" => "Signed in",
        "sign_in.failed" => "Sign-in failed",
        "user.locked_out" => "Locked out after wrong codes",
        "user.deactivated" => "User deactivated",
        "user.reactivated" => "User reactivated",
        "user.deleted" => "User deleted",
        "user.password_reset" => "Password reset",
        "tenant.suspended" => "Tenant suspended",
        "tenant.resumed" => "Tenant resumed",
        "tenant.deleted" => "Tenant deleted",
        "session.ended" => "Session signed out",
        "password_reset.requested" => "Password reset link asked for",
        "password_reset.link_issued" => "Password reset link issued",
        "secrets.rotated" => "Stored secrets rewritten under a new key",
        _ => return action.to_owned(),
    };
    known.to_owned()
}

/// The last 8 characters of an id: enough to tell ids apart on one screen. (The first
/// block of a UUID v7 is its timestamp, shared by ids made within a minute.)
pub fn short_id(id: &str) -> &str {
    let start = id.char_indices().rev().nth(7).map_or(0, |(i, _)| i);
    &id[start..]
}

/// What an audit event changed, one line per field: `remember_browser_days: 14 → 30`.
/// Nested objects are flattened (`allowed_providers.sms: true → false`); fields equal
/// before and after are left out.
pub fn change_lines(before: Option<&serde_json::Value>, after: Option<&serde_json::Value>) -> Vec<String> {
    use serde_json::Value;
    fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    flatten(&key, v, out);
                }
            }
            Value::String(s) => out.push((prefix.to_owned(), s.clone())),
            Value::Null => out.push((prefix.to_owned(), "none".to_owned())),
            other => out.push((prefix.to_owned(), other.to_string())),
        }
    }
    let mut b = Vec::new();
    let mut a = Vec::new();
    if let Some(v) = before.filter(|v| !v.is_null()) {
        flatten("", v, &mut b);
    }
    if let Some(v) = after.filter(|v| !v.is_null()) {
        flatten("", v, &mut a);
    }
    let mut keys: Vec<&String> = b.iter().chain(a.iter()).map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    let find = |list: &[(String, String)], k: &str| list.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    keys.into_iter()
        .filter_map(|k| {
            let label = if k.is_empty() { "value" } else { k.as_str() };
            match (find(&b, k), find(&a, k)) {
                (Some(x), Some(y)) if x == y => None,
                (Some(x), Some(y)) => Some(format!("{label}: {x} → {y}")),
                (None, Some(y)) => Some(format!("{label}: {y}")),
                (Some(x), None) => Some(format!("{label}: {x} (removed)")),
                (None, None) => None,
            }
        })
        .collect()
}

/// One sentence about a user's policy, for an admin (the server's own summary speaks to
/// the user as "you").
pub fn admin_summary(required: bool, remember_allowed: bool, remember_days: u32) -> String {
    match (required, remember_allowed) {
        (true, true) => format!(
            "A second factor is required for this user, except on a browser they chose to remember (up to {}).",
            count(u64::from(remember_days), "day", "days")
        ),
        (true, false) => "A second factor is required for this user at every sign-in.".to_owned(),
        (false, _) => "No second factor is asked of this user.".to_owned(),
    }
}

/// "Page 2 of 5 · 93 users".
pub fn page_info(page: u32, per_page: u32, total: u64, one: &str, many: &str) -> String {
    let pages = total.div_ceil(u64::from(per_page.max(1))).max(1);
    format!("Page {} of {} · {}", thousands(u64::from(page)), thousands(pages), count(total, one, many))
}

/// Whether a "next page" exists.
pub fn has_next_page(page: u32, per_page: u32, total: u64) -> bool {
    u64::from(page) * u64::from(per_page) < total
}

/// Why a channel's codes cannot be sent, or are only logged; `None` when a real sender
/// is configured. `email` picks the channel.
pub fn sender_note(email: bool, sender: SenderState) -> Option<&'static str> {
    match (email, sender) {
        (_, SenderState::Configured) => None,
        (true, SenderState::NotConfigured) => {
            Some("No SMTP server is configured: email codes cannot be sent, so email is not offered to users.")
        }
        (false, SenderState::NotConfigured) => {
            Some("No SMS provider is configured: text messages cannot be sent, so SMS is not offered to users.")
        }
        (true, SenderState::Development) => Some(
            "Development sender: email codes are written to the server log, not sent. Never use it with real users.",
        ),
        (false, SenderState::Development) => Some(
            "Development sender: text messages are written to the server log, not sent. Never use it with real users.",
        ),
    }
}

/// `Texts this hour: 12 of 200.` for one channel; `name` is `Emails` or `Texts`.
pub fn usage_sentence(name: &str, u: &ChannelUsage) -> String {
    let mut out = match u.cap_per_hour {
        0 => format!("{name} this hour: {} (no cap).", thousands(u.sent_this_hour)),
        cap => format!("{name} this hour: {} of {}.", thousands(u.sent_this_hour), thousands(u64::from(cap))),
    };
    if let Some(all) = u.all_scopes_sent_this_hour {
        match u.all_scopes_cap_per_hour.unwrap_or(0) {
            0 => out.push_str(&format!(" All scopes: {} (no cap).", thousands(all))),
            cap => out.push_str(&format!(" All scopes: {} of {}.", thousands(all), thousands(u64::from(cap)))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: &str) -> ErrorBody {
        ErrorBody {
            error: code.to_owned(),
            message: "something went wrong".to_owned(),
            field: None,
            retry_after_seconds: None,
            attempts_left: None,
        }
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1204), "1,204");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn impact_sentence_matches_the_issue() {
        let p = ImpactPreview {
            users_in_scope: 2000,
            newly_required: 1204,
            newly_required_without_factor: 310,
            ..ImpactPreview::default()
        };
        assert_eq!(
            impact_sentence(&p),
            "This will require 2FA for 1,204 users; 310 of them have no factor yet and will have to enrol at the next sign-in."
        );
        let none = ImpactPreview { users_in_scope: 1, ..ImpactPreview::default() };
        assert_eq!(
            impact_sentence(&none),
            "This does not change who is asked for a second factor (1 user in this scope)."
        );
        let less = ImpactPreview { users_in_scope: 5, no_longer_required: 5, ..ImpactPreview::default() };
        assert_eq!(impact_sentence(&less), "2FA will no longer be asked of 5 users.");
        let one = ImpactPreview {
            users_in_scope: 5,
            newly_required: 1,
            newly_required_without_factor: 1,
            newly_required_without_strength: 1,
            ..ImpactPreview::default()
        };
        assert!(impact_sentence(&one).contains("1 user; 1 of them has no factor"));
        let stronger = ImpactPreview {
            users_in_scope: 9,
            newly_required: 4,
            newly_required_without_factor: 1,
            newly_required_without_strength: 3,
            newly_short_of_strength: 1,
            ..ImpactPreview::default()
        };
        let s = impact_sentence(&stronger);
        assert!(s.contains("2 users have only a weaker factor"), "{s}");
        assert!(s.contains("1 user is already asked for 2FA but has no factor of the newly required strength"), "{s}");
    }

    #[test]
    fn an_applications_preview_says_what_its_sign_ins_would_ask() {
        use twofold_policy::wire::{ApplicationImpact, SignInAsks};
        let before = SignInAsks { nothing_more: 3, ..SignInAsks::default() };
        let after = SignInAsks { second_factor: 1, enroll_first: 2, ..SignInAsks::default() };
        let p = ImpactPreview { application: Some(ApplicationImpact { before, after }), ..ImpactPreview::default() };
        assert_eq!(
            application_asks_sentence(&p),
            "Signing in to this application would then ask, beyond the usual sign-in: 1 user a second factor they have; 2 users to set up a stronger factor first."
        );
        let same =
            ImpactPreview { application: Some(ApplicationImpact { before: after, after }), ..ImpactPreview::default() };
        assert!(application_asks_sentence(&same).ends_with("first (as now)."));
        assert_eq!(application_asks_sentence(&ImpactPreview::default()), "");
    }

    #[test]
    fn the_adoption_headline_reads_like_the_issue() {
        let t = twofold_policy::wire::AdoptionTotals {
            users: 50,
            with_factor: 45,
            with_app_or_stronger: 42,
            required: 12,
            required_not_ready: 3,
            locked: 1,
        };
        assert_eq!(
            adoption_headline(&t),
            "42 of 50 users have an authenticator or passkey; 45 have some second factor. 12 users are asked for a second factor; 3 of them have no factor the policy accepts and will have to enrol. 1 user is locked."
        );
    }

    #[test]
    fn durations_round_up() {
        assert_eq!(duration_words(0), "1 second");
        assert_eq!(duration_words(45), "45 seconds");
        assert_eq!(duration_words(61), "2 minutes");
        assert_eq!(duration_words(300), "5 minutes");
        assert_eq!(duration_words(3600), "1 hour");
        assert_eq!(duration_words(3900), "1 hour 5 minutes");
    }

    #[test]
    fn code_errors_carry_their_numbers() {
        let mut e = err("invalid_code");
        e.attempts_left = Some(3);
        assert_eq!(
            error_text(&e),
            "That code is wrong, expired or already used. 3 attempts left before second-factor sign-in is locked."
        );
        e.attempts_left = Some(1);
        assert!(error_text(&e).contains("1 attempt left"));
        let mut l = err("locked_out");
        l.retry_after_seconds = Some(290);
        assert_eq!(error_text(&l), "Too many wrong codes: second-factor sign-in is locked. Try again in 5 minutes.");
        let mut r = err("rate_limited");
        r.retry_after_seconds = Some(30);
        assert_eq!(error_text(&r), "Too many attempts. Wait 30 seconds before trying again.");
        assert_eq!(error_text(&err("other")), "Something went wrong.");
    }

    #[test]
    fn countdowns_show_minutes_and_seconds() {
        assert_eq!(countdown(0), "0:00");
        assert_eq!(countdown(9), "0:09");
        assert_eq!(countdown(245), "4:05");
        assert_eq!(countdown(3600), "60:00");
    }

    #[test]
    fn a_wrong_password_alone_is_not_called_a_wrong_user_name() {
        assert_eq!(error_text(&err("invalid_credentials")), "The user name or password is incorrect.");
        let mut only_password = err("invalid_credentials");
        only_password.field = Some("password".to_owned());
        assert_eq!(error_text(&only_password), "The password is incorrect.");
    }

    #[test]
    fn sentences_are_capitalised_and_closed() {
        assert_eq!(sentence("a tenant with this name exists"), "A tenant with this name exists.");
        assert_eq!(sentence("Done."), "Done.");
        assert_eq!(sentence("  "), "");
    }

    #[test]
    fn times_show_in_utc() {
        assert_eq!(format_time("2025-11-23T11:31:07.123Z"), "2025-11-23 11:31 UTC");
        assert_eq!(format_time("2025-11-23T11:31:07+00:00"), "2025-11-23 11:31 UTC");
        assert_eq!(format_time("2025-11-23T11:31:07+02:00"), "2025-11-23 11:31");
        assert_eq!(format_time("yesterday"), "yesterday");
    }

    #[test]
    fn browsers_are_named() {
        let ff = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(browser_label(Some(ff)), "Firefox on Linux");
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0";
        assert_eq!(browser_label(Some(edge)), "Edge on Windows");
        let safari = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(browser_label(Some(safari)), "Safari on iOS");
        assert_eq!(browser_label(None), "Unknown browser");
    }

    #[test]
    fn recovery_file_lists_every_code() {
        let codes = vec!["aaaa-bbbb".to_owned(), "cccc-dddd".to_owned()];
        let f = recovery_codes_file("alice", &codes);
        assert!(f.starts_with("Twofold recovery codes for alice"));
        assert!(f.ends_with("aaaa-bbbb\ncccc-dddd\n"));
        assert_eq!(safe_file_name("acme/alice"), "twofold-recovery-codes-acme-alice.txt");
    }

    #[test]
    fn methods_round_trip_through_their_wire_names() {
        for m in [
            SecondFactorMethod::Authenticator,
            SecondFactorMethod::Email,
            SecondFactorMethod::Sms,
            SecondFactorMethod::RecoveryCode,
        ] {
            let wire = serde_json::to_value(m).ok();
            assert_eq!(wire.as_ref().and_then(|v| v.as_str()), Some(method_value(m)));
            assert_eq!(parse_method(method_value(m)), Some(m));
        }
    }

    #[test]
    fn changes_list_only_what_moved() {
        let before = serde_json::json!({"behaviour": "optional", "remember_browser_days": 14, "allowed_providers": {"sms": true, "email": true}});
        let after = serde_json::json!({"behaviour": "forced", "remember_browser_days": 14, "allowed_providers": {"sms": false, "email": true}});
        assert_eq!(
            change_lines(Some(&before), Some(&after)),
            vec!["allowed_providers.sms: true → false".to_owned(), "behaviour: optional → forced".to_owned()]
        );
        let created = serde_json::json!({"name": "acme"});
        assert_eq!(change_lines(None, Some(&created)), vec!["name: acme".to_owned()]);
        assert!(change_lines(None, Some(&serde_json::json!({}))).is_empty());
        assert_eq!(short_id("0195a2b3-0000-7000-8000-00000000abcd"), "0000abcd");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn paging_words() {
        assert_eq!(page_info(2, 20, 93, "user", "users"), "Page 2 of 5 · 93 users");
        assert_eq!(page_info(1, 20, 0, "user", "users"), "Page 1 of 1 · 0 users");
        assert!(has_next_page(1, 20, 21));
        assert!(!has_next_page(2, 20, 40));
    }

    #[test]
    fn channels_without_a_sender_say_why() {
        assert_eq!(sender_note(true, SenderState::Configured), None);
        assert!(sender_note(true, SenderState::NotConfigured).is_some_and(|n| n.starts_with("No SMTP server")));
        assert!(sender_note(false, SenderState::NotConfigured).is_some_and(|n| n.starts_with("No SMS provider")));
        assert!(sender_note(false, SenderState::Development).is_some_and(|n| n.contains("log")));
    }

    #[test]
    fn usage_reads_against_the_cap() {
        let mut u = ChannelUsage {
            sender: SenderState::Configured,
            sent_this_hour: 1204,
            cap_per_hour: 2000,
            all_scopes_sent_this_hour: None,
            all_scopes_cap_per_hour: None,
        };
        assert_eq!(usage_sentence("Texts", &u), "Texts this hour: 1,204 of 2,000.");
        u.cap_per_hour = 0;
        u.all_scopes_sent_this_hour = Some(5000);
        u.all_scopes_cap_per_hour = Some(10_000);
        assert_eq!(usage_sentence("Texts", &u), "Texts this hour: 1,204 (no cap). All scopes: 5,000 of 10,000.");
    }
}
