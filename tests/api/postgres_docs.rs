//! The knowledge base's storage (documents, the ingestion queue, chunks, full-text search)
//! through the seam: one body on both backends (README, Operations, "PostgreSQL (in progress)").
//! What differs between the engines is asserted per backend, and said where it is.

use copilot::{
    authz::Scope,
    knowledge::{
        KnowledgeScope,
        chunk::ChunkDraft,
        search::{Query, retrieve},
    },
    model::knowledge::Passage,
    pagination::Page,
    store::{
        conn::{Conn, Store},
        documents::{self, DocumentFilter, NewDocument},
        error::StoreError,
        organizations::NewOrg,
    },
};

use crate::postgres::{count, on_postgres, sqlite_store};

const T0: &str = "2026-03-04T05:06:01.000001Z";
const T1: &str = "2026-03-04T05:06:02.000000Z";
const T2: &str = "2026-03-04T05:06:03.000000Z";
const NOW: &str = "2026-03-04T06:00:00.000000Z";
const LEASE: &str = "2026-03-04T06:05:00.000000Z";
const LATER: &str = "2026-03-04T07:00:00.000000Z";

fn org(name: &str) -> NewOrg {
    NewOrg {
        id: copilot::db::new_id(),
        name: name.into(),
        domain: None,
        description: None,
        settings: "{}".into(),
        now: T0.into(),
    }
}

fn doc(id: &str, org: &str, project: Option<&str>, title: &str, filename: &str, user: &str, now: &str) -> NewDocument {
    NewDocument {
        id: id.into(),
        organization_id: org.into(),
        project_id: project.map(str::to_string),
        title: title.into(),
        filename: filename.into(),
        content_type: "text/markdown",
        sha256: format!("sha-of-{title}"),
        metadata: r#"{"team": "hr", "tags": ["a", 1]}"#.into(),
        created_by: user.into(),
        now: now.into(),
    }
}

/// A member `writer` of organization `org` (the documents' `created_by`); its id.
fn insert_writer(c: &mut Conn, org: &str) -> Result<String, StoreError> {
    let u = copilot::store::users::NewUser {
        id: copilot::db::new_id(),
        organization_id: org.into(),
        role_id: Some(copilot::store::organizations::member_role_id(c, org)?),
        username: "writer".into(),
        email: "writer@example.com".into(),
        full_name: None,
        password_hash: "x".into(),
        is_superuser: false,
        now: T0.into(),
    };
    Ok(copilot::store::users::insert_user(c, &u)?.id)
}

fn draft(page: Option<i64>, heading: &str, text: &str) -> ChunkDraft {
    ChunkDraft { page, heading: heading.into(), text: text.into(), token_count: text.len() as i64 / 4 }
}

/// `sql` with one text parameter, on either backend (projects belong to another helper's area).
fn exec(c: &mut Conn, sqlite: &str, pg: &str, args: &[&str]) -> Result<(), StoreError> {
    match c {
        Conn::Sqlite(c) => {
            c.execute(sqlite, rusqlite::params_from_iter(args))?;
        }
        Conn::Postgres(t) => {
            let args: Vec<&(dyn postgres::types::ToSql + Sync)> =
                args.iter().map(|a| a as &(dyn postgres::types::ToSql + Sync)).collect();
            t.execute(pg, &args)?;
        }
    }
    Ok(())
}

async fn search(store: &Store, scope: Scope, projects: &[&str], docs: &[&str], q: &str) -> Vec<Passage> {
    let query = Query {
        scope,
        project_ids: projects.iter().map(|s| s.to_string()).collect(),
        document_ids: docs.iter().map(|s| s.to_string()).collect(),
        text: q.into(),
        limit: 10,
    };
    retrieve(store, None, query).await.unwrap()
}

fn texts(p: &[Passage]) -> Vec<&str> {
    p.iter().map(|p| p.text.as_str()).collect()
}

async fn claim(store: &Store, token: &str, now: &'static str, max: i64) -> Option<String> {
    let token = token.to_string();
    store.write(move |c| documents::claim(c, &token, LEASE, now, max)).await.unwrap().map(|d| d.id)
}

