//! From bytes to text with structure: the format is sniffed from the bytes; text comes out in
//! sections, each with its heading path ("H1 > H2") and, for PDFs, its 1-based page.

use std::{
    collections::HashMap,
    io::{Cursor, Read},
    panic::{AssertUnwindSafe, catch_unwind},
};

use unicode_normalization::UnicodeNormalization;

use super::Format;

/// A run of text under one heading path, on one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub page: Option<i64>,
    pub heading: String,
    pub text: String,
}

#[derive(Debug, Default)]
pub struct Extracted {
    pub sections: Vec<Section>,
    pub page_count: Option<i64>,
}

impl Extracted {
    pub fn has_text(&self) -> bool {
        self.sections.iter().any(|s| s.text.chars().any(char::is_alphanumeric))
    }
}

/// The largest uncompressed XML part read from a DOCX (a guard against zip bombs).
const DOCX_PART_MAX: u64 = 64 * 1024 * 1024;

/// Decides the format from the bytes. The name and the declared type only choose between the
/// text formats (plain, Markdown, HTML); `None` means a type that is not read.
pub fn sniff(bytes: &[u8], filename: Option<&str>, declared: Option<&str>) -> Option<Format> {
    if bytes.starts_with(b"%PDF-") {
        return Some(Format::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return is_docx(bytes).then_some(Format::Docx);
    }
    if let Some(kind) = infer::get(bytes)
        && kind.matcher_type() != infer::MatcherType::Text
    {
        return None;
    }
    let text = std::str::from_utf8(strip_bom(bytes)).ok()?;
    if text.contains('\0') {
        return None;
    }
    let ext = filename.and_then(|n| n.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    let declared = declared.map(|d| d.split(';').next().unwrap_or("").trim().to_ascii_lowercase()).unwrap_or_default();
    if matches!(ext.as_str(), "html" | "htm" | "xhtml") || declared == "text/html" {
        return Some(Format::Html);
    }
    if matches!(ext.as_str(), "md" | "markdown" | "mdown" | "mkd") || declared == "text/markdown" {
        return Some(Format::Markdown);
    }
    if ext == "txt" || declared == "text/plain" {
        return Some(Format::Text);
    }
    if looks_like_html(text) { Some(Format::Html) } else { Some(Format::Text) }
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

fn looks_like_html(text: &str) -> bool {
    let head: String = text.trim_start().chars().take(512).collect::<String>().to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html") || head.contains("<body") || head.contains("<head")
}

fn is_docx(bytes: &[u8]) -> bool {
    zip::ZipArchive::new(Cursor::new(bytes)).is_ok_and(|mut z| z.by_name("word/document.xml").is_ok())
}

/// Extracts the text of a document of format `f`. `Err` says why nothing could be read.
pub fn extract(f: Format, bytes: &[u8]) -> Result<Extracted, String> {
    match catch_unwind(AssertUnwindSafe(|| extract_inner(f, bytes))) {
        Ok(r) => r,
        Err(_) => Err(format!("the {} could not be read", f.extension().to_uppercase())),
    }
}

fn extract_inner(f: Format, bytes: &[u8]) -> Result<Extracted, String> {
    let text = || String::from_utf8_lossy(strip_bom(bytes)).into_owned();
    let sections = match f {
        Format::Text => {
            vec![Section { page: None, heading: String::new(), text: tidy(&text()) }]
        }
        Format::Markdown => markdown(&text()),
        Format::Html => html(&text()),
        Format::Docx => docx(bytes)?,
        Format::Pdf => return pdf(bytes),
    };
    Ok(Extracted { sections: sections.into_iter().filter(|s| !s.text.is_empty()).collect(), page_count: None })
}

/// Collects text under a heading path: a new heading closes the section before it.
#[derive(Default)]
struct Outline {
    stack: Vec<(usize, String)>,
    current: String,
    sections: Vec<Section>,
}

impl Outline {
    fn heading(&mut self, level: usize, text: &str) {
        let text = collapse_ws(text);
        if text.is_empty() {
            return;
        }
        self.flush();
        self.stack.retain(|(l, _)| *l < level);
        self.stack.push((level, text));
    }

    fn push_str(&mut self, s: &str) {
        self.current.push_str(s);
    }

    fn line_break(&mut self) {
        if !self.current.is_empty() && !self.current.ends_with('\n') {
            self.current.push('\n');
        }
    }

    fn paragraph_break(&mut self) {
        self.line_break();
        if !self.current.is_empty() && !self.current.ends_with("\n\n") {
            self.current.push('\n');
        }
    }

    fn flush(&mut self) {
        let text = tidy(&self.current);
        self.current.clear();
        if !text.is_empty() {
            let heading = self.stack.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(" > ");
            self.sections.push(Section { page: None, heading, text });
        }
    }

    fn finish(mut self) -> Vec<Section> {
        self.flush();
        self.sections
    }
}

/// Runs of spaces and tabs in one line become one space; lines are trimmed; more than one
/// blank line becomes one.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.split([' ', '\t', '\u{a0}']).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(&line);
    }
    out
}

fn collapse_ws(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Markdown: headings (ATX and setext, not `#` in code) found by pulldown-cmark's offsets; the
/// text between them is kept as written.
fn markdown(src: &str) -> Vec<Section> {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let mut outline = Outline::default();
    let mut body_start = 0;
    let mut in_heading: Option<(usize, String)> = None;
    for (event, range) in Parser::new(src).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                outline.push_str(&src[body_start..range.start.max(body_start)]);
                in_heading = Some((level as usize, String::new()));
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, h)) = in_heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, text)) = in_heading.take() {
                    outline.heading(level, &text);
                }
                body_start = range.end;
            }
            _ => {}
        }
    }
    outline.push_str(&src[body_start.min(src.len())..]);
    outline.finish()
}

