//! The JSON shapes of Twofold's HTTP API, defined once and used by both the server and
//! the web app. Request types reject unknown fields so a typo is an error, not a silent
//! no-op.

use serde::{Deserialize, Serialize};

use crate::resolve::{DecidedBy, EffectivePolicy, Rule, Rules, ScopeKind};
use crate::vocab::{Behaviour, Provider, ProviderSet, ScopeSettings, Strength, TenantFeature};

/// The one error shape of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// A stable, machine-readable code such as `invalid_credentials` or `ceiling_fixed`.
    pub error: String,
    /// A sentence for people.
    pub message: String,
    /// The request field the error is about, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `locked_out` and `rate_limited`: when to try again (also in `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// For `invalid_code`: how many more wrong codes lock the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
}

/// Every error code the API answers with, in [`ErrorBody::error`]. Stable: clients may
/// match on them. The server builds its errors from these and the web app matches on
/// them, so a code cannot be misspelt on either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidField,
    InvalidPath,
    InvalidQuery,
    MalformedJson,
    InvalidBody,
    ProviderUnavailable,
    Unauthenticated,
    InvalidCredentials,
    Forbidden,
    CsrfHeaderMissing,
    UnsupportedMediaType,
    NotFound,
    MethodNotAllowed,
    NameTaken,
    UsernameTaken,
    NoFactor,
    AuthenticatorExists,
    BehaviourFixedByHost,
    GraceOver,
    LastFactor,
    NotOptional,
    UserCannotChange,
    InvalidCode,
    LockedOut,
    RateLimited,
    ReauthenticationRequired,
    SignInExpired,
    SendFailed,
    Unavailable,
    Internal,
    SenderNotConfigured,
    PhoneCountryNotAllowed,
    /// An admin action that would lock the admin out of their own account (deactivate or
    /// delete oneself); another admin has to do it.
    NotOnYourself,
    /// Password reset by email needs `public_url` (for the link) and an email sender.
    PasswordResetUnavailable,
    /// The reset link is unknown, used or expired.
    ResetLinkInvalid,
    /// The session's password was set by an admin: only changing it is allowed.
    PasswordChangeRequired,
    /// Passkeys need `public_url` (their relying party), and it is not set.
    PasskeysUnavailable,
    /// A passkey ceremony failed: unknown, used or expired challenge, a credential that
    /// does not verify, or one that is not this account's. One code for every cause, so
    /// an answer never says which.
    PasskeyRefused,
    /// The scope accepts passkeys only from listed authenticator models.
    PasskeyModelNotAllowed,
    /// A scope's `min_strength` that none of its allowed providers reaches.
    StrengthUnreachable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::ProviderUnavailable => "provider_unavailable",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::CsrfHeaderMissing => "csrf_header_missing",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::NoFactor => "no_factor",
            ErrorCode::AuthenticatorExists => "authenticator_exists",
            ErrorCode::BehaviourFixedByHost => "behaviour_fixed_by_host",
            ErrorCode::GraceOver => "grace_over",
            ErrorCode::LastFactor => "last_factor",
            ErrorCode::NotOptional => "not_optional",
            ErrorCode::UserCannotChange => "user_cannot_change",
            ErrorCode::InvalidCode => "invalid_code",
            ErrorCode::LockedOut => "locked_out",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ReauthenticationRequired => "reauthentication_required",
            ErrorCode::SignInExpired => "sign_in_expired",
            ErrorCode::SendFailed => "send_failed",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::SenderNotConfigured => "sender_not_configured",
            ErrorCode::PhoneCountryNotAllowed => "phone_country_not_allowed",
            ErrorCode::NotOnYourself => "not_on_yourself",
            ErrorCode::PasswordResetUnavailable => "password_reset_unavailable",
            ErrorCode::ResetLinkInvalid => "reset_link_invalid",
            ErrorCode::PasswordChangeRequired => "password_change_required",
            ErrorCode::PasskeysUnavailable => "passkeys_unavailable",
            ErrorCode::PasskeyRefused => "passkey_refused",
            ErrorCode::PasskeyModelNotAllowed => "passkey_model_not_allowed",
            ErrorCode::StrengthUnreachable => "strength_unreachable",
        }
    }
}

