//! The import rule of the layers (README "Layout"): api → (authz, store, llm, knowledge, model);
//! store → (model, db, authz's Scope), answering its own errors (never `error`'s HTTP ones); llm → (model, store); model → nothing of the crate. Checked on
//! the source text: every `crate::<module>` a file names, including those inside `use crate::{…}`.

use std::{collections::BTreeSet, path::Path};

/// The top-level modules of the crate that `text` imports or names.
fn crate_modules(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::{c, d}, e::f}`: the first segment of each top-level item
            let (mut depth, mut item, mut end) = (0usize, String::new(), group.len());
            for (i, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        end = i;
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.extend(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(ch);
                }
            }
            found.extend(first_segment(&item));
            rest = &group[end..];
        } else {
            found.extend(first_segment(rest));
        }
    }
    found
}

fn first_segment(s: &str) -> Option<String> {
    let name: String = s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty() && name != "self").then_some(name)
}

fn files_of(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_of(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

#[test]
fn imports_go_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // what each layer must not import
    let rules: &[(&str, &[&str])] = &[
        ("model", &["api", "store", "llm", "knowledge", "authz", "auth", "db", "server", "web", "metrics"]),
        ("store", &["api", "error", "llm", "auth", "server", "web", "metrics"]),
        ("llm", &["api", "server", "web"]),
        ("knowledge", &["api", "server", "web"]),
        ("authz", &["api", "store", "llm", "knowledge", "db"]),
        ("auth", &["api", "llm", "knowledge"]),
        ("db.rs", &["api", "error", "store", "llm", "knowledge", "auth"]),
    ];
    let mut broken = vec![];
    for file in files_of(&src) {
        let rel = file.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        let layer = rel.split('/').next().unwrap().trim_end_matches(".rs");
        let text = std::fs::read_to_string(&file).unwrap();
        let imported = crate_modules(&text);
        if !rel.starts_with("api/") && rel != "lib.rs" && imported.contains("api") {
            broken.push(format!("{rel} imports api (only api/ and lib.rs may)"));
        }
        for (owner, forbidden) in rules {
            if layer == owner.trim_end_matches(".rs") || rel == *owner {
                for m in imported.iter().filter(|m| forbidden.contains(&m.as_str())) {
                    broken.push(format!("{rel} imports {m}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "the layers' import rule is broken:\n{}", broken.join("\n"));
}

#[test]
fn the_import_scanner_sees_grouped_and_nested_imports() {
    let text = "use crate::{\n    AppState,\n    api::{ApiTags, users::User},\n    store::{self, audit::Event},\n};\nfn f() { crate::db::now(); }";
    let found: Vec<String> = crate_modules(text).into_iter().collect();
    assert_eq!(found, ["AppState", "api", "db", "store"]);
}
