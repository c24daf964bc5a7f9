//! `/documents` (SPEC §7): uploads of every accepted format really extracted, the refusals
//! (413, 415, 400, 409), tenancy, deletion, reindexing and the queue surviving a restart.
//! Fixtures are made here: a PDF written with lopdf, a DOCX written with zip.

use copilot::store::error::StoreResult;
use std::{io::Write, time::Duration};

use serde_json::{Value, json};

use crate::helpers::*;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A PDF whose pages carry `pages` as their text (Courier, one line each); an empty string
/// gives a page without any text, like a scan.
pub fn pdf(pages: &[&str]) -> Vec<u8> {
    use lopdf::{
        Document, Object, Stream,
        content::{Content, Operation},
        dictionary,
    };
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Courier"});
    let resources_id = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font_id}});
    let mut kids: Vec<Object> = vec![];
    for text in pages {
        let operations = if text.is_empty() {
            // a filled rectangle: something on the page, no text
            vec![Operation::new("re", vec![10.into(), 10.into(), 200.into(), 200.into()]), Operation::new("f", vec![])]
        } else {
            vec![
                Operation::new("BT", vec![]),
                Operation::new("Tf", vec!["F1".into(), 12.into()]),
                Operation::new("Td", vec![72.into(), 700.into()]),
                Operation::new("Tj", vec![Object::string_literal(*text)]),
                Operation::new("ET", vec![]),
            ]
        };
        let content = Content { operations };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page_id = doc.add_object(dictionary! {"Type" => "Page", "Parent" => pages_id, "Contents" => content_id});
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    let pages_dict = dictionary! {
        "Type" => "Pages",
        "Kids" => kids,
        "Count" => count,
        "Resources" => resources_id,
        "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
    };
    doc.objects.insert(pages_id, Object::Dictionary(pages_dict));
    let catalog_id = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
    doc.trailer.set("Root", catalog_id);
    let mut out = vec![];
    doc.save_to(&mut out).unwrap();
    out
}

/// A zip archive of `(name, text)` entries.
pub fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, text) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

const W: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main""#;

