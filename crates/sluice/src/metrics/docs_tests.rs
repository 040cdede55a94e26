//! docs/METRICS.md against the registry, both ways: every family the 0.0.4 rendering has is a
//! table row there with the same type, and the row's meaning starts with the exact HELP text;
//! every row names a family the registry has. It does not check label names.

use std::collections::BTreeMap;

use super::{global, Format};

/// Family name -> (type, help) from `# HELP` / `# TYPE` lines.
fn registry_families() -> BTreeMap<String, (String, String)> {
    let text = global().encode_as(&[], Format::Text004);
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if let Some(rest) = l.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let ty = lines
                .next()
                .and_then(|t| t.strip_prefix(&format!("# TYPE {name} ")))
                .unwrap_or_else(|| panic!("no TYPE after HELP of {name}"))
                .to_string();
            out.insert(name.to_string(), (ty, help.to_string()));
        }
    }
    out
}

/// Series name -> (type, meaning) from the doc's tables: rows `| `name` | type | ... |`.
fn documented() -> BTreeMap<String, (String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/METRICS.md");
    let doc = std::fs::read_to_string(path).expect("docs/METRICS.md");
    let mut out = BTreeMap::new();
    for l in doc.lines() {
        let cells: Vec<&str> = l.split('|').map(str::trim).collect();
        // ["", name, type, labels, meaning, ""]
        if cells.len() < 6 || !cells[1].starts_with('`') || cells[1] == "`series`" {
            continue;
        }
        let name = cells[1].trim_matches('`').to_string();
        let prev = out.insert(name.clone(), (cells[2].to_string(), cells[4].to_string()));
        assert!(prev.is_none(), "{name} documented twice");
    }
    out
}

#[test]
fn metrics_md_matches_the_registry() {
    let reg = registry_families();
    let doc = documented();
    assert!(reg.len() > 20 && doc.len() > 20, "{reg:?}\n{doc:?}");
    let mut problems = Vec::new();
    for (name, (ty, help)) in &reg {
        match doc.get(name) {
            None => problems.push(format!("{name}: in the registry, not in docs/METRICS.md")),
            Some((dty, meaning)) => {
                if dty != ty {
                    problems.push(format!("{name}: type {ty}, documented as {dty}"));
                }
                if !meaning.starts_with(help.as_str()) {
                    problems.push(format!(
                        "{name}: HELP {help:?}, but the doc's meaning is {meaning:?}"
                    ));
                }
            }
        }
    }
    for name in doc.keys() {
        if !reg.contains_key(name) {
            problems.push(format!("{name}: in docs/METRICS.md, not in the registry"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn help_texts_need_no_escaping() {
    // HELP is written raw by prometheus-client; 0.0.4 would need `\\` and `\n` escaped.
    for (name, (_, help)) in registry_families() {
        assert!(!help.contains('\\'), "{name}: {help}");
    }
}
