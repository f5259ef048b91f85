//! The rejected boundary designs, with the tokenize operator's rules, for benchmarks only.
#![cfg(target_arch = "wasm32")]
#![allow(missing_docs)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "boundary",
});

use exports::spate_bench::boundary::alternatives::{Guest, Kv};
use spate_plugin_tokenize::Tokenizer;

struct Boundary;

fn tokenize_into(line: &[u8], out: &mut Vec<Kv>) {
    let tokenizer = Tokenizer::default();
    let mut scratch = Vec::new();
    let _ = tokenizer.for_each_word(line, &mut scratch, |word| {
        out.push(Kv {
            key: Some(word.to_vec()),
            value: 1i64.to_le_bytes().to_vec(),
        });
    });
}

impl Guest for Boundary {
    fn tokenize_records(input: Vec<Kv>) -> Vec<Kv> {
        let mut out = Vec::new();
        for record in &input {
            tokenize_into(&record.value, &mut out);
        }
        out
    }

    fn tokenize_one(line: Vec<u8>) -> Vec<Kv> {
        let mut out = Vec::new();
        tokenize_into(&line, &mut out);
        out
    }
}

export!(Boundary);
