//! Diagnostics: every problem a show library has, each with a stable code, a field path and,
//! where the problem is in a file, a location.
//!
//! Validation never stops at the first problem. It returns a list; the edges decide how to
//! show it (the CLI as `file:line:col: error[code]: message`, the API next to the field).

use std::fmt;
use std::ops::Range;

/// How bad a problem is. Errors make a library unusable; warnings are worth a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// Stable diagnostic codes. The text form is what users search for and what tests
        /// and translations key on; never rename one, add a new one instead.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }
        }
    };
}

codes! {
    /// The file is not valid TOML, or a value has the wrong type.
    Syntax = "syntax",
    /// A key that the format does not know (often a typo).
    UnknownKey = "unknown-key",
    /// A required key is missing or an option needs a companion key.
    Missing = "missing",
    /// Keys that cannot be used together.
    Conflict = "conflict",
    /// An id that is not a lowercase slug, or is defined twice.
    BadId = "bad-id",
    DuplicateId = "duplicate-id",
    /// A reference to an id that does not exist.
    UnknownRef = "unknown-ref",
    /// A number outside its allowed range.
    OutOfRange = "out-of-range",
    /// A value that does not parse (time zone, IP address, time of day, …).
    BadValue = "bad-value",
    /// Two fixtures drive the same DMX slot.
    DmxOverlap = "dmx-overlap",
    /// Two fixtures drive the same Modbus register (or the same half of a packed register).
    RegisterOverlap = "register-overlap",
    /// Two controllers claim the same universe or Modbus unit on the same destination.
    OutputOverlap = "output-overlap",
    /// A fixture's channels run past the end of a universe.
    UniverseOverrun = "universe-overrun",
    /// A pixel's channels would be split across two universes.
    PixelSplit = "pixel-split",
    /// A universe the controller does not carry, or outside the protocol's range.
    UniverseRange = "universe-range",
    /// A register outside the controller profile's level range or past 65535.
    RegisterRange = "register-range",
    /// A fixture can emit nothing its site's limits allow.
    LimitBroken = "limit-broken",
    /// The site allows whites only and the fixture can only mix white from colour.
    WhiteApproximate = "white-approximate",
    /// A fixture's full output is above what the site's zone allows; it will be clamped.
    LimitClamped = "limit-clamped",
    /// A definition nothing uses (a gateway without controllers, a group without fixtures).
    Unused = "unused",
    /// A calendar that a schedule uses runs out of dates soon.
    CalendarExpiring = "calendar-expiring",
    /// A file in the library that is not part of any known kind.
    StrayFile = "stray-file",
    /// A calendar date outside the years a calendar may name (a year typed wrong, or a
    /// placeholder such as 9999-12-31).
    CalendarDateRange = "calendar-date-range",
}

/// The languages people read diagnostics in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ko,
    En,
}

impl Lang {
    /// From an `Accept-Language` value or a `lang` parameter: Korean first, as staff read.
    pub fn pick(text: &str) -> Lang {
        let first = text
            .split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .find(|p| p.starts_with("ko") || p.starts_with("en"));
        match first {
            Some(p) if p.starts_with("en") => Lang::En,
            _ => Lang::Ko,
        }
    }
}

