/* Native tests of the C guest SDK and its examples, run the way the host runs them (no Wasm):
 *   guest-sdk/c/tests/run.sh      (prints "N passed, N failed") */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spate_testing.h"

static int passed, failed;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (cond) passed++;                                                \
        else {                                                             \
            failed++;                                                      \
            fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                  \
    } while (0)

/* Runs the tokenize example over lines (see spate_test_transform). */
static bool tokenize(const char *const *params, size_t nparams, const char **ls, size_t n, spate_monoid_t combine, char *out,
                     size_t out_len, spate_error_t *err) {
    return spate_test_transform(spate_exported_transform, params, nparams, ls, n, combine, out, out_len, err);
}

static void test_tokenize(void) {
    char out[512];
    spate_error_t err = {0};
    const char *l1[] = {"a  b\tc", "", ("  d\xc2\xa0" "e\r")};
    CHECK(tokenize(NULL, 0, l1, 3, SPATE_MONOID_NONE, out, sizeof out, &err) && strcmp(out, "a=1 b=1 c=1 d=1 e=1") == 0);
    const char *l2[] = {"ab\x01" "cd e\x1c" "f \x0b g", "abcdefghijklmnop q"};
    CHECK(tokenize(NULL, 0, l2, 2, SPATE_MONOID_NONE, out, sizeof out, &err) &&
          strcmp(out, "ab\x01" "cd=1 e\x1c" "f=1 g=1 abcdefghijklmnop=1 q=1") == 0);
    const char *both[] = {"lowercase", "true", "strip-punctuation", "true"};
    const char *l3[] = {("Hello, World! -- \xc2\xab\xc3\x87" "a\xc2\xbb va?"), "don't", "\xce\x9f\xce\x94\xce\x9f\xce\xa3."};
    CHECK(tokenize(both, 2, l3, 3, SPATE_MONOID_NONE, out, sizeof out, &err) &&
          strcmp(out, "hello=1 world=1 \xc3\xa7" "a=1 va=1 don't=1 \xce\xbf\xce\xb4\xce\xbf\xcf\x82=1") == 0);
    const char *l4[] = {"a b a", "b a c"};
    CHECK(tokenize(NULL, 0, l4, 2, SPATE_MONOID_SUM_I64, out, sizeof out, &err) && strcmp(out, "a=3 b=2 c=1") == 0);
    const char *typo[] = {"lowercse", "true"};
    CHECK(!tokenize(typo, 1, l4, 2, SPATE_MONOID_NONE, out, sizeof out, &err) &&
          strcmp(err.message, "unknown parameter 'lowercse' (known: lowercase, strip-punctuation)") == 0);
    const char *bad[] = {"lowercase", "yes"};
    CHECK(!tokenize(bad, 1, l4, 2, SPATE_MONOID_NONE, out, sizeof out, &err) &&
          strcmp(err.message, "parameter 'lowercase' must be true or false, got 'yes'") == 0);
    free(err.message);
    err = (spate_error_t){0};
    const char *l5[] = {"ok", "\xff\xfe"};
    CHECK(!tokenize(NULL, 0, l5, 2, SPATE_MONOID_NONE, out, sizeof out, &err) && err.has_record_index && err.record_index == 1 &&
          strcmp(err.message, "value is not UTF-8: invalid utf-8 sequence of 1 bytes from index 0") == 0);
    free(err.message);
}

static void test_builder(void) {
    spate_builder_t b;
    spate_builder_init(&b, SPATE_MONOID_NONE);
    spate_push_value(&b, (const uint8_t *)"plain", 5);
    spate_emit_i64(&b, (const uint8_t *)"word", 4, 3);
    spate_push_pair(&b, (const uint8_t *)"k", 1, (const uint8_t *)"v", 1);
    spate_stamp(&b, 5);
    spate_emit_i64(&b, (const uint8_t *)"x", 1, 1);
    spate_stamp(&b, 7);
    spate_partition_t out;
    spate_error_t err = {0};
    CHECK(spate_builder_finish(&b, &out, &err));
    CHECK(spate_partition_len(&out) == 4 && out.has_keys);
    spate_record_t r0 = spate_partition_record(&out, 0), r2 = spate_partition_record(&out, 2);
    CHECK(r0.key.len == 0 && r2.key.len == 1 && r2.key.ptr[0] == 'k');
    CHECK(out.timestamps_len == 4 && out.timestamps[0] == 5 && out.timestamps[2] == 5 && out.timestamps[3] == 7);
    spate_test_free_batch(&out);
}

static spate_column_t i64s(const int64_t *v, size_t n) {
    spate_column_t c = {malloc(8 * n + 1), 8 * n, malloc(4 * (n + 1)), n + 1};
    for (size_t i = 0; i <= n; i++) c.offsets[i] = (uint32_t)(8 * i);
    memcpy(c.data, v, 8 * n);
    return c;
}

static void test_sum(void) {
    spate_params_t none = {0};
    void *state;
    spate_error_t err = {0};
    CHECK(spate_configure_combiner(spate_exported_combiner, &none, &state, &err));
    int64_t a[] = {1, INT64_MAX}, v[] = {2, 1, -5};
    uint32_t t[] = {0, 1, 0};
    spate_column_t accs = i64s(a, 2), vals = i64s(v, 3), out;
    CHECK(spate_run_fold(spate_exported_combiner, state, &accs, t, 3, &vals, &out, &err));
    int64_t r[2];
    memcpy(r, out.data, 16);
    CHECK(r[0] == -2 && r[1] == INT64_MIN);
    free(out.data);
    free(out.offsets);
    uint32_t bad[] = {0, 3, 0};
    CHECK(!spate_run_fold(spate_exported_combiner, state, &accs, bad, 3, &vals, &out, &err) &&
          strcmp(err.message, "target 3 is out of range (2 accumulators)") == 0 && err.record_index == 1);
    free(err.message);
    err = (spate_error_t){0};
    spate_bytes_t n = {(const uint8_t *)"x", 1}, val = {(const uint8_t *)"1", 1};
    spate_params_t one = {&n, &val, 1};
    CHECK(!spate_configure_combiner(spate_exported_combiner, &one, &state, &err) &&
          strcmp(err.message, "unknown parameter 'x' (this operator takes no parameters)") == 0);
    free(err.message);
    free(accs.data), free(accs.offsets), free(vals.data), free(vals.offsets);
}

static void test_lowercase(void) {
    const char *in = "\xce\x91\xce\xa3 \xc4\xb0\xe2\x92\xb6"; /* ΑΣ İⒶ */
    spate_buf_t out = {0};
    spate_lowercase_utf8((const uint8_t *)in, strlen(in), &out);
    const char *want = "\xce\xb1\xcf\x82 i\xcc\x87\xe2\x93\x90"; /* ας i̇ⓐ */
    CHECK(out.len == strlen(want) && memcmp(out.ptr, want, out.len) == 0);
    free(out.ptr);
}

int main(void) {
    test_tokenize();
    test_builder();
    test_sum();
    test_lowercase();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
