/* Native test helpers for C operators (compiled into tests, not into components). */
#ifndef SPATE_TESTING_H
#define SPATE_TESTING_H

#include "spate_guest.h"

/* A batch of unkeyed text lines, as the host hands a source's lines to the first operator
 * (data and offsets malloc'd: free with spate_test_free_batch). */
spate_partition_t spate_test_lines(const char *const *lines, size_t n);
void spate_test_free_batch(spate_partition_t *b);

/* Configures transform `op` with `nparams` (name, value) pairs (params[2i], params[2i+1]),
 * runs it over `lines` asking for pre-combining with `combine`, and writes its output as
 * "key=value key=value ..." (i64 values) into out[0..out_len]. Returns false with `err` set
 * when the operator fails. */
bool spate_test_transform(const spate_transform_t *op, const char *const *params, size_t nparams, const char *const *lines,
                          size_t n, spate_monoid_t combine, char *out, size_t out_len, spate_error_t *err);

#endif
