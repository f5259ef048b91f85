/* spate_guest.c: the batch codec, output builder, params and the run_* calls. See the header. */
#include "spate_guest.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spate_unicode_tables.h"

/* --- buffers ------------------------------------------------------------------------------- */

void spate_buf_reserve(spate_buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra) cap *= 2;
    uint8_t *p = realloc(b->ptr, cap);
    if (!p) __builtin_trap(); /* out of memory: trap, as a Rust guest would abort */
    b->ptr = p;
    b->cap = cap;
}

void spate_buf_append(spate_buf_t *b, const void *data, size_t len) {
    spate_buf_reserve(b, len);
    if (len) memcpy(b->ptr + b->len, data, len);
    b->len += len;
}

static inline void buf_push_u32(spate_buf_t *b, uint32_t v) {
    spate_buf_reserve(b, 4);
    memcpy(b->ptr + b->len, &v, 4);
    b->len += 4;
}

static inline uint32_t buf_u32(const spate_buf_t *b, size_t i) {
    uint32_t v;
    memcpy(&v, b->ptr + 4 * i, 4);
    return v;
}

/* --- columns, batches, errors --------------------------------------------------------------- */

size_t spate_column_len(const spate_column_t *c) {
    return c->offsets_len ? c->offsets_len - 1 : 0;
}

spate_bytes_t spate_column_get(const spate_column_t *c, size_t i) {
    spate_bytes_t b = {c->data + c->offsets[i], c->offsets[i + 1] - c->offsets[i]};
    return b;
}

size_t spate_partition_len(const spate_partition_t *b) {
    return spate_column_len(&b->values);
}

spate_record_t spate_partition_record(const spate_partition_t *b, size_t i) {
    spate_record_t r;
    r.has_key = b->has_keys;
    if (b->has_keys) {
        r.key = spate_column_get(&b->keys, i);
    } else {
        r.key.ptr = (const uint8_t *)"";
        r.key.len = 0;
    }
    r.value = spate_column_get(&b->values, i);
    r.has_timestamp = b->timestamps_len != 0;
    r.timestamp = r.has_timestamp ? b->timestamps[i] : 0;
    return r;
}

bool spate_fail(spate_error_t *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    free(err->message);
    err->message = malloc((size_t)(n < 0 ? 0 : n) + 1);
    if (!err->message) __builtin_trap();
    va_start(ap, fmt);
    vsnprintf(err->message, (size_t)(n < 0 ? 0 : n) + 1, fmt, ap);
    va_end(ap);
    return false;
}

void spate_error_at_record(spate_error_t *err, size_t index) {
    if (!err->has_record_index) {
        err->has_record_index = true;
        err->record_index = (uint32_t)index;
    }
}

/* --- params -------------------------------------------------------------------------------- */

static bool bytes_eq_str(spate_bytes_t b, const char *s) {
    size_t n = strlen(s);
    return b.len == n && memcmp(b.ptr, s, n) == 0;
}

bool spate_params_get(const spate_params_t *p, const char *name, spate_bytes_t *out) {
    for (size_t i = 0; i < p->len; i++) {
        if (bytes_eq_str(p->names[i], name)) {
            *out = p->values[i];
            return true;
        }
    }
    return false;
}

static spate_bytes_t trim(spate_bytes_t b) {
    while (b.len && (b.ptr[0] == ' ' || (b.ptr[0] >= '\t' && b.ptr[0] <= '\r'))) b.ptr++, b.len--;
    while (b.len && (b.ptr[b.len - 1] == ' ' || (b.ptr[b.len - 1] >= '\t' && b.ptr[b.len - 1] <= '\r'))) b.len--;
    return b;
}

bool spate_params_bool(const spate_params_t *p, const char *name, bool dflt, bool *out, spate_error_t *err) {
    spate_bytes_t text;
    if (!spate_params_get(p, name, &text)) {
        *out = dflt;
        return true;
    }
    spate_bytes_t t = trim(text);
    if (bytes_eq_str(t, "true") || bytes_eq_str(t, "false")) {
        *out = bytes_eq_str(t, "true");
        return true;
    }
    return spate_fail(err, "parameter '%s' must be true or false, got '%.*s'", name, (int)text.len, (const char *)text.ptr);
}

