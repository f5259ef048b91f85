/* sum in C: adds i64 values (reduceByKey's _ + _); overflow wraps, as in Rust. */
#include "spate_guest.h"

static void sum_combine(void *state, int64_t *acc, int64_t value) {
    (void)state;
    *acc = (int64_t)((uint64_t)*acc + (uint64_t)value); /* wrapping: signed overflow is UB in C */
}

static const spate_combiner_t SUM = {
    .info =
        {
            .name = "sum",
            .description = "adds i64 values",
            .params = 0,
            .params_len = 0,
            .key_type = SPATE_TYPE_NONE,
            .value_type = SPATE_TYPE_I64,
            /* A promise that combine is exactly this, so upstream operators may pre-combine. */
            .monoid = SPATE_MONOID_SUM_I64,
        },
    .value_type = SPATE_TYPE_I64,
    .combine_i64 = sum_combine,
};

SPATE_EXPORT_COMBINER(SUM)