async fn get(store: &Store, scope: Scope, id: &str) -> Result<copilot::model::documents::Document, StoreError> {
    let id = id.to_string();
    store.read(move |c| documents::find_document(c, &scope, &id)).await
}

async fn documents_area(store: &Store) {
    let backend = store.backend();
    let all = Scope::system_all();
    store.write(copilot::store::bootstrap::ensure_permissions).await.unwrap();
    let (a, b) = (org("Acme"), org("Globex"));
    let (acme, globex) = (a.id.clone(), b.id.clone());
    let user = store
        .write(move |c| -> Result<_, StoreError> {
            for o in [&a, &b] {
                copilot::store::organizations::insert_org(c, o)?;
                copilot::store::bootstrap::insert_system_roles(c, &o.id, &o.now)?;
            }
            for (id, o) in [("p1", &a.id), ("p2", &b.id)] {
                exec(
                    c,
                    "INSERT INTO projects (id, organization_id, name, created_at, updated_at) \
                     VALUES (?1, ?2, 'P', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')",
                    "INSERT INTO projects (id, organization_id, name, created_at, updated_at) \
                     VALUES ($1, $2, 'P', now(), now())",
                    &[id, o],
                )?;
            }
            insert_writer(c, &a.id)
        })
        .await
        .unwrap();
    let (in_a, in_b) = (Scope::system(&acme), Scope::system(&globex));

    // ---- documents: insert (bytes, JSON, timestamps), the same-bytes conflict, lookups
    let news = [
        (doc("d1", &acme, None, "Handbook", "handbook.md", &user, T0), b"handbook bytes".to_vec()),
        (doc("d2", &acme, Some("p1"), "Pay 100%_x", "pay.txt", &user, T1), b"pay bytes".to_vec()),
        (doc("d3", &globex, None, "Handbook", "handbook.md", &user, T1), b"handbook bytes".to_vec()),
        // the same bytes as d1 in another project of the same organization: allowed
        (doc("d4", &acme, Some("p1"), "Handbook", "copy.md", &user, T2), b"handbook bytes".to_vec()),
    ];
    for (new, bytes) in news {
        let got = store.write(move |c| documents::insert_document(c, &new, &bytes)).await.unwrap();
        assert_eq!((got.status.as_str(), got.chunk_count, got.page_count), ("pending", 0, None), "{backend}");
    }
    let dup = doc("d5", &acme, None, "Handbook", "again.md", &user, T2);
    let e = store.write(move |c| documents::insert_document(c, &dup, b"handbook bytes")).await.unwrap_err();
    assert!(matches!(&e, StoreError::Conflict(m) if m.ends_with(": d1")), "{backend}: {e:?}");
    let d1 = get(store, in_a.clone(), "d1").await.unwrap();
    assert_eq!(
        (d1.organization_id.as_str(), d1.project_id.as_deref(), d1.title.as_str(), d1.filename.as_str()),
        (acme.as_str(), None, "Handbook", "handbook.md"),
        "{backend}"
    );
    assert_eq!((d1.content_type.as_str(), d1.size_bytes, d1.sha256.as_str()), ("text/markdown", 14, "sha-of-Handbook"));
    assert_eq!(d1.metadata, serde_json::json!({"team": "hr", "tags": ["a", 1]}), "{backend}");
    assert_eq!((d1.created_by.as_deref(), d1.error.as_deref()), (Some(user.as_str()), None), "{backend}");
    assert_eq!((d1.created_at.as_str(), d1.updated_at.as_str()), (T0, T0), "{backend}");
    assert!(matches!(get(store, in_b.clone(), "d1").await, Err(StoreError::NotFound(_))), "{backend}");
    let (ac, gl) = (acme.clone(), globex.clone());
    let checks = store
        .read(move |c| -> Result<_, StoreError> {
            Ok([
                documents::project_in_org(c, &ac, "p1")?,
                documents::project_in_org(c, &ac, "p2")?,
                documents::document_in_org(c, &ac, "d1")?,
                documents::document_in_org(c, &gl, "d1")?,
                documents::find_same_bytes(c, &ac, Some("p1"), "sha-of-Handbook")?.as_deref() == Some("d4"),
                documents::find_same_bytes(c, &gl, Some("p1"), "sha-of-Handbook")?.is_none(),
            ])
        })
        .await
        .unwrap();
    assert_eq!(checks, [true, false, true, false, true, true], "{backend}");
    let (ac, kb) = (acme.clone(), |p: &[&str], d: &[&str]| KnowledgeScope {
        enabled: true,
        project_ids: p.iter().map(|s| s.to_string()).collect(),
        document_ids: d.iter().map(|s| s.to_string()).collect(),
        top_k: 5,
    });
    let (ok, bad_p, bad_d) = (kb(&["p1"], &["d1", "d4"]), kb(&["p2"], &[]), kb(&[], &["d3"]));
    let answers = store
        .read(move |c| {
            Ok::<_, StoreError>([
                documents::check_knowledge_scope(c, &ac, &ok).map_err(|e| e.to_string()),
                documents::check_knowledge_scope(c, &ac, &bad_p).map_err(|e| e.to_string()),
                documents::check_knowledge_scope(c, &ac, &bad_d).map_err(|e| e.to_string()),
            ])
        })
        .await
        .unwrap();
    assert_eq!(answers[0], Ok(()), "{backend}");
    assert_eq!(answers[1], Err("knowledge_base.project_ids: p2 does not name a project of this organization".into()));
    assert_eq!(answers[2], Err("knowledge_base.document_ids: d3 does not name a document of this organization".into()));

    // the original bytes, within the scope only
    let (s, s2) = (in_a.clone(), in_b.clone());
    let file = store.read(move |c| documents::document_file(c, &s, "d2")).await.unwrap();
    assert_eq!(file, ("pay.txt".to_string(), "text/markdown".to_string(), b"pay bytes".to_vec()), "{backend}");
    let e = store.read(move |c| documents::document_file(c, &s2, "d2")).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{backend}");

    // ---- the list: newest first (ties by id, descending), filters, literal search, paging
    let list = |scope: Scope, search: Option<&str>, project: Option<&str>, status: Option<&'static str>, page: Page| {
        let f = DocumentFilter { search: search.map(str::to_string), project_id: project.map(str::to_string), status };
        let store = store.clone();
        async move {
            let (rows, total) = store.read(move |c| documents::list_documents(c, &scope, &f, page)).await.unwrap();
            (rows.into_iter().map(|d| d.id).collect::<Vec<_>>(), total)
        }
    };
    let p = |skip, limit| Page { skip, limit };
    assert_eq!(
        list(all.clone(), None, None, None, p(0, 10)).await,
        (vec!["d4".into(), "d3".into(), "d2".into(), "d1".into()], 4)
    );
    assert_eq!(list(in_a.clone(), None, None, None, p(0, 10)).await, (vec!["d4".into(), "d2".into(), "d1".into()], 3));
    assert_eq!(list(in_a.clone(), None, None, None, p(1, 1)).await, (vec!["d2".into()], 3), "{backend}");
    assert_eq!(list(in_a.clone(), Some("HAND"), None, None, p(0, 10)).await, (vec!["d4".into(), "d1".into()], 2));
    assert_eq!(list(in_a.clone(), Some("COPY.m"), None, None, p(0, 10)).await, (vec!["d4".into()], 1), "{backend}");
    // %, _ are themselves, not patterns
    assert_eq!(list(in_a.clone(), Some("100%_"), None, None, p(0, 10)).await, (vec!["d2".into()], 1), "{backend}");
    assert_eq!(list(in_a.clone(), Some("1%0"), None, None, p(0, 10)).await, (vec![], 0), "{backend}");
    assert_eq!(list(in_a.clone(), None, Some("p1"), None, p(0, 10)).await, (vec!["d4".into(), "d2".into()], 2));
    assert_eq!(list(in_b.clone(), None, None, Some("pending"), p(0, 10)).await, (vec!["d3".into()], 1), "{backend}");
    assert_eq!(list(in_a.clone(), None, None, Some("ready"), p(0, 10)).await, (vec![], 0), "{backend}");

    // ---- the queue: oldest first (ties by id), one claim per document, fenced by the token
    assert_eq!(claim(store, "tok1", NOW, 3).await.as_deref(), Some("d1"), "{backend}");
    assert_eq!(claim(store, "tok2", NOW, 3).await.as_deref(), Some("d2"), "{backend}");
    assert_eq!(claim(store, "tok3", NOW, 3).await.as_deref(), Some("d3"), "{backend}");
    assert_eq!(claim(store, "tok4", NOW, 3).await.as_deref(), Some("d4"), "{backend}");
    assert_eq!(claim(store, "tok5", NOW, 3).await, None, "{backend}");
    let d1 = get(store, all.clone(), "d1").await.unwrap();
    assert_eq!((d1.status.as_str(), d1.updated_at.as_str()), ("processing", NOW), "{backend}");
    let renewed = store
        .write(|c| {
            Ok::<_, StoreError>((
                documents::renew_lease(c, "d1", "tok1", LEASE)?,
                documents::renew_lease(c, "d1", "tok2", LEASE)?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(renewed, (true, false), "{backend}");

    // chunks: a stale token writes nothing; a commit replaces the set, in order, over batches
    let commit = |id: &'static str, token: &'static str, chunks: Vec<ChunkDraft>| {
        let store = store.clone();
        async move {
            store
                .write(move |c| documents::commit_chunks(c, id, token, &chunks, None, None, Some(2), "key", NOW))
                .await
                .unwrap()
        }
    };
    let handbook = || {
        vec![
            draft(Some(1), "Handbook > Vacation", "Twenty-five days a year."),
            draft(Some(1), "Handbook > Misc", "Ask about vacation plans and the café policies later, please."),
            draft(None, "", "Servers restart on Mondays."),
        ]
    };
    assert!(!commit("d1", "tok2", handbook()).await, "{backend}");
    assert!(commit("d1", "tok1", handbook()).await, "{backend}");
    assert!(!commit("d1", "tok1", handbook()).await, "{backend}: the lease is gone with the commit");
    assert!(commit("d3", "tok3", handbook()).await, "{backend}");
    let rules: Vec<ChunkDraft> = (0..1030).map(|i| draft(Some(i + 1), "Rules", &format!("rule number {i}"))).collect();
    assert!(commit("d2", "tok2", rules).await, "{backend}");
    let d1 = get(store, all.clone(), "d1").await.unwrap();
    assert_eq!((d1.status.as_str(), d1.chunk_count, d1.page_count, d1.error), ("ready", 3, Some(2), None));
    let chunks = |scope: Scope, id: &'static str, page: Page| {
        let store = store.clone();
        async move { store.read(move |c| documents::list_chunks(c, &scope, id, page)).await.unwrap() }
    };
    let (rows, total) = chunks(in_a.clone(), "d1", p(0, 10)).await;
    assert_eq!(total, 3, "{backend}");
    assert_eq!(
        rows.iter().map(|c| (c.ordinal, c.page, c.heading.as_str(), c.token_count)).collect::<Vec<_>>(),
        [(0, Some(1), "Handbook > Vacation", 6), (1, Some(1), "Handbook > Misc", 15), (2, None, "", 6)],
        "{backend}"
    );
    let (rows, total) = chunks(in_a.clone(), "d2", p(1020, 5)).await;
    assert_eq!(total, 1030, "{backend}");
    assert_eq!(
        rows.iter().map(|c| (c.ordinal, c.page, c.text.clone())).collect::<Vec<_>>(),
        (1020..1025).map(|i| (i, Some(i + 1), format!("rule number {i}"))).collect::<Vec<_>>(),
        "{backend}"
    );
    assert_eq!(chunks(in_b.clone(), "d1", p(0, 10)).await.1, 0, "{backend}: another organization's chunks");

    // ---- full-text search: stemming, diacritics, the heading above the text, the scope
    let found = search(store, in_a.clone(), &[], &[], "vacations").await;
    assert_eq!(
        texts(&found),
        ["Twenty-five days a year.", "Ask about vacation plans and the café policies later, please."]
    );
    assert!(found.iter().all(|p| p.document_id == "d1" && p.document_title == "Handbook"), "{backend}: {found:?}");
    assert!(found[0].score > found[1].score && found[1].score > 0.0, "{backend}: {found:?}");
    assert_eq!((found[0].heading.as_str(), found[0].page), ("Handbook > Vacation", Some(1)), "{backend}");
    assert_eq!(texts(&search(store, in_a.clone(), &[], &[], "CAFE policy").await).len(), 1, "{backend}");
    // the words are ORed; user text is never syntax
    let q = r#"restart OR "payroll" -payroll (x* NOT"#;
    assert_eq!(texts(&search(store, in_a.clone(), &[], &[], q).await), ["Servers restart on Mondays."], "{backend}");
    assert!(search(store, in_a.clone(), &[], &[], "* ( ) \" 🎉").await.is_empty(), "{backend}");
    // another organization's passages are never found, with the same words in them
    let found = search(store, in_b.clone(), &[], &[], "vacation").await;
    assert!(!found.is_empty() && found.iter().all(|p| p.document_id == "d3"), "{backend}: {found:?}");
    let found = search(store, all.clone(), &[], &[], "vacation").await;
    assert_eq!(found.len(), 4, "{backend}: a superuser's own search reaches every organization");
    // project and document scope
    assert!(search(store, in_a.clone(), &["p1"], &[], "vacation").await.is_empty(), "{backend}");
    let found = search(store, in_a.clone(), &["p1"], &[], "rule 1029").await;
    assert!(!found.is_empty() && found.iter().all(|p| p.document_id == "d2"), "{backend}");
    assert_eq!(found[0].text, "rule number 1029", "{backend}");
    assert!(search(store, in_a.clone(), &[], &["d2"], "mondays").await.is_empty(), "{backend}");
    assert_eq!(search(store, in_a.clone(), &[], &["d1"], "mondays").await.len(), 1, "{backend}");
    // a question of stop words only: SQLite ranks the newest chunks of those words (BM25 knows
    // no stop words); PostgreSQL's English configuration drops them, so nothing matches
    let found = search(store, in_a.clone(), &[], &[], "the").await;
    match backend {
        "sqlite" => assert_eq!(texts(&found), ["Ask about vacation plans and the café policies later, please."]),
        _ => assert!(found.is_empty(), "{found:?}"),
    }

    // ---- reindex keeps the chunks searchable; a failure takes them
    let s = in_a.clone();
    let d = store.write(move |c| documents::request_reindex(c, &s, "d1", LEASE)).await.unwrap();
    assert_eq!((d.status.as_str(), d.updated_at.as_str(), d.chunk_count), ("pending", LEASE, 3), "{backend}");
    let s = in_b.clone();
    let e = store.write(move |c| documents::request_reindex(c, &s, "d1", LEASE)).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{backend}");
    assert_eq!(search(store, in_a.clone(), &[], &["d1"], "mondays").await.len(), 1, "{backend}");
    assert_eq!(claim(store, "tok6", NOW, 3).await.as_deref(), Some("d1"), "{backend}");
    let failed = store
        .write(|c| {
            Ok::<_, StoreError>((
                documents::commit_failure(c, "d1", "tok1", "boom", NOW)?,
                documents::commit_failure(c, "d1", "tok6", "boom", NOW)?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(failed, (false, true), "{backend}");
    let d1 = get(store, all.clone(), "d1").await.unwrap();
    assert_eq!((d1.status.as_str(), d1.error.as_deref(), d1.chunk_count), ("failed", Some("boom"), 0), "{backend}");
    assert_eq!(chunks(in_a.clone(), "d1", p(0, 10)).await.1, 0, "{backend}");
    assert!(search(store, in_a.clone(), &[], &[], "mondays").await.is_empty(), "{backend}");

    // ---- a start takes work back: SQLite all of it (one process serves the file), PostgreSQL
    // only expired leases (other instances may be working); too many attempts fail
    let requeued = store.write(|c| documents::requeue_interrupted(c, "2026-03-04T06:01:00.000000Z")).await.unwrap();
    match backend {
        "sqlite" => assert_eq!(requeued, 1),
        _ => {
            assert_eq!(requeued, 0, "d4's lease is live");
            assert_eq!(store.write(|c| documents::requeue_interrupted(c, LATER)).await.unwrap(), 1);
        }
    }
    let d4 = get(store, all.clone(), "d4").await.unwrap();
    assert_eq!((d4.status.as_str(), d4.error.as_deref()), ("pending", None), "{backend}");
    assert_eq!(claim(store, "tok7", LATER, 1).await, None, "{backend}: attempted once already");
    let d4 = get(store, all.clone(), "d4").await.unwrap();
    assert_eq!(
        (d4.status.as_str(), d4.error.as_deref(), d4.updated_at.as_str()),
        ("failed", Some("ingestion was interrupted 1 times; reindex to retry"), LATER),
        "{backend}"
    );
    assert_eq!(store.write(documents::upgrade_spaces).await.unwrap(), 0, "{backend}");

    // ---- several instances claim at once: each document once (PostgreSQL: SKIP LOCKED; the
    // first claim holds its row lock, uncommitted, while the second claims)
    for id in ["d2", "d3"] {
        store.write(move |c| documents::request_reindex(c, &Scope::system_all(), id, NOW)).await.unwrap();
    }
    let (first, second) = if backend == "postgres" {
        let (claimed_tx, claimed_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let one = store.write(move |c| {
            let got = documents::claim(c, "tok8", LEASE, NOW, 3)?;
            claimed_tx.send(()).unwrap();
            done_rx.recv_timeout(std::time::Duration::from_secs(20)).expect("the second claim waited for the first");
            Ok::<_, StoreError>(got.map(|d| d.id))
        });
        let two = {
            let store = store.clone();
            async move {
                tokio::task::spawn_blocking(move || claimed_rx.recv().unwrap()).await.unwrap();
                let got = claim(&store, "tok9", NOW, 3).await;
                done_tx.send(()).unwrap();
                got
            }
        };
        let (one, two) = tokio::join!(one, two);
        (one.unwrap(), two)
    } else {
        (claim(store, "tok8", NOW, 3).await, claim(store, "tok9", NOW, 3).await)
    };
    assert_eq!((first.as_deref(), second.as_deref()), (Some("d2"), Some("d3")), "{backend}");
    assert_eq!(claim(store, "tok10", NOW, 3).await, None, "{backend}");

    // ---- delete: the file and the chunks go with the row; another organization's is not found
    let s = in_b.clone();
    let e = store.write(move |c| documents::delete_document(c, &s, "d2")).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{backend}");
    let s = in_a.clone();
    let gone = store.write(move |c| documents::delete_document(c, &s, "d2")).await.unwrap();
    assert_eq!((gone.id.as_str(), gone.chunk_count), ("d2", 1030), "{backend}");
    assert!(matches!(get(store, all.clone(), "d2").await, Err(StoreError::NotFound(_))), "{backend}");
    let left = store
        .read(|c| {
            Ok::<_, StoreError>((
                count(
                    c,
                    "SELECT COUNT(*) FROM chunks WHERE document_id = ?1",
                    "SELECT COUNT(*) FROM chunks WHERE document_id = $1",
                    "d2",
                )?,
                count(
                    c,
                    "SELECT COUNT(*) FROM document_files WHERE document_id = ?1",
                    "SELECT COUNT(*) FROM document_files WHERE document_id = $1",
                    "d2",
                )?,
                count(
                    c,
                    "SELECT COUNT(*) FROM chunks WHERE document_id = ?1",
                    "SELECT COUNT(*) FROM chunks WHERE document_id = $1",
                    "d3",
                )?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(left, (0, 0, 3), "{backend}");
    assert!(search(store, all.clone(), &[], &[], "rule").await.is_empty(), "{backend}");

    // ---- the background worker on this store: claims, extracts, chunks, commits
    let mut new = doc("d6", &acme, None, "Leave", "leave.md", &user, T2);
    new.sha256 = "sha-of-leave".into();
    let text = "# Leave\n\n## Parental leave\n\nSixteen weeks, paid in full.\n";
    store.write(move |c| documents::insert_document(c, &new, text.as_bytes())).await.unwrap();
    let ingestor = copilot::knowledge::ingest::Ingestor::new(store.clone(), None);
    ingestor.start();
    ingestor.wake();
    let mut d6 = get(store, all.clone(), "d6").await.unwrap();
    for _ in 0..200 {
        if d6.status != "pending" && d6.status != "processing" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        d6 = get(store, all.clone(), "d6").await.unwrap();
    }
    ingestor.shutdown(std::time::Duration::from_secs(5)).await;
    assert_eq!((d6.status.as_str(), d6.chunk_count, d6.error.as_deref()), ("ready", 1, None), "{backend}");
    let found = search(store, in_a.clone(), &[], &[], "parental weeks").await;
    assert_eq!(texts(&found), ["Sixteen weeks, paid in full."], "{backend}");
    assert_eq!((found[0].heading.as_str(), found[0].document_title.as_str()), ("Leave > Parental leave", "Leave"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_docs_documents_area_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    documents_area(&sqlite_store(&dir)).await;
}

#[test]
fn postgres_docs_documents_area_on_postgres() {
    on_postgres("postgres_docs_documents_area_on_postgres", |store| async move {
        documents_area(&store).await;
    });
}

/// A unit vector of 8 dimensions at `angle` (radians) in the plane of the first two axes: the
/// cosine distance of two such vectors grows with the angle between them.
fn at_angle(angle: f32) -> Vec<f32> {
    let mut v = vec![0.0; 8];
    (v[0], v[1]) = (angle.cos(), angle.sin());
    v
}

/// Ingests document `id` of `org`: a chunk of text "`text` i" per vector, with it.
async fn ingest_with_vectors(
    store: &Store,
    id: &'static str,
    org: &str,
    user: &str,
    text: &str,
    vectors: Vec<Vec<f32>>,
) {
    let mut d = doc(id, org, None, id, "v.md", user, T0);
    d.sha256 = format!("sha-of-{id}");
    let chunks: Vec<ChunkDraft> = (0..vectors.len()).map(|i| draft(None, "", &format!("{text} {i}"))).collect();
    let token = format!("tok-{id}");
    store.write(move |c| documents::insert_document(c, &d, b"x")).await.unwrap();
    let claimed = claim(store, &token, NOW, 1).await;
    assert_eq!(claimed.as_deref(), Some(id));
    let ok = store
        .write(move |c| {
            let v = documents::Vectors { model: "m", vectors: &vectors };
            documents::commit_chunks(c, id, &token, &chunks, Some(v), None, None, "key:m", NOW)
        })
        .await
        .unwrap();
    assert!(ok);
}

/// Vectors through the seam: stored with the chunks, the nearest found within the organization
/// and scope before the `k` (another organization's nearer vectors are never neighbours, even
/// when they outnumber the candidates an approximate index looks at), fused with full text, and
/// taken along when their document goes.
async fn vectors_area(store: &Store) {
    let backend = store.backend();
    let version = store.write(documents::enable_vectors).await.unwrap();
    assert!(version.is_some(), "{backend}: no vectors (pgvector not installed?)");
    store.write(copilot::store::bootstrap::ensure_permissions).await.unwrap();
    let (a, b) = (org("Acme"), org("Globex"));
    let (acme, globex) = (a.id.clone(), b.id.clone());
    let user = store
        .write(move |c| -> Result<_, StoreError> {
            for o in [&a, &b] {
                copilot::store::organizations::insert_org(c, o)?;
                copilot::store::bootstrap::insert_system_roles(c, &o.id, &o.now)?;
            }
            insert_writer(c, &a.id)
        })
        .await
        .unwrap();
    // Globex: 400 vectors scattered around the question's, every one nearer it than Acme's
    let mut seed = 7u32;
    let mut noise = move || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (seed >> 16) as f32 / 65_536.0 - 0.5
    };
    let globex_vectors = (0..400)
        .map(|i| {
            let mut v = at_angle(i as f32 * 0.0005);
            v.iter_mut().skip(2).for_each(|x| *x = 0.1 * noise());
            v
        })
        .collect();
    ingest_with_vectors(store, "g1", &globex, &user, "globex note", globex_vectors).await;
    ingest_with_vectors(store, "a1", &acme, &user, "acme far", vec![at_angle(1.2), at_angle(1.0)]).await;
    ingest_with_vectors(store, "a2", &acme, &user, "acme near", vec![at_angle(0.5)]).await;

    // `hnsw`: PostgreSQL must take the HNSW index (else its planner picks: for an organization
    // of few vectors, an exact scan of them by the organization's index)
    let nearest = |scope: Scope, docs: Vec<String>, q: &'static str, hnsw: bool| {
        let store = store.clone();
        async move {
            store
                .read(move |c| {
                    if let (Conn::Postgres(t), true) = (&mut *c, hnsw) {
                        t.batch_execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off")?;
                    }
                    let s = documents::SearchScope { scope: &scope, project_ids: &[], document_ids: &docs };
                    documents::search_passages(c, &s, q, Some(("m", &at_angle(0.0))), 3)
                })
                .await
                .unwrap()
        }
    };
    let found = nearest(Scope::system(&acme), vec![], "nothing matches this", false).await;
    assert_eq!(texts(&found), ["acme near 0", "acme far 1", "acme far 0"], "{backend}");
    assert!(found[0].score > found[1].score && found[0].score <= 1.0 / 61.0, "{backend}: RRF scores");
    // through the approximate index, which pgvector scans on (hnsw.iterative_scan) past the 400
    // nearer vectors of Globex that the organization filters out: Acme's, never Globex's
    let found = nearest(Scope::system(&acme), vec![], "nothing matches this", true).await;
    assert!(!found.is_empty() && texts(&found).iter().all(|t| t.starts_with("acme")), "{backend}: {found:?}");
    let found = nearest(Scope::system(&acme), vec!["a1".into()], "nothing matches this", false).await;
    assert_eq!(texts(&found), ["acme far 1", "acme far 0"], "{backend}: the document scope is in the KNN");
    let found = nearest(Scope::system(&globex), vec![], "nothing matches this", true).await;
    assert!(found.len() == 3 && texts(&found).iter().all(|t| t.starts_with("globex note")), "{backend}: {found:?}");
    // full text and vectors fused: "far" matches a1's chunks by text, and they rise above a2's
    let found = nearest(Scope::system(&acme), vec![], "far", false).await;
    assert_eq!(texts(&found)[..2], ["acme far 0", "acme far 1"], "{backend}");
    // another model (or dimension) has no space: full text alone
    let found = store
        .read(move |c| {
            let scope = Scope::system(&acme);
            let s = documents::SearchScope { scope: &scope, project_ids: &[], document_ids: &[] };
            documents::search_passages(c, &s, "near", Some(("other", &at_angle(0.0))), 3)
        })
        .await
        .unwrap();
    assert_eq!(texts(&found), ["acme near 0"], "{backend}");

    // a document deleted takes its vectors along
    let vectors = |c: &mut Conn| {
        count(
            c,
            "SELECT count(*) FROM chunk_vec_1_floats WHERE ?1 <> ''",
            "SELECT count(*) FROM chunk_vec_1 WHERE $1 <> ''",
            "x",
        )
    };
    assert_eq!(store.read(vectors).await.unwrap(), 403, "{backend}");
    store.write(|c| documents::delete_document(c, &Scope::system_all(), "g1")).await.unwrap();
    assert_eq!(store.read(vectors).await.unwrap(), 3, "{backend}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_docs_vectors_area_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    vectors_area(&sqlite_store(&dir)).await;
}

#[test]
fn postgres_docs_vectors_area_on_postgres() {
    on_postgres("postgres_docs_vectors_area_on_postgres", |store| async move {
        vectors_area(&store).await;
    });
}