bool spate_params_i64(const spate_params_t *p, const char *name, int64_t dflt, int64_t *out, spate_error_t *err) {
    spate_bytes_t text;
    if (!spate_params_get(p, name, &text)) {
        *out = dflt;
        return true;
    }
    spate_bytes_t t = trim(text);
    size_t i = 0;
    bool neg = false;
    if (t.len && (t.ptr[0] == '+' || t.ptr[0] == '-')) neg = t.ptr[i++] == '-';
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    bool ok = i < t.len;
    for (; ok && i < t.len; i++) {
        if (t.ptr[i] < '0' || t.ptr[i] > '9') ok = false;
        else {
            uint64_t d = (uint64_t)(t.ptr[i] - '0');
            if (v > (limit - d) / 10) ok = false;
            else v = v * 10 + d;
        }
    }
    if (!ok) return spate_fail(err, "parameter '%s' must be an integer, got '%.*s'", name, (int)text.len, (const char *)text.ptr);
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

/* Fails on a parameter name not in info's, so that a typo is an error and not a default. */
static bool check_known(const spate_info_t *info, const spate_params_t *p, spate_error_t *err) {
    for (size_t i = 0; i < p->len; i++) {
        bool known = false;
        for (size_t k = 0; k < info->params_len; k++) known |= bytes_eq_str(p->names[i], info->params[k].name);
        if (known) continue;
        if (info->params_len == 0) {
            return spate_fail(err, "unknown parameter '%.*s' (this operator takes no parameters)", (int)p->names[i].len,
                              (const char *)p->names[i].ptr);
        }
        spate_buf_t names = {0};
        for (size_t k = 0; k < info->params_len; k++) {
            if (k) spate_buf_append(&names, ", ", 2);
            spate_buf_append(&names, info->params[k].name, strlen(info->params[k].name));
        }
        spate_fail(err, "unknown parameter '%.*s' (known: %.*s)", (int)p->names[i].len, (const char *)p->names[i].ptr,
                   (int)names.len, (const char *)names.ptr);
        free(names.ptr);
        return false;
    }
    return true;
}

/* --- the combining index ------------------------------------------------------------------- */

static inline uint64_t rotl(uint64_t x, int r) {
    return (x << r) | (x >> (64 - r));
}

/* FxHash over 8-byte words, then a final mix. */
static uint32_t key_hash(const uint8_t *p, size_t n) {
    const uint64_t K = 0x517cc1b727220a95ull;
    uint64_t h = (uint64_t)n * K;
    while (n >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        h = (rotl(h, 5) ^ x) * K;
        p += 8, n -= 8;
    }
    if (n) {
        uint64_t x = 0;
        memcpy(&x, p, n);
        h = (rotl(h, 5) ^ x) * K;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (uint32_t)h;
}

static void index_grow(spate_key_index_t *ix) {
    size_t cap = ix->cap ? ix->cap * 2 : 1024;
    uint32_t *slots = calloc(cap, 4), *hashes = malloc(cap * 4);
    if (!slots || !hashes) __builtin_trap();
    for (size_t i = 0; i < ix->cap; i++) {
        if (!ix->slots[i]) continue;
        size_t j = ix->hashes[i] & (cap - 1);
        while (slots[j]) j = (j + 1) & (cap - 1);
        slots[j] = ix->slots[i];
        hashes[j] = ix->hashes[i];
    }
    free(ix->slots);
    free(ix->hashes);
    ix->slots = slots;
    ix->hashes = hashes;
    ix->cap = cap;
}

/* The record holding `key` among the combined ones, or -1 after inserting the record the
 * caller pushes next (number b->len). */
static long index_find_or_insert(spate_builder_t *b, const uint8_t *key, size_t len) {
    spate_key_index_t *ix = &b->index;
    if (2 * (ix->count + 1) > ix->cap) index_grow(ix);
    uint32_t h = key_hash(key, len);
    size_t j = h & (ix->cap - 1);
    for (;;) {
        uint32_t slot = ix->slots[j];
        if (!slot) break;
        if (ix->hashes[j] == h) {
            size_t r = slot - 1;
            uint32_t a = buf_u32(&b->key_offsets, r), e = buf_u32(&b->key_offsets, r + 1);
            if (e - a == len && memcmp(b->keys.ptr + a, key, len) == 0) return (long)r;
        }
        j = (j + 1) & (ix->cap - 1);
    }
    ix->slots[j] = (uint32_t)b->len + 1;
    ix->hashes[j] = h;
    ix->count++;
    return -1;
}

/* --- the builder --------------------------------------------------------------------------- */

void spate_builder_init(spate_builder_t *b, spate_monoid_t combine) {
    memset(b, 0, sizeof *b);
    b->combine = combine;
    buf_push_u32(&b->value_offsets, 0);
}

size_t spate_builder_len(const spate_builder_t *b) {
    return b->len;
}

/* The first keyed record: earlier unkeyed records get empty keys. */
static void start_keys(spate_builder_t *b) {
    b->keyed = true;
    for (size_t i = 0; i <= b->len; i++) buf_push_u32(&b->key_offsets, 0);
}

static inline void push_key(spate_builder_t *b, const uint8_t *key, size_t len) {
    if (!b->keyed) start_keys(b);
    spate_buf_append(&b->keys, key, len);
    buf_push_u32(&b->key_offsets, (uint32_t)b->keys.len);
}

static inline void push_val(spate_builder_t *b, const void *value, size_t len) {
    spate_buf_append(&b->values, value, len);
    buf_push_u32(&b->value_offsets, (uint32_t)b->values.len);
    b->len++;
}

void spate_push_value(spate_builder_t *b, const uint8_t *value, size_t value_len) {
    if (b->keyed) buf_push_u32(&b->key_offsets, (uint32_t)b->keys.len);
    push_val(b, value, value_len);
}

void spate_push_pair(spate_builder_t *b, const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len) {
    push_key(b, key, key_len);
    push_val(b, value, value_len);
}

void spate_push_record(spate_builder_t *b, const spate_record_t *r) {
    if (r->has_key) spate_push_pair(b, r->key.ptr, r->key.len, r->value.ptr, r->value.len);
    else spate_push_value(b, r->value.ptr, r->value.len);
    if (r->has_timestamp) spate_buf_append(&b->timestamps, &r->timestamp, 8);
}

static inline int64_t wrapping_add(int64_t a, int64_t v) {
    return (int64_t)((uint64_t)a + (uint64_t)v);
}

void spate_emit_i64(spate_builder_t *b, const uint8_t *key, size_t key_len, int64_t value) {
    if (b->combine == SPATE_MONOID_SUM_I64 || b->combine == SPATE_MONOID_MIN_I64 || b->combine == SPATE_MONOID_MAX_I64) {
        long r = index_find_or_insert(b, key, key_len);
        if (r >= 0) {
            uint8_t *at = b->values.ptr + buf_u32(&b->value_offsets, (size_t)r);
            int64_t acc;
            memcpy(&acc, at, 8);
            acc = b->combine == SPATE_MONOID_SUM_I64   ? wrapping_add(acc, value)
                  : b->combine == SPATE_MONOID_MIN_I64 ? (value < acc ? value : acc)
                                                       : (value > acc ? value : acc);
            memcpy(at, &acc, 8);
            return;
        }
    }
    push_key(b, key, key_len);
    push_val(b, &value, 8);
}

void spate_emit_f64(spate_builder_t *b, const uint8_t *key, size_t key_len, double value) {
    if (b->combine == SPATE_MONOID_SUM_F64) {
        long r = index_find_or_insert(b, key, key_len);
        if (r >= 0) {
            uint8_t *at = b->values.ptr + buf_u32(&b->value_offsets, (size_t)r);
            double acc;
            memcpy(&acc, at, 8);
            acc += value;
            memcpy(at, &acc, 8);
            return;
        }
    }
    push_key(b, key, key_len);
    push_val(b, &value, 8);
}

void spate_stamp(spate_builder_t *b, int64_t ts) {
    while (b->timestamps.len / 8 < b->len) spate_buf_append(&b->timestamps, &ts, 8);
}

static void take_column(spate_buf_t *data, spate_buf_t *offsets, spate_column_t *out) {
    out->data = data->ptr;
    out->data_len = data->len;
    out->offsets = (uint32_t *)(void *)offsets->ptr;
    out->offsets_len = offsets->len / 4;
    memset(data, 0, sizeof *data);
    memset(offsets, 0, sizeof *offsets);
}

bool spate_builder_finish(spate_builder_t *b, spate_partition_t *out, spate_error_t *err) {
    size_t ts = b->timestamps.len / 8;
    if (ts != 0 && ts != b->len) {
        return spate_fail(err, "operator built a malformed batch: %zu timestamps for %zu records", ts, b->len);
    }
    memset(out, 0, sizeof *out);
    out->has_keys = b->keyed;
    if (b->keyed) take_column(&b->keys, &b->key_offsets, &out->keys);
    take_column(&b->values, &b->value_offsets, &out->values);
    out->timestamps = (const int64_t *)(void *)b->timestamps.ptr;
    out->timestamps_len = ts;
    memset(&b->timestamps, 0, sizeof b->timestamps);
    spate_builder_free(b);
    return true;
}

void spate_builder_free(spate_builder_t *b) {
    free(b->keys.ptr);
    free(b->key_offsets.ptr);
    free(b->values.ptr);
    free(b->value_offsets.ptr);
    free(b->timestamps.ptr);
    free(b->index.slots);
    free(b->index.hashes);
    memset(b, 0, sizeof *b);
}

/* --- running operators --------------------------------------------------------------------- */

bool spate_configure_transform(const spate_transform_t *op, const spate_params_t *params, void **state, spate_error_t *err) {
    *state = NULL;
    if (!check_known(&op->info, params, err)) return false;
    return op->configure ? op->configure(params, state, err) : true;
}

bool spate_run_transform(const spate_transform_t *op, void *state, const spate_partition_t *input, spate_monoid_t combine,
                         spate_partition_t *out, spate_error_t *err) {
    spate_builder_t b;
    spate_builder_init(&b, combine);
    bool ok = true;
    if (op->process) {
        ok = op->process(state, input, &b, err);
    } else if (!op->record) {
        ok = spate_fail(err, "operator implements neither record nor process");
    } else {
        size_t n = spate_partition_len(input);
        for (size_t i = 0; i < n && ok; i++) {
            spate_record_t r = spate_partition_record(input, i);
            ok = op->record(state, &r, &b, err);
            if (!ok) spate_error_at_record(err, i);
            else if (r.has_timestamp) spate_stamp(&b, r.timestamp);
        }
    }
    if (!ok) {
        if (!err->message) spate_fail(err, "operator failed without a message");
        spate_builder_free(&b);
        return false;
    }
    return spate_builder_finish(&b, out, err);
}

bool spate_configure_combiner(const spate_combiner_t *op, const spate_params_t *params, void **state, spate_error_t *err) {
    *state = NULL;
    if (!check_known(&op->info, params, err)) return false;
    return op->configure ? op->configure(params, state, err) : true;
}

bool spate_run_fold(const spate_combiner_t *op, void *state, const spate_column_t *accumulators, const uint32_t *targets,
                    size_t targets_len, const spate_column_t *values, spate_column_t *out, spate_error_t *err) {
    size_t n = spate_column_len(values), count = spate_column_len(accumulators);
    const char *what = op->value_type == SPATE_TYPE_F64 ? "f64" : "i64";
    if (targets_len != n) return spate_fail(err, "fold got %zu targets for %zu values", targets_len, n);
    uint8_t *accs = malloc(count * 8 + 1);
    if (!accs) __builtin_trap();
    for (size_t i = 0; i < count; i++) {
        spate_bytes_t a = spate_column_get(accumulators, i);
        if (a.len != 8) {
            free(accs);
            return spate_fail(err, "accumulator %zu: expected an %s value of 8 bytes, got %zu bytes", i, what, a.len);
        }
        memcpy(accs + 8 * i, a.ptr, 8);
    }
    for (size_t i = 0; i < n; i++) {
        spate_bytes_t v = spate_column_get(values, i);
        bool ok = v.len == 8 ? true : spate_fail(err, "expected an %s value of 8 bytes, got %zu bytes", what, v.len);
        if (ok && targets[i] >= count) ok = spate_fail(err, "target %u is out of range (%zu accumulators)", targets[i], count);
        if (!ok) {
            spate_error_at_record(err, i);
            free(accs);
            return false;
        }
        uint8_t *at = accs + 8 * (size_t)targets[i];
        if (op->value_type == SPATE_TYPE_F64) {
            double acc, x;
            memcpy(&acc, at, 8);
            memcpy(&x, v.ptr, 8);
            op->combine_f64(state, &acc, x);
            memcpy(at, &acc, 8);
        } else {
            int64_t acc, x;
            memcpy(&acc, at, 8);
            memcpy(&x, v.ptr, 8);
            op->combine_i64(state, &acc, x);
            memcpy(at, &acc, 8);
        }
    }
    out->data = accs;
    out->data_len = count * 8;
    out->offsets = malloc((count + 1) * 4);
    if (!out->offsets) __builtin_trap();
    out->offsets_len = count + 1;
    for (size_t i = 0; i <= count; i++) out->offsets[i] = (uint32_t)(8 * i);
    return true;
}

/* --- text ---------------------------------------------------------------------------------- */

bool spate_utf8_valid(const uint8_t *s, size_t len, char *why, size_t why_len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t width = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        int bad = 0; /* 0: fine; n > 0: invalid sequence of n bytes; -1: incomplete */
        if (width == 0) bad = 1;
        else if (i + 1 >= len) bad = -1;
        else {
            uint8_t d = s[i + 1];
            bool second_ok = width == 2 ? (d & 0xC0) == 0x80
                             : width == 3 ? ((c == 0xE0 && d >= 0xA0 && d <= 0xBF) || (c >= 0xE1 && c <= 0xEC && (d & 0xC0) == 0x80) ||
                                             (c == 0xED && d >= 0x80 && d <= 0x9F) || (c >= 0xEE && (d & 0xC0) == 0x80))
                                          : ((c == 0xF0 && d >= 0x90 && d <= 0xBF) || (c >= 0xF1 && c <= 0xF3 && (d & 0xC0) == 0x80) ||
                                             (c == 0xF4 && d >= 0x80 && d <= 0x8F));
            if (!second_ok) bad = 1;
            for (size_t k = 2; !bad && k < width; k++) {
                if (i + k >= len) bad = -1;
                else if ((s[i + k] & 0xC0) != 0x80) bad = (int)k;
            }
        }
        if (bad) {
            if (bad > 0) snprintf(why, why_len, "invalid utf-8 sequence of %d bytes from index %zu", bad, i);
            else snprintf(why, why_len, "incomplete utf-8 byte sequence from index %zu", i);
            return false;
        }
        i += width;
    }
    return true;
}

uint32_t spate_utf8_next(const uint8_t *s, size_t len, size_t *i) {
    uint32_t c = s[*i];
    (void)len;
    if (c < 0x80) {
        *i += 1;
        return c;
    }
    if (c < 0xE0) {
        c = ((c & 0x1F) << 6) | (s[*i + 1] & 0x3F);
        *i += 2;
    } else if (c < 0xF0) {
        c = ((c & 0x0F) << 12) | ((uint32_t)(s[*i + 1] & 0x3F) << 6) | (s[*i + 2] & 0x3F);
        *i += 3;
    } else {
        c = ((c & 0x07) << 18) | ((uint32_t)(s[*i + 1] & 0x3F) << 12) | ((uint32_t)(s[*i + 2] & 0x3F) << 6) | (s[*i + 3] & 0x3F);
        *i += 4;
    }
    return c;
}

/* The code point ending at s[end - 1]; sets *start to its first byte. */
static uint32_t utf8_prev(const uint8_t *s, size_t end, size_t *start) {
    size_t i = end - 1;
    while (i > 0 && (s[i] & 0xC0) == 0x80) i--;
    *start = i;
    size_t j = i;
    return spate_utf8_next(s, end, &j);
}

void spate_utf8_push(spate_buf_t *buf, uint32_t c) {
    uint8_t u[4];
    size_t n;
    if (c < 0x80) u[0] = (uint8_t)c, n = 1;
    else if (c < 0x800) u[0] = (uint8_t)(0xC0 | (c >> 6)), u[1] = (uint8_t)(0x80 | (c & 0x3F)), n = 2;
    else if (c < 0x10000)
        u[0] = (uint8_t)(0xE0 | (c >> 12)), u[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F)), u[2] = (uint8_t)(0x80 | (c & 0x3F)), n = 3;
    else
        u[0] = (uint8_t)(0xF0 | (c >> 18)), u[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F)), u[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F)),
        u[3] = (uint8_t)(0x80 | (c & 0x3F)), n = 4;
    spate_buf_append(buf, u, n);
}

