//! The crate's top-level modules form a tree (a DAG): no module imports one that imports it
//! back, directly or round a longer cycle. Reads `crates/sluice/src` (test code excluded) and
//! prints the graph, so a failure shows the cycle to break.
//! Run: `cargo test -p sluice --test it module_tree -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Source text without comments and without trailing `#[cfg(test)] mod` blocks.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|n| n.trim_start().starts_with("mod ") && n.contains('{'))
        {
            break;
        }
        let code = &line[..comment_start(line)];
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Where a `//` comment starts on `line` (outside string literals), or its length.
fn comment_start(line: &str) -> usize {
    let b = line.as_bytes();
    let mut in_str = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'/' if !in_str && b.get(i + 1) == Some(&b'/') => return i,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// Top-level module names referenced as `crate::NAME` or `crate::{NAME, ...}`.
fn imports_of(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: depth-0 items only.
            let mut depth = 0usize;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && depth == 0 && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident(&group[j..]);
                        if !name.is_empty() {
                            found.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn is_test_file(name: &str) -> bool {
    name == "tests.rs" || name.ends_with("_tests.rs")
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
}

/// The graph of the library's top-level modules (the binary's tree under `src/bin` is left out).
fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut g = Graph::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = first.trim_end_matches(".rs").to_string();
        let name = f.file_name().unwrap().to_string_lossy();
        if matches!(top.as_str(), "lib" | "main" | "bin") || is_test_file(&name) {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&f).unwrap());
        let entry = g.entry(top.clone()).or_default();
        for m in imports_of(&code) {
            if m != top {
                entry.insert(m);
            }
        }
    }
    g
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        if let Some(next) = t.g.get(v) {
            for w in next {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn print(g: &Graph) {
    for (m, deps) in g {
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        eprintln!("{m} -> {}", deps.join(" "));
    }
}

#[test]
fn module_tree_top_level_modules_form_no_cycle() {
    let g = graph();
    print(&g);
    let found = cycles(&g);
    assert!(found.is_empty(), "module cycles: {found:?}");
}

#[test]
fn module_tree_layers_keep_their_place() {
    let g = graph();
    let allowed: &[(&str, &[&str])] = &[
        ("addr", &[]),
        ("spec", &["addr"]),
        ("config", &["addr", "spec"]),
        ("net", &["addr"]),
        ("server", &["net"]),
    ];
    for (m, may) in allowed {
        let deps = g.get(*m).cloned().unwrap_or_default();
        let extra: Vec<&String> = deps.iter().filter(|d| !may.contains(&d.as_str())).collect();
        assert!(
            extra.is_empty(),
            "{m} imports {extra:?}; it may import only {may:?}"
        );
    }
}

#[test]
fn module_tree_reader_sees_imports_and_skips_comments_and_tests() {
    let code = code_of(
        "use crate::{a::X, b::{self, Y}, c};\nuse crate::d;\n// crate::e\nlet x = 1; // crate::f\nlet u = (\"http://x\", crate::h::z());\n#[cfg(test)]\nmod tests {\n use crate::g;\n}\n",
    );
    let found: Vec<String> = imports_of(&code).into_iter().collect();
    assert_eq!(found, ["a", "b", "c", "d", "h"]);
    let mut g = Graph::new();
    g.entry("x".into()).or_default().insert("y".into());
    g.entry("y".into()).or_default().insert("z".into());
    g.entry("z".into()).or_default().insert("x".into());
    assert_eq!(
        cycles(&g),
        vec![vec!["x".to_string(), "y".into(), "z".into()]]
    );
}
