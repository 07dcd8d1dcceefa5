//! Show files: reading a show library from text, in memory.
//!
//! The edges read files and hand them over as [`SourceFile`]s; [`check`] parses each one,
//! reports every unknown key, lowers the serde types of [`file`] into the domain model of
//! [`crate::model`] and runs the cross-checks (references, addressing, limits). It returns the
//! [`ShowLibrary`] it could build (the type lives here, beside [`check`] that makes it) and
//! every diagnostic, each located at its file, line and column.
//!
//! A library is laid out as:
//! - `zones.toml`: the lighting-environment zone table;
//! - `profiles/<profile-id>.toml`: Modbus controller profiles;
//! - `sites/<site-id>/site.toml`: a site with its gateways, controllers, fixtures, groups.

pub(crate) mod file;
mod library;
mod locate;
mod lower;
mod scene;
mod schedule;

use serde::de::DeserializeOwned;

use crate::diag::{Code, Diagnostic, FieldPath, LineIndex, Location, Severity};
use crate::model::{ProfileId, SiteId};
use crate::scene::SceneId;
pub use library::ShowLibrary;
use locate::SourceMap;

/// One file of a show library: its path relative to the library root, with `/` separators.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

/// A checked library: what could be built, and every problem found.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub library: ShowLibrary,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn error_count(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warning_count(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }
}

/// Checks one Modbus controller profile on its own, as a third-party profile is checked
/// before it joins a library. Its id is the file's name without `.toml` (so the file must
/// be named like `acme-dim8.toml`); diagnostics point into `file.path` as given.
pub fn check_profile(file: &SourceFile) -> (Option<crate::model::Profile>, Vec<Diagnostic>) {
    let name = file.path.rsplit(['/', '\\']).next().unwrap_or(&file.path);
    let name = name.strip_suffix(".toml").unwrap_or(name);
    // A badly named file is still checked inside, under a stand-in id.
    let bad_name = ProfileId::new(name).is_err();
    let inside = SourceFile {
        path: format!(
            "profiles/{}.toml",
            if bad_name { "unnamed-profile" } else { name }
        ),
        text: file.text.clone(),
    };
    let checked = check(std::slice::from_ref(&inside));
    let diagnostics = checked
        .diagnostics
        .into_iter()
        // Only the profile's own problems: a lone profile is not a library missing its zones.
        .filter(|d| d.location.file == inside.path)
        .map(|mut d| {
            d.location.file.clone_from(&file.path);
            d
        })
        .collect();
    if bad_name {
        let mut named = vec![Diagnostic {
            severity: Severity::Error,
            code: Code::BadId,
            path: FieldPath::root(),
            location: Location {
                file: file.path.clone(),
                span: None,
                line_col: None,
            },
            message: format!(
                "{} (the file name is the profile's id; rename the file)",
                bad_id_message(name)
            ),
        }];
        named.extend(diagnostics);
        return (None, named);
    }
    (checked.library.profiles.into_values().next(), diagnostics)
}

/// A problem not yet placed in its file.
#[derive(Debug)]
struct Pending {
    severity: Severity,
    code: Code,
    path: FieldPath,
    at_key: bool,
    span: Option<std::ops::Range<usize>>,
    /// A 1-based line, for problems found outside TOML.
    line: Option<usize>,
    message: String,
}

/// Collects the problems of one file while it is lowered.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    pending: Vec<Pending>,
}

impl Problems {
    pub(crate) fn error(&mut self, code: Code, path: &FieldPath, message: impl Into<String>) {
        self.push(Severity::Error, code, path, message.into());
    }

    pub(crate) fn warning(&mut self, code: Code, path: &FieldPath, message: impl Into<String>) {
        self.push(Severity::Warning, code, path, message.into());
    }

    /// An error at the start of a 1-based line (for files that are not TOML).
    pub(crate) fn error_at_line(&mut self, code: Code, line: usize, message: impl Into<String>) {
        self.pending.push(Pending {
            severity: Severity::Error,
            code,
            path: FieldPath::root(),
            at_key: false,
            span: None,
            line: Some(line),
            message: message.into(),
        });
    }

