//! The Korea Astronomy and Space Science Institute's special-day service (특일 정보), as the
//! national open-data portal serves it: `SpcdeInfoService/getRestDeInfo?solYear=Y&solMonth=MM`
//! with a service key, answering XML by default or JSON with `_type=json`. Each item has
//! `locdate` (YYYYMMDD; a number in JSON), `dateName`, `isHoliday` (Y/N) and `dateKind`.
//!
//! The JSON form has the portal's quirks: one item comes as an object instead of a list, no
//! items as an empty string. A refused request (an unregistered key, too many calls) comes
//! back with a result code other than `00`, in either form, or as the gateway's own
//! `OpenAPI_ServiceResponse` XML; each is an error naming the code and message.

use jiff::civil::Date;

/// One special day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialDay {
    pub date: Date,
    pub name: String,
    pub holiday: bool,
    /// `01` national holidays, `02` anniversaries, `03` 24 solar terms, `04` sundry days.
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KasiError {
    #[error("the special-day service refused the request: {code} {message}")]
    Service { code: String, message: String },
    #[error("not a special-day service response: {0}")]
    Malformed(String),
}

/// Reads a response in either form.
pub fn parse(text: &str) -> Result<Vec<SpecialDay>, KasiError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') {
        parse_json(trimmed)
    } else if trimmed.starts_with('<') {
        parse_xml(trimmed)
    } else {
        Err(KasiError::Malformed(
            "neither XML nor JSON (save the body of the response as it came)".into(),
        ))
    }
}

fn date(text: &str) -> Result<Date, KasiError> {
    let bad = || KasiError::Malformed(format!("locdate `{text}` is not YYYYMMDD"));
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| text[r].parse::<i16>().map_err(|_| bad());
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    Date::new(
        y,
        i8::try_from(m).map_err(|_| bad())?,
        i8::try_from(d).map_err(|_| bad())?,
    )
    .map_err(|_| bad())
}

fn parse_json(text: &str) -> Result<Vec<SpecialDay>, KasiError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| KasiError::Malformed(e.to_string()))?;
    let response = v
        .get("response")
        .ok_or_else(|| KasiError::Malformed("no `response` object".into()))?;
    let header = &response["header"];
    let code = header["resultCode"].as_str().unwrap_or("");
    if code != "00" {
        return Err(KasiError::Service {
            code: code.to_owned(),
            message: header["resultMsg"].as_str().unwrap_or("").to_owned(),
        });
    }
    let item = &response["body"]["items"]["item"];
    let items: Vec<&serde_json::Value> = match item {
        serde_json::Value::Array(list) => list.iter().collect(),
        serde_json::Value::Object(_) => vec![item],
        _ => Vec::new(),
    };
    items
        .into_iter()
        .map(|i| {
            let locdate = match &i["locdate"] {
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::String(s) => s.clone(),
                _ => {
                    return Err(KasiError::Malformed(format!(
                        "an item without locdate: {i}"
                    )));
                }
            };
            Ok(SpecialDay {
                date: date(&locdate)?,
                name: i["dateName"].as_str().unwrap_or("").trim().to_owned(),
                holiday: i["isHoliday"].as_str() == Some("Y"),
                kind: match &i["dateKind"] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            })
        })
        .collect()
}

/// The text of every `<tag>…</tag>` in `text`, in order (the service's XML has no
/// attributes, namespaces or nesting of the same tag).
fn elements<'a>(text: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn parse_xml(text: &str) -> Result<Vec<SpecialDay>, KasiError> {
    let first = |t: &str, tag: &str| elements(t, tag).first().map(|s| unescape(s.trim()));
    // The portal's gateway answers refusals in its own envelope.
    if let Some(reason) = first(text, "returnReasonCode") {
        return Err(KasiError::Service {
            code: reason,
            message: first(text, "returnAuthMsg")
                .or_else(|| first(text, "errMsg"))
                .unwrap_or_default(),
        });
    }
    let code = first(text, "resultCode")
        .ok_or_else(|| KasiError::Malformed("no <resultCode> in the response".into()))?;
    if code != "00" {
        return Err(KasiError::Service {
            code,
            message: first(text, "resultMsg").unwrap_or_default(),
        });
    }
    elements(text, "item")
        .into_iter()
        .map(|item| {
            let locdate = first(item, "locdate")
                .ok_or_else(|| KasiError::Malformed(format!("an item without locdate: {item}")))?;
            Ok(SpecialDay {
                date: date(&locdate)?,
                name: first(item, "dateName").unwrap_or_default(),
                holiday: first(item, "isHoliday").as_deref() == Some("Y"),
                kind: first(item, "dateKind").unwrap_or_default(),
            })
        })
        .collect()
}

/// Adds `dates` (date, name) that a calendar file does not list yet, before the closing `]`
/// of its `dates = [` array, keeping every other byte (comments, order, layout). Returns the
/// new text and the dates added; `None` when the file has no such array to add to.
pub fn add_dates(
    text: &str,
    known: &dyn Fn(Date) -> bool,
    dates: &[(Date, String)],
) -> Option<(String, Vec<Date>)> {
    let start = text
        .find("\ndates = [")
        .map(|i| i + 1)
        .or_else(|| text.starts_with("dates = [").then_some(0))?;
    let close = start + text[start..].find("\n]").map(|i| i + 1)?;
    let mut added = Vec::new();
    let mut lines = String::new();
    for (d, name) in dates {
        if known(*d) || added.contains(d) {
            continue;
        }
        let name = name.replace('\\', "\\\\").replace('"', "\\\"");
        lines.push_str(&format!("  {{ date = \"{d}\", name = \"{name}\" }},\n"));
        added.push(*d);
    }
    let mut out = String::with_capacity(text.len() + lines.len());
    out.push_str(&text[..close]);
    out.push_str(&lines);
    out.push_str(&text[close..]);
    Some((out, added))
}
