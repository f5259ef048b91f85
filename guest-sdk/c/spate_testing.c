/* Native test helpers for C operators: see spate_testing.h. */
#include "spate_testing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

spate_partition_t spate_test_lines(const char *const *ls, size_t n) {
    spate_partition_t b = {0};
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += strlen(ls[i]);
    b.values.data = malloc(total + 1);
    b.values.offsets = malloc((n + 1) * 4);
    b.values.offsets_len = n + 1;
    b.values.offsets[0] = 0;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(b.values.data + pos, ls[i], strlen(ls[i]));
        pos += strlen(ls[i]);
        b.values.offsets[i + 1] = (uint32_t)pos;
    }
    b.values.data_len = pos;
    return b;
}

void spate_test_free_batch(spate_partition_t *b) {
    free(b->keys.data);
    free(b->keys.offsets);
    free(b->values.data);
    free(b->values.offsets);
    free((void *)b->timestamps);
}

bool spate_test_transform(const spate_transform_t *op, const char *const *params, size_t nparams, const char *const *ls,
                          size_t n, spate_monoid_t combine, char *out, size_t out_len, spate_error_t *err) {
    spate_bytes_t *names = calloc(nparams + 1, sizeof *names), *values = calloc(nparams + 1, sizeof *values);
    for (size_t i = 0; i < nparams; i++) {
        names[i] = (spate_bytes_t){(const uint8_t *)params[2 * i], strlen(params[2 * i])};
        values[i] = (spate_bytes_t){(const uint8_t *)params[2 * i + 1], strlen(params[2 * i + 1])};
    }
    spate_params_t p = {names, values, nparams};
    void *state = NULL;
    bool ok = spate_configure_transform(op, &p, &state, err);
    free(names);
    free(values);
    if (!ok) return false;
    spate_partition_t in = spate_test_lines(ls, n), result;
    ok = spate_run_transform(op, state, &in, combine, &result, err);
    spate_test_free_batch(&in);
    if (!ok) return false;
    out[0] = 0;
    for (size_t i = 0; i < spate_partition_len(&result); i++) {
        spate_record_t r = spate_partition_record(&result, i);
        int64_t v = 0;
        if (r.value.len == 8) memcpy(&v, r.value.ptr, 8);
        size_t used = strlen(out);
        snprintf(out + used, out_len - used, "%s%.*s=%lld", i ? " " : "", (int)r.key.len, (const char *)r.key.ptr, (long long)v);
    }
    spate_test_free_batch(&result);
    return true;
}