/// A DOCX with a localized heading style id (`berschrift1`, named "heading 1"), a built-in
/// `Heading2`, entities, and a table.
pub fn docx() -> Vec<u8> {
    let styles = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><w:styles {W}>
        <w:style w:type="paragraph" w:styleId="berschrift1"><w:name w:val="heading 1"/></w:style>
        <w:style w:type="paragraph" w:styleId="Heading2"><w:name w:val="heading 2"/></w:style>
        <w:style w:type="paragraph" w:styleId="Normal"><w:name w:val="Normal"/></w:style></w:styles>"#
    );
    let p = |style: &str, text: &str| {
        let ppr =
            if style.is_empty() { String::new() } else { format!(r#"<w:pPr><w:pStyle w:val="{style}"/></w:pPr>"#) };
        format!("<w:p>{ppr}<w:r><w:t>{text}</w:t></w:r></w:p>")
    };
    let body = [
        p("berschrift1", "Policies"),
        p("", "Every employee follows these rules &amp; guidelines."),
        p("Heading2", "Travel"),
        p("", "Book trains before flights. Caf&#233; receipts count."),
        r#"<w:tbl><w:tr><w:tc><w:p><w:r><w:t>City</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Allowance</w:t></w:r></w:p></w:tc></w:tr>
           <w:tr><w:tc><w:p><w:r><w:t>Berlin</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>120</w:t></w:r></w:p></w:tc></w:tr></w:tbl>"#
            .to_string(),
    ]
    .concat();
    let document =
        format!(r#"<?xml version="1.0" encoding="UTF-8"?><w:document {W}><w:body>{body}</w:body></w:document>"#);
    zip_of(&[
        ("[Content_Types].xml", r#"<?xml version="1.0"?><Types/>"#),
        ("word/styles.xml", &styles),
        ("word/document.xml", &document),
    ])
}

pub const HANDBOOK_MD: &str = "# Handbook\n\nWelcome to the company.\n\n## Vacation\n\nEvery employee gets \
                               twenty-five vacation days per year.\n\n## Expenses\n\nSubmit receipts within 30 days.\n";

// ---------------------------------------------------------------------------------------------
// Client helpers

/// `POST /documents` as multipart with `file` and extra text fields.
pub async fn upload(
    app: &TestApp,
    token: &str,
    filename: &str,
    mime: &str,
    bytes: Vec<u8>,
    fields: &[(&str, &str)],
) -> Resp {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(filename.to_string()).mime_str(mime).unwrap();
    let mut form = reqwest::multipart::Form::new().part("file", part);
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    app.send(app.client.post(app.url("/api/v1/documents")).bearer_auth(token).multipart(form)).await
}

/// `POST /documents` as JSON text; asserts 201 and returns the document.
pub async fn upload_text(app: &TestApp, token: &str, title: &str, content: &str, content_type: &str) -> Value {
    let r = app
        .post("/documents", Some(token), json!({"title": title, "content": content, "content_type": content_type}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

/// Polls the document until ingestion ended (ready or failed).
pub async fn wait_ingested(app: &TestApp, token: &str, id: &str) -> Value {
    for _ in 0..300 {
        let r = app.get(&format!("/documents/{id}"), Some(token)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        if r.body["status"] == "ready" || r.body["status"] == "failed" {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("document {id} was not ingested in time");
}

pub async fn chunks(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let r = app.get(&format!("/documents/{id}/chunks?limit=100"), Some(token)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["data"].as_array().unwrap().clone()
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    app.state.store.read(move |c| sql_i64(c, sql, &[])).await.unwrap()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_format_is_extracted_with_its_structure() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;

    // plain text, as JSON
    let text = upload_text(&app, &admin, "Notes", "Plain words about the office coffee machine.", "text/plain").await;
    assert_eq!((text["status"].as_str(), text["filename"].as_str()), (Some("pending"), Some("Notes.txt")));
    // Markdown: heading paths
    let md =
        upload(&app, &admin, "handbook.md", "text/markdown", HANDBOOK_MD.into(), &[("metadata", r#"{"team": "hr"}"#)])
            .await;
    assert_eq!(md.status, 201, "{:?}", md.body);
    assert_eq!(md.body["content_type"], "text/markdown");
    assert_eq!(md.body["metadata"], json!({"team": "hr"}));
    // HTML: scripts and navigation are not text
    let html = "<!DOCTYPE html><html><head><title>x</title><script>var secret = 1;</script></head><body>\
                <nav>Home | About</nav><h1>Onboarding</h1><p>Laptops are handed out on day one.</p>\
                <h2>Accounts</h2><p>IT creates the email account.</p></body></html>";
    let html = upload(&app, &admin, "onboarding", "application/octet-stream", html.into(), &[]).await;
    assert_eq!(html.status, 201, "{:?}", html.body);
    assert_eq!(html.body["content_type"], "text/html");
    // PDF, named like a text file: the bytes decide; one chunk per page, 1-based
    let pdf_bytes = pdf(&["Quarterly revenue grew strongly.", "Headcount stayed flat this quarter."]);
    let pdf = upload(&app, &admin, "report.txt", "text/plain", pdf_bytes.clone(), &[("title", "Q3 report")]).await;
    assert_eq!(pdf.status, 201, "{:?}", pdf.body);
    assert_eq!(
        (pdf.body["content_type"].as_str(), pdf.body["title"].as_str()),
        (Some("application/pdf"), Some("Q3 report"))
    );
    // DOCX: headings from style names, entities, tables
    let docx_bytes = docx();
    let docx = upload(&app, &admin, "policies.docx", "application/zip", docx_bytes.clone(), &[]).await;
    assert_eq!(docx.status, 201, "{:?}", docx.body);
    assert_eq!(docx.body["content_type"], "application/vnd.openxmlformats-officedocument.wordprocessingml.document");

    let text_doc = wait_ingested(&app, &admin, text["id"].as_str().unwrap()).await;
    assert_eq!((text_doc["status"].as_str(), text_doc["chunk_count"].as_i64()), (Some("ready"), Some(1)));
    let c = chunks(&app, &admin, text["id"].as_str().unwrap()).await;
    assert_eq!(c[0]["text"], "Plain words about the office coffee machine.");
    assert_eq!((c[0]["ordinal"].as_i64(), c[0]["heading"].as_str()), (Some(0), Some("")));
    assert!(c[0]["token_count"].as_i64().unwrap() > 5);

    wait_ingested(&app, &admin, &md.id()).await;
    let c = chunks(&app, &admin, &md.id()).await;
    let headings: Vec<&str> = c.iter().map(|c| c["heading"].as_str().unwrap()).collect();
    assert_eq!(headings, ["Handbook", "Handbook > Vacation", "Handbook > Expenses"], "{c:?}");
    assert!(c[1]["text"].as_str().unwrap().contains("twenty-five vacation days"));

    wait_ingested(&app, &admin, &html.id()).await;
    let c = chunks(&app, &admin, &html.id()).await;
    let got: Vec<(&str, &str)> =
        c.iter().map(|c| (c["heading"].as_str().unwrap(), c["text"].as_str().unwrap())).collect();
    assert_eq!(
        got,
        [
            ("Onboarding", "Laptops are handed out on day one."),
            ("Onboarding > Accounts", "IT creates the email account.")
        ]
    );

    let pdf_doc = wait_ingested(&app, &admin, &pdf.id()).await;
    assert_eq!((pdf_doc["status"].as_str(), pdf_doc["page_count"].as_i64()), (Some("ready"), Some(2)), "{pdf_doc:?}");
    let c = chunks(&app, &admin, &pdf.id()).await;
    assert_eq!(c.len(), 2);
    assert_eq!(c[0]["page"], 1);
    assert!(c[0]["text"].as_str().unwrap().contains("Quarterly revenue grew strongly."), "{c:?}");
    assert_eq!(c[1]["page"], 2);
    assert!(c[1]["text"].as_str().unwrap().contains("Headcount stayed flat"));

    wait_ingested(&app, &admin, &docx.id()).await;
    let c = chunks(&app, &admin, &docx.id()).await;
    let got: Vec<(&str, &str)> =
        c.iter().map(|c| (c["heading"].as_str().unwrap(), c["text"].as_str().unwrap())).collect();
    assert_eq!(got[0], ("Policies", "Every employee follows these rules & guidelines."), "{got:?}");
    assert_eq!(got[1].0, "Policies > Travel");
    assert!(got[1].1.contains("Book trains before flights. Café receipts count."), "{got:?}");
    assert!(got[1].1.contains("City | Allowance |") && got[1].1.contains("Berlin | 120 |"), "{got:?}");

    // the original bytes come back as they were, with their type, as an attachment
    for (id, bytes, ctype, name) in [
        (pdf.id(), pdf_bytes, "application/pdf", "report.txt"),
        (
            docx.id(),
            docx_bytes,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "policies.docx",
        ),
    ] {
        let resp =
            app.client.get(app.url(&format!("/api/v1/documents/{id}/file"))).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], ctype);
        let cd = resp.headers()["content-disposition"].to_str().unwrap().to_string();
        assert!(cd.starts_with("attachment;") && cd.contains(name), "{cd}");
        assert_eq!(resp.bytes().await.unwrap().to_vec(), bytes);
    }
}

#[tokio::test]
async fn refused_uploads_say_why_and_store_nothing() {
    let app = spawn_app_with(|c| c.knowledge.max_document_mb = 1).await;
    let admin = app.admin_token().await;

    // over [knowledge] max_document_mb, but within the request limit: the handler answers
    let big = "word ".repeat(300_000).into_bytes();
    let r = upload(&app, &admin, "big.txt", "text/plain", big, &[]).await;
    assert_eq!(r.status, 413, "{:?}", r.body);
    assert!(r.detail().contains("max_document_mb"), "{}", r.detail());
    let r = app.post("/documents", Some(&admin), json!({"title": "big", "content": "word ".repeat(300_000)})).await;
    assert_eq!(r.status, 413, "{:?}", r.body);
    // over the request limit too: the middleware answers
    let r = upload(&app, &admin, "huge.txt", "text/plain", vec![b'a'; 5 * 1024 * 1024], &[]).await;
    assert_eq!(r.status, 413);

    // types that are not read: 415 naming the accepted ones
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0".to_vec();
    for (name, bytes) in [
        ("image.txt", png),
        ("archive.docx", zip_of(&[("readme.txt", "not a word document")])),
        ("latin1.txt", b"caf\xe9 cr\xe8me".to_vec()),
    ] {
        let r = upload(&app, &admin, name, "text/plain", bytes, &[]).await;
        assert_eq!(r.status, 415, "{name}: {:?}", r.body);
        for accepted in ["plain text", "Markdown", "HTML", "PDF", "DOCX"] {
            assert!(r.detail().contains(accepted), "{name}: {}", r.detail());
        }
    }

    // no extractable text: a scan-like PDF, an HTML page of scripts only
    let r = upload(&app, &admin, "scan.pdf", "application/pdf", pdf(&["", ""]), &[]).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.detail().contains("no extractable text"), "{}", r.detail());
    let r = upload(&app, &admin, "x.html", "text/html", b"<html><script>x()</script></html>".to_vec(), &[]).await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    // bad fields
    for (body, word) in [
        (json!({"title": "t", "content": "   "}), "content"),
        (json!({"title": "t", "content": "x", "content_type": "application/pdf"}), "content_type"),
        (json!({"title": "t", "content": "x", "metadata": [1]}), "metadata"),
        (json!({"title": "t", "content": "x", "project_id": "nope"}), "project_id"),
        (json!({"title": "", "content": "x"}), "title"),
        (json!({"content": "x"}), "title"),
    ] {
        let r = app.post("/documents", Some(&admin), body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert!(r.detail().contains(word), "{body}: {}", r.detail());
    }
    let r = upload(&app, &admin, "m.txt", "text/plain", b"fine text".to_vec(), &[("metadata", "{not json")]).await;
    assert_eq!(r.status, 400);
    assert!(r.detail().contains("metadata"));

    assert_eq!(count(&app, "SELECT COUNT(*) FROM documents").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM document_files").await, 0);
}

#[tokio::test]
async fn the_same_bytes_twice_conflict_within_one_project() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let first = upload_text(&app, &admin, "Policy", "The same words.", "text/plain").await;
    let r = app.post("/documents", Some(&admin), json!({"title": "Copy", "content": "The same words."})).await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(r.detail().contains(first["id"].as_str().unwrap()), "{}", r.detail());
    // the same bytes as a file (another name) are the same bytes
    let r = upload(&app, &admin, "policy.txt", "text/plain", b"The same words.".to_vec(), &[]).await;
    assert_eq!(r.status, 409, "{:?}", r.body);

    // another project is another place
    let project = app.post("/projects", Some(&admin), json!({"name": "p"})).await.id();
    let r = app
        .post("/documents", Some(&admin), json!({"title": "P", "content": "The same words.", "project_id": project}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["project_id"], project.as_str());

    // a project of another organization is a 400 naming it
    let org_b = app.create_org("Org B").await;
    let admin_b = app.create_user_in(&org_b, "admin_b", "admin").await.1;
    let r = app
        .post("/documents", Some(&admin_b), json!({"title": "P", "content": "Other words.", "project_id": project}))
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.detail().contains("project_id") && r.detail().contains(&project), "{}", r.detail());
    // ... and the same bytes in another organization are fine
    let r = app.post("/documents", Some(&admin_b), json!({"title": "Mine", "content": "The same words."})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn another_organizations_documents_are_not_found() {
    let app = spawn_app().await;
    let org_a = app.create_org("Org A").await;
    let org_b = app.create_org("Org B").await;
    let admin_a = app.create_user_in(&org_a, "admin_a", "admin").await.1;
    let admin_b = app.create_user_in(&org_b, "admin_b", "admin").await.1;
    let doc = upload_text(&app, &admin_a, "Secret plan", "The merger closes in March.", "text/plain").await;
    let id = doc["id"].as_str().unwrap();
    assert_eq!(doc["organization_id"], org_a.as_str());
    wait_ingested(&app, &admin_a, id).await;

    for path in [format!("/documents/{id}"), format!("/documents/{id}/chunks"), format!("/documents/{id}/file")] {
        let r = app.get(&path, Some(&admin_b)).await;
        assert_eq!(r.status, 404, "{path}: {:?}", r.body);
    }
    assert_eq!(app.post_empty(&format!("/documents/{id}/reindex"), Some(&admin_b)).await.status, 404);
    assert_eq!(app.delete(&format!("/documents/{id}"), Some(&admin_b)).await.status, 404);
    let r = app.get("/documents?search=Secret", Some(&admin_b)).await;
    assert_eq!(r.body["total"], 0);
    let r = app.get("/knowledge/search?q=merger%20March", Some(&admin_b)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["data"], json!([]));
    // still there for its own organization
    let r = app.get("/knowledge/search?q=merger", Some(&admin_a)).await;
    assert_eq!(r.body["data"][0]["document_id"], id);
}

#[tokio::test]
async fn lists_search_title_and_filename_and_filter() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let project = app.post("/projects", Some(&admin), json!({"name": "p"})).await.id();
    let a = upload_text(&app, &admin, "Travel policy", "Trains first.", "text/plain").await;
    let b = upload(
        &app,
        &admin,
        "benefits-2026.md",
        "text/markdown",
        b"# Benefits\n\nGym.".to_vec(),
        &[("project_id", &project)],
    )
    .await;
    assert_eq!(b.status, 201, "{:?}", b.body);
    wait_ingested(&app, &admin, a["id"].as_str().unwrap()).await;
    wait_ingested(&app, &admin, &b.id()).await;

    let ids = |r: &Resp| -> Vec<String> {
        r.body["data"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()).collect()
    };
    let all = app.get("/documents", Some(&admin)).await;
    assert_eq!((all.body["total"].as_i64(), all.body["has_more"].as_bool()), (Some(2), Some(false)));
    assert_eq!(ids(&all), [b.id(), a["id"].as_str().unwrap().to_string()], "newest first");
    assert_eq!(ids(&app.get("/documents?search=TRAVEL", Some(&admin)).await), [a["id"].as_str().unwrap()]);
    assert_eq!(ids(&app.get("/documents?search=2026.md", Some(&admin)).await), [b.id()]);
    assert_eq!(ids(&app.get(&format!("/documents?project_id={project}"), Some(&admin)).await), [b.id()]);
    assert_eq!(app.get("/documents?status=ready", Some(&admin)).await.body["total"], 2);
    assert_eq!(app.get("/documents?status=failed", Some(&admin)).await.body["total"], 0);
    assert_eq!(app.get("/documents?status=done", Some(&admin)).await.status, 400);
    assert_eq!(app.get("/documents?limit=0", Some(&admin)).await.status, 400);
    let one = app.get("/documents?limit=1", Some(&admin)).await;
    assert_eq!((one.body["total"].as_i64(), one.body["has_more"].as_bool()), (Some(2), Some(true)));
}

#[tokio::test]
async fn deleting_a_document_removes_its_file_chunks_and_index() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let doc = upload(&app, &admin, "handbook.md", "text/markdown", HANDBOOK_MD.into(), &[]).await;
    wait_ingested(&app, &admin, &doc.id()).await;
    assert!(count(&app, "SELECT COUNT(*) FROM chunks").await >= 3);
    assert_eq!(app.get("/knowledge/search?q=vacation", Some(&admin)).await.body["total"], 1);

    let r = app.delete(&format!("/documents/{}", doc.id()), Some(&admin)).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(app.get(&format!("/documents/{}", doc.id()), Some(&admin)).await.status, 404);
    assert_eq!(app.get(&format!("/documents/{}/file", doc.id()), Some(&admin)).await.status, 404);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM chunks").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM document_files").await, 0);
    if !on_postgres() {
        // SQLite's FTS5 index is a table of its own (PostgreSQL's tsvector is a column of chunks)
        assert_eq!(count(&app, "SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH 'vacation'").await, 0);
    }
    assert_eq!(app.get("/knowledge/search?q=vacation", Some(&admin)).await.body["total"], 0);
    // the same bytes may come again
    let again = upload(&app, &admin, "handbook.md", "text/markdown", HANDBOOK_MD.into(), &[]).await;
    assert_eq!(again.status, 201, "{:?}", again.body);
}

#[tokio::test]
async fn reindexing_replaces_the_chunks_at_once() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let doc = upload(&app, &admin, "handbook.md", "text/markdown", HANDBOOK_MD.into(), &[]).await;
    let before = wait_ingested(&app, &admin, &doc.id()).await;
    let old: Vec<Value> = chunks(&app, &admin, &doc.id()).await.iter().map(|c| c["id"].clone()).collect();

    let r = app.post_empty(&format!("/documents/{}/reindex", doc.id()), Some(&admin)).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert!(matches!(r.body["status"].as_str(), Some("pending" | "processing" | "ready")), "{:?}", r.body);
    let after = wait_ingested(&app, &admin, &doc.id()).await;
    assert_eq!(
        (after["status"].as_str(), after["chunk_count"].as_i64()),
        (Some("ready"), before["chunk_count"].as_i64())
    );
    let new: Vec<Value> = chunks(&app, &admin, &doc.id()).await.iter().map(|c| c["id"].clone()).collect();
    assert_eq!(new.len(), old.len());
    assert!(new.iter().all(|id| !old.contains(id)), "the chunk set was rebuilt");
    // nothing indexed twice
    assert_eq!(count(&app, "SELECT COUNT(*) FROM chunks").await, old.len() as i64);
    assert_eq!(app.get("/knowledge/search?q=vacation", Some(&admin)).await.body["total"], 1);
    assert_eq!(
        app.post_empty(&format!("/documents/{}/reindex", copilot::db::new_id()), Some(&admin)).await.status,
        404
    );
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_writes_nothing() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let doc = upload_text(&app, &admin, "Fenced", "Fenced commits only.", "text/plain").await;
    let id = doc["id"].as_str().unwrap().to_string();
    wait_ingested(&app, &admin, &id).await;
    let i = id.clone();
    let (committed, rows) = app
        .state
        .store
        .write(move |tx| -> StoreResult<_> {
            // a stale worker: its token is not the document's lease
            sql_exec(tx, "UPDATE documents SET status = 'processing', lease_token = 'other' WHERE id = ?1", &[&i])?;
            let draft = copilot::knowledge::chunk::ChunkDraft {
                page: None,
                heading: String::new(),
                text: "stale".into(),
                token_count: 1,
            };
            let ok = copilot::store::documents::commit_chunks(
                tx,
                &i,
                "stale-token",
                &[draft],
                None,
                None,
                None,
                "k",
                &copilot::db::now(),
            )?;
            let rows = sql_i64(tx, "SELECT COUNT(*) FROM chunks WHERE text = 'stale'", &[])?;
            sql_exec(tx, "UPDATE documents SET status = 'ready', lease_token = NULL WHERE id = ?1", &[&i])?;
            Ok((ok, rows))
        })
        .await
        .unwrap();
    assert!(!committed);
    assert_eq!(rows, 0);
    assert_eq!(chunks(&app, &admin, &id).await[0]["text"], "Fenced commits only.");
}

#[tokio::test]
async fn ingestion_interrupted_by_a_stop_resumes_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    // a first process stored two documents and stopped: one never claimed, one mid-ingestion
    // with an expired lease (its worker died)
    {
        let config = config.clone();
        // off the runtime, like spawn_on: PostgreSQL's client cannot connect inside it
        std::thread::spawn(move || {
            let (state, _) = copilot::AppState::open(config).unwrap();
            state
                .store
                .write_blocking(|tx| -> StoreResult<_> {
                    let org = copilot::store::bootstrap::registration_org_id(tx)?.unwrap();
                    let admin = sql_rows(tx, "SELECT id FROM users WHERE is_superuser = true", &[])?[0][0]
                        .as_str()
                        .unwrap()
                        .to_string();
                    for (title, text, status) in [
                        ("Left pending", "Pending words about pelicans.", "pending"),
                        ("Left processing", "Processing words about otters.", "processing"),
                    ] {
                        let new = copilot::store::documents::NewDocument {
                            id: copilot::db::new_id(),
                            organization_id: org.clone(),
                            project_id: None,
                            title: title.into(),
                            filename: format!("{title}.txt"),
                            content_type: "text/plain",
                            sha256: format!("{title}-sha"),
                            metadata: "{}".into(),
                            created_by: admin.clone(),
                            now: copilot::db::now(),
                        };
                        copilot::store::documents::insert_document(tx, &new, text.as_bytes())?;
                        sql_exec(
                            tx,
                            "UPDATE documents SET status = ?2, attempts = 1, lease_token = 'dead', \
                         lease_until = '2000-01-01T00:00:00.000000Z' WHERE id = ?1 AND ?2 = 'processing'",
                            &[&new.id, status],
                        )?;
                    }
                    Ok(())
                })
                .unwrap();
        })
        .join()
        .unwrap();
    }
    let app = spawn_on(dir, config).await;
    let admin = app.admin_token().await;
    let list = app.get("/documents", Some(&admin)).await;
    assert_eq!(list.body["total"], 2);
    for d in list.body["data"].as_array().unwrap() {
        let d = wait_ingested(&app, &admin, d["id"].as_str().unwrap()).await;
        assert_eq!((d["status"].as_str(), d["chunk_count"].as_i64()), (Some("ready"), Some(1)), "{d:?}");
    }
    let r = app.get("/knowledge/search?q=otters%20pelicans", Some(&admin)).await;
    assert_eq!(r.body["total"], 2, "{:?}", r.body);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM chunks").await, 2);
}
