// pagedDecodeAttentionHost: argument checks (including the sequence lengths and the block ids the
// sequences use), then the AVX2/F16C/FMA variant where the CPU has it, the base one otherwise.
#include <absl/strings/str_cat.h>

#include "gangway/kernels/kv_cache.h"

#include "cpu_features.h"
#include "kv_cache_args.h"

namespace gangway::kernels {
namespace attention_base {
void pagedDecodeAttention(const PagedAttentionArgs& args);
}
namespace attention_avx2 {
void pagedDecodeAttention(const PagedAttentionArgs& args);
}

namespace {

bool haveAvx2() {
  const CpuFeatures& cpu = cpuFeatures();
  return cpu.avx2 && cpu.f16c && cpu.fma;
}

}  // namespace

absl::Status pagedDecodeAttentionHost(const PagedAttentionArgs& args) {
  static constexpr const char* kFn = "pagedDecodeAttentionHost";
  if (absl::Status s = detail::checkAttentionArgs(args, kFn); !s.ok()) return s;
  const int64_t capacity = static_cast<int64_t>(args.max_blocks_per_seq) * args.cache.block_size;
  for (int32_t s = 0; s < args.num_seqs; ++s) {
    const int32_t len = args.seq_lens[s];
    if (len < 0 || len > capacity || (args.max_seq_len > 0 && len > args.max_seq_len)) {
      return absl::InvalidArgumentError(absl::StrCat(
          kFn, ": seq_lens[", s, "] = ", len, " is outside [0, ",
          args.max_seq_len > 0 && args.max_seq_len < capacity ? args.max_seq_len : capacity,
          "] (max_seq_len ", args.max_seq_len, ", table capacity ", capacity, ")"));
    }
    const int32_t* table = args.block_tables + static_cast<int64_t>(s) * args.max_blocks_per_seq;
    const int64_t blocks =
        (static_cast<int64_t>(len) + args.cache.block_size - 1) / args.cache.block_size;
    for (int64_t b = 0; b < blocks; ++b) {
      if (table[b] < 0 || table[b] >= args.cache.num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat(kFn, ": block_tables[", s, "][", b,
                                                       "] = ", table[b], " is outside [0, ",
                                                       args.cache.num_blocks, ")"));
      }
    }
  }
  if (haveAvx2()) {
    attention_avx2::pagedDecodeAttention(args);
  } else {
    attention_base::pagedDecodeAttention(args);
  }
  return absl::OkStatus();
}

}  // namespace gangway::kernels
