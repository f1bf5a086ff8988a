/* The C API, compiled as C (so gangway/kv.h stays valid C): a prompt's life, a prefix hit, copy
 * lists, decode-step tables, and each error returning its code, a message, and no change. */
#include <stdio.h>
#include <string.h>

#include "gangway/kv.h"

static int failures = 0;
#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) {                                                       \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                        \
    }                                                                    \
  } while (0)

int main(void) {
  gw_kv_options o;
  gw_kv_manager* m = NULL;
  gw_kv_stats st;
  gw_kv_allocate_result r;
  gw_kv_admit_check adm;
  gw_kv_block_copy copies[8];
  int32_t prompt[10];
  int32_t tables[3 * 4];
  int32_t lens[3];
  int64_t slots[10];
  const int32_t* blocks = NULL;
  size_t n = 0;
  uint64_t seqs[2] = {1, 2};
  int i;
  for (i = 0; i < 10; ++i) prompt[i] = i;

  CHECK(gw_kv_api_version() == GW_KV_API_VERSION);
  gw_kv_options_init(&o);
  CHECK(o.block_size == 16 && o.enable_prefix_caching == 1);

  /* Bad options: a code, a message naming the field, no manager. */
  o.num_blocks = 8;
  o.block_size = 3;
  CHECK(gw_kv_create(&o, &m) == GW_KV_INVALID_ARGUMENT);
  CHECK(m == NULL);
  CHECK(strstr(gw_kv_last_error(), "block_size 3") != NULL);
  o.struct_size = 4;
  CHECK(gw_kv_create(&o, &m) == GW_KV_INVALID_ARGUMENT);
  CHECK(strstr(gw_kv_last_error(), "struct_size") != NULL);
  CHECK(gw_kv_create(NULL, &m) == GW_KV_INVALID_ARGUMENT);

  gw_kv_options_init(&o);
  o.num_blocks = 8;
  o.block_size = 4;
  o.num_host_blocks = 4;
  o.watermark = 0.0;
  CHECK(gw_kv_create(&o, &m) == GW_KV_OK);

  CHECK(gw_kv_allocate(m, 1, prompt, 10, NULL, 0, &r) == GW_KV_OK);
  CHECK(r.cached_tokens == 0 && r.new_blocks == 3);
  CHECK(gw_kv_set_computed(m, 1, 10) == GW_KV_OK);
  CHECK(gw_kv_can_admit(m, prompt, 10, NULL, 0, &adm) == GW_KV_OK);
  CHECK(adm.admissible == 1 && adm.cached_tokens == 8 && adm.blocks_needed == 1);
  CHECK(gw_kv_allocate(m, 2, prompt, 10, NULL, 0, &r) == GW_KV_OK);
  CHECK(r.cached_tokens == 8 && r.device_hit_blocks == 2);

  /* Decode-step inputs for both sequences. */
  CHECK(gw_kv_block_tables(m, seqs, 2, 4, tables, lens) == GW_KV_OK);
  CHECK(lens[0] == 10 && lens[1] == 10);
  CHECK(tables[0] == tables[4] && tables[1] == tables[5] && tables[3] == -1);
  CHECK(gw_kv_block_tables(m, seqs, 2, 2, tables, lens) == GW_KV_INVALID_ARGUMENT);
  CHECK(gw_kv_block_table(m, 1, &blocks, &n) == GW_KV_OK && n == 3);
  CHECK(gw_kv_slot_mapping(m, 1, 0, 10, slots) == GW_KV_OK);
  CHECK(slots[9] == (int64_t)blocks[2] * 4 + 1);
  CHECK(gw_kv_slot_mapping(m, 1, 5, 10, slots) == GW_KV_OUT_OF_RANGE);

  /* Fork and copy-on-write: one device-to-device copy, taken in order. */
  CHECK(gw_kv_fork(m, 1, 3) == GW_KV_OK);
  CHECK(gw_kv_fork(m, 1, 3) == GW_KV_ALREADY_EXISTS);
  CHECK(gw_kv_append(m, 3, prompt, 1) == GW_KV_OK);
  CHECK(gw_kv_pending_copies(m) == 1);
  CHECK(gw_kv_take_copies(m, copies, 0, &n) == GW_KV_OUT_OF_RANGE && n == 1);
  CHECK(gw_kv_pending_copies(m) == 1); /* nothing taken */
  CHECK(gw_kv_take_copies(m, copies, 8, &n) == GW_KV_OK && n == 1);
  CHECK(copies[0].kind == GW_KV_COPY_DEVICE_TO_DEVICE && copies[0].src == blocks[2]);

  /* Swap out and back. */
  CHECK(gw_kv_swap_out(m, 2) == GW_KV_OK);
  CHECK(gw_kv_append(m, 2, prompt, 1) == GW_KV_FAILED_PRECONDITION);
  CHECK(gw_kv_can_swap_in(m, 2) == 1);
  CHECK(gw_kv_swap_in(m, 2) == GW_KV_OK);
  CHECK(gw_kv_take_copies(m, copies, 8, &n) == GW_KV_OK && n >= 1);

  /* Errors: unknown and freed sequences, out of blocks; nothing changes. */
  gw_kv_stats_init(&st);
  CHECK(gw_kv_get_stats(m, &st) == GW_KV_OK);
  {
    const int32_t used = st.used_blocks;
    int32_t big[40];
    memset(big, 0, sizeof(big));
    CHECK(gw_kv_allocate(m, 9, big, 33, NULL, 0, &r) == GW_KV_INVALID_ARGUMENT);
    CHECK(gw_kv_allocate(m, 9, big, 20, NULL, 0, &r) == GW_KV_RESOURCE_EXHAUSTED);
    CHECK(strstr(gw_kv_last_error(), "free blocks") != NULL);
    CHECK(gw_kv_free(m, 9) == GW_KV_NOT_FOUND);
    CHECK(gw_kv_free(m, 3) == GW_KV_OK);
    CHECK(gw_kv_free(m, 3) == GW_KV_NOT_FOUND);
    CHECK(gw_kv_append(m, 3, prompt, 1) == GW_KV_NOT_FOUND);
    CHECK(gw_kv_get_stats(m, &st) == GW_KV_OK);
    CHECK(st.used_blocks == used - 1); /* only the free of 3's own copied block */
  }
  st.struct_size = 8;
  CHECK(gw_kv_get_stats(m, &st) == GW_KV_INVALID_ARGUMENT);
  CHECK(gw_kv_can_append(m, 1, 1) == 1);
  CHECK(gw_kv_evict_cached(m, 4) >= 0);

  gw_kv_destroy(m);
  gw_kv_destroy(NULL);
  if (failures == 0) printf("c_api_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
