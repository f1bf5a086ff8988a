// The `gangway_kv` Python module: KvCacheManager for Python inference servers. Errors raise
// exceptions named by their kind (KvError and its subclasses OutOfBlocks, SequenceNotFound, ...);
// the manager's state is unchanged when one is raised.
#include <cstdint>
#include <vector>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "gangway/kv/manager.h"

namespace py = pybind11;
namespace kv = gangway::kv;

namespace {

struct Errors {
  py::object base, invalid, not_found, exists, exhausted, precondition, range;
};
Errors* g_errors = nullptr;

[[noreturn]] void raise(const absl::Status& s) {
  py::object type = g_errors->base;
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
      type = g_errors->invalid;
      break;
    case absl::StatusCode::kNotFound:
      type = g_errors->not_found;
      break;
    case absl::StatusCode::kAlreadyExists:
      type = g_errors->exists;
      break;
    case absl::StatusCode::kResourceExhausted:
      type = g_errors->exhausted;
      break;
    case absl::StatusCode::kFailedPrecondition:
      type = g_errors->precondition;
      break;
    case absl::StatusCode::kOutOfRange:
      type = g_errors->range;
      break;
    default:
      break;
  }
  PyErr_SetString(type.ptr(), std::string(s.message()).c_str());
  throw py::error_already_set();
}

void check(const absl::Status& s) {
  if (!s.ok()) raise(s);
}

template <typename T>
T value(absl::StatusOr<T> s) {
  if (!s.ok()) raise(s.status());
  return *std::move(s);
}

std::vector<kv::ExtraKey> extraKeys(const std::vector<std::pair<int32_t, uint64_t>>& in) {
  std::vector<kv::ExtraKey> out;
  out.reserve(in.size());
  for (const auto& [pos, v] : in) out.push_back({pos, v});
  return out;
}

const char* kindName(kv::CopyKind k) {
  switch (k) {
    case kv::CopyKind::kDeviceToHost:
      return "device_to_host";
    case kv::CopyKind::kHostToDevice:
      return "host_to_device";
    case kv::CopyKind::kDeviceToDevice:
      return "device_to_device";
  }
  return "?";
}

}  // namespace

