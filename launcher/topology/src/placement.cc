#include "gangway/topology/placement.h"

#include <algorithm>
#include <array>
#include <map>
#include <set>

#include <absl/strings/ascii.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>

#include "gangway/topology/model.h"

namespace gangway::topology {
namespace {

// Nodes that stay together, and the child subtree they came from at the current level.
struct Piece {
  std::vector<int> nodes;
  int origin = 0;
};
// A block and where it goes among its siblings: 2*origin for a block from one child, 2*origin+1
// for one combined from several (after the pure blocks of its first child, so that pipeline
// neighbours share that child's switch).
struct Block {
  std::vector<int> nodes;
  int key = 0;
};

struct Packed {
  std::vector<Block> blocks;
  Piece leftover;
};

// Cuts `size`-node blocks out of pieces: whole blocks from any piece that holds one, then blocks
// combined from the rest, largest piece first, filling each gap with an exact fit, else the
// largest piece that fits, else part of the smallest piece that is too large.
Packed packPieces(std::vector<Piece> pieces, std::size_t size) {
  Packed out;
  std::vector<Piece> rest;
  for (auto& p : pieces) {
    std::size_t i = 0;
    for (; p.nodes.size() - i >= size; i += size) {
      out.blocks.push_back(Block{{p.nodes.begin() + static_cast<std::ptrdiff_t>(i),
                                  p.nodes.begin() + static_cast<std::ptrdiff_t>(i + size)},
                                 2 * p.origin});
    }
    if (i < p.nodes.size()) {
      rest.push_back(
          Piece{{p.nodes.begin() + static_cast<std::ptrdiff_t>(i), p.nodes.end()}, p.origin});
    }
  }
  auto larger = [](const Piece& a, const Piece& b) { return a.nodes.size() > b.nodes.size(); };
  std::stable_sort(rest.begin(), rest.end(), larger);
  std::size_t total = 0;
  for (const auto& p : rest) total += p.nodes.size();
  while (total >= size && !rest.empty()) {
    std::vector<Piece> parts{std::move(rest.front())};
    rest.erase(rest.begin());
    std::size_t filled = parts[0].nodes.size();
    while (filled < size && !rest.empty()) {
      const std::size_t gap = size - filled;
      std::size_t pick = rest.size();
      for (std::size_t i = 0; i < rest.size() && pick == rest.size(); ++i) {
        if (rest[i].nodes.size() == gap) pick = i;
      }
      for (std::size_t i = 0; i < rest.size() && pick == rest.size(); ++i) {
        if (rest[i].nodes.size() < gap) pick = i;  // sorted: the first is the largest
      }
      if (pick != rest.size()) {
        filled += rest[pick].nodes.size();
        parts.push_back(std::move(rest[pick]));
        rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(pick));
        continue;
      }
      // Every piece is larger than the gap: take the gap from the smallest one.
      std::size_t smallest = 0;
      for (std::size_t i = 1; i < rest.size(); ++i) {
        if (rest[i].nodes.size() < rest[smallest].nodes.size()) smallest = i;
      }
      Piece& p = rest[smallest];
      parts.push_back(
          Piece{{p.nodes.begin(), p.nodes.begin() + static_cast<std::ptrdiff_t>(gap)}, p.origin});
      p.nodes.erase(p.nodes.begin(), p.nodes.begin() + static_cast<std::ptrdiff_t>(gap));
      filled = size;
      std::stable_sort(rest.begin(), rest.end(), larger);
    }
    std::stable_sort(parts.begin(), parts.end(),
                     [](const Piece& a, const Piece& b) { return a.origin < b.origin; });
    Block block{{}, 2 * parts[0].origin + (parts.size() > 1 ? 1 : 0)};
    for (const auto& p : parts)
      block.nodes.insert(block.nodes.end(), p.nodes.begin(), p.nodes.end());
    total -= block.nodes.size();
    out.blocks.push_back(std::move(block));
  }
  std::stable_sort(rest.begin(), rest.end(),
                   [](const Piece& a, const Piece& b) { return a.origin < b.origin; });
  for (auto& p : rest)
    out.leftover.nodes.insert(out.leftover.nodes.end(), p.nodes.begin(), p.nodes.end());
  return out;
}

class Packer {
 public:
  Packer(const std::vector<PlacementNode>& nodes, std::size_t chunk, std::size_t block)
      : nodes_(nodes), chunk_(chunk), block_(block) {
    for (const auto& n : nodes) depth_ = std::max(depth_, n.path.size());
  }

