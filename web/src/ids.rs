// The element ids and data-test values the browser tests select by. This file is pulled
// into the e2e crate with `include!`, which only accepts plain items: that is why it has
// no `//!` header (its module doc sits on `mod ids` in lib.rs) and imports nothing.
//
// Two kinds of names live here:
// - element ids (`#ID`): unique on the page, also used by `<label for>`;
// - data-test values (`[data-test=VALUE]`): repeated elements such as table rows and
//   their buttons. Rows also carry `data-id` (the entity id) and, for users and tenants,
//   `data-name`, so a test can pick one row: `[data-test=user-row][data-name=alice]`.
// Every error message container also carries `data-test="error"`.

// ---- Navigation (shown only to a signed-in user) ----
pub const NAV: &str = "nav";
pub const NAV_ACCOUNT: &str = "nav-account";
pub const NAV_SETTINGS: &str = "nav-settings";
pub const NAV_TENANTS: &str = "nav-tenants";
pub const NAV_USERS: &str = "nav-users";
pub const NAV_AUDIT: &str = "nav-audit";
pub const NAV_GROUPS: &str = "nav-groups";
pub const NAV_ADOPTION: &str = "nav-adoption";
pub const NAV_APPLICATIONS: &str = "nav-applications";
/// The signed-in user's name (and tenant) in the header.
pub const NAV_USER: &str = "nav-user";
pub const SIGN_OUT: &str = "sign-out";
/// data-test of every error message container, wherever it is.
pub const ERROR: &str = "error";
/// The "page not found" / "not allowed" notice.
pub const NOT_FOUND: &str = "not-found";
pub const FORBIDDEN: &str = "forbidden";

// ---- Sign in: password step ----
pub const SIGNIN_FORM: &str = "signin-form";
pub const SIGNIN_TENANT: &str = "signin-tenant";
pub const SIGNIN_USERNAME: &str = "signin-username";
pub const SIGNIN_PASSWORD: &str = "signin-password";
pub const SIGNIN_SUBMIT: &str = "signin-submit";
/// Errors of the password step (wrong credentials, rate limited).
pub const SIGNIN_ERROR: &str = "signin-error";
pub const SIGNIN_FORGOT: &str = "signin-forgot";
/// "Sign in with a passkey": a passwordless sign-in (the user name field also offers
/// passkeys in its autofill).
pub const SIGNIN_PASSKEY: &str = "signin-passkey";

// ---- Password reset and the forced change ----
pub const FORGOT_FORM: &str = "forgot-form";
pub const FORGOT_TENANT: &str = "forgot-tenant";
pub const FORGOT_USERNAME: &str = "forgot-username";
pub const FORGOT_SUBMIT: &str = "forgot-submit";
pub const FORGOT_SENT: &str = "forgot-sent";
pub const FORGOT_ERROR: &str = "forgot-error";
pub const RESET_FORM: &str = "reset-form";
pub const RESET_NEW: &str = "reset-new";
pub const RESET_REPEAT: &str = "reset-repeat";
pub const RESET_SUBMIT: &str = "reset-submit";
pub const RESET_ERROR: &str = "reset-error";
pub const RESET_DONE: &str = "reset-done";
pub const MUST_CHANGE_FORM: &str = "must-change-form";
pub const MUST_CHANGE_CURRENT: &str = "must-change-current";
pub const MUST_CHANGE_NEW: &str = "must-change-new";
pub const MUST_CHANGE_REPEAT: &str = "must-change-repeat";
pub const MUST_CHANGE_SUBMIT: &str = "must-change-submit";
pub const MUST_CHANGE_ERROR: &str = "must-change-error";
/// Locked out after repeated second-factor failures, with the time left.
pub const LOCKOUT_MESSAGE: &str = "lockout-message";
/// Back to the password step from any later step.
pub const SIGNIN_START_OVER: &str = "signin-start-over";

