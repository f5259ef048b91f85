/* Native tests of the operator (the host's C compiler, no Wasm): ./test.sh */
#include <stdio.h>
#include <string.h>

#include "spate_testing.h"

static int failed;

static void expect(const char *const *params, size_t nparams, const char **lines, size_t n, const char *want) {
    char out[256];
    spate_error_t err = {0};
    if (!spate_test_transform(spate_exported_transform, params, nparams, lines, n, SPATE_MONOID_NONE, out, sizeof out, &err)) {
        fprintf(stderr, "failed: %s\n", err.message);
        failed++;
    } else if (strcmp(out, want) != 0) {
        fprintf(stderr, "got \"%s\", want \"%s\"\n", out, want);
        failed++;
    }
}

int main(void) {
    const char *lines[] = {"To be or", "NOT"};
    expect(NULL, 0, lines, 2, "to=1 be=1 or=1 not=1");
    const char *keep_case[] = {"lowercase", "false"};
    expect(keep_case, 1, lines, 1, "To=1 be=1 or=1");
    printf("%s\n", failed ? "FAILED" : "ok");
    return failed != 0;
}