  std::vector<int> order() {
    std::vector<int> all(nodes_.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
    Packed p = pack(all, 0);
    std::vector<int> out;
    for (const auto& b : p.blocks) out.insert(out.end(), b.nodes.begin(), b.nodes.end());
    out.insert(out.end(), p.leftover.nodes.begin(), p.leftover.nodes.end());
    return out;
  }

 private:
  // Level 0..depth-1: switch path components; level depth: the NVLink domain; depth+1: nodes.
  const std::string& key(int node, std::size_t level) const {
    static const std::string kNone;
    const auto& n = nodes_[static_cast<std::size_t>(node)];
    if (level < depth_) return level < n.path.size() ? n.path[level] : kNone;
    return n.domain;
  }
  std::size_t sizeAt(std::size_t level) const { return level > depth_ ? chunk_ : block_; }

  Packed pack(const std::vector<int>& members, std::size_t level) {
    if (level > depth_) {
      std::vector<int> p = members;
      std::sort(p.begin(), p.end(), [this](int a, int b) {
        const auto& na = nodes_[static_cast<std::size_t>(a)].name;
        const auto& nb = nodes_[static_cast<std::size_t>(b)].name;
        return na != nb ? naturalLess(na, nb) : a < b;
      });
      return packPieces({Piece{p, 0}}, chunk_);
    }
    std::map<std::string, std::vector<int>, decltype(&naturalLess)> children(&naturalLess);
    for (int m : members) children[key(m, level)].push_back(m);
    std::vector<Block> blocks;
    std::vector<Piece> pieces;
    const bool keep_blocks = sizeAt(level + 1) == block_;
    int origin = 0;
    for (const auto& [k, child] : children) {
      Packed c = pack(child, level + 1);
      if (keep_blocks) {
        for (auto& b : c.blocks) blocks.push_back(Block{std::move(b.nodes), 2 * origin});
        if (!c.leftover.nodes.empty()) pieces.push_back(Piece{std::move(c.leftover.nodes), origin});
      } else {
        Piece merged{{}, origin};
        for (const auto& b : c.blocks)
          merged.nodes.insert(merged.nodes.end(), b.nodes.begin(), b.nodes.end());
        merged.nodes.insert(merged.nodes.end(), c.leftover.nodes.begin(), c.leftover.nodes.end());
        pieces.push_back(std::move(merged));
      }
      ++origin;
    }
    Packed here = packPieces(std::move(pieces), block_);
    blocks.insert(blocks.end(), here.blocks.begin(), here.blocks.end());
    std::stable_sort(blocks.begin(), blocks.end(),
                     [](const Block& a, const Block& b) { return a.key < b.key; });
    return Packed{std::move(blocks), std::move(here.leftover)};
  }

  const std::vector<PlacementNode>& nodes_;
  std::size_t chunk_;
  std::size_t block_;
  std::size_t depth_ = 0;
};

// Switch tiers between two nodes: 0 same leaf, 1 across leaves of one spine, 2 across spines.
int tiers(const PlacementNode& a, const PlacementNode& b, std::size_t depth) {
  std::size_t common = 0;
  while (common < depth) {
    const std::string& x = common < a.path.size() ? a.path[common] : std::string();
    const std::string& y = common < b.path.size() ? b.path[common] : std::string();
    if (x != y) break;
    ++common;
  }
  return static_cast<int>(depth - common);
}

constexpr int kPipeline = 4;  // the index of pp in Dims

struct Dims {
  int size[5];    // tp, cp, ep, dp, pp
  int stride[5];  // rank stride of each dimension
  double bytes[5];
};

Dims dimsOf(const Parallelism& p, const TrafficModel& m) {
  Dims d{{p.tp, p.cp, p.ep, p.dp, p.pp}, {1, 1, 1, 1, 1}, {m.tp, m.cp, m.ep, m.dp, m.pp}};
  for (int k = 1; k < 5; ++k) d.stride[k] = d.stride[k - 1] * d.size[k - 1];
  return d;
}

// Calls f(first rank, dimension) for every group: the ranks first + j * stride[dim].
template <typename F>
void forEachGroup(const Dims& d, int world, F f) {
  for (int k = 0; k < 5; ++k) {
    if (d.size[k] <= 1 || d.bytes[k] <= 0) continue;
    for (int r = 0; r < world; ++r) {
      if ((r / d.stride[k]) % d.size[k] == 0) f(r, k);
    }
  }
}

std::size_t maxDepth(const std::vector<PlacementNode>& nodes) {
  std::size_t depth = 0;
  for (const auto& n : nodes) depth = std::max(depth, n.path.size());
  return depth;
}

bool anyDomain(const std::vector<PlacementNode>& nodes) {
  return std::any_of(nodes.begin(), nodes.end(),
                     [](const PlacementNode& n) { return !n.domain.empty(); });
}

// The pipeline: stage s is the s-th block of `block` nodes, and stage s sends to stage s + 1 from
// each position j to the same position. Orders the blocks (a path through them) so that those
// sends cross the fewest switch tiers: greedy from every start, then 2-opt, keeping the packed
// order on ties.
void orderStages(const std::vector<PlacementNode>& nodes, std::size_t block,
                 std::vector<int>* order) {
  const std::size_t stages = order->size() / block;
  if (stages < 3) return;  // two stages: one boundary, nothing to choose
  const std::size_t depth = maxDepth(nodes);
  std::vector<std::vector<int64_t>> dist(stages, std::vector<int64_t>(stages, 0));
  for (std::size_t a = 0; a < stages; ++a) {
    for (std::size_t b = a + 1; b < stages; ++b) {
      int64_t d = 0;
      for (std::size_t j = 0; j < block; ++j) {
        d += tiers(nodes[static_cast<std::size_t>((*order)[a * block + j])],
                   nodes[static_cast<std::size_t>((*order)[b * block + j])], depth);
      }
      dist[a][b] = dist[b][a] = d;
    }
  }
  auto cost = [&](const std::vector<std::size_t>& path) {
    int64_t c = 0;
    for (std::size_t i = 0; i + 1 < path.size(); ++i) c += dist[path[i]][path[i + 1]];
    return c;
  };
  std::vector<std::size_t> best(stages);
  for (std::size_t i = 0; i < stages; ++i) best[i] = i;
  int64_t best_cost = cost(best);
  for (std::size_t start = 0; start < stages && best_cost > 0; ++start) {
    std::vector<std::size_t> path{start};
    std::vector<bool> used(stages, false);
    used[start] = true;
    while (path.size() < stages) {
      std::size_t next = stages;
      for (std::size_t c = 0; c < stages; ++c) {
        if (!used[c] && (next == stages || dist[path.back()][c] < dist[path.back()][next]))
          next = c;
      }
      used[next] = true;
      path.push_back(next);
    }
    // 2-opt: reverse a segment while that shortens the path (bounded passes).
    for (int pass = 0; pass < 8; ++pass) {
      bool improved = false;
      for (std::size_t i = 0; i + 1 < stages; ++i) {
        for (std::size_t k = i + 1; k < stages; ++k) {
          int64_t before = 0;
          int64_t after = 0;
          if (i > 0) {
            before += dist[path[i - 1]][path[i]];
            after += dist[path[i - 1]][path[k]];
          }
          if (k + 1 < stages) {
            before += dist[path[k]][path[k + 1]];
            after += dist[path[i]][path[k + 1]];
          }
          if (after < before) {
            std::reverse(path.begin() + static_cast<std::ptrdiff_t>(i),
                         path.begin() + static_cast<std::ptrdiff_t>(k + 1));
            improved = true;
          }
        }
      }
      if (!improved) break;
    }
    if (const int64_t c = cost(path); c < best_cost) {
      best_cost = c;
      best = path;
    }
  }
  std::vector<int> out;
  out.reserve(order->size());
  for (std::size_t s : best) {
    out.insert(out.end(), order->begin() + static_cast<std::ptrdiff_t>(s * block),
               order->begin() + static_cast<std::ptrdiff_t>((s + 1) * block));
  }
  *order = std::move(out);
}

}  // namespace

absl::StatusOr<Parallelism> parseParallelism(absl::string_view text) {
  Parallelism p;
  std::set<std::string> seen;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    std::vector<absl::string_view> kv = absl::StrSplit(absl::StripAsciiWhitespace(item), '=');
    int v = 0;
    const std::string name = kv.empty() ? "" : std::string(kv[0]);
    int* slot = name == "tp"   ? &p.tp
                : name == "cp" ? &p.cp
                : name == "ep" ? &p.ep
                : name == "dp" ? &p.dp
                : name == "pp" ? &p.pp
                               : nullptr;
    if (kv.size() != 2 || slot == nullptr || !absl::SimpleAtoi(kv[1], &v) || v < 1 ||
        !seen.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--parallelism: '", item,
                       "' is not NAME=N with NAME one of tp, cp, ep, dp, pp (each once) and N a "
                       "positive integer"));
    }
    *slot = v;
  }
  return p;
}