impl ErrorBody {
    /// Whether this error has `code`.
    pub fn is(&self, code: ErrorCode) -> bool {
        self.error == code.as_str()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    /// The tenant's name; absent for host users.
    #[serde(default)]
    pub tenant: Option<String>,
    pub username: String,
    pub password: String,
}

/// Where a sign-in stands after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SignInStatus {
    /// A session cookie was issued.
    #[default]
    SignedIn,
    /// The password was right; a second factor is required next.
    RequiresTwoFactor,
    /// A second factor is required but the user has none: enrolment comes first.
    RequiresEnrollment,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignInResponse {
    pub status: SignInStatus,
    /// The signed-in user, when `status` is `signed_in`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<CurrentUser>,
    /// For `requires_two_factor`: the factors this user can use now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderOffer>,
    /// For `requires_two_factor`: whether unused recovery codes exist.
    #[serde(default)]
    pub recovery_code_available: bool,
    /// Whether "remember this browser" may be offered.
    #[serde(default)]
    pub remember_browser_offered: bool,
    pub remember_browser_days: u32,
    /// For `requires_enrollment`: the factors that may be enrolled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enrollable: Vec<Provider>,
    /// For `requires_enrollment`: the end of the grace period, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_until: Option<String>,
    /// For `requires_enrollment`: whether enrolment may be postponed now.
    #[serde(default)]
    pub can_postpone: bool,
    /// Recovery codes, shown once, when this step enrolled the user's first factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
}

/// A second factor offered at sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderOffer {
    /// Sent back as `method` in `send-code` and `verify`.
    pub provider: Provider,
    /// Email and SMS codes are weaker than an authenticator app.
    pub weaker: bool,
    /// Where a code would go, partly hidden (`a***@example.com`, `***1234`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// How a second factor is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SecondFactorMethod {
    Authenticator,
    Email,
    Sms,
    RecoveryCode,
    /// A passkey: proven through the WebAuthn routes, never by a typed code.
    Passkey,
}