// ---- Sign in: second factor ----
pub const PROVIDER_AUTHENTICATOR: &str = "provider-authenticator";
pub const PROVIDER_EMAIL: &str = "provider-email";
pub const PROVIDER_SMS: &str = "provider-sms";
pub const PROVIDER_RECOVERY_CODE: &str = "provider-recovery_code";
pub const PROVIDER_PASSKEY: &str = "provider-passkey";
/// "Use your passkey": the second factor with a passkey.
pub const PASSKEY_VERIFY: &str = "passkey-verify";
pub const SEND_CODE: &str = "send-code";
/// "We sent a code to a***@example.com".
pub const CODE_SENT: &str = "code-sent";
pub const CODE_INPUT: &str = "code-input";
/// Shown only when the policy allows remembering the browser.
pub const REMEMBER_BROWSER: &str = "remember-browser";
pub const VERIFY_SUBMIT: &str = "verify-submit";
/// Wrong code (with attempts left), expired sign-in, send failures.
pub const VERIFY_ERROR: &str = "verify-error";

// ---- Sign in: enrolment when a second factor is required but missing ----
pub const ENROLL_CHOOSE_AUTHENTICATOR: &str = "enroll-choose-authenticator";
pub const ENROLL_CHOOSE_EMAIL: &str = "enroll-choose-email";
pub const ENROLL_CHOOSE_SMS: &str = "enroll-choose-sms";
pub const ENROLL_CHOOSE_PASSKEY: &str = "enroll-choose-passkey";
pub const ENROLL_PASSKEY_NAME: &str = "enroll-passkey-name";
pub const ENROLL_PASSKEY_CREATE: &str = "enroll-passkey-create";
/// The QR code image (`data:image/png;base64,...`).
pub const ENROLL_QR: &str = "enroll-qr";
/// The authenticator secret in text (base32).
pub const ENROLL_SECRET: &str = "enroll-secret";
pub const ENROLL_EMAIL_ADDRESS: &str = "enroll-email-address";
pub const ENROLL_PHONE_NUMBER: &str = "enroll-phone-number";
pub const ENROLL_SEND_CODE: &str = "enroll-send-code";
pub const ENROLL_CODE: &str = "enroll-code";
pub const ENROLL_CONFIRM: &str = "enroll-confirm";
pub const ENROLL_ERROR: &str = "enroll-error";
/// "You can postpone this until ..." while a grace period runs.
pub const ENROLL_GRACE: &str = "enroll-grace";
/// "Not now", shown only when enrolment may be postponed.
pub const ENROLL_POSTPONE: &str = "enroll-postpone";

// ---- An application's sign-in through Twofold (`/sign-in?request=<handle>`) ----
/// The card of the request: which application asks, and what happens next.
pub const AUTHORIZE_CARD: &str = "authorize-card";
/// "to continue to <application>" under the sign-in heading.
pub const AUTHORIZE_APPLICATION: &str = "authorize-application";
/// The request is unknown, expired or already used.
pub const AUTHORIZE_GONE: &str = "authorize-gone";
pub const AUTHORIZE_ERROR: &str = "authorize-error";
/// The consent screen: the scopes asked for, one `data-test` item each.
pub const CONSENT_SCOPES: &str = "consent-scopes";
pub const CONSENT_SCOPE: &str = "consent-scope";
pub const CONSENT_ALLOW: &str = "consent-allow";
pub const CONSENT_DENY: &str = "consent-deny";
/// The step-up screen: a second factor again, no password.
pub const STEPUP_FORM: &str = "stepup-form";
pub const STEPUP_METHOD: &str = "stepup-method";
pub const STEPUP_SEND_CODE: &str = "stepup-send-code";
pub const STEPUP_CODE: &str = "stepup-code";
pub const STEPUP_SUBMIT: &str = "stepup-submit";
pub const STEPUP_ERROR: &str = "stepup-error";
/// The enrolment screen: a stronger factor is needed; the account page sets it up.
pub const AUTHORIZE_ENROLL: &str = "authorize-enroll";
pub const AUTHORIZE_ENROLL_LINK: &str = "authorize-enroll-link";
/// The account page's list of applications the user let sign them in (grants).
pub const GRANTS_LIST: &str = "grants";
/// data-test of each grant (with data-name, the application's name).
pub const GRANT_ITEM: &str = "grant-item";
pub const GRANT_REVOKE: &str = "grant-revoke";
pub const GRANTS_ERROR: &str = "grants-error";
/// On the account page opened from that screen: back to the application's sign-in.
pub const ACCOUNT_CONTINUE_AUTHORIZATION: &str = "account-continue-authorization";

