// `sum` in JavaScript: adds i64 values (reduceByKey's `_ + _`); overflow wraps, as in Rust.
import { Combiner, Monoid, ValueType, exportCombiner } from '../../spate-guest.js';

class Sum extends Combiner {
  static valueType = ValueType.I64;

  static info() {
    return {
      name: 'sum',
      description: 'adds i64 values',
      params: [],
      valueType: ValueType.I64,
      // A promise that combine is exactly this, so upstream operators may pre-combine.
      monoid: Monoid.SUM_I64,
    };
  }

  combine(acc, value) {
    return acc + value; // BigInts, wrapped to 64 bits when encoded
  }
}

export const combiner = exportCombiner(Sum);