impl SecondFactorMethod {
    pub const ALL: [SecondFactorMethod; 5] = [
        SecondFactorMethod::Authenticator,
        SecondFactorMethod::Email,
        SecondFactorMethod::Sms,
        SecondFactorMethod::RecoveryCode,
        SecondFactorMethod::Passkey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SecondFactorMethod::Authenticator => "authenticator",
            SecondFactorMethod::Email => "email",
            SecondFactorMethod::Sms => "sms",
            SecondFactorMethod::RecoveryCode => "recovery_code",
            SecondFactorMethod::Passkey => "passkey",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// What a check of this method proves. A recovery code stands in for the
    /// authenticator it backs up, so it opens the door up to `app` (never to
    /// `phishing_resistant`).
    pub fn strength(self) -> crate::Strength {
        match self {
            SecondFactorMethod::Authenticator | SecondFactorMethod::RecoveryCode => crate::Strength::App,
            SecondFactorMethod::Email | SecondFactorMethod::Sms => crate::Strength::OutOfBand,
            SecondFactorMethod::Passkey => crate::Strength::PhishingResistant,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SendCodeRequest {
    /// `email` or `sms`, as offered in the sign-in step's `offers`.
    pub method: Provider,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendCodeResponse {
    /// The destination, partly hidden.
    pub sent_to: String,
    pub expires_in_seconds: u32,
    /// Email and SMS are weaker factors.
    pub weaker: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub method: SecondFactorMethod,
    pub code: String,
    #[serde(default)]
    pub remember_browser: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    pub code: String,
}

/// A new authenticator: the secret in text and as a QR code. Returned once, when
/// enrolment starts; never again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthenticatorEnrollment {
    /// Base32, for typing into an app.
    pub secret: String,
    pub otpauth_uri: String,
    /// A PNG of the QR code, base64.
    pub qr_png_base64: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    /// The address to confirm; absent to confirm the address already on file.
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PhoneRequest {
    /// E.164, e.g. `+14155550100` (spaces, dashes, dots and brackets are ignored);
    /// absent to confirm the number already on file (one an admin entered).
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecoveryCodes {
    /// Shown once; each works once. Empty when no new codes were issued.
    pub recovery_codes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Factors {
    pub authenticator: bool,
    pub email: Option<String>,
    pub email_confirmed: bool,
    pub pending_email: Option<String>,
    pub phone: Option<String>,
    pub phone_confirmed: bool,
    pub pending_phone: Option<String>,
    pub recovery_codes_left: u32,
    /// The user's passkeys.
    #[serde(default)]
    pub passkeys: Vec<Passkey>,
}

/// A passkey as its owner (and their admins) see it: never its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Passkey {
    pub id: String,
    pub name: String,
    /// The authenticator model (AAGUID); all zeros when the authenticator does not say.
    pub aaguid: String,
    /// Whether the passkey may be synchronised to other devices, and whether it is.
    pub backup_eligible: bool,
    pub backed_up: bool,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

/// The name of a passkey, given when it is registered or renamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasskeyName {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub name: String,
}

/// Most characters of a passkey's name.
pub const MAX_PASSKEY_NAME: usize = 64;

impl PasskeyName {
    /// The name trimmed, or why it cannot be one: the same check in the app and the server.
    pub fn parse(&self) -> Result<&str, &'static str> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > MAX_PASSKEY_NAME || name.chars().any(char::is_control) {
            return Err("a passkey's name has 1 to 64 characters, no control characters");
        }
        Ok(name)
    }
}

/// The first half of a WebAuthn ceremony: what to hand `navigator.credentials.create`
/// or `.get` (the `publicKey` options in their JSON form, binary fields base64url),
/// and the id that names the ceremony when it is finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasskeyChallenge {
    pub challenge_id: String,
    /// `{"publicKey": {...}}` for `create`, or `{"publicKey": {...}, "mediation": ...}`
    /// for `get`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub options: serde_json::Value,
}

/// The second half: the browser's answer (a `PublicKeyCredential` in its JSON form,
/// binary fields base64url) to the ceremony `challenge_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasskeyFinish {
    pub challenge_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub credential: serde_json::Value,
    /// At sign-in: remember this browser (where the policy allows).
    #[serde(default)]
    pub remember_browser: bool,
}

/// The signed-in user's own view of their two-factor state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountState {
    pub user: CurrentUser,
    pub policy: EffectivePolicyView,
    pub two_factor_enabled: bool,
    pub user_can_change: bool,
    pub factors: Factors,
    /// Until when sensitive changes are allowed without signing in again.
    pub reauthenticated_until: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReauthenticateRequest {
    pub password: String,
    /// Required when the user has a second factor.
    #[serde(default)]
    pub method: Option<SecondFactorMethod>,
    #[serde(default)]
    pub code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    /// At least 8 characters, at most 256 bytes.
    #[cfg_attr(feature = "openapi", schema(min_length = 8))]
    pub new_password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RememberedBrowser {
    pub id: String,
    pub created_at: String,
    pub last_used_at: String,
    pub expires_at: String,
    pub user_agent: Option<String>,
    /// Whether this is the browser making the request.
    pub current: bool,
}

/// A signed-in session, as its owner (and admins) see it listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    pub id: String,
    /// How the session was established, e.g. `pwd+otp`.
    pub methods: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
    /// The browser that signed in, as it named itself.
    pub user_agent: Option<String>,
    /// The client address it signed in from.
    pub client_ip: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleGrant {
    pub role: String,
    /// `None` for the host.
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CurrentUser {
    pub id: String,
    pub username: String,
    pub tenant_id: Option<String>,
    /// The tenant's short name, typed at sign-in.
    pub tenant_name: Option<String>,
    /// The tenant's display name, for headings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_display_name: Option<String>,
    pub roles: Vec<RoleGrant>,
    /// The password was set by an admin (or generated): the user must choose their own
    /// before doing anything else.
    #[serde(default)]
    pub must_change_password: bool,
}

/// Who is signed in, if anyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionState {
    pub user: Option<CurrentUser>,
}

/// Asks for a password reset link by email. The answer is the same whether or not the
/// account exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    /// The tenant's name; absent or empty for host users.
    #[serde(default)]
    pub tenant: Option<String>,
    pub username: String,
}

/// Sets a new password with the token of a reset link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirm {
    pub token: String,
    /// At least 8 characters, at most 256 bytes.
    pub new_password: String,
}

/// How an admin resets a user's password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PasswordResetMode {
    /// A single-use link for the admin to pass on; the current password keeps working
    /// until the link is used.
    Link,
    /// A generated password that works at once and must be changed at the next sign-in;
    /// the user's sessions end.
    TemporaryPassword,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AdminPasswordReset {
    pub mode: PasswordResetMode,
}

/// What an admin's reset produced, shown to the admin once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminPasswordResetResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// When the link stops working (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporary_password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    pub id: String,
    /// Unique, lowercase; what users type at sign-in.
    pub name: String,
    pub display_name: String,
    pub created_at: String,
    /// Since when the tenant is suspended (RFC 3339): its users cannot sign in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// 2 to 63 lowercase letters, digits and inner hyphens (`host` is reserved).
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$"))]
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantPage {
    pub items: Vec<Tenant>,
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub tenant_id: Option<String>,
    pub two_factor_enabled: bool,
    /// Whether the user has at least one confirmed second factor.
    pub has_factor: bool,
    pub roles: Vec<RoleGrant>,
    pub created_at: String,
    /// The second-factor lockout as it stands.
    pub lock: LockState,
    /// What the effective policy asks of the user.
    pub policy: PolicyBrief,
    /// The user's confirmed second factors.
    pub factors: Vec<FactorStrength>,
    /// Since when the user is deactivated (RFC 3339): they cannot sign in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivated_at: Option<String>,
}

/// A user's second-factor lockout, for admins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LockState {
    /// Whether second-factor sign-in is locked now.
    pub locked: bool,
    /// When a timed lock ends (RFC 3339); absent when not locked or locked until unlocked.
    pub locked_until: Option<String>,
    /// Locked after too many wrong codes in a row: only an admin's unlock lifts it.
    pub until_unlocked: bool,
    /// Wrong second factors since the current lock period began.
    pub failures: u32,
    /// Wrong second factors since the last success, across locks.
    pub consecutive_failures: u32,
    /// Locks since the last success (each lasts longer than the one before).
    pub lockouts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// 1 to 64 characters, no spaces or control characters; unique in its scope, ignoring case.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub username: String,
    /// At least 8 characters, at most 256 bytes.
    #[cfg_attr(feature = "openapi", schema(min_length = 8))]
    pub password: String,
    #[serde(default)]
    pub email: Option<String>,
    /// A mobile number in international form (`+14155550100`), stored unconfirmed: the
    /// user confirms it with a texted code before it becomes a second factor.
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserPage {
    pub items: Vec<User>,
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetTwoFactor {
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AssignRole {
    pub user_id: String,
}

/// A proposed change whose impact is previewed without saving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SettingsPreviewRequest {
    pub settings: ScopeSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FeaturePreviewRequest {
    pub feature: TenantFeature,
}

/// What a proposed change would do to the users of its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImpactPreview {
    pub users_in_scope: u64,
    /// Users who are not asked for a second factor now and would be.
    pub newly_required: u64,
    /// Of those, how many have no usable factor and would have to enrol.
    pub newly_required_without_factor: u64,
    /// Of those newly required, how many have no factor of the strength they would need
    /// (those without any factor included): they would have to enrol a stronger one.
    pub newly_required_without_strength: u64,
    /// Users who are asked now and would no longer be.
    pub no_longer_required: u64,
    /// Users who are asked now and would still be, whose factors meet the strength
    /// required now but not the one required after the change.
    pub newly_short_of_strength: u64,
    /// For an application's rule: what its sign-ins would ask of each user, before and
    /// after the change, from the authorization decision itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<ApplicationImpact>,
}

/// An application's sign-ins before and after a rule change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApplicationImpact {
    pub before: SignInAsks,
    pub after: SignInAsks,
}

/// What signing in to an application would ask of each user of its scope beyond their
/// usual sign-in (the one their own policy asks for, without the application, which
/// proves their strongest factor where that policy requires one). Every user is
/// counted in exactly one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignInAsks {
    /// Nothing beyond their usual sign-in.
    pub nothing_more: u64,
    /// A second factor they have, asked by the application (a step-up).
    pub second_factor: u64,
    /// A factor strong enough that they do not have yet: enrolment first.
    pub enroll_first: u64,
    /// Refused: the scope cannot meet the rule (`unmet_authentication_requirements`).
    pub refused: u64,
}

