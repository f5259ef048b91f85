/*
 * spate_guest.h: write Spate stream operators in C.
 *
 * The C twin of the Rust guest SDK (guest-sdk/src): the same concepts and names.
 *
 *  - An operator is a `spate_transform_t` (map, flatMap, filter: a `record` callback;
 *    mapPartitions: a `process` callback) or a `spate_combiner_t` (reduceByKey's function: a
 *    `combine_i64` or `combine_f64` callback), exported with one macro in the operator's file:
 *    `SPATE_EXPORT_TRANSFORM(my_op)` or `SPATE_EXPORT_COMBINER(my_op)`.
 *  - The host hands a whole partition at once, in columns; `spate_partition_t` reads it
 *    record by record (`spate_record_t`: key and value as byte slices, borrowed from the input,
 *    and the event time), `spate_builder_t` builds the output columns in flat buffers (no
 *    allocation per record).
 *
 * Build: see guest-sdk/c/build.sh (wit-bindgen c generates the world's bindings, clang compiles
 * for wasm32-wasi, wasm-tools component new makes the component).
 *
 * Encodings (the WIT value-type): text is UTF-8, i64 is 8 bytes little-endian, f64 is 8 bytes
 * IEEE-754 little-endian.
 */
#ifndef SPATE_GUEST_H
#define SPATE_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How a key or value column's bytes are to be read (the WIT value-type). */
typedef enum {
    SPATE_TYPE_NONE = -1, /* in spate_info_t: none declared (the input's type is kept) */
    SPATE_TYPE_BYTES = 0,
    SPATE_TYPE_TEXT = 1,
    SPATE_TYPE_I64 = 2,
    SPATE_TYPE_F64 = 3,
} spate_value_type_t;

/* A well-known combine function (the WIT monoid). */
typedef enum {
    SPATE_MONOID_NONE = -1,
    SPATE_MONOID_SUM_I64 = 0,
    SPATE_MONOID_MIN_I64 = 1,
    SPATE_MONOID_MAX_I64 = 2,
    SPATE_MONOID_SUM_F64 = 3,
} spate_monoid_t;

/* A borrowed byte slice. */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} spate_bytes_t;

/* A column of variable-size binary values: value i is data[offsets[i] .. offsets[i+1]]. */
typedef struct {
    uint8_t *data;
    size_t data_len;
    uint32_t *offsets; /* n + 1 entries, or none for an empty column */
    size_t offsets_len;
} spate_column_t;

size_t spate_column_len(const spate_column_t *c);
spate_bytes_t spate_column_get(const spate_column_t *c, size_t i);

/* One partition of a micro-batch (the WIT batch record). */
typedef struct {
    bool has_keys;
    spate_column_t keys;
    spate_column_t values;
    const int64_t *timestamps; /* timestamps_len is 0 or the record count */
    size_t timestamps_len;
} spate_partition_t;

/* One record of a batch, borrowed from its columns. */
typedef struct {
    bool has_key;
    spate_bytes_t key; /* empty when !has_key */
    spate_bytes_t value;
    bool has_timestamp;
    int64_t timestamp; /* event time in ms since the Unix epoch */
} spate_record_t;

size_t spate_partition_len(const spate_partition_t *b);
spate_record_t spate_partition_record(const spate_partition_t *b, size_t i);

/* The former names ("batch" now names only a micro-batch; its parts are partitions). */
typedef spate_partition_t spate_batch_t;
#define spate_batch_len spate_partition_len
#define spate_batch_record spate_partition_record

/* An operator's failure: the host fails the partition task with this message. */
typedef struct {
    char *message; /* malloc'd; NULL: no error */
    bool has_record_index;
    uint32_t record_index;
} spate_error_t;

/* Sets a printf-formatted message and returns false, so that `return spate_fail(err, ...);`
 * fails a callback. */
