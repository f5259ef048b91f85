/* `{{name}}`: a flatMap operator emitting (word, 1) for each word of a line, lowercased.
 * Change `split_record` to make it yours; ./test.sh runs test.c natively. */
#include <stdlib.h>

#include "spate_guest.h"

typedef struct {
    bool lowercase;
    spate_buf_t scratch; /* the lowercased word */
} operator_t;

static bool split_configure(const spate_params_t *params, void **state, spate_error_t *err) {
    operator_t *op = calloc(1, sizeof *op);
    if (!op) __builtin_trap();
    if (!spate_params_bool(params, "lowercase", true, &op->lowercase, err)) {
        free(op);
        return false;
    }
    *state = op;
    return true;
}

static void emit_word(operator_t *op, const uint8_t *word, size_t len, spate_builder_t *out) {
    if (!op->lowercase) {
        spate_emit_i64(out, word, len, 1);
        return;
    }
    op->scratch.len = 0;
    spate_lowercase_utf8(word, len, &op->scratch); /* Rust's str::to_lowercase */
    spate_emit_i64(out, op->scratch.ptr, op->scratch.len, 1);
}

static bool split_record(void *state, const spate_record_t *r, spate_builder_t *out, spate_error_t *err) {
    operator_t *op = state;
    const uint8_t *s = r->value.ptr;
    size_t n = r->value.len, i = 0, word = 0;
    char why[96];
    if (!spate_utf8_valid(s, n, why, sizeof why)) return spate_fail(err, "value is not UTF-8: %s", why);
    bool in_word = false;
    while (i < n) {
        size_t at = i;
        uint32_t c = spate_utf8_next(s, n, &i);
        if (spate_is_whitespace(c)) {
            if (in_word) emit_word(op, s + word, at - word, out);
            in_word = false;
        } else if (!in_word) {
            in_word = true;
            word = at;
        }
    }
    if (in_word) emit_word(op, s + word, n - word, out);
    return true;
}

static const spate_param_info_t PARAMS[] = {
    {"lowercase", "lowercase words first (default true)"},
};

static const spate_transform_t OPERATOR = {
    .info =
        {
            .name = "{{name}}",
            .description = "(word, 1) for each word of a line",
            .params = PARAMS,
            .params_len = 1,
            .key_type = SPATE_TYPE_TEXT,
            .value_type = SPATE_TYPE_I64,
            .monoid = SPATE_MONOID_NONE,
        },
    .configure = split_configure,
    .record = split_record,
};

SPATE_EXPORT_TRANSFORM(OPERATOR)