/// The effective policy of one user with its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EffectivePolicyView {
    pub user_id: String,
    pub behaviour: Behaviour,
    pub required: bool,
    pub decided_by: DecidedBy,
    /// When `decided_by` is `group`: the group whose rule made a second factor required.
    pub decided_by_group: Option<GroupRef>,
    /// The weakest factor strength accepted: the strongest of the scope's and of every
    /// rule of the user's groups.
    pub required_strength: Strength,
    pub user_can_change: bool,
    pub admin_can_override: bool,
    pub remember_browser_allowed: bool,
    pub remember_browser_days: u32,
    pub enrollment_grace_days: u32,
    pub allowed_providers: ProviderSet,
    pub scope: ScopeKind,
    pub tenant_feature: Option<Behaviour>,
    pub user_two_factor_enabled: bool,
    /// The user's groups that carry a rule, each with its rule: every rule consulted.
    pub group_rules: Vec<GroupRuleView>,
    /// One sentence for the user.
    pub summary: String,
    /// Which level decided and why, in order.
    pub trace: Vec<String>,
}

impl EffectivePolicyView {
    /// `rules` must be the rules `p` was resolved from.
    pub fn new(user_id: String, p: &EffectivePolicy, rules: Rules<'_>) -> Self {
        Self {
            user_id,
            behaviour: p.behaviour,
            required: p.required,
            decided_by: p.decided_by,
            decided_by_group: p.deciding_group(rules).map(|g| GroupRef { id: g.id.clone(), name: g.name.clone() }),
            required_strength: p.required_strength,
            user_can_change: p.user_can_change,
            admin_can_override: p.admin_can_override,
            remember_browser_allowed: p.remember_browser_allowed,
            remember_browser_days: p.remember_browser_days,
            enrollment_grace_days: p.enrollment_grace_days,
            allowed_providers: p.allowed_providers,
            scope: p.scope,
            tenant_feature: p.tenant_feature,
            user_two_factor_enabled: p.user_two_factor_enabled,
            group_rules: rules
                .groups
                .iter()
                .map(|g| GroupRuleView { id: g.id.clone(), name: g.name.clone(), rule: g.rule })
                .collect(),
            summary: p.summary(rules),
            trace: p.trace(rules),
        }
    }

