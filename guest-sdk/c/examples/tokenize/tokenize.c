/*
 * tokenize in C: splits text lines on whitespace and emits (word, 1) per word.
 *
 * A port of the Rust plugin (plugins/tokenize) with the same rules and output: words are
 * separated by Unicode White_Space (Rust's char::is_whitespace); `lowercase` lowercases words
 * (ASCII lines: ASCII lowercase; others: the Unicode lowercase of the word, see
 * spate_lowercase_utf8); `strip-punctuation` trims ASCII punctuation (and, on non-ASCII lines,
 * common Unicode punctuation) from both ends of each word and drops words left empty.
 */
#include <stdlib.h>
#include <string.h>

#include "spate_guest.h"

typedef struct {
    bool lowercase, strip_punctuation;
    spate_buf_t scratch;
} tokenize_t;

static inline bool is_ascii_space(uint8_t b) {
    return b <= ' ' && (b == ' ' || (b >= '\t' && b <= '\r'));
}

static inline bool is_ascii_punct(uint8_t b) {
    return (b >= 33 && b <= 47) || (b >= 58 && b <= 64) || (b >= 91 && b <= 96) || (b >= 123 && b <= 126);
}

static bool is_unicode_punct(uint32_t c) {
    return (c >= 0x2010 && c <= 0x2027) || (c >= 0x2030 && c <= 0x205E) || c == 0xA1 || c == 0xAB || c == 0xBB || c == 0xBF ||
           (c >= 0x3000 && c <= 0x303F);
}

static bool is_ascii(const uint8_t *s, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        if (x & 0x8080808080808080ull) return false;
    }
    for (; i < n; i++)
        if (s[i] & 0x80) return false;
    return true;
}

/* The first ASCII whitespace byte at or after `from` (n when none), eight bytes per step. */
static inline size_t find_ascii_space(const uint8_t *s, size_t n, size_t from) {
    const uint64_t ONES = 0x2121212121212121ull, HIGH = 0x8080808080808080ull;
    size_t i = from;
    while (i + 8 <= n) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        uint64_t below = (x - ONES) & ~x & HIGH; /* bytes below 0x21; the lowest mark is exact */
        if (!below) {
            i += 8;
            continue;
        }
        size_t j = i + (size_t)(__builtin_ctzll(below) / 8);
        if (is_ascii_space(s[j])) return j;
        i = j + 1; /* a control character that is not whitespace belongs to the word */
    }
    while (i < n && !is_ascii_space(s[i])) i++;
    return i;
}

static void emit_ascii_word(tokenize_t *t, const uint8_t *w, size_t n, spate_builder_t *out) {
    if (t->strip_punctuation) {
        while (n && is_ascii_punct(w[0])) w++, n--;
        while (n && is_ascii_punct(w[n - 1])) n--;
    }
    if (!n) return;
    if (t->lowercase) {
        size_t k = 0;
        while (k < n && !(w[k] >= 'A' && w[k] <= 'Z')) k++;
        if (k < n) {
            t->scratch.len = 0;
            spate_buf_reserve(&t->scratch, n);
            for (size_t i = 0; i < n; i++) t->scratch.ptr[i] = (uint8_t)(w[i] >= 'A' && w[i] <= 'Z' ? w[i] + 32 : w[i]);
            spate_emit_i64(out, t->scratch.ptr, n, 1);
            return;
        }
    }
    spate_emit_i64(out, w, n, 1);
}

static void emit_unicode_word(tokenize_t *t, const uint8_t *w, size_t n, spate_builder_t *out) {
    if (t->strip_punctuation) {
        size_t i = 0;
        while (i < n) { /* trim the start */
            size_t j = i;
            uint32_t c = spate_utf8_next(w, n, &j);
            if (!(c < 0x80 ? is_ascii_punct((uint8_t)c) : is_unicode_punct(c))) break;
            i = j;
        }
        w += i, n -= i;
        while (n) { /* trim the end */
            size_t start = n - 1;
            while (start > 0 && (w[start] & 0xC0) == 0x80) start--;
            size_t j = start;
            uint32_t c = spate_utf8_next(w, n, &j);
            if (!(c < 0x80 ? is_ascii_punct((uint8_t)c) : is_unicode_punct(c))) break;
            n = start;
        }
    }
    if (!n) return;
    if (t->lowercase) {
        t->scratch.len = 0;
        spate_lowercase_utf8(w, n, &t->scratch);
        spate_emit_i64(out, t->scratch.ptr, t->scratch.len, 1);
    } else {
        spate_emit_i64(out, w, n, 1);
    }
}

static bool tokenize_record(void *state, const spate_record_t *r, spate_builder_t *out, spate_error_t *err) {
    tokenize_t *t = state;
    const uint8_t *s = r->value.ptr;
    size_t n = r->value.len;
    if (is_ascii(s, n)) {
        size_t i = 0;
        for (;;) {
            while (i < n && is_ascii_space(s[i])) i++;
            if (i == n) break;
            size_t end = find_ascii_space(s, n, i + 1);
            emit_ascii_word(t, s + i, end - i, out);
            i = end;
        }
        return true;
    }
    char why[96];
    if (!spate_utf8_valid(s, n, why, sizeof why)) return spate_fail(err, "value is not UTF-8: %s", why);
    size_t i = 0, word = 0;
    bool in_word = false;
    while (i < n) {
        size_t at = i;
        uint32_t c = spate_utf8_next(s, n, &i);
        if (spate_is_whitespace(c)) {
            if (in_word) emit_unicode_word(t, s + word, at - word, out);
            in_word = false;
        } else if (!in_word) {
            in_word = true;
            word = at;
        }
    }
    if (in_word) emit_unicode_word(t, s + word, n - word, out);
    return true;
}

static bool tokenize_configure(const spate_params_t *params, void **state, spate_error_t *err) {
    tokenize_t *t = calloc(1, sizeof *t);
    if (!t) __builtin_trap();
    if (!spate_params_bool(params, "lowercase", false, &t->lowercase, err) ||
        !spate_params_bool(params, "strip-punctuation", false, &t->strip_punctuation, err)) {
        free(t);
        return false;
    }
    *state = t;
    return true;
}

static const spate_param_info_t PARAMS[] = {
    {"lowercase", "lowercase every word (default false)"},
    {"strip-punctuation", "trim punctuation from both ends of words, dropping empty ones (default false)"},
};

static const spate_transform_t TOKENIZE = {
    .info =
        {
            .name = "tokenize",
            .description = "splits lines on whitespace and emits (word, 1) per word",
            .params = PARAMS,
            .params_len = 2,
            .key_type = SPATE_TYPE_TEXT,
            .value_type = SPATE_TYPE_I64,
            .monoid = SPATE_MONOID_NONE,
        },
    .configure = tokenize_configure,
    .record = tokenize_record,
};

SPATE_EXPORT_TRANSFORM(TOKENIZE)