bool spate_is_whitespace(uint32_t c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* The case tables of the Rust std the Rust plugins are built with (see spate_unicode_tables.h). */
static bool in_ranges(const uint32_t (*r)[2], size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid][0]) hi = mid;
        else if (c > r[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

static bool is_cased(uint32_t c) {
    return in_ranges(SPATE_CASED, sizeof SPATE_CASED / sizeof SPATE_CASED[0], c);
}

static bool is_case_ignorable(uint32_t c) {
    return in_ranges(SPATE_CASE_IGNORABLE, sizeof SPATE_CASE_IGNORABLE / sizeof SPATE_CASE_IGNORABLE[0], c);
}

static uint32_t lower_char(uint32_t c) {
    size_t lo = 0, hi = sizeof SPATE_LOWER / sizeof SPATE_LOWER[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < SPATE_LOWER[mid][0]) hi = mid;
        else if (c > SPATE_LOWER[mid][0]) lo = mid + 1;
        else return SPATE_LOWER[mid][1];
    }
    return c;
}

/* Final_Sigma: a capital sigma preceded by a cased letter (skipping case-ignorable ones) and not
 * followed by one. */
static bool final_sigma(const uint8_t *s, size_t len, size_t at, size_t after) {
    bool before = false;
    size_t i = at;
    while (i > 0) {
        size_t start;
        uint32_t c = utf8_prev(s, i, &start);
        i = start;
        if (!is_case_ignorable(c)) {
            before = is_cased(c);
            break;
        }
    }
    if (!before) return false;
    i = after;
    while (i < len) {
        uint32_t c = spate_utf8_next(s, len, &i);
        if (!is_case_ignorable(c)) return !is_cased(c);
    }
    return true;
}

void spate_lowercase_utf8(const uint8_t *s, size_t len, spate_buf_t *out) {
    size_t i = 0;
    while (i < len) {
        size_t at = i;
        uint32_t c = spate_utf8_next(s, len, &i);
        if (c < 0x80) {
            uint8_t b = (uint8_t)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            spate_buf_append(out, &b, 1);
        } else if (c == 0x130) { /* İ: the one unconditional multi-char lowercase mapping */
            spate_utf8_push(out, 'i');
            spate_utf8_push(out, 0x307);
        } else if (c == 0x3A3) {
            spate_utf8_push(out, final_sigma(s, len, at, i) ? 0x3C2 : 0x3C3);
        } else {
            spate_utf8_push(out, lower_char(c));
        }
    }
}