    /// The same view addressed to the user it is about, for their own account page: the
    /// explanation says "you" and "your switch" where an admin reads "the user".
    pub fn for_self(user_id: String, p: &EffectivePolicy, rules: Rules<'_>) -> Self {
        let mut view = Self::new(user_id, p, rules);
        view.trace = view.trace.iter().map(|s| second_person(s)).collect();
        view
    }
}

/// A trace sentence about "the user" turned to the user themselves. The trace's
/// sentences are fixed phrases (group and application names are quoted and never
/// touched); a test over every resolution outcome checks that none is left behind.
pub fn second_person(sentence: &str) -> String {
    const PHRASES: [(&str, &str); 7] = [
        ("This is a host user, so", "You are a host user, so"),
        ("neither the user nor an admin", "neither you nor an admin"),
        ("The user's own switch", "Your own switch"),
        ("the user's own switch", "your own switch"),
        ("The user may change the switch; an admin may too.", "You may change the switch; an admin may too."),
        ("Only an admin may change the switch; users cannot.", "Only an admin may change your switch; you cannot."),
        ("The user", "You"),
    ];
    let mut out = sentence.to_owned();
    for (about, to) in PHRASES {
        // Outside quotes only: a group called "The user's group" keeps its name.
        out = replace_unquoted(&out, about, to);
    }
    out
}

