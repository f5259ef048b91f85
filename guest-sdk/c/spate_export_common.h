/* Conversions between the SDK's types and the ones `wit-bindgen c` generates, shared by the
 * export files (PREFIX is the world's C name, e.g. transform_operator). */
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define WIT_STRING CAT(PREFIX, _string_t)
#define WIT_STRING_DUP CAT(PREFIX, _string_dup)
#define WIT_PAIR CAT(PREFIX, _tuple2_string_string_t)

static void info_to_wit(const spate_info_t *info, spate_operator_types_operator_info_t *ret) {
    memset(ret, 0, sizeof *ret);
    WIT_STRING_DUP(&ret->name, info->name); /* returned strings are freed after the call */
    WIT_STRING_DUP(&ret->description, info->description);
    ret->params.len = info->params_len;
    ret->params.ptr = info->params_len ? calloc(info->params_len, sizeof(WIT_PAIR)) : NULL;
    for (size_t i = 0; i < info->params_len; i++) {
        WIT_STRING_DUP(&ret->params.ptr[i].f0, info->params[i].name);
        WIT_STRING_DUP(&ret->params.ptr[i].f1, info->params[i].help);
    }
    ret->key_type.is_some = info->key_type != SPATE_TYPE_NONE;
    ret->key_type.val = ret->key_type.is_some ? (uint8_t)info->key_type : 0;
    ret->value_type.is_some = info->value_type != SPATE_TYPE_NONE;
    ret->value_type.val = ret->value_type.is_some ? (uint8_t)info->value_type : 0;
    ret->monoid.is_some = info->monoid != SPATE_MONOID_NONE;
    ret->monoid.val = ret->monoid.is_some ? (uint8_t)info->monoid : 0;
}

static bool error_to_wit(spate_error_t *e, spate_operator_types_operator_error_t *err) {
    const char *m = e->message ? e->message : "operator failed";
    err->message.ptr = (uint8_t *)strdup(m);
    err->message.len = strlen(m);
    err->record_index.is_some = e->has_record_index;
    err->record_index.val = e->record_index;
    free(e->message);
    return false;
}

static void params_from_wit(const spate_operator_types_params_t *params, spate_params_t *p) {
    spate_bytes_t *names = calloc(params->len + 1, sizeof *names), *values = calloc(params->len + 1, sizeof *values);
    if (!names || !values) __builtin_trap();
    for (size_t i = 0; i < params->len; i++) {
        names[i].ptr = params->ptr[i].f0.ptr;
        names[i].len = params->ptr[i].f0.len;
        values[i].ptr = params->ptr[i].f1.ptr;
        values[i].len = params->ptr[i].f1.len;
    }
    p->names = names;
    p->values = values;
    p->len = params->len;
}

/* The parameters' text is freed with the WIT params after configure: an operator keeps copies
 * of what it needs. */
static void params_free(spate_params_t *p) {
    free((void *)p->names);
    free((void *)p->values);
}

/* Borrows a WIT column (freed by the caller after the call). */
static void column_from_wit(const spate_operator_types_column_t *c, spate_column_t *out) {
    out->data = c->data.ptr;
    out->data_len = c->data.len;
    out->offsets = c->offsets.ptr;
    out->offsets_len = c->offsets.len;
}

/* Moves an SDK column (malloc'd buffers) into a returned WIT column (freed after the call). */
static void column_to_wit(const spate_column_t *c, spate_operator_types_column_t *out) {
    out->data.ptr = c->data;
    out->data.len = c->data_len;
    out->offsets.ptr = c->offsets;
    out->offsets.len = c->offsets_len;
}
