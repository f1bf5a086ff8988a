// The C API over KvCacheManager: status codes and a thread-local last-error message.
#include <cstring>
#include <memory>
#include <string>

#include <absl/strings/str_cat.h>

#include "gangway/kv.h"
#include "gangway/kv/manager.h"

using gangway::kv::KvCacheManager;

struct gw_kv_manager {
  std::unique_ptr<KvCacheManager> impl;
};

namespace {

thread_local std::string g_last_error;

gw_kv_status fail(gw_kv_status code, std::string message) {
  g_last_error = std::move(message);
  return code;
}

gw_kv_status report(const absl::Status& s) {
  if (s.ok()) return GW_KV_OK;
  gw_kv_status code = GW_KV_INTERNAL;
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
      code = GW_KV_INVALID_ARGUMENT;
      break;
    case absl::StatusCode::kNotFound:
      code = GW_KV_NOT_FOUND;
      break;
    case absl::StatusCode::kAlreadyExists:
      code = GW_KV_ALREADY_EXISTS;
      break;
    case absl::StatusCode::kResourceExhausted:
      code = GW_KV_RESOURCE_EXHAUSTED;
      break;
    case absl::StatusCode::kFailedPrecondition:
      code = GW_KV_FAILED_PRECONDITION;
      break;
    case absl::StatusCode::kOutOfRange:
      code = GW_KV_OUT_OF_RANGE;
      break;
    default:
      break;
  }
  return fail(code, std::string(s.message()));
}

#define GW_KV_CHECK_ARG(cond, ...)                                               \
  do {                                                                           \
    if (!(cond)) return fail(GW_KV_INVALID_ARGUMENT, absl::StrCat(__VA_ARGS__)); \
  } while (false)

std::span<const gangway::kv::ExtraKey> extras(const gw_kv_extra_key* keys, size_t n,
                                              std::vector<gangway::kv::ExtraKey>* scratch) {
  scratch->clear();
  for (size_t i = 0; i < n; ++i) scratch->push_back({keys[i].position, keys[i].value});
  return *scratch;
}

}  // namespace