fn replace_unquoted(s: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, part) in s.split('"').enumerate() {
        if i > 0 {
            out.push('"');
        }
        if i % 2 == 0 { out.push_str(&part.replace(from, to)) } else { out.push_str(part) }
    }
    out
}

/// A group named in a view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupRef {
    pub id: String,
    pub name: String,
}

/// A group of the user with the rule it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupRuleView {
    pub id: String,
    pub name: String,
    pub rule: Rule,
}

/// A scope's 2FA settings: the host's, or a tenant's with the ceiling that bounds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SettingsView {
    /// The scope's own choice, as stored. Under a tenant's forced or disabled ceiling the
    /// stored behaviour is kept and applies again when the ceiling is lifted.
    pub settings: ScopeSettings,
    /// The host's ceiling over a tenant; absent for the host's own settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<TenantFeature>,
    /// True when the ceiling is forced or disabled, so `settings.behaviour` cannot change.
    pub behaviour_fixed_by_host: bool,
    /// The behaviour users get: the ceiling's when it is forced or disabled, otherwise
    /// the stored one.
    pub behaviour_in_force: Behaviour,
}

impl SettingsView {
    pub fn new(settings: ScopeSettings, feature: Option<TenantFeature>) -> Self {
        let fixed = feature.filter(|f| f.behaviour != Behaviour::Optional);
        Self {
            behaviour_in_force: fixed.map_or(settings.behaviour, |f| f.behaviour),
            behaviour_fixed_by_host: fixed.is_some(),
            settings,
            feature,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    pub id: String,
    pub at: String,
    pub actor_user_id: Option<String>,
    /// The actor's user name, where the reader may see it (absent for a deleted user, and
    /// for a host admin seen by a tenant admin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    pub tenant_id: Option<String>,
    /// The tenant's name, for events of a tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_name: Option<String>,
    pub action: String,
    pub target: String,
    /// The name of the user or tenant the event is about, under the same rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    /// The client address of the request that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    pub next_before: Option<String>,
}

/// What delivers a channel's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SenderState {
    /// An SMTP server (email) or an SMS provider (texts) is configured.
    Configured,
    /// No real sender: the development sender writes each message, code included, to
    /// the server log (`dev_senders`). Never with real users.
    Development,
    /// No sender: codes cannot be sent, so this factor is neither offered at sign-in
    /// nor enrollable, and setting up an address or number for it is refused.
    NotConfigured,
}

/// One channel's messages in the current clock hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelUsage {
    pub sender: SenderState,
    /// Messages sent to the scope's users this hour.
    pub sent_this_hour: u64,
    /// The most the scope's users may be sent in one hour; 0 means no cap.
    pub cap_per_hour: u32,
    /// For host admins: messages sent to every scope together this hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_scopes_sent_this_hour: Option<u64>,
    /// For host admins: the cap over every scope together; 0 means no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_scopes_cap_per_hour: Option<u32>,
}

/// How many emails and texts a scope (the host or one tenant) sent in the current clock
/// hour, against its caps, and whether each channel can send at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageUsage {
    /// The start of the current clock hour (UTC), when the counts began.
    pub hour_start: String,
    /// When the counts start again from zero.
    pub hour_end: String,
    pub email: ChannelUsage,
    pub sms: ChannelUsage,
}

