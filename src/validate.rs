//! Parse, don't validate: request text becomes one of these types or a 400 naming the field.

use crate::error::{ApiError, ApiResult};

pub const NAME_MAX: usize = 255;
pub const DESCRIPTION_MAX: usize = 10_000;
pub const SYSTEM_PROMPT_MAX: usize = 100_000;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

/// 3..=50 characters of `[A-Za-z0-9_.-]`, surrounding whitespace trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> ApiResult<Username> {
        let s = raw.trim();
        let len = s.chars().count();
        if !(3..=50).contains(&len) {
            return Err(ApiError::bad_request("username must be 3 to 50 characters"));
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return Err(ApiError::bad_request("username may contain only letters, digits, '_', '.' and '-'"));
        }
        Ok(Username(s.to_string()))
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A plausible e-mail address (`local@domain.tld`), trimmed, at most 255 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> ApiResult<Email> {
        let s = raw.trim();
        let invalid = || ApiError::bad_request("email is not a valid e-mail address");
        if s.is_empty() || s.chars().count() > NAME_MAX || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(invalid)?;
        let labels_ok = domain.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        if local.is_empty() || local.contains('@') || !domain.contains('.') || !labels_ok {
            return Err(invalid());
        }
        Ok(Email(s.to_string()))
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// 8..=128 characters, taken as typed (not trimmed).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Password {
    pub fn parse(field: &str, raw: &str) -> ApiResult<Password> {
        let len = raw.chars().count();
        if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&len) {
            return Err(ApiError::bad_request(format!("{field} must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")));
        }
        Ok(Password(raw.to_string()))
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A required name: trimmed, 1..=255 characters.
pub fn name(field: &str, raw: &str) -> ApiResult<String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(ApiError::bad_request(format!("{field} must not be empty")));
    }
    text(field, s, NAME_MAX)
}

/// Optional text: trimmed, at most `max` characters; empty after trimming stays empty.
pub fn optional_text<S: Into<String>>(field: &str, raw: Option<S>, max: usize) -> ApiResult<Option<String>> {
    raw.map(|s| text(field, s.into().trim(), max)).transpose()
}

/// At most `max` characters.
pub fn text(field: &str, s: &str, max: usize) -> ApiResult<String> {
    if s.chars().count() > max {
        return Err(ApiError::bad_request(format!("{field} must be at most {max} characters")));
    }
    Ok(s.to_string())
}

/// A UUID in a request body; anything else cannot resolve, so it is a 400 naming the field.
pub fn body_id(field: &str, raw: &str) -> ApiResult<String> {
    uuid::Uuid::parse_str(raw.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::bad_request(format!("{field} does not name an existing resource")))
}

/// A UUID in a path; anything else is simply not found.
pub fn path_id(raw: &str, what: &str) -> ApiResult<String> {
    uuid::Uuid::parse_str(raw)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::not_found(format!("{what} not found")))
}

/// An id given as a query filter, in the stored spelling. A blank one is no filter; a malformed
/// one is kept as it is, so it simply matches nothing.
pub fn filter_id(raw: Option<String>) -> Option<String> {
    let raw = raw?.trim().to_string();
    if raw.is_empty() {
        return None;
    }
    Some(uuid::Uuid::parse_str(&raw).map(|u| u.hyphenated().to_string()).unwrap_or(raw))
}

/// A field of a PUT that may be cleared: absent → no change (`None`), `null` → clear
/// (`Some(None)`), a value → set (`Some(Some(..))`) once `check` accepts it.
pub fn clearable(
    field: poem_openapi::types::MaybeUndefined<Text>,
    check: impl FnOnce(String) -> ApiResult<String>,
) -> ApiResult<Option<Option<String>>> {
    use poem_openapi::types::MaybeUndefined;
    match field {
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Null => Ok(Some(None)),
        MaybeUndefined::Value(v) => Ok(Some(Some(check(v.0)?))),
    }
}

/// A JSON value that must be an object (settings, context, metadata, knowledge_base).
pub fn json_object(field: &str, value: Option<serde_json::Value>) -> ApiResult<String> {
    match value {
        None | Some(serde_json::Value::Null) => Ok("{}".to_string()),
        Some(v @ serde_json::Value::Object(_)) => Ok(v.to_string()),
        Some(_) => Err(ApiError::bad_request(format!("{field} must be a JSON object"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(Username::parse("  alice.b-c_1 ").unwrap().into_inner(), "alice.b-c_1");
        for bad in ["ab", "a b c", "<script>", &"x".repeat(51), "émile"] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert!(Email::parse(" a@b.co ").is_ok());
        for bad in ["", "a", "a@b", "@b.co", "a@@b.co", "a b@c.de", "a@b..co", "a@-b.co"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_and_names() {
        assert!(Password::parse("password", "1234567").is_err());
        assert!(Password::parse("password", &"x".repeat(129)).is_err());
        assert!(Password::parse("password", "12345678").is_ok());
        assert_eq!(name("name", "  x ").unwrap(), "x");
        assert!(name("name", "   ").is_err());
        assert!(name("name", &"x".repeat(256)).is_err());
        assert_eq!(format!("{:?}", Password::parse("p", "secret-pass").unwrap()), "Password(***)");
    }

    #[test]
    fn ids() {
        assert!(path_id("nope", "User").unwrap_err().status == 404);
        assert!(body_id("role_id", "nope").unwrap_err().status == 400);
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(path_id(&id.to_uppercase(), "User").unwrap(), id);
    }

    #[test]
    fn objects() {
        assert_eq!(json_object("settings", None).unwrap(), "{}");
        assert!(json_object("settings", Some(serde_json::json!([1]))).is_err());
        assert_eq!(json_object("settings", Some(serde_json::json!({"a": 1}))).unwrap(), r#"{"a":1}"#);
    }
}

/// A JSON string, strictly. poem-openapi's `String` also takes numbers and booleans (`5` becomes
/// `"5"`); request fields use `Text` so a wrong type is a 400 as SPEC §2 wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Text(pub String);

impl std::ops::Deref for Text {
    type Target = String;
    fn deref(&self) -> &String {
        &self.0
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.0
    }
}

impl poem_openapi::types::Type for Text {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> std::borrow::Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        poem_openapi::registry::MetaSchemaRef::Inline(Box::new(poem_openapi::registry::MetaSchema::new("string")))
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl poem_openapi::types::ParseFromJSON for Text {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        match value.unwrap_or_default() {
            serde_json::Value::String(s) => Ok(Text(s)),
            other => Err(poem_openapi::types::ParseError::expected_type(other)),
        }
    }
}

impl poem_openapi::types::ToJSON for Text {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