// ---- Applications (OpenID Connect clients) of the admin's scope ----
pub const APPS_LIST: &str = "applications";
pub const APP_CREATE_NAME: &str = "app-create-name";
pub const APP_CREATE_REDIRECT: &str = "app-create-redirect";
pub const APP_CREATE_PUBLIC: &str = "app-create-public";
pub const APP_CREATE_FIRST_PARTY: &str = "app-create-first-party";
/// data-test of each optional scope's checkbox (with data-scope).
pub const APP_CREATE_SCOPE: &str = "app-create-scope";
pub const APP_CREATE_SUBMIT: &str = "app-create-submit";
pub const APP_CREATE_ERROR: &str = "app-create-error";
/// The secret of a new or re-keyed confidential application, shown once.
pub const APP_SECRET_CARD: &str = "app-secret-card";
pub const APP_SECRET: &str = "app-secret";
/// data-test of each application's row (with data-name) and of its controls.
pub const APP_ROW: &str = "app-row";
pub const APP_RULE: &str = "app-rule";
pub const APP_REQUIRE: &str = "app-require";
pub const APP_STRENGTH: &str = "app-strength";
pub const APP_PREVIEW: &str = "app-preview";
/// The impact of the rule as proposed, in words.
pub const APP_IMPACT: &str = "app-impact";
pub const APP_SAVE: &str = "app-save";
pub const APP_EDIT: &str = "app-edit";
pub const APP_EDIT_NAME: &str = "app-edit-name";
pub const APP_EDIT_REDIRECTS: &str = "app-edit-redirects";
pub const APP_EDIT_LOGOUTS: &str = "app-edit-logouts";
pub const APP_EDIT_FIRST_PARTY: &str = "app-edit-first-party";
pub const APP_EDIT_SCOPE: &str = "app-edit-scope";
pub const APP_EDIT_MAX_AGE: &str = "app-edit-max-age";
pub const APP_ROTATE: &str = "app-rotate";
pub const APP_DELETE: &str = "app-delete";

// ---- Recovery codes, shown once (after enrolment and on the account page) ----
pub const RECOVERY_CODES: &str = "recovery-codes";
/// data-test of each code in the list.
pub const RECOVERY_CODE: &str = "recovery-code";
pub const RECOVERY_CODES_DOWNLOAD: &str = "recovery-codes-download";
/// "I have saved them": closes the list for good.
pub const RECOVERY_CODES_DONE: &str = "recovery-codes-done";