/// A group of users in one scope (the host or a tenant), with its optional 2FA rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Group {
    pub id: String,
    pub name: String,
    /// `None` for a group of host users.
    pub tenant_id: Option<String>,
    /// What the group asks of its members; absent when it asks nothing.
    pub rule: Option<Rule>,
    pub member_count: u64,
    pub created_at: String,
}

/// A new group, or the whole of an existing one (its name and its rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    /// 1 to 64 characters; unique in its scope, ignoring case.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub name: String,
    /// Absent or null: the group carries no rule.
    #[serde(default)]
    pub rule: Option<Rule>,
}

/// A proposed rule for a group, previewed without saving (`null`: no rule, which is
/// also what deleting the group does to its members).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GroupRulePreviewRequest {
    #[serde(default)]
    pub rule: Option<Rule>,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupMember {
    pub user_id: String,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddGroupMember {
    /// A user of the group's own scope.
    pub user_id: String,
}

/// A proposed membership change, previewed without saving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MembershipPreviewRequest {
    /// A user of the group's own scope.
    pub user_id: String,
    /// True to preview adding the user, false to preview removing them.
    pub member: bool,
}

/// One confirmed second factor of a user, with how much it proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FactorStrength {
    pub provider: Provider,
    pub strength: Strength,
}

/// What the policy asks of a user, in brief, for lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyBrief {
    pub required: bool,
    pub decided_by: DecidedBy,
    pub decided_by_group: Option<GroupRef>,
    pub required_strength: Strength,
    /// Whether the user has a factor the policy accepts (always true when not required).
    pub ready: bool,
}

/// One user of the adoption view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdoptionRow {
    pub user_id: String,
    pub username: String,
    pub policy: PolicyBrief,
    pub factors: Vec<FactorStrength>,
    /// When the user last signed in (RFC 3339).
    pub last_sign_in_at: Option<String>,
    /// How: `password`, `authenticator`, `email`, `sms`, `recovery_code`,
    /// `remembered_browser`, `enrolled_<factor>` or `postponed_enrollment`.
    pub last_sign_in_factor: Option<String>,
    pub lock: LockState,
}

/// The counts on top of the adoption view, over the whole scope (filters do not apply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdoptionTotals {
    pub users: u64,
    /// Users with any confirmed second factor.
    pub with_factor: u64,
    /// Users with an authenticator or a passkey (strength `app` or stronger).
    pub with_app_or_stronger: u64,
    /// Users asked for a second factor at their next sign-in.
    pub required: u64,
    /// Of those, users without a factor of the required strength: they will have to enrol.
    pub required_not_ready: u64,
    pub locked: u64,
}

/// Who in a scope is ready for two-factor sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Adoption {
    pub totals: AdoptionTotals,
    /// The users the filters let through, by name.
    pub users: Vec<AdoptionRow>,
}

/// What a user's next sign-in would ask for, worked out without signing in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhatIf {
    /// After the right password, from a browser that is not remembered.
    pub status: SignInStatus,
    /// For `requires_two_factor`: the factors that would be offered.
    pub providers: Vec<ProviderOffer>,
    pub recovery_code_available: bool,
    /// For `requires_enrollment`: what could be enrolled.
    pub enrollable: Vec<Provider>,
    /// For `requires_enrollment`: whether enrolment could be postponed, and until when.
    pub can_postpone: bool,
    pub grace_until: Option<String>,
    /// Whether a remembered browser could skip the second factor.
    pub remember_browser_allowed: bool,
    /// A locked user is refused second-factor sign-in until the lock ends.
    pub lock: LockState,
    /// The effective policy with its trace.
    pub policy: EffectivePolicyView,
    /// With `application_id`: what the application's authorization request would then
    /// ask of the session this sign-in makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<ApplicationAccess>,
}

/// What an authorization request to an application asks of a session, with the
/// explanation (`twofold_policy::authorization::decide`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApplicationAccess {
    pub verdict: crate::authorization::Verdict,
    /// The weakest second factor that will do, when one is demanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_strength: Option<crate::Strength>,
    pub trace: Vec<String>,
}

