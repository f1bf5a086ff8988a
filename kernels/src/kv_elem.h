// Element access for the KV-cache kernels, shared by host and device code: each KvDataType's
// storage type and its float conversions (fp8.h), the conversion reshapeAndCache applies, and a
// dispatcher from run-time types to template arguments.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "gangway/kernels/fp8.h"
#include "gangway/kernels/kv_cache.h"

namespace gangway::kernels::detail {

template <KvDataType kType>
struct KvElem;
template <>
struct KvElem<KvDataType::kFloat16> {
  using Storage = uint16_t;
  GW_HD static float toFloat(uint16_t v) { return hd::halfToFloat(v); }
  GW_HD static uint16_t fromFloat(float f) { return hd::floatToHalf(f); }
};
template <>
struct KvElem<KvDataType::kBFloat16> {
  using Storage = uint16_t;
  GW_HD static float toFloat(uint16_t v) { return hd::bfloat16ToFloat(v); }
  GW_HD static uint16_t fromFloat(float f) { return hd::floatToBfloat16(f); }
};
template <>
struct KvElem<KvDataType::kFloat32> {
  using Storage = float;
  GW_HD static float toFloat(float v) { return v; }
  GW_HD static float fromFloat(float f) { return f; }
};
template <>
struct KvElem<KvDataType::kFp8E4M3> {
  using Storage = uint8_t;
  GW_HD static float toFloat(uint8_t v) { return hd::fp8e4m3ToFloat(v); }
  GW_HD static uint8_t fromFloat(float f) { return hd::floatToFp8e4m3(f); }
};

template <KvDataType kType>
using KvStorage = typename KvElem<kType>::Storage;

// One input element as reshapeAndCache stores it: the same bits when the types agree, rounded to
// nearest even otherwise, and fp8(x / scale) for fp8 caches.
template <KvDataType kIn, KvDataType kCache>
GW_HD KvStorage<kCache> toCache(KvStorage<kIn> v, float scale) {
  if constexpr (kIn == kCache) {
    (void)scale;
    return v;
  } else if constexpr (kCache == KvDataType::kFp8E4M3) {
    return KvElem<kCache>::fromFloat(KvElem<kIn>::toFloat(v) / scale);
  } else {
    (void)scale;
    return KvElem<kCache>::fromFloat(KvElem<kIn>::toFloat(v));
  }
}

template <KvDataType kType>
using KvTypeTag = std::integral_constant<KvDataType, kType>;

// f(KvTypeTag<t>{}) for the run-time type t.
template <typename F>
decltype(auto) dispatchKvType(KvDataType t, F&& f) {
  switch (t) {
    case KvDataType::kFloat16:
      return std::forward<F>(f)(KvTypeTag<KvDataType::kFloat16>{});
    case KvDataType::kBFloat16:
      return std::forward<F>(f)(KvTypeTag<KvDataType::kBFloat16>{});
    case KvDataType::kFloat32:
      return std::forward<F>(f)(KvTypeTag<KvDataType::kFloat32>{});
    case KvDataType::kFp8E4M3:
      break;
  }
  return std::forward<F>(f)(KvTypeTag<KvDataType::kFp8E4M3>{});
}

// f(KvTypeTag<in>{}, KvTypeTag<cache>{}) for an input type (float16, bfloat16, float32; the
// caller has checked) and any cache type.
template <typename F>
decltype(auto) dispatchKvTypes(KvDataType in, KvDataType cache, F&& f) {
  return dispatchKvType(cache, [&](auto cache_tag) -> decltype(auto) {
    switch (in) {
      case KvDataType::kBFloat16:
        return f(KvTypeTag<KvDataType::kBFloat16>{}, cache_tag);
      case KvDataType::kFloat32:
        return f(KvTypeTag<KvDataType::kFloat32>{}, cache_tag);
      default:
        break;
    }
    return f(KvTypeTag<KvDataType::kFloat16>{}, cache_tag);
  });
}

}  // namespace gangway::kernels::detail