// ---- Account ----
pub const POLICY_SUMMARY: &str = "policy-summary";
pub const POLICY_TRACE: &str = "policy-trace";
/// The user's own 2FA switch (a checkbox with role=switch), present only when the user
/// may change it.
pub const ACCOUNT_2FA_SWITCH: &str = "account-2fa-switch";
pub const ACCOUNT_2FA_ERROR: &str = "account-2fa-error";
pub const ACCOUNT_AUTH_STATUS: &str = "account-authenticator-status";
pub const ACCOUNT_AUTH_SETUP: &str = "account-authenticator-setup";
pub const ACCOUNT_AUTH_QR: &str = "account-authenticator-qr";
pub const ACCOUNT_AUTH_SECRET: &str = "account-authenticator-secret";
pub const ACCOUNT_AUTH_CODE: &str = "account-authenticator-code";
pub const ACCOUNT_AUTH_CONFIRM: &str = "account-authenticator-confirm";
pub const ACCOUNT_AUTH_CANCEL: &str = "account-authenticator-cancel";
pub const ACCOUNT_AUTH_REMOVE: &str = "account-authenticator-remove";
pub const ACCOUNT_AUTH_ERROR: &str = "account-authenticator-error";
// ---- Account: passkeys ----
pub const ACCOUNT_PASSKEYS: &str = "account-passkeys";
pub const ACCOUNT_PASSKEY_NAME: &str = "account-passkey-name";
pub const ACCOUNT_PASSKEY_ADD: &str = "account-passkey-add";
pub const ACCOUNT_PASSKEY_ERROR: &str = "account-passkey-error";
/// data-test of each passkey row (with `data-id` and `data-name`), and of its button.
pub const PASSKEY_ROW: &str = "passkey-row";
pub const PASSKEY_REMOVE: &str = "passkey-remove";
/// data-test of a row's "Rename", of the name field it opens, and of its "Save".
pub const PASSKEY_RENAME: &str = "passkey-rename";
pub const PASSKEY_RENAME_NAME: &str = "passkey-rename-name";
pub const PASSKEY_RENAME_SAVE: &str = "passkey-rename-save";
pub const ACCOUNT_RECOVERY_LEFT: &str = "account-recovery-left";
pub const ACCOUNT_RECOVERY_REGENERATE: &str = "account-recovery-regenerate";
pub const ACCOUNT_RECOVERY_ERROR: &str = "account-recovery-error";
pub const ACCOUNT_EMAIL_STATUS: &str = "account-email-status";
pub const ACCOUNT_EMAIL_INPUT: &str = "account-email";
pub const ACCOUNT_EMAIL_SEND: &str = "account-email-send";
pub const ACCOUNT_EMAIL_CODE: &str = "account-email-code";
pub const ACCOUNT_EMAIL_CONFIRM: &str = "account-email-confirm";
pub const ACCOUNT_EMAIL_ERROR: &str = "account-email-error";
pub const ACCOUNT_PHONE_STATUS: &str = "account-phone-status";
pub const ACCOUNT_PHONE_INPUT: &str = "account-phone";
pub const ACCOUNT_PHONE_SEND: &str = "account-phone-send";
pub const ACCOUNT_PHONE_CODE: &str = "account-phone-code";
pub const ACCOUNT_PHONE_CONFIRM: &str = "account-phone-confirm";
pub const ACCOUNT_PHONE_REMOVE: &str = "account-phone-remove";
pub const ACCOUNT_EMAIL_REMOVE: &str = "account-email-remove";
/// "Send a code to confirm this address/number" for one on file but not confirmed.
pub const ACCOUNT_EMAIL_SEND_ON_FILE: &str = "account-email-send-on-file";
pub const ACCOUNT_PHONE_SEND_ON_FILE: &str = "account-phone-send-on-file";
pub const ACCOUNT_PHONE_ERROR: &str = "account-phone-error";
pub const ACCOUNT_PASSWORD_CURRENT: &str = "account-password-current";
pub const ACCOUNT_PASSWORD_NEW: &str = "account-password-new";
pub const ACCOUNT_PASSWORD_SAVE: &str = "account-password-save";
pub const ACCOUNT_PASSWORD_ERROR: &str = "account-password-error";
/// Success notices on the account page ("Saved.").
pub const ACCOUNT_NOTICE: &str = "account-notice";
pub const BROWSERS_LIST: &str = "browsers";
/// data-test of each remembered browser (with `data-id` and `data-current`).
pub const BROWSER_ITEM: &str = "browser-item";
/// data-test of the "Forget" button inside each browser item.
pub const BROWSER_REVOKE: &str = "browser-revoke";
pub const BROWSERS_REVOKE_ALL: &str = "browsers-revoke-all";
pub const BROWSERS_ERROR: &str = "browsers-error";
/// data-test of the confirm and cancel buttons a destructive action shows first.
pub const CONFIRM_YES: &str = "confirm-yes";
pub const CONFIRM_NO: &str = "confirm-no";
pub const SESSIONS_LIST: &str = "sessions";
/// data-test of each session (`data-id`, `data-current`).
pub const SESSION_ITEM: &str = "session-item";
/// data-test of each session's "Sign out" button.
pub const SESSION_END: &str = "session-end";
pub const SESSIONS_END_OTHERS: &str = "sessions-end-others";
pub const SESSIONS_ERROR: &str = "sessions-error";

