/* The `spate:operator/combiner` export of world combiner-operator, calling the combiner that
 * SPATE_EXPORT_COMBINER names. Compiled with the bindings `wit-bindgen c` generates for the
 * world (combiner_operator.h), see build.sh. */
#include <stdlib.h>
#include <string.h>

#include "combiner_operator.h"
#include "spate_guest.h"

#define PREFIX combiner_operator
#include "spate_export_common.h"

static void *state;
static bool configured;

void exports_spate_operator_combiner_describe(exports_spate_operator_combiner_operator_info_t *ret) {
    info_to_wit(&spate_exported_combiner->info, ret);
}

bool exports_spate_operator_combiner_configure(exports_spate_operator_combiner_params_t *params,
                                               exports_spate_operator_combiner_operator_error_t *err) {
    spate_params_t p;
    params_from_wit(params, &p);
    spate_error_t e = {0};
    bool ok = spate_configure_combiner(spate_exported_combiner, &p, &state, &e);
    params_free(&p);
    exports_spate_operator_combiner_params_free(params);
    if (!ok) return error_to_wit(&e, err);
    configured = true;
    return true;
}

bool exports_spate_operator_combiner_fold(exports_spate_operator_combiner_column_t *accumulators,
                                          combiner_operator_list_u32_t *targets,
                                          exports_spate_operator_combiner_column_t *values,
                                          exports_spate_operator_combiner_column_t *ret,
                                          exports_spate_operator_combiner_operator_error_t *err) {
    spate_error_t e = {0};
    spate_column_t accs, vals, out;
    bool ok = configured || spate_fail(&e, "operator called before configure");
    if (ok) {
        column_from_wit(accumulators, &accs);
        column_from_wit(values, &vals);
        ok = spate_run_fold(spate_exported_combiner, state, &accs, targets->ptr, targets->len, &vals, &out, &e);
    }
    exports_spate_operator_combiner_column_free(accumulators);
    combiner_operator_list_u32_free(targets);
    exports_spate_operator_combiner_column_free(values);
    if (!ok) return error_to_wit(&e, err);
    column_to_wit(&out, ret);
    return true;
}