absl::Status resolveParallelism(Parallelism* p, int world_size) {
  const int64_t fixed = int64_t{p->tp} * p->cp * p->ep * p->pp;
  if (p->dp == 0) {
    if (fixed <= 0 || world_size % fixed != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--parallelism ", formatParallelism(*p), ": tp*cp*ep*pp = ", fixed,
                       " does not divide the world size ", world_size));
    }
    p->dp = static_cast<int>(world_size / fixed);
  }
  if (fixed * p->dp != world_size) {
    return absl::InvalidArgumentError(absl::StrCat("--parallelism ", formatParallelism(*p),
                                                   ": tp*cp*ep*dp*pp = ", fixed * p->dp,
                                                   " but the world size is ", world_size));
  }
  return absl::OkStatus();
}

std::string formatParallelism(const Parallelism& p) {
  std::vector<std::string> parts{absl::StrCat("tp=", p.tp)};
  if (p.cp != 1) parts.push_back(absl::StrCat("cp=", p.cp));
  if (p.ep != 1) parts.push_back(absl::StrCat("ep=", p.ep));
  if (p.dp != 0) parts.push_back(absl::StrCat("dp=", p.dp));
  parts.push_back(absl::StrCat("pp=", p.pp));
  return absl::StrJoin(parts, ",");
}

