//! Finds where a key path (`service[1].proxy.listen`) sits in the TOML source, so that errors
//! found after parsing (duplicates, clashes, nonsense values) can name a line too.

use toml::de::{DeTable, DeValue};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key.to_owned()));
        }
        for index in rest.split('[') {
            if let Some(n) = index
                .trim_end_matches(']')
                .parse()
                .ok()
                .filter(|_| !index.is_empty())
            {
                out.push(Segment::Index(n));
            }
        }
    }
    out
}

/// The source, with line starts indexed for offset-to-position conversion.
#[derive(Debug)]
pub(crate) struct Source<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, line_starts }
    }

    /// 1-based line and column of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self.text[start..offset.min(self.text.len())]
            .chars()
            .count()
            + 1;
        (line, column)
    }

    /// Position of the value at `path`, or of its nearest enclosing value that exists.
    pub(crate) fn locate(&self, path: &str) -> Option<(usize, usize)> {
        let root = DeTable::parse(self.text).ok()?;
        let mut span = None;
        let mut table = Some(root.get_ref());
        let mut array: Option<&toml::de::DeArray<'_>> = None;
        for segment in segments(path) {
            let value = match (&segment, table, array) {
                (Segment::Key(key), Some(t), _) => t
                    .iter()
                    .find(|(k, _)| k.get_ref().as_ref() == key.as_str())
                    .map(|(_, v)| v),
                (Segment::Index(n), _, Some(a)) => a.get(*n),
                _ => None,
            };
            let Some(value) = value else { break };
            span = Some(value.span());
            (table, array) = match value.get_ref() {
                DeValue::Table(t) => (Some(t), None),
                DeValue::Array(a) => (None, Some(a)),
                _ => (None, None),
            };
        }
        span.map(|s| self.position(s.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_keys_in_tables_and_arrays_of_tables() {
        let text = "node = \"a\"\n\n[[service]]\nname = \"web\"\n\n[[service]]\nname = \"api\"\n[service.proxy]\nlisten = \"127.0.0.1:80\"\n";
        let source = Source::new(text);
        assert_eq!(source.locate("node"), Some((1, 8)));
        assert_eq!(source.locate("service[1].name"), Some((7, 8)));
        assert_eq!(source.locate("service[1].proxy.listen"), Some((9, 10)));
        // A key that is not in the file falls back to its nearest parent.
        assert_eq!(
            source.locate("service[0].health.interval").map(|p| p.0),
            Some(3)
        );
        assert_eq!(source.locate("nowhere"), None);
    }
}
