// `{{name}}`: a flatMap operator emitting (word, 1) for each word of a line, lowercased.
// Change `record` to make it yours; `node --test` runs app.test.js natively.
//
// The SDK is a copy in spate-guest/ (made by `spate new`): componentize-js only follows
// relative imports inside the operator's directory.
import { Transform, ValueType, exportTransform, toLowercase } from './spate-guest/spate-guest.js';

export class Operator extends Transform {
  static info() {
    return {
      name: '{{name}}',
      description: '(word, 1) for each word of a line',
      params: [['lowercase', 'lowercase words first (default true)']],
      keyType: ValueType.TEXT,
      valueType: ValueType.I64,
    };
  }

  static configure(params) {
    const op = new Operator();
    op.lowercase = params.bool('lowercase', true);
    return op;
  }

  record(record, out) {
    for (const word of record.valueStr().split(/\s+/)) {
      // toLowercase is Rust's str::to_lowercase (the engine's toLowerCase differs a little).
      if (word) out.emitI64(this.lowercase ? toLowercase(word) : word, 1);
    }
  }
}

// componentize-js exports the binding named after the world's export.
export const transform = exportTransform(Operator);
