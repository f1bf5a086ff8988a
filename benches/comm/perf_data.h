// Deterministic inputs per rank, the expected output each rank computes locally from every rank's
// inputs, and the comparison that counts wrong elements.
//
// Inputs are small integers stored in the type, chosen so that every reduction is exact or close
// to it in every type: 0..7 (or -3..4 for signed types) for sum, avg, min and max; for prod, one
// rank per element contributes 1..3 (with a sign for signed types) and every other rank 1; and
// -50..50 (or 0..100) for the collectives that only move data. Integers must match exactly;
// floating-point results within a tolerance of the type's precision times the rank count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gangway/comm/communicator.h"

#include "perf_args.h"
#include "perf_collectives.h"

namespace gangway::bench {

struct DataSpec {
  Collective collective = Collective::kAllReduce;
  comm::DataType type = comm::DataType::kFloat32;
  comm::ReduceOp op = comm::ReduceOp::kSum;
  int root = 0;
  int ranks = 1;
  std::uint64_t seed = 0;
  Counts counts;
};

// Writes `count` input elements of `rank`, starting at element `offset` of its send array.
void makeInput(const DataSpec& spec, int rank, std::size_t offset, std::size_t count, void* dst);

// The expected output region of `rank` after the call (counts.recv elements; `in_place` matters
// only for reduce, where non-root ranks keep their buffer: their input in place, zeros otherwise).
std::vector<char> makeExpected(const DataSpec& spec, int rank, bool in_place);

// Elements of `got` that differ from `want` (exact for integers and for data that was only moved;
// within the type's tolerance for reduced floating-point data).
std::int64_t countWrong(const DataSpec& spec, const void* got, const void* want, std::size_t count);

}  // namespace gangway::bench