    /// A warning at the start of a 1-based line (for files that are not TOML).
    pub(crate) fn warning_at_line(&mut self, code: Code, line: usize, message: impl Into<String>) {
        self.pending.push(Pending {
            severity: Severity::Warning,
            code,
            path: FieldPath::root(),
            at_key: false,
            span: None,
            line: Some(line),
            message: message.into(),
        });
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.pending.iter().any(|p| p.severity == Severity::Error)
    }

    fn push(&mut self, severity: Severity, code: Code, path: &FieldPath, message: String) {
        self.pending.push(Pending {
            severity,
            code,
            path: path.clone(),
            at_key: false,
            span: None,
            line: None,
            message,
        });
    }

    /// Places every pending problem in `file` and moves it to `out`.
    fn place(&mut self, file: &SourceFile, out: &mut Vec<Diagnostic>) {
        if self.pending.is_empty() {
            return;
        }
        let map = SourceMap::new(&file.text);
        let lines = LineIndex::new(&file.text);
        for p in self.pending.drain(..) {
            let line_start = p.line.map(|l| {
                let start: usize = file
                    .text
                    .split_inclusive('\n')
                    .take(l.saturating_sub(1))
                    .map(str::len)
                    .sum();
                start..start
            });
            let span = p
                .span
                .or(line_start)
                .or_else(|| map.span(&p.path, p.at_key));
            let line_col = span.as_ref().map(|s| lines.line_col(&file.text, s.start));
            out.push(Diagnostic {
                severity: p.severity,
                code: p.code,
                path: p.path,
                location: Location {
                    file: file.path.clone(),
                    span,
                    line_col,
                },
                message: p.message,
            });
        }
    }
}

/// Parses one file into its serde type, reporting a syntax or type error (which stops this
/// file) and every unknown key (which does not).
fn parse<T: DeserializeOwned + schemars::JsonSchema>(
    file: &SourceFile,
    problems: &mut Problems,
) -> Option<T> {
    let deserializer = match toml::de::Deserializer::parse(&file.text) {
        Ok(d) => d,
        Err(e) => {
            syntax(problems, &e);
            return None;
        }
    };
    let mut unknown = Vec::new();
    let parsed = serde_ignored::deserialize(deserializer, |path| unknown.push(field_path(&path)));
    let schema = if unknown.is_empty() {
        serde_json::Value::Null
    } else {
        schemars::schema_for!(T).to_value()
    };
    for path in unknown {
        let hint = suggestion(&schema, &path)
            .map(|k| format!("; did you mean `{k}`?"))
            .unwrap_or_else(|| "; the format does not have it (a typo?)".to_owned());
        let key = match path.segments().last() {
            Some(crate::diag::Segment::Key(key)) => key.clone(),
            _ => path.to_string(),
        };
        let key = if path.segments().len() > 1 {
            format!("{key}` in `{}", parent_text(&path))
        } else {
            key
        };
        problems.pending.push(Pending {
            severity: Severity::Error,
            code: Code::UnknownKey,
            path,
            at_key: true,
            span: None,
            line: None,
            message: format!("unknown key `{key}`{hint}"),
        });
    }
    match parsed {
        Ok(value) => Some(value),
        Err(e) => {
            syntax(problems, &e);
            None
        }
    }
}

/// The known key closest to an unknown one, from the file's JSON Schema: the keys of the
/// table the unknown key sits in, within two edits.
fn suggestion(schema: &serde_json::Value, path: &FieldPath) -> Option<String> {
    let segments = path.segments();
    let (last, parents) = segments.split_last()?;
    let crate::diag::Segment::Key(unknown) = last else {
        return None;
    };
    // Follows `$ref`s and the one non-null branch of an optional value.
    fn resolve<'a>(
        schema: &'a serde_json::Value,
        mut v: &'a serde_json::Value,
    ) -> Option<&'a serde_json::Value> {
        for _ in 0..8 {
            if let Some(r) = v.get("$ref").and_then(|r| r.as_str()) {
                v = schema.pointer(r.trim_start_matches('#'))?;
            } else if let Some(any) = v.get("anyOf").and_then(|a| a.as_array()) {
                v = any
                    .iter()
                    .find(|b| b.get("type").and_then(|t| t.as_str()) != Some("null"))?;
            } else {
                return Some(v);
            }
        }
        None
    }
    let mut node = resolve(schema, schema)?;
    for segment in parents {
        let next = match segment {
            crate::diag::Segment::Key(k) => node.get("properties")?.get(k.as_str())?,
            crate::diag::Segment::Index(_) => node.get("items")?,
        };
        node = resolve(schema, next)?;
    }
    let keys = node.get("properties")?.as_object()?;
    keys.keys()
        .map(|k| (edit_distance(k, unknown), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k.clone())
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let old = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(old + 1);
            prev = old;
        }
    }
    row[b.len()]
}

