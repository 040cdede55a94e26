//! Source positions for configuration errors: key paths ("frontend[0].tls.cert"), byte offsets
//! to 1-based line:col, and locating a key path's key or value in the parsed document
//! (toml_edit keeps spans). No validation rules here; `config::validate` decides what is wrong.

use std::fmt;
use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// A key path such as `backend[1].servers[0].addr`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub(super) fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// This path followed by `key`.
    pub(super) fn key(&self, key: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(key.to_string()));
        KeyPath(v)
    }

    /// This path followed by `[i]`.
    pub(super) fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        KeyPath(v)
    }

    /// Parses what `Display` prints (`frontend[0].tls.certs[1].key`); `None` for anything
    /// else (quoted keys, keys containing `.` or `[`).
    pub(super) fn parse(text: &str) -> Option<Self> {
        let mut segs = Vec::new();
        for part in text.split('.') {
            let (name, rest) = part
                .split_once('[')
                .map_or((part, None), |(n, r)| (n, Some(r)));
            if name.is_empty() {
                return None;
            }
            segs.push(Seg::Key(name.to_string()));
            if let Some(rest) = rest {
                for idx in rest.strip_suffix(']')?.split("][") {
                    segs.push(Seg::Index(idx.parse().ok()?));
                }
            }
        }
        Some(KeyPath(segs))
    }

    fn parent(&self) -> Option<Self> {
        let mut v = self.0.clone();
        v.pop()?;
        Some(KeyPath(v))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Which part of an entry an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum At {
    /// The key itself (unexpected keys, tables that should not be there).
    Key,
    /// The value after `=` (bad values).
    Value,
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// A node of the parsed document, whatever TOML syntax produced it.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }

    /// The child at `seg`, with the span of its key when it has one.
    fn child(self, seg: &Seg) -> Option<(Option<Range<usize>>, Node<'a>)> {
        match (self, seg) {
            (Node::Item(Item::Table(t)), _) => Node::Table(t).child(seg),
            (Node::Item(Item::Value(v)), _) => Node::Value(v).child(seg),
            (Node::Item(Item::ArrayOfTables(a)), Seg::Index(i)) => {
                a.get(*i).map(|t| (None, Node::Table(t)))
            }
            (Node::Table(t), Seg::Key(k)) => t
                .get_key_value(k)
                .map(|(key, item)| (key.span(), Node::Item(item))),
            (Node::Value(Value::InlineTable(t)), Seg::Key(k)) => t
                .get_key_value(k)
                .map(|(key, item)| (key.span(), Node::Item(item))),
            (Node::Value(Value::Array(a)), Seg::Index(i)) => {
                a.get(*i).map(|v| (None, Node::Value(v)))
            }
            _ => None,
        }
    }

    /// All children with their path step and key span.
    fn children(self) -> Vec<(Seg, Option<Range<usize>>, Node<'a>)> {
        match self {
            Node::Item(Item::Table(t)) | Node::Table(t) => t
                .iter()
                .filter_map(|(k, _)| t.get_key_value(k))
                .map(|(key, item)| {
                    (
                        Seg::Key(key.get().to_string()),
                        key.span(),
                        Node::Item(item),
                    )
                })
                .collect(),
            Node::Item(Item::ArrayOfTables(a)) => a
                .iter()
                .enumerate()
                .map(|(i, t)| (Seg::Index(i), None, Node::Table(t)))
                .collect(),
            Node::Item(Item::Value(v)) => Node::Value(v).children(),
            Node::Value(Value::InlineTable(t)) => t
                .iter()
                .filter_map(|(k, _)| t.get_key_value(k))
                .map(|(key, item)| {
                    (
                        Seg::Key(key.get().to_string()),
                        key.span(),
                        Node::Item(item),
                    )
                })
                .collect(),
            Node::Value(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (Seg::Index(i), None, Node::Value(v)))
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn contains(span: &Option<Range<usize>>, offset: usize) -> bool {
    span.as_ref()
        .is_some_and(|r| r.start <= offset && offset < r.end.max(r.start + 1))
}

/// The parsed document, for looking up where things are.
pub(super) struct Located<'a> {
    doc: ImDocument<&'a str>,
}

impl<'a> Located<'a> {
    /// Parses `text`; a syntax error comes back as (byte span, message).
    pub(super) fn parse(text: &'a str) -> Result<Self, (Option<Range<usize>>, String)> {
        ImDocument::parse(text)
            .map(|doc| Located { doc })
            .map_err(|e| (e.span(), e.message().trim().to_string()))
    }

    fn root(&self) -> Node<'_> {
        Node::Item(self.doc.as_item())
    }

    /// Byte offset of `path`'s key (`At::Key`) or value (`At::Value`); falls back to the other
    /// part, then to the nearest ancestor that exists, then to the start of the file.
    pub(super) fn offset_of(&self, path: &KeyPath, at: At) -> usize {
        let mut p = Some(path.clone());
        while let Some(cur) = p {
            if let Some((key, node)) = self.find(&cur) {
                let value = node.span().or_else(|| first_child_key(node));
                let pick = match at {
                    At::Key => key.or(value),
                    At::Value => value.or(key),
                };
                if let Some(r) = pick {
                    return r.start;
                }
            }
            p = cur.parent();
        }
        0
    }

    /// Whether `path` is written in the file (as opposed to filled in by a default).
    pub(super) fn exists(&self, path: &KeyPath) -> bool {
        self.find(path).is_some()
    }

    fn find(&self, path: &KeyPath) -> Option<(Option<Range<usize>>, Node<'_>)> {
        let mut node = self.root();
        let mut key = None;
        for seg in &path.0 {
            let (k, n) = node.child(seg)?;
            key = k;
            node = n;
        }
        Some((key, node))
    }

    /// The deepest key path whose key or value covers byte `offset` (empty when none does).
    pub(super) fn path_at(&self, offset: usize) -> KeyPath {
        let mut out = Vec::new();
        descend(self.root(), offset, &mut out);
        KeyPath(out)
    }
}

/// A table written with a `[header]` may have no span of its own in toml_edit; its first
/// key locates it well enough.
fn first_child_key(node: Node<'_>) -> Option<Range<usize>> {
    node.children()
        .into_iter()
        .find_map(|(_, k, n)| k.or_else(|| n.span()))
}

/// Pushes onto `out` the steps to the deepest node covering `offset`; true when found.
fn descend(node: Node<'_>, offset: usize, out: &mut Vec<Seg>) -> bool {
    for (seg, key, child) in node.children() {
        if contains(&key, offset) {
            out.push(seg);
            return true;
        }
        out.push(seg);
        if descend(child, offset, out) {
            return true;
        }
        out.pop();
    }
    contains(&node.span(), offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[global]\nmax_connections = 10\n\n[[frontend]]\nname = \"a\"\nbind = [\"x\", \"y\"]\n\n[[frontend]]\nname = \"b\"\nproxy_protocol = { trusted = [\"q\"], timeout = \"5s\" }\n[frontend.tls]\ncert = \"c\"\n";

    fn path(s: &[Seg]) -> KeyPath {
        KeyPath(s.to_vec())
    }

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn line_col_is_one_based_and_counts_chars() {
        assert_eq!(line_col("abc", 0), (1, 1));
        assert_eq!(line_col("abc\ndef", 5), (2, 2));
        assert_eq!(line_col("é = 1", 3), (1, 3));
        assert_eq!(line_col("ab", 99), (1, 3));
        assert_eq!(line_col("é", 1), (1, 1));
    }

    #[test]
    fn key_path_display() {
        let p = KeyPath::root()
            .key("backend")
            .index(1)
            .key("servers")
            .index(0)
            .key("addr");
        assert_eq!(p.to_string(), "backend[1].servers[0].addr");
    }

    #[test]
    fn finds_values_keys_and_inline_and_array_elements() {
        let doc = Located::parse(DOC).unwrap();
        let at = |p: &KeyPath, a| line_col(DOC, doc.offset_of(p, a));
        assert_eq!(
            at(&path(&[k("global"), k("max_connections")]), At::Value),
            (2, 19)
        );
        assert_eq!(
            at(&path(&[k("global"), k("max_connections")]), At::Key),
            (2, 1)
        );
        assert_eq!(
            at(
                &path(&[k("frontend"), Seg::Index(0), k("bind"), Seg::Index(1)]),
                At::Value
            ),
            (6, 14)
        );
        let trusted0 = path(&[
            k("frontend"),
            Seg::Index(1),
            k("proxy_protocol"),
            k("trusted"),
            Seg::Index(0),
        ]);
        assert_eq!(at(&trusted0, At::Value), (10, 31));
        assert_eq!(
            at(&path(&[k("frontend"), Seg::Index(1), k("tls")]), At::Key),
            (11, 11)
        );
        assert_eq!(
            at(
                &path(&[k("frontend"), Seg::Index(1), k("tls"), k("cert")]),
                At::Value
            ),
            (12, 8)
        );
        // Missing keys fall back to the nearest ancestor that is written.
        assert_eq!(
            at(
                &path(&[k("frontend"), Seg::Index(1), k("backend")]),
                At::Value
            ),
            (8, 1)
        );
        assert_eq!(at(&path(&[k("nothing"), k("here")]), At::Value), (1, 1));
        assert!(doc.exists(&path(&[k("frontend"), Seg::Index(1), k("tls")])));
        assert!(!doc.exists(&path(&[k("frontend"), Seg::Index(0), k("tls")])));
    }

    #[test]
    fn path_at_names_the_deepest_entry() {
        let doc = Located::parse(DOC).unwrap();
        let off = DOC.find("\"y\"").unwrap();
        assert_eq!(doc.path_at(off).to_string(), "frontend[0].bind[1]");
        let off = DOC.find("timeout").unwrap();
        assert_eq!(
            doc.path_at(off).to_string(),
            "frontend[1].proxy_protocol.timeout"
        );
        let off = DOC.find("cert").unwrap();
        assert_eq!(doc.path_at(off).to_string(), "frontend[1].tls.cert");
        assert_eq!(doc.path_at(0).to_string(), "global");
    }

    #[test]
    fn key_paths_parse_back_from_their_display() {
        for text in [
            "frontend[0].tls.certs[1].key",
            "global",
            "backend[2].servers[0]",
            "a[1][2].b",
        ] {
            assert_eq!(KeyPath::parse(text).unwrap().to_string(), text);
        }
        for bad in ["", "a..b", ".a", "a[", "a[x]", "a[1]b", "[0]"] {
            assert_eq!(KeyPath::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn syntax_errors_have_a_span() {
        let (span, msg) = Located::parse("a = \n").err().unwrap();
        assert!(span.is_some());
        assert!(!msg.is_empty());
    }
}