std::vector<int> orderNodes(const std::vector<PlacementNode>& nodes, int nproc_per_node,
                            const Parallelism* parallelism) {
  const std::size_t n = nodes.size();
  if (n == 0) return {};
  std::size_t chunk = 1;
  std::size_t block = n;
  if (parallelism != nullptr && nproc_per_node > 0) {
    const auto g = static_cast<std::size_t>(nproc_per_node);
    const auto tp = static_cast<std::size_t>(parallelism->tp);
    chunk = tp > g && tp % g == 0 ? tp / g : 1;
    const auto pp = static_cast<std::size_t>(std::max(1, parallelism->pp));
    if (n % pp == 0) block = n / pp;
    if (block % chunk != 0) chunk = 1;
  }
  std::vector<int> order = Packer(nodes, chunk, block).order();
  if (block < n && n % block == 0) orderStages(nodes, block, &order);
  return order;
}

PlacementCost evaluatePlacement(const std::vector<PlacementNode>& nodes,
                                const std::vector<int>& order, int nproc_per_node,
                                const Parallelism* parallelism, const TrafficModel& model) {
  PlacementCost c;
  const std::size_t depth = maxDepth(nodes);
  const std::size_t n = order.size();
  auto node = [&](std::size_t pos) -> const PlacementNode& {
    return nodes[static_cast<std::size_t>(order[pos])];
  };
  if (n > 1) {
    for (std::size_t i = 0; i < n; ++i) {
      const int t = tiers(node(i), node((i + 1) % n), depth);
      c.ring_leaf += t >= 1 ? 1 : 0;
      c.ring_spine += t >= 2 ? 1 : 0;
    }
  }
  if (parallelism == nullptr || nproc_per_node <= 0) return c;
  const bool domains = anyDomain(nodes);
  const int world = static_cast<int>(n) * nproc_per_node;
  const Dims d = dimsOf(*parallelism, model);
  forEachGroup(d, world, [&](int first, int k) {
    // Rings, except the pipeline: stage j sends to stage j + 1 only.
    const int edges = k == kPipeline ? d.size[k] - 1 : d.size[k];
    for (int j = 0; j < edges; ++j) {
      const int r = first + j * d.stride[k];
      const int next = first + ((j + 1) % d.size[k]) * d.stride[k];
      const auto pa = static_cast<std::size_t>(r / nproc_per_node);
      const auto pb = static_cast<std::size_t>(next / nproc_per_node);
      if (pa == pb) continue;
      const double v = d.bytes[k];
      const PlacementNode& a = node(pa);
      const PlacementNode& b = node(pb);
      c.bytes_node += v;
      if (domains && (a.domain.empty() || a.domain != b.domain)) c.bytes_off_domain += v;
      const int t = tiers(a, b, depth);
      if (t >= 1) c.bytes_leaf += v;
      if (t >= 2) c.bytes_spine += v;
    }
  });
  c.cost = c.bytes_off_domain + c.bytes_leaf + c.bytes_spine;
  return c;
}