fn parent_text(path: &FieldPath) -> String {
    let mut parent = FieldPath::root();
    for segment in &path.segments()[..path.segments().len().saturating_sub(1)] {
        parent = match segment {
            crate::diag::Segment::Key(k) => parent.key(k.as_str()),
            crate::diag::Segment::Index(i) => parent.index(*i),
        };
    }
    parent.to_string()
}

/// serde names Rust types in its messages; people writing TOML think in TOML's types.
fn plain_types(message: &str) -> String {
    let mut text = message.trim().replace('\n', " ");
    for (rust, toml) in [
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected u8", "expected an integer"),
        ("expected a boolean", "expected true or false"),
    ] {
        text = text.replace(rust, toml);
    }
    text
}

fn syntax(problems: &mut Problems, error: &toml::de::Error) {
    // serde stops at these too, but they are not syntax: say what they are.
    let message = error.message();
    let code = if message.starts_with("missing field") {
        Code::Missing
    } else if message.starts_with("unknown variant") {
        Code::BadValue
    } else {
        Code::Syntax
    };
    problems.pending.push(Pending {
        severity: Severity::Error,
        code,
        path: FieldPath::root(),
        at_key: false,
        span: error.span(),
        line: None,
        message: plain_types(error.message()),
    });
}

fn field_path(path: &serde_ignored::Path<'_>) -> FieldPath {
    use serde_ignored::Path;
    match path {
        Path::Root => FieldPath::root(),
        Path::Seq { parent, index } => field_path(parent).index(*index),
        Path::Map { parent, key } => field_path(parent).key(key.as_str()),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// Which part of a library a file is.
enum FileRole<'a> {
    Zones,
    Profile(&'a str),
    Site(&'a str),
    Scene(&'a str, &'a str),
    Schedule(&'a str),
    Calendar(&'a str),
    CalendarIcs(&'a str),
    Other,
    Stray,
}

fn file_role(path: &str) -> FileRole<'_> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["zones.toml"] => FileRole::Zones,
        ["profiles", name] => name
            .strip_suffix(".toml")
            .map_or(FileRole::Other, FileRole::Profile),
        ["sites", site, "site.toml"] => FileRole::Site(site),
        ["sites", site, "schedule.toml"] => FileRole::Schedule(site),
        ["calendars", name] if name.ends_with(".ics") => name
            .strip_suffix(".ics")
            .map_or(FileRole::Other, FileRole::CalendarIcs),
        ["calendars", name] => name
            .strip_suffix(".toml")
            .map_or(FileRole::Other, FileRole::Calendar),
        ["sites", site, "scenes", name] => name
            .strip_suffix(".toml")
            .map_or(FileRole::Other, |name| FileRole::Scene(site, name)),
        _ if path.ends_with(".toml") || path.ends_with(".ics") => FileRole::Stray,
        _ => FileRole::Other,
    }
}

/// Checks a whole show library given as files in memory.
pub fn check(sources: &[SourceFile]) -> Checked {
    let mut checked = Checked::default();
    let mut problems = Problems::default();
    let out = &mut checked.diagnostics;

    let mut zones_seen = false;
    for file in sources {
        if let FileRole::Zones = file_role(&file.path) {
            zones_seen = true;
            if let Some(parsed) = parse(file, &mut problems) {
                checked.library.zones = lower::zones(parsed, &mut problems);
            }
            problems.place(file, out);
        }
    }
    if !zones_seen {
        out.push(Diagnostic {
            severity: Severity::Error,
            code: Code::Missing,
            path: FieldPath::root(),
            location: Location {
                file: "zones.toml".to_owned(),
                span: None,
                line_col: None,
            },
            message: "the library has no zones.toml; every site's limits and curfew depend on it"
                .to_owned(),
        });
    }

    for file in sources {
        if let FileRole::Profile(name) = file_role(&file.path) {
            match ProfileId::new(name).ok() {
                None => problems.error(Code::BadId, &FieldPath::root(), bad_id_message(name)),
                Some(id) => {
                    if let Some(parsed) = parse(file, &mut problems)
                        && let Some(profile) = lower::profile(id.clone(), parsed, &mut problems)
                    {
                        checked.library.profiles.insert(id, profile);
                    }
                }
            }
            problems.place(file, out);
        }
    }

    for file in sources {
        let (name, ics) = match file_role(&file.path) {
            FileRole::Calendar(name) => (name, false),
            FileRole::CalendarIcs(name) => (name, true),
            _ => continue,
        };
        match crate::calendar::CalendarId::new(name).ok() {
            None => problems.error(Code::BadId, &FieldPath::root(), bad_id_message(name)),
            Some(id) if checked.library.calendars.contains_key(&id) => problems.error(
                Code::DuplicateId,
                &FieldPath::root(),
                format!("calendar `{id}` is defined twice (a .toml and an .ics?)"),
            ),
            Some(id) => {
                let calendar = if ics {
                    schedule::calendar_ics(id.clone(), &file.text, &mut problems)
                } else {
                    parse(file, &mut problems)
                        .and_then(|f| schedule::calendar(id.clone(), f, &mut problems))
                };
                if let Some(calendar) = calendar {
                    checked.library.calendars.insert(id, calendar);
                }
            }
        }
        problems.place(file, out);
    }

    // Every site that lowered far enough to check its scenes and schedule against, complete
    // or not.
    let mut partial: std::collections::BTreeMap<SiteId, crate::model::Site> = Default::default();
    for file in sources {
        match file_role(&file.path) {
            FileRole::Site(name) => {
                match SiteId::new(name).ok() {
                    None => problems.error(Code::BadId, &FieldPath::root(), bad_id_message(name)),
                    Some(id) => {
                        if let Some(parsed) = parse(file, &mut problems) {
                            let context = lower::SiteContext {
                                zones: checked.library.zones.as_ref(),
                                profiles: &checked.library.profiles,
                            };
                            if let Some((site, complete)) =
                                lower::site(id.clone(), parsed, &context, &mut problems)
                            {
                                if complete {
                                    checked.library.sites.insert(id.clone(), site.clone());
                                }
                                partial.insert(id, site);
                            }
                        }
                    }
                }
                problems.place(file, out);
            }
            FileRole::Stray => {
                problems.warning(
                    Code::StrayFile,
                    &FieldPath::root(),
                    "this file is not part of the library, which reads zones.toml, profiles/<id>.toml, calendars/<id>.toml or .ics, sites/<id>/site.toml, sites/<id>/schedule.toml and sites/<id>/scenes/<id>.toml",
                );
                problems.place(file, out);
            }
            FileRole::Zones
            | FileRole::Profile(_)
            | FileRole::Scene(..)
            | FileRole::Schedule(_)
            | FileRole::Calendar(_)
            | FileRole::CalendarIcs(_)
            | FileRole::Other => {}
        }
    }

    for file in sources {
        if let FileRole::Scene(site, name) = file_role(&file.path) {
            let site_file = format!("sites/{site}/site.toml");
            match SceneId::new(name).ok() {
                None => problems.error(Code::BadId, &FieldPath::root(), bad_id_message(name)),
                Some(id) if checked.library.scenes.contains_key(&id) => problems.error(
                    Code::DuplicateId,
                    &FieldPath::root(),
                    format!("scene `{id}` is defined by another site too; scene ids are unique in a library"),
                ),
                Some(id) => {
                    let parsed = parse(file, &mut problems);
                    let site = SiteId::new(site).ok().and_then(|s| partial.get(&s));
                    match (parsed, site) {
                        (Some(parsed), Some(site)) => {
                            if let Some(scene) = scene::scene(id.clone(), site, parsed, &mut problems)
                                && checked.library.sites.contains_key(&site.id)
                            {
                                checked.library.scenes.insert(id, scene);
                            }
                        }
                        (_, None) if !sources.iter().any(|f| f.path == site_file) => problems.error(
                            Code::Missing,
                            &FieldPath::root(),
                            format!("this scene's site has no {site_file}"),
                        ),
                        // The site has errors of its own; they are reported there.
                        _ => {}
                    }
                }
            }
            problems.place(file, out);
        }
    }

    // Rules may name any scene that has a file here: one with errors of its own is
    // reported in its file, not again in every rule that uses it. Gathered once per site
    // (looking through every file for each schedule made checking a city of 10,000 sites
    // take seconds).
    let mut declared: std::collections::BTreeMap<&str, std::collections::BTreeSet<String>> =
        Default::default();
    for f in sources {
        if let FileRole::Scene(site, name) = file_role(&f.path) {
            declared.entry(site).or_default().insert(name.to_owned());
        }
    }
    let none = std::collections::BTreeSet::new();
    for file in sources {
        if let FileRole::Schedule(site) = file_role(&file.path) {
            let parsed = parse(file, &mut problems);
            let lib = &checked.library;
            let declared = declared.get(site).unwrap_or(&none);
            if let (Some(parsed), Some(site)) =
                (parsed, SiteId::new(site).ok().and_then(|s| partial.get(&s)))
                && let Some(s) =
                    schedule::schedule(site, declared, &lib.calendars, parsed, &mut problems)
                && lib.sites.contains_key(&site.id)
            {
                let id = site.id.clone();
                checked.library.schedules.insert(id, s);
            }
            problems.place(file, out);
        }
    }

    out.sort_by(|a, b| {
        (&a.location.file, a.location.line_col).cmp(&(&b.location.file, b.location.line_col))
    });
    checked
}

/// "`kelvn` is not an effect: did you mean `kelvin`? (static, kelvin, …)".
pub(crate) fn not_one_of(text: &str, what: &str, names: &[&str]) -> String {
    let near = names
        .iter()
        .map(|n| (edit_distance(n, text), *n))
        .filter(|(d, _)| *d <= 2)
        .min();
    match near {
        Some((_, n)) => format!(
            "`{text}` is not {what}: did you mean `{n}`? ({})",
            names.join(", ")
        ),
        None => format!("`{text}` is not {what}; use one of {}", names.join(", ")),
    }
}

pub(crate) fn bad_id_message(text: &str) -> String {
    format!(
        "`{text}` is not a valid id: use lowercase letters, digits and single inner `-` (at most 64)"
    )
}

/// How far ahead a calendar must still have dates before the checker warns.
pub const CALENDAR_WARNING_DAYS: i64 = 60;

/// Warnings for calendars, used by a schedule, whose last date is less than
/// [`CALENDAR_WARNING_DAYS`] after `today` — staff must add next year's dates in time.
/// `path_of` names each calendar's file.
pub fn expiring_calendars(
    library: &ShowLibrary,
    today: jiff::civil::Date,
    path_of: impl Fn(&crate::calendar::CalendarId) -> String,
) -> Vec<Diagnostic> {
    let used: std::collections::BTreeSet<&crate::calendar::CalendarId> = library
        .schedules
        .values()
        .flat_map(|s| s.rules.iter().filter_map(|r| r.calendar.as_ref()))
        .collect();
    let mut out = Vec::new();
    for id in used {
        let Some(calendar) = library.calendars.get(id) else {
            continue;
        };
        let days_left = calendar
            .last()
            .map(|last| crate::schedule::epoch_day(last) - crate::schedule::epoch_day(today));
        if days_left.is_none_or(|d| d < CALENDAR_WARNING_DAYS) {
            let message = match calendar.last() {
                Some(last) if last >= today => format!(
                    "calendar `{id}` runs out after {last}, in {} days; add the coming dates so rules that use it keep running",
                    days_left.unwrap_or(0)
                ),
                Some(last) => {
                    format!("calendar `{id}` ran out on {last}; rules that use it no longer run")
                }
                None => format!("calendar `{id}` has no dates; rules that use it never run"),
            };
            out.push(Diagnostic {
                severity: Severity::Warning,
                code: Code::CalendarExpiring,
                path: FieldPath::root().key("dates"),
                location: Location {
                    file: path_of(id),
                    span: None,
                    line_col: None,
                },
                message,
            });
        }
    }
    out
}
