/* libgangway_kv's stable C API: the paged KV cache's block manager for inference servers written in
 * any language. It wraps gangway::kv::KvCacheManager (gangway/kv/manager.h), whose comments give
 * the full semantics; runtime/README.md documents the model and the memory layout the kernels use.
 *
 * Conventions:
 *  - Every call that can fail returns a gw_kv_status (0 is success; the others are Abseil's
 *    canonical codes). On failure nothing changed, and gw_kv_last_error() returns a one-line
 *    message for the calling thread, valid until that thread's next gw_kv call.
 *  - Structs that callers fill start with `struct_size`: set it with the matching *_init function
 *    (or to sizeof), so that later versions can add fields at the end without breaking callers.
 *  - A manager is not thread-safe: one thread (the server's scheduler) uses it at a time.
 *  - Block ids are int32 indices into the device pool (or the host pool for swapped sequences and
 *    host-side copy ends); a slot is block * block_size + offset. */
#ifndef GANGWAY_KV_H_
#define GANGWAY_KV_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A C header: C's typedefs and snake_case names, not gangway's C++ style. */
/* NOLINTBEGIN(modernize-use-using, readability-identifier-naming) */

#define GW_KV_API_VERSION 1

typedef enum gw_kv_status {
  GW_KV_OK = 0,
  GW_KV_INVALID_ARGUMENT = 3,    /* bad input; also a request that can never fit in the pool */
  GW_KV_NOT_FOUND = 5,           /* unknown or freed sequence */
  GW_KV_ALREADY_EXISTS = 6,      /* the sequence id is taken */
  GW_KV_RESOURCE_EXHAUSTED = 8,  /* not enough free blocks now: wait, or preempt */
  GW_KV_FAILED_PRECONDITION = 9, /* e.g. the sequence is swapped out */
  GW_KV_OUT_OF_RANGE = 11,       /* a token range past the sequence's end */
  GW_KV_INTERNAL = 13
} gw_kv_status;

typedef struct gw_kv_manager gw_kv_manager;

typedef struct gw_kv_options {
  uint32_t struct_size;
  int32_t num_blocks;            /* device blocks, > 0 */
  int32_t block_size;            /* tokens per block: a power of two, 1..512 (default 16) */
  int32_t num_host_blocks;       /* host offload tier; 0: none (default) */
  int32_t enable_prefix_caching; /* default 1 */
  int32_t offload_evicted;       /* copy evicted cached blocks to the host tier; default 1 */
  double watermark;              /* share of blocks canAdmit keeps free; default 0.01 */
} gw_kv_options;

typedef struct gw_kv_extra_key {
  int32_t position; /* the token whose block's key takes this value (0: the whole sequence) */
  uint64_t value;   /* adapter id, cache salt, multimodal content hash */
} gw_kv_extra_key;

typedef struct gw_kv_allocate_result {
  int32_t cached_tokens; /* leading tokens already computed; compute [cached_tokens, n) */
  int32_t device_hit_blocks;
  int32_t host_hit_blocks;
  int32_t new_blocks;
} gw_kv_allocate_result;

typedef struct gw_kv_admit_check {
  int32_t admissible;    /* 1 if allocate would succeed with the watermark kept free */
  int32_t ever_fits;     /* 0 if the prompt is larger than the whole pool */
  int32_t blocks_needed; /* free blocks it would take */
  int32_t cached_tokens;
} gw_kv_admit_check;

typedef enum gw_kv_copy_kind {
  GW_KV_COPY_DEVICE_TO_HOST = 0,
  GW_KV_COPY_HOST_TO_DEVICE = 1,
  GW_KV_COPY_DEVICE_TO_DEVICE = 2
} gw_kv_copy_kind;

typedef struct gw_kv_block_copy {
  int32_t kind; /* a gw_kv_copy_kind */
  int32_t src;
  int32_t dst;
} gw_kv_block_copy;

