/* The `spate:operator/transform` export of world transform-operator, calling the operator that
 * SPATE_EXPORT_TRANSFORM names. Compiled with the bindings `wit-bindgen c` generates for the
 * world (transform_operator.h), see build.sh. */
#include <stdlib.h>
#include <string.h>

#include "spate_guest.h"
#include "transform_operator.h"

#define PREFIX transform_operator
#include "spate_export_common.h"

static void *state;
static bool configured;
static spate_monoid_t combine = SPATE_MONOID_NONE;

void exports_spate_operator_transform_describe(exports_spate_operator_transform_operator_info_t *ret) {
    info_to_wit(&spate_exported_transform->info, ret);
}

bool exports_spate_operator_transform_configure(exports_spate_operator_transform_params_t *params,
                                                exports_spate_operator_transform_monoid_t *maybe_output_combine,
                                                exports_spate_operator_transform_operator_error_t *err) {
    spate_params_t p;
    params_from_wit(params, &p);
    spate_error_t e = {0};
    bool ok = spate_configure_transform(spate_exported_transform, &p, &state, &e);
    params_free(&p);
    exports_spate_operator_transform_params_free(params);
    if (!ok) return error_to_wit(&e, err);
    configured = true;
    combine = maybe_output_combine ? (spate_monoid_t)*maybe_output_combine : SPATE_MONOID_NONE;
    return true;
}

bool exports_spate_operator_transform_process(exports_spate_operator_transform_batch_t *input,
                                              exports_spate_operator_transform_batch_t *ret,
                                              exports_spate_operator_transform_operator_error_t *err) {
    spate_error_t e = {0};
    if (!configured) {
        exports_spate_operator_transform_batch_free(input);
        spate_fail(&e, "operator called before configure");
        return error_to_wit(&e, err);
    }
    spate_partition_t in = {0}, out;
    in.has_keys = input->keys.is_some;
    if (in.has_keys) column_from_wit(&input->keys.val, &in.keys);
    column_from_wit(&input->values, &in.values);
    in.timestamps = input->timestamps.ptr;
    in.timestamps_len = input->timestamps.len;
    bool ok = spate_run_transform(spate_exported_transform, state, &in, combine, &out, &e);
    exports_spate_operator_transform_batch_free(input);
    if (!ok) return error_to_wit(&e, err);
    memset(ret, 0, sizeof *ret);
    ret->keys.is_some = out.has_keys;
    if (out.has_keys) column_to_wit(&out.keys, &ret->keys.val);
    column_to_wit(&out.values, &ret->values);
    ret->timestamps.ptr = (int64_t *)out.timestamps;
    ret->timestamps.len = out.timestamps_len;
    return true;
}