// ---- Reauthentication dialog (opens when an action answers reauthentication_required) ----
pub const REAUTH_DIALOG: &str = "reauth-dialog";
pub const REAUTH_PASSWORD: &str = "reauth-password";
/// A `<select>` of the second factors the user has (values: authenticator, email, sms,
/// recovery_code).
pub const REAUTH_METHOD: &str = "reauth-method";
pub const REAUTH_SEND_CODE: &str = "reauth-send-code";
pub const REAUTH_CODE: &str = "reauth-code";
pub const REAUTH_SUBMIT: &str = "reauth-submit";
pub const REAUTH_CANCEL: &str = "reauth-cancel";
pub const REAUTH_ERROR: &str = "reauth-error";

// ---- Settings (host settings for a host admin, the tenant's for a tenant admin) ----
pub const SETTINGS_BEHAVIOUR_OPTIONAL: &str = "settings-behaviour-optional";
pub const SETTINGS_BEHAVIOUR_DISABLED: &str = "settings-behaviour-disabled";
pub const SETTINGS_BEHAVIOUR_FORCED: &str = "settings-behaviour-forced";
/// "Fixed by the host: ..." when the tenant's ceiling is forced or disabled.
pub const SETTINGS_BEHAVIOUR_FIXED: &str = "settings-behaviour-fixed";
/// Under a fixed ceiling: the tenant's stored behaviour, which applies when it is lifted.
pub const SETTINGS_STORED_CHOICE: &str = "settings-stored-choice";
/// The impact preview and Save, pinned to the bottom of the window.
pub const SETTINGS_FOOTER: &str = "settings-footer";
/// Present only while the behaviour is optional.
pub const SETTINGS_USERS_CAN_CHANGE: &str = "settings-users-can-change";
pub const SETTINGS_REMEMBER_BROWSER: &str = "settings-remember-browser";
pub const SETTINGS_REMEMBER_DAYS: &str = "settings-remember-days";
pub const SETTINGS_GRACE_DAYS: &str = "settings-grace-days";
pub const SETTINGS_PROVIDER_AUTHENTICATOR: &str = "settings-provider-authenticator";
pub const SETTINGS_PROVIDER_EMAIL: &str = "settings-provider-email";
pub const SETTINGS_PROVIDER_SMS: &str = "settings-provider-sms";
pub const SETTINGS_PROVIDER_PASSKEY: &str = "settings-provider-passkey";
pub const SETTINGS_MIN_STRENGTH: &str = "settings-min-strength";
pub const SETTINGS_PASSKEY_AAGUIDS: &str = "settings-passkey-aaguids";
/// Beside the email and SMS providers: why their codes cannot be sent (no sender
/// configured) or are only logged (the development sender).
pub const SETTINGS_EMAIL_SENDER_NOTE: &str = "settings-email-sender-note";
pub const SETTINGS_SMS_SENDER_NOTE: &str = "settings-sms-sender-note";
/// The country calling codes texts may go to, e.g. "1, 44"; empty for every country.
pub const SETTINGS_SMS_COUNTRIES: &str = "settings-sms-countries";
/// Emails and texts sent this hour against the caps.
pub const SETTINGS_MESSAGE_USAGE: &str = "settings-message-usage";
/// The live impact sentence ("This will require 2FA for 1,204 users; ...").
pub const SETTINGS_PREVIEW: &str = "settings-preview";
pub const SETTINGS_SAVE: &str = "settings-save";
pub const SETTINGS_SAVED: &str = "settings-saved";
/// Errors of the save itself; field errors sit beside their field with data-test=error.
pub const SETTINGS_ERROR: &str = "settings-error";