impl Code {
    /// The problem in a few words, for people, in `lang`; the diagnostic's message says
    /// the details.
    pub fn title(self, lang: Lang) -> &'static str {
        match (self, lang) {
            (Code::Syntax, Lang::En) => "the file is not valid TOML, or a value has the wrong type",
            (Code::UnknownKey, Lang::En) => "a key the format does not know",
            (Code::Missing, Lang::En) => "a required key is missing",
            (Code::Conflict, Lang::En) => "keys that cannot be used together",
            (Code::BadId, Lang::En) => "not a valid id",
            (Code::DuplicateId, Lang::En) => "the id is defined twice",
            (Code::UnknownRef, Lang::En) => "refers to something that does not exist",
            (Code::OutOfRange, Lang::En) => "a number outside its allowed range",
            (Code::BadValue, Lang::En) => "a value that cannot be read",
            (Code::DmxOverlap, Lang::En) => "two fixtures use the same DMX channel",
            (Code::RegisterOverlap, Lang::En) => "two fixtures use the same Modbus register",
            (Code::OutputOverlap, Lang::En) => "two controllers claim the same output",
            (Code::UniverseOverrun, Lang::En) => "a fixture runs past the end of a universe",
            (Code::PixelSplit, Lang::En) => "a pixel would be split across two universes",
            (Code::UniverseRange, Lang::En) => {
                "a universe outside the controller's or protocol's range"
            }
            (Code::RegisterRange, Lang::En) => "a register outside the controller profile's range",
            (Code::LimitBroken, Lang::En) => "the fixture can emit nothing the site's limits allow",
            (Code::WhiteApproximate, Lang::En) => {
                "white is only mixed from colour on a whites-only site"
            }
            (Code::LimitClamped, Lang::En) => {
                "full output is above the zone's limit and will be clamped"
            }
            (Code::Unused, Lang::En) => "defined but not used",
            (Code::CalendarExpiring, Lang::En) => {
                "a calendar the schedule uses runs out of dates soon"
            }
            (Code::StrayFile, Lang::En) => "a file the library does not read",
            (Code::CalendarDateRange, Lang::En) => {
                "a calendar date outside the years a calendar may name"
            }
            (Code::Syntax, Lang::Ko) => "TOML 문법 오류이거나 값의 형식이 맞지 않습니다",
            (Code::UnknownKey, Lang::Ko) => "알 수 없는 항목입니다 (오타일 수 있습니다)",
            (Code::Missing, Lang::Ko) => "필수 항목이 빠졌습니다",
            (Code::Conflict, Lang::Ko) => "함께 쓸 수 없는 항목입니다",
            (Code::BadId, Lang::Ko) => "올바른 ID가 아닙니다",
            (Code::DuplicateId, Lang::Ko) => "같은 ID가 두 번 정의되었습니다",
            (Code::UnknownRef, Lang::Ko) => "존재하지 않는 대상을 가리킵니다",
            (Code::OutOfRange, Lang::Ko) => "허용 범위를 벗어난 값입니다",
            (Code::BadValue, Lang::Ko) => "읽을 수 없는 값입니다",
            (Code::DmxOverlap, Lang::Ko) => "두 조명기구가 같은 DMX 채널을 사용합니다",
            (Code::RegisterOverlap, Lang::Ko) => "두 조명기구가 같은 Modbus 레지스터를 사용합니다",
            (Code::OutputOverlap, Lang::Ko) => "두 컨트롤러가 같은 출력을 사용합니다",
            (Code::UniverseOverrun, Lang::Ko) => "조명기구 채널이 유니버스 끝을 넘습니다",
            (Code::PixelSplit, Lang::Ko) => "픽셀 하나가 두 유니버스에 걸칩니다",
            (Code::UniverseRange, Lang::Ko) => {
                "컨트롤러 또는 프로토콜 범위를 벗어난 유니버스입니다"
            }
            (Code::RegisterRange, Lang::Ko) => "컨트롤러 프로파일 범위를 벗어난 레지스터입니다",
            (Code::LimitBroken, Lang::Ko) => "현장 밝기·색 제한 안에서 낼 수 있는 빛이 없습니다",
            (Code::WhiteApproximate, Lang::Ko) => {
                "백색만 허용된 현장에서 백색을 색 혼합으로만 냅니다"
            }
            (Code::LimitClamped, Lang::Ko) => "최대 출력이 조명환경관리구역 기준을 넘어 제한됩니다",
            (Code::Unused, Lang::Ko) => "정의되었지만 쓰이지 않습니다",
            (Code::CalendarExpiring, Lang::Ko) => "일정에 쓰이는 달력의 날짜가 곧 끝납니다",
            (Code::StrayFile, Lang::Ko) => "라이브러리가 읽지 않는 파일입니다",
            (Code::CalendarDateRange, Lang::Ko) => "달력에 쓸 수 없는 연도의 날짜입니다",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One element of a field path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Where in a document a value lives: `fixtures[3].address`. Paths are stable across edits
/// that do not move the value, so the API and the dashboard show problems next to fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.into()));
        next
    }

    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A 1-based line and column (the column counts characters, as editors do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LineCol {
    pub line: u32,
    pub col: u32,
}

/// Where a problem is: the file (as the library names it) and, when known, a byte span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub span: Option<Range<usize>>,
    pub line_col: Option<LineCol>,
}

/// One problem found in a show library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    /// The field the problem is about, inside `location.file`.
    pub path: FieldPath,
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: error[code]: message` — the form editors and CI logs link from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.location.file)?;
        if let Some(lc) = self.location.line_col {
            write!(f, ":{}:{}", lc.line, lc.col)?;
        }
        write!(
            f,
            ": {}[{}]: {}",
            self.severity.as_str(),
            self.code,
            self.message
        )
    }
}

/// Turns byte offsets into lines and columns for one source text.
#[derive(Debug, Clone)]
pub struct LineIndex {
    line_starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { line_starts }
    }

    /// The line and column of `offset`; offsets past the end land on the last line.
    pub fn line_col(&self, text: &str, offset: usize) -> LineCol {
        let offset = offset.min(text.len());
        let line = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .saturating_sub(1);
        let start = self.line_starts[line];
        let col = text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        LineCol {
            line: u32::try_from(line + 1).unwrap_or(u32::MAX),
            col: u32::try_from(col + 1).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_not_bytes() {
        let text = "a = 1\nname = \"계백교\" x\n";
        let index = LineIndex::new(text);
        assert_eq!(index.line_col(text, 0), LineCol { line: 1, col: 1 });
        assert_eq!(index.line_col(text, 6), LineCol { line: 2, col: 1 });
        let x = text.find(" x").unwrap() + 1;
        assert_eq!(index.line_col(text, x), LineCol { line: 2, col: 14 });
        assert_eq!(index.line_col(text, 10_000).line, 3);
    }

    #[test]
    fn field_path_prints_like_toml_access() {
        let path = FieldPath::root().key("fixtures").index(3).key("address");
        assert_eq!(path.to_string(), "fixtures[3].address");
    }

    #[test]
    fn codes_are_unique_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(text.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
        }
    }
}