extern "C" {

int gw_kv_api_version(void) { return GW_KV_API_VERSION; }

const char* gw_kv_last_error(void) { return g_last_error.c_str(); }

void gw_kv_options_init(gw_kv_options* options) {
  if (options == nullptr) return;
  const gangway::kv::Options d;
  std::memset(options, 0, sizeof(*options));
  options->struct_size = sizeof(*options);
  options->num_blocks = d.num_blocks;
  options->block_size = d.block_size;
  options->num_host_blocks = d.num_host_blocks;
  options->enable_prefix_caching = d.enable_prefix_caching ? 1 : 0;
  options->offload_evicted = d.offload_evicted ? 1 : 0;
  options->watermark = d.watermark;
}

void gw_kv_stats_init(gw_kv_stats* stats) {
  if (stats == nullptr) return;
  std::memset(stats, 0, sizeof(*stats));
  stats->struct_size = sizeof(*stats);
}

gw_kv_status gw_kv_create(const gw_kv_options* options, gw_kv_manager** out) {
  GW_KV_CHECK_ARG(options != nullptr && out != nullptr,
                  "gw_kv_create: options and out are required");
  GW_KV_CHECK_ARG(options->struct_size >= sizeof(gw_kv_options),
                  "gw_kv_create: options.struct_size is ", options->struct_size, "; expected ",
                  sizeof(gw_kv_options), " (call gw_kv_options_init)");
  *out = nullptr;
  gangway::kv::Options o;
  o.num_blocks = options->num_blocks;
  o.block_size = options->block_size;
  o.num_host_blocks = options->num_host_blocks;
  o.enable_prefix_caching = options->enable_prefix_caching != 0;
  o.offload_evicted = options->offload_evicted != 0;
  o.watermark = options->watermark;
  auto made = KvCacheManager::create(o);
  if (!made.ok()) return report(made.status());
  *out = new gw_kv_manager{std::move(made).value()};
  return GW_KV_OK;
}

void gw_kv_destroy(gw_kv_manager* manager) { delete manager; }

gw_kv_status gw_kv_allocate(gw_kv_manager* m, uint64_t seq, const int32_t* tokens, size_t n,
                            const gw_kv_extra_key* extra_keys, size_t n_extra,
                            gw_kv_allocate_result* result) {
  GW_KV_CHECK_ARG(m != nullptr, "gw_kv_allocate: manager is NULL");
  GW_KV_CHECK_ARG(tokens != nullptr || n == 0, "gw_kv_allocate: tokens is NULL");
  GW_KV_CHECK_ARG(extra_keys != nullptr || n_extra == 0, "gw_kv_allocate: extra_keys is NULL");
  std::vector<gangway::kv::ExtraKey> scratch;
  auto r = m->impl->allocate(seq, {tokens, n}, extras(extra_keys, n_extra, &scratch));
  if (!r.ok()) return report(r.status());
  if (result != nullptr) {
    result->cached_tokens = r->cached_tokens;
    result->device_hit_blocks = r->device_hit_blocks;
    result->host_hit_blocks = r->host_hit_blocks;
    result->new_blocks = r->new_blocks;
  }
  return GW_KV_OK;
}

gw_kv_status gw_kv_append(gw_kv_manager* m, uint64_t seq, const int32_t* tokens, size_t n) {
  GW_KV_CHECK_ARG(m != nullptr, "gw_kv_append: manager is NULL");
  GW_KV_CHECK_ARG(tokens != nullptr || n == 0, "gw_kv_append: tokens is NULL");
  return report(m->impl->append(seq, {tokens, n}));
}

gw_kv_status gw_kv_set_computed(gw_kv_manager* m, uint64_t seq, int32_t num_computed_tokens) {
  GW_KV_CHECK_ARG(m != nullptr, "gw_kv_set_computed: manager is NULL");
  return report(m->impl->setComputed(seq, num_computed_tokens));
}

gw_kv_status gw_kv_fork(gw_kv_manager* m, uint64_t parent, uint64_t child) {
  GW_KV_CHECK_ARG(m != nullptr, "gw_kv_fork: manager is NULL");
  return report(m->impl->fork(parent, child));
}

gw_kv_status gw_kv_free(gw_kv_manager* m, uint64_t seq) {
  GW_KV_CHECK_ARG(m != nullptr, "gw_kv_free: manager is NULL");
  return report(m->impl->free(seq));
}

gw_kv_status gw_kv_swap_out(gw_kv_manager* m, uint64_t seq) {
  GW_KV_CHECK_ARG(m != nullptr, "gw_kv_swap_out: manager is NULL");
  return report(m->impl->swapOut(seq));
}

gw_kv_status gw_kv_swap_in(gw_kv_manager* m, uint64_t seq) {
  GW_KV_CHECK_ARG(m != nullptr, "gw_kv_swap_in: manager is NULL");
  return report(m->impl->swapIn(seq));
}

gw_kv_status gw_kv_can_admit(const gw_kv_manager* m, const int32_t* tokens, size_t n,
                             const gw_kv_extra_key* extra_keys, size_t n_extra,
                             gw_kv_admit_check* out) {
  GW_KV_CHECK_ARG(m != nullptr && out != nullptr, "gw_kv_can_admit: manager and out are required");
  GW_KV_CHECK_ARG(tokens != nullptr || n == 0, "gw_kv_can_admit: tokens is NULL");
  GW_KV_CHECK_ARG(extra_keys != nullptr || n_extra == 0, "gw_kv_can_admit: extra_keys is NULL");
  std::vector<gangway::kv::ExtraKey> scratch;
  const auto c = m->impl->canAdmit({tokens, n}, extras(extra_keys, n_extra, &scratch));
  out->admissible = c.admissible ? 1 : 0;
  out->ever_fits = c.ever_fits ? 1 : 0;
  out->blocks_needed = c.blocks_needed;
  out->cached_tokens = c.cached_tokens;
  return GW_KV_OK;
}

int gw_kv_can_append(const gw_kv_manager* m, uint64_t seq, int32_t num_tokens) {
  return m != nullptr && m->impl->canAppend(seq, num_tokens) ? 1 : 0;
}

int gw_kv_can_swap_in(const gw_kv_manager* m, uint64_t seq) {
  return m != nullptr && m->impl->canSwapIn(seq) ? 1 : 0;
}

int32_t gw_kv_evict_cached(gw_kv_manager* m, int32_t max_blocks) {
  return m == nullptr ? 0 : m->impl->evictCached(max_blocks);
}

gw_kv_status gw_kv_num_tokens(const gw_kv_manager* m, uint64_t seq, int32_t* out) {
  GW_KV_CHECK_ARG(m != nullptr && out != nullptr, "gw_kv_num_tokens: manager and out are required");
  auto n = m->impl->numTokens(seq);
  if (!n.ok()) return report(n.status());
  *out = *n;
  return GW_KV_OK;
}

gw_kv_status gw_kv_block_table(const gw_kv_manager* m, uint64_t seq, const int32_t** blocks,
                               size_t* n) {
  GW_KV_CHECK_ARG(m != nullptr && blocks != nullptr && n != nullptr,
                  "gw_kv_block_table: manager, blocks and n are required");
  auto t = m->impl->blockTable(seq);
  if (!t.ok()) return report(t.status());
  *blocks = t->data();
  *n = t->size();
  return GW_KV_OK;
}

gw_kv_status gw_kv_block_tables(const gw_kv_manager* m, const uint64_t* seqs, size_t n_seqs,
                                int32_t max_blocks, int32_t* tables, int32_t* seq_lens) {
  GW_KV_CHECK_ARG(m != nullptr, "gw_kv_block_tables: manager is NULL");
  GW_KV_CHECK_ARG(n_seqs == 0 || (seqs != nullptr && tables != nullptr && seq_lens != nullptr),
                  "gw_kv_block_tables: seqs, tables and seq_lens are required");
  GW_KV_CHECK_ARG(max_blocks >= 0, "gw_kv_block_tables: max_blocks is ", max_blocks,
                  "; expected 0 or more");
  // Check every sequence before writing any row, so that an error leaves the output untouched.
  for (size_t i = 0; i < n_seqs; ++i) {
    auto t = m->impl->blockTable(seqs[i]);
    if (!t.ok()) return report(t.status());
    if (*m->impl->isSwapped(seqs[i])) {
      return fail(GW_KV_FAILED_PRECONDITION,
                  absl::StrCat("gw_kv_block_tables: sequence ", seqs[i], " is swapped out"));
    }
    if (t->size() > static_cast<size_t>(max_blocks)) {
      return fail(GW_KV_INVALID_ARGUMENT,
                  absl::StrCat("gw_kv_block_tables: sequence ", seqs[i], " holds ", t->size(),
                               " blocks; the table has room for ", max_blocks));
    }
  }
  for (size_t i = 0; i < n_seqs; ++i) {
    const auto t = *m->impl->blockTable(seqs[i]);
    int32_t* row = tables + i * static_cast<size_t>(max_blocks);
    std::memcpy(row, t.data(), t.size_bytes());
    for (size_t j = t.size(); j < static_cast<size_t>(max_blocks); ++j) row[j] = -1;
    seq_lens[i] = *m->impl->numTokens(seqs[i]);
  }
  return GW_KV_OK;
}

gw_kv_status gw_kv_slot_mapping(const gw_kv_manager* m, uint64_t seq, int32_t first, int32_t count,
                                int64_t* out) {
  GW_KV_CHECK_ARG(m != nullptr, "gw_kv_slot_mapping: manager is NULL");
  GW_KV_CHECK_ARG(out != nullptr || count == 0, "gw_kv_slot_mapping: out is NULL");
  return report(
      m->impl->slotMapping(seq, first, count, {out, static_cast<size_t>(count < 0 ? 0 : count)}));
}

size_t gw_kv_pending_copies(const gw_kv_manager* m) {
  return m == nullptr ? 0 : m->impl->pendingCopies();
}

gw_kv_status gw_kv_take_copies(gw_kv_manager* m, gw_kv_block_copy* out, size_t capacity,
                               size_t* n) {
  GW_KV_CHECK_ARG(m != nullptr && n != nullptr, "gw_kv_take_copies: manager and n are required");
  const size_t pending = m->impl->pendingCopies();
  *n = pending;
  if (pending > capacity) {
    return fail(GW_KV_OUT_OF_RANGE, absl::StrCat("gw_kv_take_copies: ", pending,
                                                 " copies pending; room for ", capacity));
  }
  GW_KV_CHECK_ARG(out != nullptr || pending == 0, "gw_kv_take_copies: out is NULL");
  const auto copies = m->impl->takeCopies();
  for (size_t i = 0; i < copies.size(); ++i) {
    out[i] = {static_cast<int32_t>(copies[i].kind), copies[i].src, copies[i].dst};
  }
  return GW_KV_OK;
}

gw_kv_status gw_kv_get_stats(const gw_kv_manager* m, gw_kv_stats* out) {
  GW_KV_CHECK_ARG(m != nullptr && out != nullptr, "gw_kv_get_stats: manager and out are required");
  GW_KV_CHECK_ARG(out->struct_size >= sizeof(gw_kv_stats), "gw_kv_get_stats: out.struct_size is ",
                  out->struct_size, "; expected ", sizeof(gw_kv_stats), " (call gw_kv_stats_init)");
  const auto s = m->impl->stats();
  const uint32_t size = out->struct_size;
  *out = gw_kv_stats{size,
                     s.num_blocks,
                     s.used_blocks,
                     s.free_blocks,
                     s.cached_blocks,
                     s.num_host_blocks,
                     s.host_used_blocks,
                     s.host_free_blocks,
                     s.host_cached_blocks,
                     s.running_sequences,
                     s.swapped_sequences,
                     s.lookups,
                     s.queried_blocks,
                     s.hit_blocks,
                     s.host_hit_blocks,
                     s.miss_blocks,
                     s.evicted_blocks,
                     s.offloaded_blocks,
                     s.host_evicted_blocks,
                     s.dropped_prefixes,
                     s.allocated_blocks,
                     s.freed_blocks,
                     s.cow_copies,
                     s.swapped_out_blocks,
                     s.swapped_in_blocks,
                     s.preemptions};
  return GW_KV_OK;
}

}  // extern "C"