// ---- Tenants (host admin) ----
pub const TENANTS_SEARCH: &str = "tenants-search";
pub const TENANTS_LIST: &str = "tenants";
/// data-test of each tenant row (`data-id`, `data-name`).
pub const TENANT_ROW: &str = "tenant-row";
/// data-test of the "Features" button in each row.
pub const TENANT_FEATURES: &str = "tenant-features";
/// data-test of the "Users" link in each row.
pub const TENANT_USERS: &str = "tenant-users";
/// data-test of the "Audit" link in each row.
pub const TENANT_AUDIT: &str = "tenant-audit";
/// data-test of each tenant row's lifecycle actions and its "Suspended" tag.
pub const TENANT_SUSPEND: &str = "tenant-suspend";
pub const TENANT_RESUME: &str = "tenant-resume";
pub const TENANT_DELETE: &str = "tenant-delete";
pub const TENANT_DELETE_CONFIRM: &str = "tenant-delete-confirm";
pub const TENANT_SUSPENDED: &str = "tenant-suspended";
pub const TENANTS_PREV: &str = "tenants-prev";
pub const TENANTS_NEXT: &str = "tenants-next";
pub const TENANTS_PAGE_INFO: &str = "tenants-page-info";
pub const TENANT_CREATE_NAME: &str = "tenant-create-name";
pub const TENANT_CREATE_DISPLAY_NAME: &str = "tenant-create-display-name";
pub const TENANT_CREATE_SUBMIT: &str = "tenant-create-submit";
pub const TENANT_CREATE_ERROR: &str = "tenant-create-error";
pub const FEATURES_DIALOG: &str = "features-dialog";
pub const FEATURES_CEILING_OPTIONAL: &str = "features-ceiling-optional";
pub const FEATURES_CEILING_DISABLED: &str = "features-ceiling-disabled";
pub const FEATURES_CEILING_FORCED: &str = "features-ceiling-forced";
pub const FEATURES_PREVIEW: &str = "features-preview";
pub const FEATURES_SAVE: &str = "features-save";
pub const FEATURES_CANCEL: &str = "features-cancel";
pub const FEATURES_ERROR: &str = "features-error";

// ---- Users (host users for a host admin, a tenant's users for its admins) ----
pub const USERS_SEARCH: &str = "users-search";
pub const USERS_LIST: &str = "users";
pub const USERS_PREV: &str = "users-prev";
pub const USERS_NEXT: &str = "users-next";
pub const USERS_PAGE_INFO: &str = "users-page-info";
/// data-test of each user row (`data-id`, `data-name` = username).
pub const USER_ROW: &str = "user-row";
/// data-test of the button that opens a user's policy and actions.
pub const USER_DETAILS: &str = "user-details";
/// data-test of the panel it opens (`data-id`).
pub const USER_PANEL: &str = "user-panel";
pub const USER_POLICY_SUMMARY: &str = "user-policy-summary";
pub const USER_POLICY_TRACE: &str = "user-policy-trace";
/// data-test of the admin's per-user 2FA switch, present only when an admin may set it.
pub const USER_2FA_SWITCH: &str = "user-2fa-switch";
pub const USER_UNLOCK: &str = "user-unlock";
pub const USER_RESET_FACTORS: &str = "user-reset-factors";
/// data-test of the "Yes, reset" button of the inline confirmation.
pub const USER_RESET_CONFIRM: &str = "user-reset-confirm";
pub const USER_END_SESSIONS: &str = "user-end-sessions";
pub const USER_MAKE_ADMIN: &str = "user-make-admin";
/// data-test of "Remove tenant admin", shown instead while the user is one.
pub const USER_REMOVE_ADMIN: &str = "user-remove-admin";
/// data-test of the notice after a successful user action.
pub const USER_NOTICE: &str = "user-notice";
/// data-test of the lifecycle actions in a user's panel, and of the row's tag.
pub const USER_DEACTIVATE: &str = "user-deactivate";
pub const USER_REACTIVATE: &str = "user-reactivate";
pub const USER_DELETE: &str = "user-delete";
pub const USER_DELETE_CONFIRM: &str = "user-delete-confirm";
/// data-test of the password reset actions in a user's panel and of their one-time result.
pub const USER_RESET_PASSWORD: &str = "user-reset-password";
pub const USER_RESET_LINK: &str = "user-reset-link";
pub const USER_RESET_TEMPORARY: &str = "user-reset-temporary";
pub const USER_RESET_RESULT: &str = "user-reset-result";
pub const USER_DEACTIVATED: &str = "user-deactivated";
pub const USER_CREATE_USERNAME: &str = "user-create-username";
pub const USER_CREATE_PASSWORD: &str = "user-create-password";
pub const USER_CREATE_EMAIL: &str = "user-create-email";
pub const USER_CREATE_PHONE: &str = "user-create-phone";
pub const USER_CREATE_SUBMIT: &str = "user-create-submit";
pub const USER_CREATE_ERROR: &str = "user-create-error";

