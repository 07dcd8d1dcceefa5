//! Identifiers: lowercase slugs, each kind its own type so a site id cannot be passed where
//! a gateway id is meant. Every id parses with [`FromStr`](std::str::FromStr) (saying why a
//! text is not one), prints with `Display`, and is a plain string in JSON and TOML through
//! serde, validated on the way in.

/// Why a text is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("an id cannot be empty")]
    Empty,
    #[error("`{0}` is longer than 64 characters")]
    TooLong(String),
    #[error(
        "`{text}` has `{bad}`; ids use lowercase letters a–z, digits and single inner hyphens (like `{suggestion}`)"
    )]
    BadCharacter {
        text: String,
        bad: char,
        suggestion: String,
    },
    #[error(
        "`{0}` starts or ends with a hyphen, or has two in a row; ids use single inner hyphens"
    )]
    Hyphens(String),
}

/// Checks a slug: `a-z`, `0-9` and single inner `-`, 1–64 characters.
pub fn check_slug(text: &str) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty);
    }
    if text.len() > 64 {
        return Err(IdError::TooLong(text.to_owned()));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(IdError::BadCharacter {
            text: text.to_owned(),
            bad,
            suggestion: slugify(text),
        });
    }
    if text.starts_with('-') || text.ends_with('-') || text.contains("--") {
        return Err(IdError::Hyphens(text.to_owned()));
    }
    Ok(())
}

pub fn is_slug(text: &str) -> bool {
    check_slug(text).is_ok()
}

/// The nearest slug to `text`: lowercase, anything else turned into single hyphens.
pub fn slugify(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("my-id");
    }
    out.truncate(64);
    out
}

/// Declares string id newtypes that accept lowercase slugs only.
macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident,)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        // Shared, so that copying an id into every cue and transition costs no allocation.
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// Accepts a lowercase slug: `a-z`, `0-9` and inner `-`, at most 64 characters.
            pub fn new(text: &str) -> Result<Self, $crate::ids::IdError> {
                $crate::ids::check_slug(text)?;
                Ok($name(std::sync::Arc::from(text)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::ids::IdError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                $name::new(text)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::ids::IdError;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                $name::new(&text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$",
                    "maxLength": 64
                })
            }
        }
    )*};
}

ids! {
    SiteId,
    GatewayId,
    ControllerId,
    FixtureId,
    GroupId,
    ProfileId,
    /// What a group is on its site (`facade`, `railing`, …); scenes may target a role.
    Role,
    SceneId,
    CalendarId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_print_and_serialize_as_strings() {
        let id: SiteId = "gyebaek-bridge".parse().unwrap();
        assert_eq!(id.to_string(), "gyebaek-bridge");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"gyebaek-bridge\"");
        let back: SiteId = serde_json::from_str("\"gyebaek-bridge\"").unwrap();
        assert_eq!(back, id);
        let err = serde_json::from_str::<SiteId>("\"Gyebaek Bridge\"").unwrap_err();
        assert!(err.to_string().contains("like `gyebaek-bridge`"), "{err}");
    }

    #[test]
    fn every_reason_is_told() {
        assert_eq!(SiteId::new(""), Err(IdError::Empty));
        assert!(matches!(
            SiteId::new(&"a".repeat(65)),
            Err(IdError::TooLong(_))
        ));
        assert!(matches!(
            GatewayId::new("gw_1"),
            Err(IdError::BadCharacter { bad: '_', .. })
        ));
        assert!(matches!(GatewayId::new("-gw"), Err(IdError::Hyphens(_))));
        assert!(matches!(GatewayId::new("gw--1"), Err(IdError::Hyphens(_))));
        assert_eq!(slugify("City Hall (Main)"), "city-hall-main");
    }
}