// ---------------------------------------------------------------- OpenID Connect

/// Whether an application can keep a secret (a server) or not (a browser or mobile
/// app, which must use PKCE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    Confidential,
    Public,
}

impl ClientType {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::Confidential => "confidential",
            ClientType::Public => "public",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ClientType::Confidential, ClientType::Public].into_iter().find(|t| t.as_str() == s)
    }
}

/// The JWS algorithm of an application's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TokenAlg {
    /// Supported by every OpenID Connect client.
    #[default]
    RS256,
    ES256,
}

impl TokenAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAlg::RS256 => "RS256",
            TokenAlg::ES256 => "ES256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [TokenAlg::RS256, TokenAlg::ES256].into_iter().find(|t| t.as_str() == s)
    }
}

/// An application to create or the new state of one (PUT replaces every field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApplicationInput {
    pub name: String,
    pub client_type: ClientType,
    /// Exact redirect URIs: `https://...`, or `http://` on a loopback address.
    pub redirect_uris: Vec<String>,
    /// Exact URIs an RP-initiated logout may return to.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Any of `openid profile email phone offline_access`; `openid` is required.
    pub allowed_scopes: Vec<String>,
    /// First-party applications get no consent screen.
    #[serde(default)]
    pub first_party: bool,
    /// The application's 2FA rule (DESIGN.md section 5): added to the scope's policy,
    /// never loosening it.
    #[serde(default)]
    pub require_two_factor: bool,
    #[serde(default)]
    pub min_strength: Option<crate::Strength>,
    /// How recent the second factor must be, in seconds.
    #[serde(default)]
    pub max_age_seconds: Option<u32>,
    #[serde(default)]
    pub token_alg: TokenAlg,
}

/// An OpenID Connect application (client) of one scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Application {
    /// Also the `client_id`.
    pub id: String,
    pub client_id: String,
    /// The tenant whose users it signs in; absent for a host application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The issuer to configure in the application.
    pub issuer: String,
    pub name: String,
    pub client_type: ClientType,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub allowed_scopes: Vec<String>,
    pub first_party: bool,
    pub require_two_factor: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_strength: Option<crate::Strength>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u32>,
    pub token_alg: TokenAlg,
    pub created_at: String,
    pub updated_at: String,
}

/// A new application, or one whose secret was replaced: the secret is shown here once
/// and stored only as a keyed hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApplicationWithSecret {
    pub application: Application,
    /// For confidential applications only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApplicationList {
    pub items: Vec<Application>,
}

/// What an authorization request waiting in the web app needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationStep {
    /// Sign in (again) as a user of the application's scope: no session, a session of
    /// another scope, `prompt=login`, or a sign-in older than `max_age`.
    SignIn,
    /// Prove a second factor of at least `min_strength` again (`POST /api/auth/step-up`),
    /// no password.
    StepUp,
    /// The rule needs a second factor the user does not have: enrol one on the account
    /// page, then resume.
    Enroll,
    /// Approve or refuse the scopes (`consent` in the resume request).
    Consent,
    /// Done: send the browser to `redirect_to`.
    Redirect,
}

/// The state of an authorization request, for the web app's sign-in screens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthorizationProgress {
    pub next: AuthorizationStep,
    pub application: String,
    /// The tenant name to sign in to (no tenant field to show); absent for the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_hint: Option<String>,
    /// For `step_up` and `enroll`: the weakest second factor that will do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_strength: Option<crate::Strength>,
    /// For `redirect`: where the browser goes (the application, with a code or an error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_to: Option<String>,
}

/// Resumes an authorization request after a sign-in, step-up or consent screen.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ResumeAuthorization {
    /// The user's answer on the consent screen; absent elsewhere.
    #[serde(default)]
    pub consent: Option<bool>,
}

/// An application the signed-in user has granted access to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountGrant {
    pub id: String,
    pub application_id: String,
    pub application: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub last_used_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountGrantList {
    pub items: Vec<AccountGrant>,
}