bool spate_fail(spate_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Points the error at input record `index` unless it already points somewhere. */
void spate_error_at_record(spate_error_t *err, size_t index);

/* The params table of the operator in the pipeline file, as name/text pairs. */
typedef struct {
    const spate_bytes_t *names;
    const spate_bytes_t *values;
    size_t len;
} spate_params_t;

/* The raw text of parameter `name`; false when absent. */
bool spate_params_get(const spate_params_t *p, const char *name, spate_bytes_t *out);
/* A boolean parameter (true/false) or `dflt` when absent; false (and err set) when malformed. */
bool spate_params_bool(const spate_params_t *p, const char *name, bool dflt, bool *out, spate_error_t *err);
/* An integer parameter or `dflt` when absent; false (and err set) when malformed. */
bool spate_params_i64(const spate_params_t *p, const char *name, int64_t dflt, int64_t *out, spate_error_t *err);

/* A parameter an operator accepts, and its help text. */
typedef struct {
    const char *name;
    const char *help;
} spate_param_info_t;

/* What an operator says about itself (spate check prints it). */
typedef struct {
    const char *name;
    const char *description;
    const spate_param_info_t *params; /* accepted parameters; any other is refused */
    size_t params_len;
    spate_value_type_t key_type;   /* SPATE_TYPE_NONE: unkeyed output, or the input's kept */
    spate_value_type_t value_type; /* SPATE_TYPE_NONE: the input's kept */
    spate_monoid_t monoid;         /* combiners: the well-known function combine computes */
} spate_info_t;

/* --- building output --------------------------------------------------------------------- */

/* A growable buffer. */
typedef struct {
    uint8_t *ptr;
    size_t len, cap;
} spate_buf_t;

/* The per-key index of a combining builder (open addressing over record numbers). */
typedef struct {
    uint32_t *slots; /* record number + 1; 0 is empty */
    uint32_t *hashes;
    size_t cap, count;
} spate_key_index_t;

/*
 * Builds an operator's output batch, appending to flat buffers.
 *
 * A batch is keyed as soon as one record with a key is pushed; records pushed without a key
 * into a keyed batch get an empty key.
 *
 * When the host announced that the output is combined by key with a monoid, values passed to
 * spate_emit_i64 (i64 monoids) or spate_emit_f64 (sum-f64) are combined per key as they are
 * emitted: the batch holds one record per distinct key for them.
 */
typedef struct {
    bool keyed;
    spate_buf_t keys, key_offsets; /* key_offsets holds uint32_t */
    spate_buf_t values, value_offsets;
    spate_buf_t timestamps; /* int64_t */
    size_t len;
    spate_monoid_t combine;
    spate_key_index_t index;
} spate_builder_t;

void spate_builder_init(spate_builder_t *b, spate_monoid_t combine);
size_t spate_builder_len(const spate_builder_t *b);
/* Pushes an unkeyed record. */
void spate_push_value(spate_builder_t *b, const uint8_t *value, size_t value_len);
/* Pushes a key/value record with raw bytes (never combined: their type is not known). */
void spate_push_pair(spate_builder_t *b, const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len);
/* Pushes a copy of an input record, key and event time included (never combined). */
void spate_push_record(spate_builder_t *b, const spate_record_t *r);
/* Pushes (key, i64 value), combined per key when the host asked for an i64 monoid. */
void spate_emit_i64(spate_builder_t *b, const uint8_t *key, size_t key_len, int64_t value);
/* Pushes (key, f64 value), combined per key when the host asked for sum-f64. */
void spate_emit_f64(spate_builder_t *b, const uint8_t *key, size_t key_len, double value);
/* Gives event time `ts` to every record pushed since the last one that has an event time. */
void spate_stamp(spate_builder_t *b, int64_t ts);
/* Moves the built columns into `out` (its buffers are malloc'd; the builder is left empty). */
bool spate_builder_finish(spate_builder_t *b, spate_partition_t *out, spate_error_t *err);
void spate_builder_free(spate_builder_t *b);

/* --- operators --------------------------------------------------------------------------- */

/* A partition transform: map, flatMap, filter (set `record`) or mapPartitions (set `process`).
 * Callbacks return false after setting `err` (spate_fail) to fail the task. */
typedef struct {
    spate_info_t info;
    /* Builds the operator's state from its parameters (already checked against info.params);
     * may be NULL. */
    bool (*configure)(const spate_params_t *params, void **state, spate_error_t *err);
    /* Handles one record, pushing any number of output records. */
    bool (*record)(void *state, const spate_record_t *record, spate_builder_t *out, spate_error_t *err);
    /* Handles a whole partition (NULL: calls `record` for each record, stamping its outputs
     * with its event time). */
    bool (*process)(void *state, const spate_partition_t *input, spate_builder_t *out, spate_error_t *err);
} spate_transform_t;

/* A key combiner: reduceByKey's associative function, on i64 or f64 values. */
typedef struct {
    spate_info_t info;
    spate_value_type_t value_type; /* SPATE_TYPE_I64 or SPATE_TYPE_F64 */
    bool (*configure)(const spate_params_t *params, void **state, spate_error_t *err);
    void (*combine_i64)(void *state, int64_t *acc, int64_t value);
    void (*combine_f64)(void *state, double *acc, double value);
} spate_combiner_t;

/* What the exported calls do, callable natively for tests. */
bool spate_configure_transform(const spate_transform_t *op, const spate_params_t *params, void **state, spate_error_t *err);
bool spate_run_transform(const spate_transform_t *op, void *state, const spate_partition_t *input, spate_monoid_t combine, spate_partition_t *out, spate_error_t *err);
bool spate_configure_combiner(const spate_combiner_t *op, const spate_params_t *params, void **state, spate_error_t *err);
bool spate_run_fold(const spate_combiner_t *op, void *state, const spate_column_t *accumulators, const uint32_t *targets, size_t targets_len, const spate_column_t *values, spate_column_t *out, spate_error_t *err);

/* --- text helpers -------------------------------------------------------------------------- */

/* Checks UTF-8 as Rust's std::str::from_utf8 does; on failure writes a message like Rust's
 * into `why` (at most why_len bytes). */
bool spate_utf8_valid(const uint8_t *s, size_t len, char *why, size_t why_len);
/* Decodes the code point at s[*i] (valid UTF-8) and advances *i. */
uint32_t spate_utf8_next(const uint8_t *s, size_t len, size_t *i);
/* Appends code point `c` as UTF-8. */
void spate_utf8_push(spate_buf_t *buf, uint32_t c);
/* Unicode White_Space (Rust's char::is_whitespace). */
bool spate_is_whitespace(uint32_t c);
/* Appends the lowercase of the UTF-8 word s[0..len] exactly as Rust's str::to_lowercase computes
 * it (the Unicode tables of the Rust std the plugins are built with, U+0130 as "i\u0307", the
 * Final_Sigma rule); wasi-libc's towlower is older and misses mappings. */
void spate_lowercase_utf8(const uint8_t *s, size_t len, spate_buf_t *out);

void spate_buf_reserve(spate_buf_t *b, size_t extra);
void spate_buf_append(spate_buf_t *b, const void *data, size_t len);

/* --- exports ------------------------------------------------------------------------------- */

/* The component's exports (spate_export_transform.c / spate_export_combiner.c) call the
 * operator this points at; the macros below set it. */
extern const spate_transform_t *spate_exported_transform;
extern const spate_combiner_t *spate_exported_combiner;

#define SPATE_EXPORT_TRANSFORM(op) const spate_transform_t *spate_exported_transform = &(op);
#define SPATE_EXPORT_COMBINER(op) const spate_combiner_t *spate_exported_combiner = &(op);

#endif