const HTML_SKIP: [&str; 10] =
    ["script", "style", "noscript", "template", "head", "nav", "svg", "iframe", "object", "canvas"];
const HTML_BLOCKS: [&str; 24] = [
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "footer",
    "aside",
    "ul",
    "ol",
    "li",
    "table",
    "tr",
    "blockquote",
    "pre",
    "dl",
    "dt",
    "dd",
    "figure",
    "figcaption",
    "form",
    "fieldset",
    "address",
    "hr",
];

/// HTML: a walk over the DOM that skips what is not content and turns h1–h6 into headings.
fn html(src: &str) -> Vec<Section> {
    let doc = scraper::Html::parse_document(src);
    let mut outline = Outline::default();
    html_walk(doc.tree.root(), &mut outline);
    outline.finish()
}

fn html_walk(node: ego_tree::NodeRef<'_, scraper::Node>, out: &mut Outline) {
    match node.value() {
        scraper::Node::Text(t) => {
            let t: &str = t;
            if !t.trim().is_empty() {
                if t.starts_with(char::is_whitespace) {
                    out.push_str(" ");
                }
                out.push_str(&t.split_whitespace().collect::<Vec<_>>().join(" "));
                if t.ends_with(char::is_whitespace) {
                    out.push_str(" ");
                }
            } else if !t.is_empty() {
                out.push_str(" ");
            }
        }
        scraper::Node::Element(e) => {
            let name = e.name();
            if HTML_SKIP.contains(&name) {
                return;
            }
            if let Some(level) =
                name.strip_prefix('h').and_then(|d| d.parse::<usize>().ok()).filter(|l| (1..=6).contains(l))
            {
                let mut text = String::new();
                for d in node.descendants() {
                    if let scraper::Node::Text(t) = d.value() {
                        text.push_str(t);
                        text.push(' ');
                    }
                }
                out.heading(level, &text);
                return;
            }
            if name == "br" {
                out.line_break();
                return;
            }
            let block = HTML_BLOCKS.contains(&name);
            let line = matches!(name, "li" | "tr" | "dt" | "dd");
            if line {
                out.line_break();
            } else if block {
                out.paragraph_break();
            }
            for c in node.children() {
                html_walk(c, out);
            }
            match name {
                "td" | "th" => out.push_str(" | "),
                _ if line => out.line_break(),
                _ if block => out.paragraph_break(),
                _ => {}
            }
        }
        _ => {
            for c in node.children() {
                html_walk(c, out);
            }
        }
    }
}

