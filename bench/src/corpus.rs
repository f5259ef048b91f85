//! The word-count corpus: lines of 5 to 15 lowercase pseudo-words (mean 10) separated by single
//! spaces, drawn from a 50,000-word vocabulary of 2 to 12 letters with a Zipf law (s = 1.0), the
//! most frequent words the shortest. Same distribution as the reference generator
//! (`gen_corpus.py`), not byte-identical; deterministic for a seed.

/// SplitMix64: small, fast and good enough for synthetic text.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [low, high].
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    /// Normal(mean, sd) by Box-Muller.
    pub fn gauss(&mut self, mean: f64, sd: f64) -> f64 {
        let (u1, u2) = (self.unit().max(f64::MIN_POSITIVE), self.unit());
        mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// The corpus generator.
pub struct Corpus {
    vocab: Vec<String>,
    cumulative: Vec<f64>,
    rng: Rng,
}

impl Corpus {
    /// A generator with the reference parameters (50,000 words, s = 1.0).
    pub fn new(seed: u64) -> Self {
        Self::with(seed, 50_000, 1.0)
    }

    /// A generator with `vocab` words and Zipf exponent `s`.
    pub fn with(seed: u64, vocab: usize, s: f64) -> Self {
        let mut rng = Rng::new(seed);
        let mut words = std::collections::HashSet::new();
        while words.len() < vocab {
            let len = rng.gauss(6.5, 2.2).clamp(2.0, 12.0) as usize;
            let word: String = (0..len)
                .map(|_| (b'a' + rng.range(0, 25) as u8) as char)
                .collect();
            words.insert(word);
        }
        let mut vocab: Vec<String> = words.into_iter().collect();
        vocab.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
        let mut total = 0.0;
        let cumulative = (1..=vocab.len())
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(s);
                total
            })
            .collect();
        Corpus {
            vocab,
            cumulative,
            rng,
        }
    }

    /// Appends one line (newline included) to `out`; returns its word count.
    pub fn line(&mut self, out: &mut Vec<u8>) -> usize {
        let words = self.rng.range(5, 15) as usize;
        let total = *self.cumulative.last().expect("non-empty vocabulary");
        for i in 0..words {
            if i > 0 {
                out.push(b' ');
            }
            let target = self.rng.unit() * total;
            let rank = self
                .cumulative
                .partition_point(|&c| c < target)
                .min(self.vocab.len() - 1);
            out.extend_from_slice(self.vocab[rank].as_bytes());
        }
        out.push(b'\n');
        words
    }

    /// At least `bytes` bytes of whole lines.
    pub fn text(&mut self, bytes: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes + 200);
        while out.len() < bytes {
            self.line(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_specification() {
        let text = Corpus::new(7).text(200_000);
        let text = std::str::from_utf8(&text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let words: Vec<&str> = text.split_ascii_whitespace().collect();
        assert!(
            lines
                .iter()
                .all(|l| (5..=15).contains(&l.split(' ').count()))
        );
        let mean = words.len() as f64 / lines.len() as f64;
        assert!((9.5..10.5).contains(&mean), "mean words per line {mean}");
        let bytes_per_word = text.len() as f64 / words.len() as f64;
        assert!(
            (3.3..4.5).contains(&bytes_per_word),
            "bytes per word {bytes_per_word}"
        );
        assert!(
            words
                .iter()
                .all(|w| (2..=12).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_lowercase()))
        );
    }

    #[test]
    fn is_deterministic_per_seed() {
        assert_eq!(Corpus::new(42).text(10_000), Corpus::new(42).text(10_000));
        assert_ne!(Corpus::new(42).text(10_000), Corpus::new(43).text(10_000));
    }
}
