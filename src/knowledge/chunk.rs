//! Sections become passages of 1,000..1,500 characters with about 150 characters of overlap,
//! cut at the largest semantic boundary that fits (paragraph, sentence, word) by text-splitter.
//! Chunks never span two sections, so each keeps one heading path and one page.

use std::sync::OnceLock;

use text_splitter::{ChunkConfig, TextSplitter};

use super::extract::Section;
use crate::llm::context::estimate_tokens;

pub const CHUNK_MIN: usize = 1000;
pub const CHUNK_MAX: usize = 1500;
pub const OVERLAP: usize = 150;
/// Pieces shorter than this (a split remnant) join the next chunk of their section.
const TINY: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkDraft {
    pub page: Option<i64>,
    pub heading: String,
    pub text: String,
    pub token_count: i64,
}

fn splitter() -> &'static TextSplitter<text_splitter::Characters> {
    static SPLITTER: OnceLock<TextSplitter<text_splitter::Characters>> = OnceLock::new();
    SPLITTER.get_or_init(|| {
        let config = ChunkConfig::new(CHUNK_MIN..CHUNK_MAX).with_overlap(OVERLAP).expect("overlap is below the size");
        TextSplitter::new(config)
    })
}

/// The chunks of a document, in order.
pub fn chunk(sections: &[Section]) -> Vec<ChunkDraft> {
    let mut out: Vec<ChunkDraft> = vec![];
    for s in sections {
        let mut pending = String::new();
        let pieces: Vec<&str> = splitter().chunks(&s.text).collect();
        let n = pieces.len();
        for (i, piece) in pieces.into_iter().enumerate() {
            let piece = piece.trim();
            if piece.is_empty() {
                continue;
            }
            if piece.chars().count() < TINY && i + 1 < n {
                pending.push_str(piece);
                pending.push('\n');
                continue;
            }
            let text = std::mem::take(&mut pending) + piece;
            out.push(ChunkDraft {
                page: s.page,
                heading: s.heading.clone(),
                token_count: estimate_tokens(&text) as i64,
                text,
            });
        }
        if !pending.trim().is_empty() {
            let text = pending.trim().to_string();
            out.push(ChunkDraft {
                page: s.page,
                heading: s.heading.clone(),
                token_count: estimate_tokens(&text) as i64,
                text,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_sections_split_with_bounds_and_keep_their_heading() {
        let sentence = "The quick brown fox jumps over the lazy dog again and again. ";
        let text = sentence.repeat(100);
        let sections = vec![
            Section { page: Some(2), heading: "A > B".into(), text: text.trim().to_string() },
            Section { page: Some(3), heading: String::new(), text: "Short.".into() },
        ];
        let chunks = chunk(&sections);
        assert!(chunks.len() >= 4, "{}", chunks.len());
        let (last, first) = (chunks.last().unwrap(), &chunks[0]);
        assert_eq!((last.page, last.text.as_str()), (Some(3), "Short."));
        for c in &chunks[..chunks.len() - 1] {
            assert!(c.text.chars().count() <= CHUNK_MAX, "{}", c.text.len());
            assert_eq!((c.page, c.heading.as_str()), (Some(2), "A > B"));
        }
        assert!(first.text.chars().count() >= CHUNK_MIN);
        assert_eq!(first.token_count, estimate_tokens(&first.text) as i64);
    }
}
