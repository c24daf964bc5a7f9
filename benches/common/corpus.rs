//! Made-up text for the benchmarks that need a corpus (benches/knowledge.rs and the knowledge
//! scenarios of benches/http.rs): words drawn with a skew, like natural language.

use rand::{Rng, rngs::StdRng};

/// A vocabulary of 20,000 made-up words of 3 to 9 letters.
pub fn vocabulary(rng: &mut StdRng) -> Vec<String> {
    (0..20_000)
        .map(|_| {
            let len = rng.random_range(3..10);
            (0..len).map(|_| (b'a' + rng.random_range(0..26u8)) as char).collect()
        })
        .collect()
}

/// One word of `vocab`: squaring the uniform draw makes low indexes (common words) come up far
/// more often.
pub fn word<'v>(vocab: &'v [String], rng: &mut StdRng) -> &'v str {
    let u: f64 = rng.random();
    &vocab[((u * u) * vocab.len() as f64) as usize % vocab.len()]
}