PYBIND11_MODULE(gangway_kv, m) {
  m.doc() =
      "gangway's paged KV-cache block manager (libgangway_kv). See runtime/README.md.\n"
      "Errors raise KvError subclasses and leave the manager unchanged.";

  static Errors errors;
  g_errors = &errors;
  errors.base = py::exception<std::runtime_error>(m, "KvError");
  auto sub = [&](const char* name, PyObject* extra_base) {
    py::object bases = py::make_tuple(errors.base, py::handle(extra_base));
    auto t = py::reinterpret_steal<py::object>(
        PyErr_NewException((std::string("gangway_kv.") + name).c_str(), bases.ptr(), nullptr));
    m.attr(name) = t;
    return t;
  };
  errors.invalid = sub("InvalidArgument", PyExc_ValueError);
  errors.not_found = sub("SequenceNotFound", PyExc_KeyError);
  errors.exists = sub("SequenceExists", PyExc_KeyError);
  errors.exhausted = sub("OutOfBlocks", PyExc_MemoryError);
  errors.precondition = sub("FailedPrecondition", PyExc_RuntimeError);
  errors.range = sub("OutOfRange", PyExc_IndexError);

  py::class_<kv::AllocateResult>(m, "AllocateResult")
      .def_readonly("cached_tokens", &kv::AllocateResult::cached_tokens)
      .def_readonly("device_hit_blocks", &kv::AllocateResult::device_hit_blocks)
      .def_readonly("host_hit_blocks", &kv::AllocateResult::host_hit_blocks)
      .def_readonly("new_blocks", &kv::AllocateResult::new_blocks);
  py::class_<kv::AdmitCheck>(m, "AdmitCheck")
      .def_readonly("admissible", &kv::AdmitCheck::admissible)
      .def_readonly("ever_fits", &kv::AdmitCheck::ever_fits)
      .def_readonly("blocks_needed", &kv::AdmitCheck::blocks_needed)
      .def_readonly("cached_tokens", &kv::AdmitCheck::cached_tokens);

  py::class_<kv::KvCacheManager>(m, "KvCacheManager")
      .def(py::init([](int32_t num_blocks, int32_t block_size, int32_t num_host_blocks,
                       bool enable_prefix_caching, bool offload_evicted, double watermark) {
             kv::Options o;
             o.num_blocks = num_blocks;
             o.block_size = block_size;
             o.num_host_blocks = num_host_blocks;
             o.enable_prefix_caching = enable_prefix_caching;
             o.offload_evicted = offload_evicted;
             o.watermark = watermark;
             return value(kv::KvCacheManager::create(o));
           }),
           py::arg("num_blocks"), py::arg("block_size") = 16, py::arg("num_host_blocks") = 0,
           py::arg("enable_prefix_caching") = true, py::arg("offload_evicted") = true,
           py::arg("watermark") = 0.01)
      .def_property_readonly("block_size",
                             [](const kv::KvCacheManager& k) { return k.options().block_size; })
      .def_property_readonly("num_blocks",
                             [](const kv::KvCacheManager& k) { return k.options().num_blocks; })
      .def(
          "allocate",
          [](kv::KvCacheManager& k, uint64_t seq, const std::vector<int32_t>& prompt,
             const std::vector<std::pair<int32_t, uint64_t>>& extra_keys) {
            const auto extras = extraKeys(extra_keys);
            return value(k.allocate(seq, prompt, extras));
          },
          py::arg("seq"), py::arg("prompt"),
          py::arg("extra_keys") = std::vector<std::pair<int32_t, uint64_t>>{},
          "Reserve blocks for a prompt, sharing the longest cached prefix. extra_keys: "
          "[(position, value)] mixed into the key of the block holding `position`.")
      .def(
          "append",
          [](kv::KvCacheManager& k, uint64_t seq, const std::vector<int32_t>& tokens) {
            check(k.append(seq, tokens));
          },
          py::arg("seq"), py::arg("tokens"))
      .def(
          "set_computed",
          [](kv::KvCacheManager& k, uint64_t seq, int32_t n) { check(k.setComputed(seq, n)); },
          py::arg("seq"), py::arg("num_computed_tokens"))
      .def(
          "fork", [](kv::KvCacheManager& k, uint64_t p, uint64_t c) { check(k.fork(p, c)); },
          py::arg("parent"), py::arg("child"))
      .def(
          "free", [](kv::KvCacheManager& k, uint64_t seq) { check(k.free(seq)); }, py::arg("seq"))
      .def(
          "swap_out", [](kv::KvCacheManager& k, uint64_t seq) { check(k.swapOut(seq)); },
          py::arg("seq"))
      .def(
          "swap_in", [](kv::KvCacheManager& k, uint64_t seq) { check(k.swapIn(seq)); },
          py::arg("seq"))
      .def(
          "can_admit",
          [](const kv::KvCacheManager& k, const std::vector<int32_t>& prompt,
             const std::vector<std::pair<int32_t, uint64_t>>& extra_keys) {
            const auto extras = extraKeys(extra_keys);
            return k.canAdmit(prompt, extras);
          },
          py::arg("prompt"), py::arg("extra_keys") = std::vector<std::pair<int32_t, uint64_t>>{})
      .def("can_append", &kv::KvCacheManager::canAppend, py::arg("seq"), py::arg("num_tokens") = 1)
      .def("can_swap_in", &kv::KvCacheManager::canSwapIn, py::arg("seq"))
      .def("evict_cached", &kv::KvCacheManager::evictCached, py::arg("max_blocks"))
      .def("__contains__", &kv::KvCacheManager::contains)
      .def(
          "num_tokens",
          [](const kv::KvCacheManager& k, uint64_t s) { return value(k.numTokens(s)); },
          py::arg("seq"))
      .def(
          "block_table",
          [](const kv::KvCacheManager& k, uint64_t seq) {
            const auto t = value(k.blockTable(seq));
            return std::vector<int32_t>(t.begin(), t.end());
          },
          py::arg("seq"))
      .def(
          "slot_mapping",
          [](const kv::KvCacheManager& k, uint64_t seq, int32_t first, int32_t count) {
            std::vector<int64_t> out(count < 0 ? 0 : count);
            check(k.slotMapping(seq, first, count, out));
            return out;
          },
          py::arg("seq"), py::arg("first"), py::arg("count"))
      .def(
          "take_copies",
          [](kv::KvCacheManager& k) {
            py::list out;
            for (const kv::BlockCopy& c : k.takeCopies()) {
              out.append(py::make_tuple(kindName(c.kind), c.src, c.dst));
            }
            return out;
          },
          "The copies to run before the next forward pass, in order: "
          "[(kind, src, dst)], kind in device_to_host, host_to_device, device_to_device.")
      .def("stats", [](const kv::KvCacheManager& k) {
        const kv::Stats s = k.stats();
        py::dict d;
#define GW_FIELD(f) d[#f] = s.f
        GW_FIELD(num_blocks);
        GW_FIELD(used_blocks);
        GW_FIELD(free_blocks);
        GW_FIELD(cached_blocks);
        GW_FIELD(num_host_blocks);
        GW_FIELD(host_used_blocks);
        GW_FIELD(host_free_blocks);
        GW_FIELD(host_cached_blocks);
        GW_FIELD(running_sequences);
        GW_FIELD(swapped_sequences);
        GW_FIELD(lookups);
        GW_FIELD(queried_blocks);
        GW_FIELD(hit_blocks);
        GW_FIELD(host_hit_blocks);
        GW_FIELD(miss_blocks);
        GW_FIELD(evicted_blocks);
        GW_FIELD(offloaded_blocks);
        GW_FIELD(host_evicted_blocks);
        GW_FIELD(dropped_prefixes);
        GW_FIELD(allocated_blocks);
        GW_FIELD(freed_blocks);
        GW_FIELD(cow_copies);
        GW_FIELD(swapped_out_blocks);
        GW_FIELD(swapped_in_blocks);
        GW_FIELD(preemptions);
#undef GW_FIELD
        return d;
      });
}