PlacementCost placementLowerBound(const std::vector<PlacementNode>& nodes, int nproc_per_node,
                                  const Parallelism* parallelism, const TrafficModel& model) {
  PlacementCost c;
  const std::size_t depth = maxDepth(nodes);
  const std::size_t n = nodes.size();
  // Units of each level: NVLink domains (a node without one is its own), leaves, spines.
  auto units_of = [&](int level) {
    std::map<std::string, int> units;
    for (std::size_t i = 0; i < n; ++i) {
      const auto& p = nodes[i];
      std::string key;
      if (level == 0) {
        key = p.domain.empty() ? absl::StrCat("\x01node", i) : p.domain;
      } else {
        const std::size_t keep = depth >= static_cast<std::size_t>(level - 1)
                                     ? depth - static_cast<std::size_t>(level - 1)
                                     : 0;
        std::vector<std::string> prefix;
        for (std::size_t k = 0; k < keep; ++k) prefix.push_back(k < p.path.size() ? p.path[k] : "");
        key = absl::StrJoin(prefix, "/");
      }
      ++units[key];
    }
    return units;
  };
  const auto leaves = units_of(1);
  const auto spines = units_of(2);
  if (leaves.size() > 1) c.ring_leaf = static_cast<int>(leaves.size());
  if (depth >= 2 && spines.size() > 1) c.ring_spine = static_cast<int>(spines.size());
  if (parallelism == nullptr || nproc_per_node <= 0 || n == 0) return c;
  // Traffic leaving nodes does not depend on the order.
  std::vector<int> identity(n);
  for (std::size_t i = 0; i < n; ++i) identity[i] = static_cast<int>(i);
  c.bytes_node = evaluatePlacement(nodes, identity, nproc_per_node, parallelism, model).bytes_node;
  const bool domains = anyDomain(nodes);
  const int world = static_cast<int>(n) * nproc_per_node;
  const Dims d = dimsOf(*parallelism, model);
  // Node sets per dimension: the node positions each group spans, and how many groups share it.
  std::map<int, std::map<std::vector<int>, int>> sets;
  forEachGroup(d, world, [&](int first, int k) {
    std::vector<int> pos;
    pos.reserve(static_cast<std::size_t>(d.size[k]));
    for (int j = 0; j < d.size[k]; ++j) pos.push_back((first + j * d.stride[k]) / nproc_per_node);
    std::sort(pos.begin(), pos.end());
    pos.erase(std::unique(pos.begin(), pos.end()), pos.end());
    ++sets[k][pos];
  });
  // Each kind's own bound, by level, kept to be replaced below where a combined bound is higher.
  std::map<int, std::array<double, 3>> per_kind;     // kind -> {off-domain, leaf, spine}
  std::map<int, std::pair<std::size_t, int>> shape;  // kind -> {set size, groups per set}
  for (const auto& kind_sets : sets) {
    // Named, not bound: the lambda below captures them (clang-tidy 14 cannot parse a lambda that
    // captures a structured binding).
    const int k = kind_sets.first;
    const auto& by_set = kind_sets.second;
    // The bound holds for sets that partition the nodes with one size and one multiplicity.
    std::vector<int> count(n, 0);
    std::size_t b = by_set.begin()->first.size();
    int m = by_set.begin()->second;
    bool partition = true;
    for (const auto& [pos, groups] : by_set) {
      partition = partition && pos.size() == b && groups == m;
      for (int p : pos) ++count[static_cast<std::size_t>(p)];
    }
    partition = partition && std::all_of(count.begin(), count.end(), [](int x) { return x == 1; });
    if (!partition || b < 2) continue;
    const auto nsets = static_cast<double>(by_set.size());
    auto bound = [&](const std::map<std::string, int>& units) {
      int largest = 0;
      double whole = 0;
      for (const auto& [key, size] : units) {
        largest = std::max(largest, size);
        const std::size_t whole_units = static_cast<std::size_t>(size) / b;  // floor
        whole += static_cast<double>(whole_units);
      }
      // A ring over units it touches crosses once per unit (at least twice); a chain once less.
      const std::size_t touched_units =
          (b + static_cast<std::size_t>(largest) - 1) / static_cast<std::size_t>(largest);
      const auto touched = static_cast<double>(touched_units);
      const double per_set =
          k == kPipeline ? std::max<double>(1, touched - 1) : std::max<double>(2, touched);
      return std::max(0.0, nsets - whole) * per_set * m * d.bytes[k];
    };
    shape[k] = {b, m};
    per_kind[k] = {domains ? bound(units_of(0)) : 0, leaves.size() > 1 ? bound(leaves) : 0,
                   depth >= 2 && spines.size() > 1 ? bound(spines) : 0};
  }
  // Data parallelism and the pipeline together. With DP groups as the rows and pipeline chains as
  // the columns of a grid of nodes (each row meets each column once), a switch unit (leaf or
  // spine) holding c nodes spans some r rows and q columns with r * q >= c. A row touching k
  // units costs at least k - 1 crossings (and one more when k >= 2; at most sum(floor(c / B))
  // rows touch one unit), a column at least k - 1. Summed over units this bounds both kinds at
  // once: sum over units of min over r of (W_dp * r + W_pp * ceil(c / r)), minus W_dp * rows and
  // W_pp * columns, plus W_dp for every row that cannot be whole.
  constexpr int kDp = 3;
  if (shape.count(kDp) > 0 && shape.count(kPipeline) > 0) {
    const std::size_t cols = shape[kDp].first;        // a row's nodes
    const std::size_t rows = shape[kPipeline].first;  // a column's nodes
    bool grid = rows * cols == n;
    // Every DP set meets every pipeline set in exactly one node.
    for (const auto& [dp_set, g1] : sets[kDp]) {
      for (const auto& [pp_set, g2] : sets[kPipeline]) {
        std::size_t common = 0;
        for (int x : dp_set) common += std::binary_search(pp_set.begin(), pp_set.end(), x) ? 1 : 0;
        grid = grid && common == 1;
        if (!grid) break;
      }
      if (!grid) break;
    }
    if (grid) {
      const double w_row = shape[kDp].second * d.bytes[kDp];
      const double w_col = shape[kPipeline].second * d.bytes[kPipeline];
      auto combined = [&](const std::map<std::string, int>& units) {
        double total = 0;
        double whole_rows = 0;
        for (const auto& [key, size] : units) {
          const auto c_u = static_cast<std::size_t>(size);
          double best = -1;
          for (std::size_t r = 1; r <= rows; ++r) {
            const std::size_t q = (c_u + r - 1) / r;
            if (q > cols) continue;
            const double v = w_row * static_cast<double>(r) + w_col * static_cast<double>(q);
            if (best < 0 || v < best) best = v;
          }
          total += best;
          const std::size_t whole = c_u / cols;  // floor
          whole_rows += static_cast<double>(whole);
        }
        return total - w_row * static_cast<double>(rows) - w_col * static_cast<double>(cols) +
               w_row * std::max(0.0, static_cast<double>(rows) - whole_rows);
      };
      auto raise = [&](int level, const std::map<std::string, int>& units) {
        const double separate = per_kind[kDp][level] + per_kind[kPipeline][level];
        const double both = combined(units);
        if (both > separate) {
          per_kind[kDp][level] = both;
          per_kind[kPipeline][level] = 0;
        }
      };
      if (leaves.size() > 1) raise(1, leaves);
      if (depth >= 2 && spines.size() > 1) raise(2, spines);
    }
  }
  for (const auto& [k, v] : per_kind) {
    c.bytes_off_domain += v[0];
    c.bytes_leaf += v[1];
    c.bytes_spine += v[2];
  }
  c.cost = c.bytes_off_domain + c.bytes_leaf + c.bytes_spine;
  return c;
}

}  // namespace gangway::topology