// ---- Audit ----
pub const AUDIT_LIST: &str = "audit";
/// data-test of each event (`data-id`, `data-action`).
pub const AUDIT_ITEM: &str = "audit-item";
pub const AUDIT_OLDER: &str = "audit-older";
pub const AUDIT_ERROR: &str = "audit-error";

// ---- Users: effective policy, factors and lock in the list; what-if in the panel ----
/// The cell saying whether 2FA is required and what decided it.
pub const USER_REQUIRED: &str = "user-required";
pub const USER_FACTORS: &str = "user-factors";
/// Shown beside the name of a locked user only.
pub const USER_LOCKED: &str = "user-locked";
pub const USER_WHAT_IF: &str = "user-what-if";
pub const USER_WHAT_IF_RESULT: &str = "user-what-if-result";

// ---- Groups ----
pub const GROUP_CREATE_NAME: &str = "group-create-name";
pub const GROUP_CREATE_REQUIRE: &str = "group-create-require";
pub const GROUP_CREATE_STRENGTH: &str = "group-create-strength";
pub const GROUP_CREATE_SUBMIT: &str = "group-create-submit";
pub const GROUPS_LIST: &str = "groups-list";
/// data-test of a group's row (with data-id and data-name), its button and its panel.
pub const GROUP_ROW: &str = "group-row";
pub const GROUP_OPEN: &str = "group-open";
pub const GROUP_PANEL: &str = "group-panel";
/// data-test values inside a group's panel.
pub const GROUP_NAME: &str = "group-name";
pub const GROUP_REQUIRE: &str = "group-require";
pub const GROUP_STRENGTH: &str = "group-strength";
pub const GROUP_PREVIEW: &str = "group-preview";
pub const GROUP_SAVE: &str = "group-save";
pub const GROUP_DELETE: &str = "group-delete";
pub const GROUP_MEMBER_SELECT: &str = "group-member-select";
pub const GROUP_MEMBER_ADD: &str = "group-member-add";
pub const GROUP_MEMBER: &str = "group-member";
pub const GROUP_MEMBER_REMOVE: &str = "group-member-remove";
/// The impact of a proposed rule or membership, in words.
pub const GROUP_IMPACT: &str = "group-impact";
pub const GROUP_NOTICE: &str = "group-notice";

// ---- Adoption ----
pub const ADOPTION_TOTALS: &str = "adoption-totals";
pub const ADOPTION_FILTER_REQUIRED: &str = "adoption-filter-required";
pub const ADOPTION_FILTER_READY: &str = "adoption-filter-ready";
pub const ADOPTION_FILTER_LOCKED: &str = "adoption-filter-locked";
pub const ADOPTION_SEARCH: &str = "adoption-search";
pub const ADOPTION_TABLE: &str = "adoption-table";
/// data-test of a user's row (with data-name).
pub const ADOPTION_ROW: &str = "adoption-row";
pub const ADOPTION_CSV: &str = "adoption-csv";
pub const AUDIT_FILTER_ACTION: &str = "audit-filter-action";
pub const AUDIT_FILTER_FROM: &str = "audit-filter-from";
pub const AUDIT_FILTER_TO: &str = "audit-filter-to";
pub const AUDIT_FILTER_ADDRESS: &str = "audit-filter-address";
pub const AUDIT_FILTER_APPLY: &str = "audit-filter-apply";
pub const AUDIT_FILTER_CLEAR: &str = "audit-filter-clear";
/// data-test of the chip naming an actor or user filter set by clicking a name.
pub const AUDIT_FILTER_CHIP: &str = "audit-filter-chip";
/// data-test of the per-event links that filter by its actor or its user.
pub const AUDIT_BY_ACTOR: &str = "audit-by-actor";
pub const AUDIT_ABOUT_USER: &str = "audit-about-user";
pub const AUDIT_EXPORT_CSV: &str = "audit-export-csv";
pub const AUDIT_EXPORT_JSONL: &str = "audit-export-jsonl";
