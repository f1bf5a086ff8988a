#include "perf_data.h"

#include <cmath>
#include <cstring>

#include "gangway/kernels/reduce.h"

namespace gangway::bench {

namespace {

using comm::DataType;
using comm::ReduceOp;

enum class Pattern { kMove, kAdditive, kProduct };

Pattern patternOf(const DataSpec& s) {
  if (!collectiveHasOp(s.collective)) return Pattern::kMove;
  return s.op == ReduceOp::kProd ? Pattern::kProduct : Pattern::kAdditive;
}

bool isUnsigned(DataType t) {
  return t == DataType::kUint8 || t == DataType::kUint32 || t == DataType::kUint64;
}

bool isFloat(DataType t) {
  return t == DataType::kFloat16 || t == DataType::kBFloat16 || t == DataType::kFloat32 ||
         t == DataType::kFloat64;
}

// splitmix64's finaliser.
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

std::int64_t valueAt(Pattern p, bool unsigned_type, int rank, int ranks, std::uint64_t seed,
                     std::size_t index) {
  const std::uint64_t h =
      mix(static_cast<std::uint64_t>(index) * 0x9e3779b97f4a7c15ULL +
          static_cast<std::uint64_t>(rank) * 0xc2b2ae3d27d4eb4fULL + seed * 0x165667b19e3779f9ULL);
  switch (p) {
    case Pattern::kMove: {
      const auto v = static_cast<std::int64_t>(h % 101);
      return unsigned_type ? v : v - 50;
    }
    case Pattern::kAdditive: {
      const auto v = static_cast<std::int64_t>(h % 8);
      return unsigned_type ? v : v - 3;
    }
    case Pattern::kProduct: {
      if (index % static_cast<std::size_t>(ranks) != static_cast<std::size_t>(rank)) return 1;
      const auto v = static_cast<std::int64_t>(1 + h % 3);
      return (!unsigned_type && ((h >> 8) & 1) != 0) ? -v : v;
    }
  }
  return 0;
}

struct Half {
  std::uint16_t bits;
};
struct BFloat16 {
  std::uint16_t bits;
};

template <typename T>
T fromInt(std::int64_t v) {
  return static_cast<T>(v);
}
template <>
Half fromInt<Half>(std::int64_t v) {
  return Half{kernels::floatToHalf(static_cast<float>(v))};
}
template <>
BFloat16 fromInt<BFloat16>(std::int64_t v) {
  return BFloat16{kernels::floatToBfloat16(static_cast<float>(v))};
}

template <typename T>
double toDouble(T v) {
  return static_cast<double>(v);
}
template <>
double toDouble<Half>(Half v) {
  return kernels::halfToFloat(v.bits);
}
template <>
double toDouble<BFloat16>(BFloat16 v) {
  return kernels::bfloat16ToFloat(v.bits);
}

// Calls f(T{}) with the storage type of `t`.
template <typename F>
void withType(DataType t, F&& f) {
  switch (t) {
    case DataType::kInt8:
      return f(std::int8_t{});
    case DataType::kUint8:
      return f(std::uint8_t{});
    case DataType::kInt32:
      return f(std::int32_t{});
    case DataType::kUint32:
      return f(std::uint32_t{});
    case DataType::kInt64:
      return f(std::int64_t{});
    case DataType::kUint64:
      return f(std::uint64_t{});
    case DataType::kFloat16:
      return f(Half{});
    case DataType::kBFloat16:
      return f(BFloat16{});
    case DataType::kFloat32:
      return f(float{});
    case DataType::kFloat64:
      return f(double{});
  }
}

// Relative precision of the type (one unit in the last place near 1).
double epsilon(DataType t) {
  switch (t) {
    case DataType::kFloat16:
      return 1.0 / 1024;
    case DataType::kBFloat16:
      return 1.0 / 128;
    case DataType::kFloat32:
      return 1.0 / (1 << 23);
    case DataType::kFloat64:
      return 1.0 / (1LL << 52);
    default:
      return 0;
  }
}

// dst = OP over ranks of every rank's input [offset, offset + count), with avg's division.
void reduceInto(const DataSpec& s, std::size_t offset, std::size_t count, char* dst) {
  if (count == 0) return;
  makeInput(s, 0, offset, count, dst);
  std::vector<char> tmp(count * kernels::dataTypeSize(s.type));
  for (int k = 1; k < s.ranks; ++k) {
    makeInput(s, k, offset, count, tmp.data());
    kernels::reduceHost(dst, dst, tmp.data(), count, s.type, s.op);
  }
  if (s.op == ReduceOp::kAvg) kernels::divideByHost(dst, count, s.type, s.ranks);
}

}  // namespace

void makeInput(const DataSpec& spec, int rank, std::size_t offset, std::size_t count, void* dst) {
  const Pattern p = patternOf(spec);
  const bool u = isUnsigned(spec.type);
  withType(spec.type, [&](auto tag) {
    using T = decltype(tag);
    T* out = static_cast<T*>(dst);
    for (std::size_t i = 0; i < count; ++i) {
      out[i] = fromInt<T>(valueAt(p, u, rank, spec.ranks, spec.seed, offset + i));
    }
  });
}

std::vector<char> makeExpected(const DataSpec& s, int rank, bool in_place) {
  const std::size_t es = kernels::dataTypeSize(s.type);
  const std::size_t param = s.counts.param;
  std::vector<char> out(s.counts.recv * es, 0);
  char* o = out.data();
  switch (s.collective) {
    case Collective::kAllReduce:
      reduceInto(s, 0, param, o);
      break;
    case Collective::kReduce:
      if (rank == s.root) {
        reduceInto(s, 0, param, o);
      } else if (in_place) {
        makeInput(s, rank, 0, param, o);
      }  // else untouched: zeros
      break;
    case Collective::kReduceScatter:
      reduceInto(s, static_cast<std::size_t>(rank) * param, param, o);
      break;
    case Collective::kAllGather:
      for (int k = 0; k < s.ranks; ++k) {
        makeInput(s, k, 0, param, o + static_cast<std::size_t>(k) * param * es);
      }
      break;
    case Collective::kBroadcast:
      makeInput(s, s.root, 0, param, o);
      break;
    case Collective::kAllToAll:
      for (int k = 0; k < s.ranks; ++k) {
        makeInput(s, k, static_cast<std::size_t>(rank) * param, param,
                  o + static_cast<std::size_t>(k) * param * es);
      }
      break;
    case Collective::kSendRecv:
      makeInput(s, (rank + s.ranks - 1) % s.ranks, 0, param, o);
      break;
  }
  return out;
}

std::int64_t countWrong(const DataSpec& spec, const void* got, const void* want,
                        std::size_t count) {
  const std::size_t es = kernels::dataTypeSize(spec.type);
  if (count == 0 || std::memcmp(got, want, count * es) == 0) return 0;
  const bool exact = !isFloat(spec.type) || patternOf(spec) == Pattern::kMove;
  std::int64_t wrong = 0;
  if (exact) {
    const char* g = static_cast<const char*>(got);
    const char* w = static_cast<const char*>(want);
    for (std::size_t i = 0; i < count; ++i) {
      if (std::memcmp(g + i * es, w + i * es, es) != 0) ++wrong;
    }
    return wrong;
  }
  const double tol = 2.0 * epsilon(spec.type) * spec.ranks;
  withType(spec.type, [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(got);
    const T* w = static_cast<const T*>(want);
    for (std::size_t i = 0; i < count; ++i) {
      const double a = toDouble(g[i]);
      const double b = toDouble(w[i]);
      if (a == b) continue;
      if (!(std::fabs(a - b) <= tol * std::fmax(1.0, std::fabs(b)))) ++wrong;
    }
  });
  return wrong;
}

}  // namespace gangway::bench
