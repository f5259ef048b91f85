//! Native test helpers: run an operator the way the host runs it, without Wasm.

use crate::{
    Column, Combiner, Error, Params, Partition, Transform, Value, configure_combiner,
    configure_transform, run_fold, run_transform,
};

/// Configures `T` with `params` and runs it over one partition of text lines.
pub fn run_lines<T: Transform>(
    params: &[(&str, &str)],
    lines: &[&str],
) -> Result<Partition, Error> {
    let mut op = configure_transform::<T>(Params::from_pairs(params.iter().copied()))?;
    run_transform(&mut op, &Partition::from_lines(lines.iter().copied()), None)
}

/// Runs `T` over text lines and decodes the output as (text key, `V` value) pairs.
pub fn transform<T: Transform>(
    params: &[(&str, &str)],
    lines: &[&str],
) -> Result<Vec<(String, i64)>, Error> {
    let batch = run_lines::<T>(params, lines)?;
    batch
        .records()
        .map(|r| Ok((r.key_str()?.to_owned(), r.value_as::<i64>()?)))
        .collect()
}

/// Runs `T` over text lines and returns the output values as text (for unkeyed output).
pub fn transform_values<T: Transform>(
    params: &[(&str, &str)],
    lines: &[&str],
) -> Result<Vec<String>, Error> {
    let batch = run_lines::<T>(params, lines)?;
    batch
        .records()
        .map(|r| r.value_str().map(str::to_owned))
        .collect()
}

/// Reduces (key, value) pairs by key through combiner `C`, as the host's reduceByKey does:
/// the first value of a key seeds its accumulator, the others are folded in. Keys come out in
/// order of first appearance.
pub fn reduce_by_key<C: Combiner>(
    params: &[(&str, &str)],
    pairs: &[(&str, C::Value)],
) -> Result<Vec<(String, C::Value)>, Error> {
    let op = configure_combiner::<C>(Params::from_pairs(params.iter().copied()))?;
    let mut keys: Vec<&str> = Vec::new();
    let mut accumulators = Column::default();
    let (mut targets, mut values) = (Vec::new(), Column::default());
    for (key, value) in pairs {
        let encoded = encode(value);
        match keys.iter().position(|k| k == key) {
            Some(slot) => {
                targets.push(slot as u32);
                values.push(&encoded);
            }
            None => {
                keys.push(key);
                accumulators.push(&encoded);
            }
        }
    }
    let folded = run_fold(&op, &accumulators, &targets, &values)?;
    keys.iter()
        .zip(folded.iter())
        .map(|(k, bytes)| Ok(((*k).to_owned(), C::Value::decode(bytes)?)))
        .collect()
}

fn encode<V: Value>(value: &V) -> Vec<u8> {
    let mut bytes = Vec::new();
    value.encode(&mut bytes);
    bytes
}