/// PDF: page by page (each section is one physical page, 1-based), pdf-extract first and
/// lopdf's own text extraction where it fails. A page without a text layer gives no text.
fn pdf(bytes: &[u8]) -> Result<Extracted, String> {
    let mut doc = lopdf::Document::load_mem(bytes).map_err(|e| format!("the PDF could not be read: {e}"))?;
    if doc.is_encrypted() {
        // an empty user password is common; anything else is unreadable here
        let _ = doc.decrypt("");
    }
    let pages = doc.get_pages();
    let mut sections = vec![];
    for (i, num) in pages.keys().enumerate() {
        let text = catch_unwind(AssertUnwindSafe(|| {
            let mut s = String::new();
            let mut output = pdf_extract::PlainTextOutput::new(&mut s);
            pdf_extract::output_doc_page(&doc, &mut output, *num).map(|_| s)
        }))
        .ok()
        .and_then(Result::ok)
        .filter(|s| !s.trim().is_empty())
        .or_else(|| catch_unwind(AssertUnwindSafe(|| doc.extract_text(&[*num]))).ok().and_then(Result::ok))
        .unwrap_or_default();
        let text = tidy(&text.nfkc().collect::<String>());
        if !text.is_empty() {
            sections.push(Section { page: Some(i as i64 + 1), heading: String::new(), text });
        }
    }
    Ok(Extracted { sections, page_count: Some(pages.len() as i64) })
}

/// DOCX: paragraphs and tables of `word/document.xml`; headings from the paragraph styles whose
/// *names* (ids are localized) say `heading N` or `Title`, or from an outline level.
fn docx(bytes: &[u8]) -> Result<Vec<Section>, String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("the DOCX could not be read: {e}"))?;
    let styles = read_part(&mut zip, "word/styles.xml").ok().map(|s| heading_styles(&s)).unwrap_or_default();
    let document = read_part(&mut zip, "word/document.xml")?;
    docx_body(&document, &styles)
}

fn read_part(zip: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str) -> Result<String, String> {
    let part = zip.by_name(name).map_err(|e| format!("the DOCX has no {name}: {e}"))?;
    let mut text = String::new();
    part.take(DOCX_PART_MAX + 1).read_to_string(&mut text).map_err(|e| format!("the DOCX could not be read: {e}"))?;
    if text.len() as u64 > DOCX_PART_MAX {
        return Err(format!("the DOCX part {name} is larger than {} MB uncompressed", DOCX_PART_MAX >> 20));
    }
    Ok(text)
}

fn attr(e: &quick_xml::events::BytesStart<'_>, name: &str) -> Option<String> {
    e.try_get_attribute(name).ok().flatten().map(|a| a.value.into_owned())
}