typedef struct gw_kv_stats {
  uint32_t struct_size;
  int32_t num_blocks, used_blocks, free_blocks, cached_blocks;
  int32_t num_host_blocks, host_used_blocks, host_free_blocks, host_cached_blocks;
  int32_t running_sequences, swapped_sequences;
  int64_t lookups, queried_blocks, hit_blocks, host_hit_blocks, miss_blocks;
  int64_t evicted_blocks, offloaded_blocks, host_evicted_blocks, dropped_prefixes;
  int64_t allocated_blocks, freed_blocks, cow_copies, swapped_out_blocks, swapped_in_blocks;
  int64_t preemptions;
} gw_kv_stats;

/* The version this library implements (GW_KV_API_VERSION at its build). */
int gw_kv_api_version(void);
/* The calling thread's last error message ("" if none). */
const char* gw_kv_last_error(void);

void gw_kv_options_init(gw_kv_options* options);
void gw_kv_stats_init(gw_kv_stats* stats);

gw_kv_status gw_kv_create(const gw_kv_options* options, gw_kv_manager** out);
void gw_kv_destroy(gw_kv_manager* manager); /* NULL is fine */

gw_kv_status gw_kv_allocate(gw_kv_manager* m, uint64_t seq, const int32_t* tokens, size_t n,
                            const gw_kv_extra_key* extra_keys, size_t n_extra,
                            gw_kv_allocate_result* result /* may be NULL */);
gw_kv_status gw_kv_append(gw_kv_manager* m, uint64_t seq, const int32_t* tokens, size_t n);
gw_kv_status gw_kv_set_computed(gw_kv_manager* m, uint64_t seq, int32_t num_computed_tokens);
gw_kv_status gw_kv_fork(gw_kv_manager* m, uint64_t parent, uint64_t child);
gw_kv_status gw_kv_free(gw_kv_manager* m, uint64_t seq);
gw_kv_status gw_kv_swap_out(gw_kv_manager* m, uint64_t seq);
gw_kv_status gw_kv_swap_in(gw_kv_manager* m, uint64_t seq);

gw_kv_status gw_kv_can_admit(const gw_kv_manager* m, const int32_t* tokens, size_t n,
                             const gw_kv_extra_key* extra_keys, size_t n_extra,
                             gw_kv_admit_check* out);
int gw_kv_can_append(const gw_kv_manager* m, uint64_t seq, int32_t num_tokens);
int gw_kv_can_swap_in(const gw_kv_manager* m, uint64_t seq);
int32_t gw_kv_evict_cached(gw_kv_manager* m, int32_t max_blocks);

gw_kv_status gw_kv_num_tokens(const gw_kv_manager* m, uint64_t seq, int32_t* out);
/* *blocks points into the manager, valid until the next call that changes this sequence. */
gw_kv_status gw_kv_block_table(const gw_kv_manager* m, uint64_t seq, const int32_t** blocks,
                               size_t* n);
/* Fills rows of a [n_seqs, max_blocks] int32 table (row-major, unused entries -1) and each
 * sequence's token count: the decode step's block_tables and seq_lens. INVALID_ARGUMENT if a
 * sequence holds more than max_blocks blocks. */
gw_kv_status gw_kv_block_tables(const gw_kv_manager* m, const uint64_t* seqs, size_t n_seqs,
                                int32_t max_blocks, int32_t* tables, int32_t* seq_lens);
/* out[i] = the slot of token first + i; out holds count entries. */
gw_kv_status gw_kv_slot_mapping(const gw_kv_manager* m, uint64_t seq, int32_t first, int32_t count,
                                int64_t* out);

/* Copies issued since the last take, in execution order. Take them with room for
 * gw_kv_pending_copies() entries; OUT_OF_RANGE (nothing taken) if capacity is smaller. */
size_t gw_kv_pending_copies(const gw_kv_manager* m);
gw_kv_status gw_kv_take_copies(gw_kv_manager* m, gw_kv_block_copy* out, size_t capacity, size_t* n);

gw_kv_status gw_kv_get_stats(const gw_kv_manager* m, gw_kv_stats* out);

/* NOLINTEND(modernize-use-using, readability-identifier-naming) */

#ifdef __cplusplus
}
#endif

#endif /* GANGWAY_KV_H_ */
