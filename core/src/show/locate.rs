//! From a field path back to the bytes of the file it came from.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{FieldPath, Segment};

/// The parsed TOML tree of one file with the span of every key and value.
pub(crate) struct SourceMap<'a> {
    root: Option<Spanned<DeTable<'a>>>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        SourceMap {
            root: DeTable::parse(text).ok(),
        }
    }

    /// The span of the value at `path` (or of its key when `at_key`). When the path runs
    /// out (a missing key), the deepest table or array that exists stands in for it, so
    /// "missing `address`" points at the fixture that lacks it.
    pub(crate) fn span(&self, path: &FieldPath, at_key: bool) -> Option<Range<usize>> {
        let root = self.root.as_ref()?;
        let mut table: Option<&DeTable<'a>> = Some(root.get_ref());
        let mut value: Option<&DeValue<'a>> = None;
        let mut best = table_span(root.get_ref()).or_else(|| Some(root.span()));
        let segments = path.segments();
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let next = match (segment, table, value) {
                (Segment::Key(key), Some(t), _) => t.get_key_value(key.as_str()).map(|(k, v)| {
                    if last && at_key {
                        (k.span(), v)
                    } else {
                        (v.span(), v)
                    }
                }),
                (Segment::Index(index), _, Some(DeValue::Array(items))) => {
                    items.get(*index).map(|v| (v.span(), v))
                }
                _ => None,
            };
            let Some((span, v)) = next else { break };
            best = Some(element_span(span, v.get_ref()));
            value = Some(v.get_ref());
            table = match v.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        best
    }
}

/// Tables of an array of tables (`[[fixtures]]`) have no span of their own in the tree;
/// the earliest key of the table stands for it.
fn element_span(span: Range<usize>, value: &DeValue<'_>) -> Range<usize> {
    match value {
        DeValue::Table(t) if span.is_empty() => table_span(t).unwrap_or(span),
        _ => span,
    }
}

fn table_span(table: &DeTable<'_>) -> Option<Range<usize>> {
    table
        .iter()
        .map(|(k, _)| k.span())
        .filter(|s| !s.is_empty())
        .min_by_key(|s| s.start)
}
