//! Parsing of the names people type: tenant names, user names, passwords and email
//! addresses. The server and the web app call the same functions, so a form can say
//! exactly what the API would refuse.

/// Why a typed value is refused; the message is fit to show beside the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidName {
    pub field: &'static str,
    pub message: &'static str,
}

fn invalid(field: &'static str, message: &'static str) -> InvalidName {
    InvalidName { field, message }
}

/// A tenant's name: what its users type at sign-in, so short, lowercase and URL-safe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        let s = s.trim().to_lowercase();
        if !(2..=63).contains(&s.len()) {
            return Err(invalid("name", "a tenant name has 2 to 63 characters"));
        }
        if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || s.starts_with('-')
            || s.ends_with('-')
        {
            return Err(invalid("name", "a tenant name uses letters, digits and inner hyphens only"));
        }
        if s == "host" {
            return Err(invalid("name", "\"host\" is reserved"));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user name as shown, and its key for case-insensitive uniqueness and look-up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username {
    display: String,
    key: String,
}

impl Username {
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        let display = s.trim().to_owned();
        let chars = display.chars().count();
        if !(1..=64).contains(&chars) {
            return Err(invalid("username", "a user name has 1 to 64 characters"));
        }
        if display.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid("username", "a user name cannot contain spaces or control characters"));
        }
        let key = display.to_lowercase();
        Ok(Self { display, key })
    }

    pub fn as_str(&self) -> &str {
        &self.display
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

/// A group's name as shown, and its key for case-insensitive uniqueness in its scope.
/// Spaces are allowed ("Finance team"); control characters are not, since names land in
/// CSV exports and traces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupName {
    display: String,
    key: String,
}

impl GroupName {
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        let display = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if !(1..=64).contains(&display.chars().count()) {
            return Err(invalid("name", "a group name has 1 to 64 characters"));
        }
        if display.chars().any(char::is_control) {
            return Err(invalid("name", "a group name cannot contain control characters"));
        }
        let key = display.to_lowercase();
        Ok(Self { display, key })
    }

    pub fn as_str(&self) -> &str {
        &self.display
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Checks a new password against NIST SP 800-63B's floor (at least 8 characters) and a
/// ceiling that keeps hashing cost bounded.
pub fn check_new_password(p: &str) -> Result<(), InvalidName> {
    let n = p.chars().count();
    if n < 8 {
        return Err(invalid("password", "a password has at least 8 characters"));
    }
    if p.len() > 256 {
        return Err(invalid("password", "a password has at most 256 bytes"));
    }
    Ok(())
}

/// An email address: deliberately lenient (one `@`, something on both sides, no spaces),
/// because only a confirmation mail proves an address works.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        let s = s.trim();
        let bad = || invalid("email", "this is not an email address");
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        if local.is_empty() || domain.is_empty() || domain.contains('@') || !domain.contains('.') {
            return Err(bad());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tenant_names() {
        assert_eq!(TenantName::parse(" Acme-1 ").unwrap().as_str(), "acme-1");
        for bad in ["a", "-acme", "acme-", "ac me", "acmé", "host", ""] {
            assert!(TenantName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usernames_are_keyed_case_insensitively() {
        let u = Username::parse("Alice").unwrap();
        assert_eq!((u.as_str(), u.key()), ("Alice", "alice"));
        assert!(Username::parse("a b").is_err());
        assert!(Username::parse("").is_err());
        assert!(Username::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn passwords_and_emails() {
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("long enough").is_ok());
        assert!(check_new_password(&"x".repeat(257)).is_err());
        assert!(EmailAddress::parse("a@example.com").is_ok());
        for bad in ["a", "@x.com", "a@", "a@b", "a b@x.com", "a@b@c.com"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
