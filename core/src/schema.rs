//! JSON Schemas of the show files, generated from the serde types so they cannot drift.
//! Editors that understand `#:schema` (Taplo, Even Better TOML) complete and check keys with
//! them; the library keeps them in `scenes/schema/`.

use schemars::schema_for;

use crate::show::file::{CalendarFile, ProfileFile, SceneFile, ScheduleFile, SiteFile, ZonesFile};

/// Every schema as `(file name, pretty JSON)`.
pub fn all() -> Vec<(&'static str, String)> {
    let pretty = |schema: schemars::Schema| {
        let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
        text.push('\n');
        text
    };
    vec![
        ("site.schema.json", pretty(schema_for!(SiteFile))),
        ("profile.schema.json", pretty(schema_for!(ProfileFile))),
        ("zones.schema.json", pretty(schema_for!(ZonesFile))),
        ("scene.schema.json", pretty(schema_for!(SceneFile))),
        ("schedule.schema.json", pretty(schema_for!(ScheduleFile))),
        ("calendar.schema.json", pretty(schema_for!(CalendarFile))),
    ]
}