/// style id → heading level
fn heading_styles(xml: &str) -> HashMap<String, usize> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = HashMap::new();
    let (mut id, mut name, mut outline): (Option<String>, String, Option<usize>) = (None, String::new(), None);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.name().as_ref() {
                "w:style" => {
                    id = attr(&e, "w:styleId");
                    name.clear();
                    outline = None;
                }
                "w:name" if id.is_some() => name = attr(&e, "w:val").unwrap_or_default().to_lowercase(),
                "w:outlineLvl" if id.is_some() => {
                    outline = attr(&e, "w:val").and_then(|v| v.parse::<usize>().ok()).filter(|l| *l < 9).map(|l| l + 1)
                }
                _ => {}
            },
            Ok(Event::End(e)) if e.name().as_ref() == "w:style" => {
                let level = if name == "title" {
                    Some(1)
                } else if let Some(n) = name.strip_prefix("heading ") {
                    n.trim().parse::<usize>().ok()
                } else {
                    outline
                };
                if let (Some(id), Some(level)) = (id.take(), level) {
                    out.insert(id, level);
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

fn docx_body(xml: &str, styles: &HashMap<String, usize>) -> Result<Vec<Section>, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut outline = Outline::default();
    let mut para = String::new();
    let mut level: Option<usize> = None;
    let (mut in_text, mut cells) = (false, 0usize);
    loop {
        let event = reader.read_event().map_err(|e| format!("the DOCX could not be read: {e}"))?;
        match event {
            // `<w:t/>` carries no text: only a Start opens a text run
            Event::Start(e) if e.name().as_ref() == "w:t" => in_text = true,
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                "w:p" => {
                    para.clear();
                    level = None;
                }
                "w:pStyle" => {
                    let id = attr(&e, "w:val").unwrap_or_default();
                    level = styles.get(&id).copied().or_else(|| {
                        id.to_ascii_lowercase().strip_prefix("heading").and_then(|n| n.parse::<usize>().ok())
                    });
                }
                "w:outlineLvl" if level.is_none() => {
                    level = attr(&e, "w:val").and_then(|v| v.parse::<usize>().ok()).filter(|l| *l < 9).map(|l| l + 1)
                }
                "w:tab" => para.push('\t'),
                "w:br" | "w:cr" => para.push('\n'),
                "w:tc" => cells += 1,
                _ => {}
            },
            Event::Text(t) if in_text => para.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_text => match r.resolve_char_ref() {
                Ok(Some(c)) => para.push(c),
                _ => para.push_str(match r.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                }),
            },
            Event::End(e) => match e.name().as_ref() {
                "w:t" => in_text = false,
                "w:p" => {
                    if let Some(l) = level.filter(|_| cells == 0) {
                        outline.heading(l, &para);
                    } else if cells > 0 {
                        outline.push_str(para.trim());
                        outline.push_str(" ");
                    } else {
                        outline.push_str(&para);
                        outline.paragraph_break();
                    }
                    para.clear();
                    level = None;
                }
                "w:tc" => {
                    cells = cells.saturating_sub(1);
                    outline.push_str("| ");
                }
                "w:tr" => outline.line_break(),
                "w:tbl" => outline.paragraph_break(),
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(outline.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_trusts_bytes_not_names() {
        assert_eq!(sniff(b"%PDF-1.7 ...", Some("a.txt"), None), Some(Format::Pdf));
        assert_eq!(sniff(b"# Title\n\ntext", Some("notes.md"), None), Some(Format::Markdown));
        assert_eq!(sniff(b"plain words", None, None), Some(Format::Text));
        assert_eq!(sniff(b"<!DOCTYPE html><html><body>x</body></html>", Some("page"), None), Some(Format::Html));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Some("a.txt"), None), None);
        assert_eq!(sniff(b"caf\xe9", Some("a.txt"), None), None); // Latin-1, not UTF-8
        assert_eq!(sniff(b"PK\x03\x04not really a zip", Some("a.docx"), None), None);
    }

    #[test]
    fn markdown_keeps_heading_paths() {
        let md = "Intro line.\n\n# Handbook\n\nWelcome.\n\n## Vacation\n\nYou get 25 days.\n\n```\n# not a heading\n```\n\n# Other\n\nMore.";
        let s = markdown(md);
        let got: Vec<(&str, &str)> = s.iter().map(|s| (s.heading.as_str(), s.text.as_str())).collect();
        assert_eq!(got[0], ("", "Intro line."));
        assert_eq!(got[1], ("Handbook", "Welcome."));
        assert_eq!(got[2].0, "Handbook > Vacation");
        assert!(got[2].1.contains("25 days") && got[2].1.contains("# not a heading"));
        assert_eq!(got[3], ("Other", "More."));
    }

    #[test]
    fn html_skips_scripts_and_keeps_headings() {
        let h = "<html><head><title>T</title><style>p{}</style></head><body><nav>Menu</nav>\
                 <h1>Guide</h1><p>First <b>bold</b> para.</p><script>evil()</script>\
                 <h2>Setup</h2><ul><li>one</li><li>two</li></ul></body></html>";
        let s = html(h);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].heading, "Guide");
        assert_eq!(s[0].text, "First bold para.");
        assert_eq!(s[1].heading, "Guide > Setup");
        assert_eq!(s[1].text, "one\ntwo");
        assert!(!s.iter().any(|s| s.text.contains("evil") || s.text.contains("Menu")));
    }

    #[test]
    fn tidy_collapses_blank_lines() {
        assert_eq!(tidy("  a  b \n\n\n\n c\n d "), "a b\n\nc\nd");
    }
}
