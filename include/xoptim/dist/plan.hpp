// The layout of a distributed step (docs/design.md section 7): which gradients travel
// together (buckets), where each lies in the flat buffers, which rank steps which part
// of which tensor (pieces), and which rank owns a tensor that must be stepped whole.
//
// A pure function of what every rank agreed on (sizes, element types, what is owned,
// the options): every rank computes the same plan without communicating.
//
// Data-parallel mode: per element type one flat buffer, tensors in walk order, cut
// into buckets of at most `bucket_bytes` (a larger tensor spans several consecutive
// buckets); each bucket is one allreduce; every rank steps every tensor whole.
//
// ZeRO-1: a bucket holds one region per rank, in rank order; region r is rank r's part
// of the bucket's sharded tensors followed by the owned tensors of rank r. The sharded
// tensors of a bucket, concatenated, are cut into ranks parts, every cut between two
// tensors or on a 256-element block boundary of the tensor it falls in (and, for a
// tensor with `min_piece`, leaving no piece of it under min_piece). A sharded tensor
// larger than a bucket is cut into contiguous chunks, one bucket each, each chunk cut
// among the ranks: a rank then steps one piece of it per chunk. A reduce-scatter with
// the regions' counts leaves rank r the sum of its regions, which it keeps one after
// another in its shard buffer.
#ifndef XOPTIM_DIST_PLAN_HPP
#define XOPTIM_DIST_PLAN_HPP

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "../engine/coded.hpp"
#include "../optim/state.hpp"

namespace xoptim::dist
{
    enum class mode
    {
        data_parallel,  // gradients allreduced; every rank steps everything and keeps all state
        zero1           // gradients reduce-scattered; every rank steps and keeps its shard
    };

    inline const char* to_string(mode m) noexcept
    {
        return m == mode::data_parallel ? "data_parallel" : "zero1";
    }

    // What the plan needs to know of a parameter.
    struct tensor_desc
    {
        std::size_t size = 0;
        dtype type = dtype::float32;  // float32 or float64
        bool owned = false;           // ZeRO-1: stepped whole by one rank (Muon)
        double cost = 0;              // owned: its work, balanced across ranks
        std::size_t min_piece = 0;    // ZeRO-1: no piece of it smaller than this but the whole (8-bit states)
    };

    // A run of a tensor's elements in a flat buffer.
    struct segment
    {
        std::size_t tensor;
        std::size_t offset;  // in the tensor
        std::size_t length;
        std::size_t at;      // in the flat buffer of the tensor's element type
    };

    struct bucket
    {
        dtype type;
        std::size_t begin;   // in the flat buffer of its type
        std::size_t length;
        // ZeRO-1: the length of each rank's region (regions follow one another in rank
        // order) and where rank r's region lands in rank r's shard buffer. Empty in
        // data-parallel mode.
        std::vector<std::size_t> counts;
        std::vector<std::size_t> shard_at;
        std::vector<segment> segments;
        std::size_t last;    // the highest tensor index it holds: buckets start in reverse walk order
        // ZeRO-1: the bucket is one run of one tensor, its regions in rank order.
        bool contiguous = false;
    };

    // The part of a tensor one rank steps.
    struct piece
    {
        std::size_t tensor;
        std::size_t offset;  // in the tensor
        std::size_t length;
        std::size_t at;      // ZeRO-1: in the rank's shard buffer; data-parallel: in the flat buffer
        int rank;            // -1: every rank (data-parallel)
    };

    struct plan
    {
        dist::mode how = dist::mode::data_parallel;
        std::size_t ranks = 1;
        std::vector<bucket> buckets;                        // in launch order
        std::array<std::size_t, 2> flat{};                  // flat buffer elements: float, double
        std::vector<piece> pieces;                          // by tensor, then offset
        std::vector<std::array<std::size_t, 2>> shard;      // ZeRO-1, per rank: shard buffer elements
        std::vector<int> owner;                             // per tensor: owning rank, -1 if sharded
        std::vector<std::vector<std::size_t>> buckets_of;   // per tensor: indices of the buckets holding it

        // Rank r's pieces (data-parallel: every tensor), in tensor order.
        std::vector<piece> pieces_of(int r) const
        {
            std::vector<piece> out;
            for (const piece& p : pieces)
            {
                if (p.rank == r || p.rank == -1)
                {
                    out.push_back(p);
                }
            }
            return out;
        }
    };

    // Ranks >= 1, bucket_bytes >= 1. Throws std::invalid_argument otherwise.
    plan make_plan(const std::vector<tensor_desc>& tensors, std::size_t ranks, mode how, std::size_t bucket_bytes);

    /******************
     * Implementation *
     ******************/

    namespace detail
    {
        inline std::size_t type_index(dtype t) noexcept
        {
            return t == dtype::float64 ? 1 : 0;
        }

        // Owners of the owned tensors: largest cost first, each to the least loaded rank
        // (the lowest on a tie).
        inline std::vector<int> assign_owners(const std::vector<tensor_desc>& tensors, std::size_t ranks)
        {
            std::vector<int> owner(tensors.size(), -1);
            std::vector<std::size_t> order;
            for (std::size_t i = 0; i < tensors.size(); ++i)
            {
                if (tensors[i].owned)
                {
                    order.push_back(i);
                }
            }
            std::stable_sort(order.begin(), order.end(),
                             [&](std::size_t a, std::size_t b) { return tensors[a].cost > tensors[b].cost; });
            std::vector<double> load(ranks, 0.0);
            for (std::size_t i : order)
            {
                const auto least = std::min_element(load.begin(), load.end()) - load.begin();
                owner[i] = static_cast<int>(least);
                load[std::size_t(least)] += tensors[i].cost;
            }
            return owner;
        }

        // The cut nearest to `target` / parts (in elements of the concatenation of
        // `members`, whose starts are `starts`), not before `previous`: between two tensors
        // or on an allowed block boundary inside one. Distances are kept in integers
        // (|cut * parts - target|) so every rank finds the same cut.
        inline std::size_t place_cut(const std::vector<tensor_desc>& tensors, const std::vector<std::size_t>& members,
                                     const std::vector<std::size_t>& starts, std::size_t total, std::size_t target,
                                     std::size_t parts, std::size_t previous)
        {
            const auto distance = [&](std::size_t cut) {
                const std::uint64_t scaled = std::uint64_t(cut) * parts;
                return scaled > target ? scaled - target : target - scaled;
            };
            std::size_t best = total;
            const auto offer = [&](std::size_t cut) {
                if (cut >= previous && cut <= total && (distance(cut) < distance(best) || (distance(cut) == distance(best) && cut < best)))
                {
                    best = cut;
                }
            };
            offer(previous);
            const std::size_t ideal = std::size_t(target / parts);
            // The tensor holding the ideal cut, and its neighbours' boundaries.
            const auto k = std::size_t(std::upper_bound(starts.begin(), starts.end(), ideal) - starts.begin()) - 1;
            if (k < members.size())
            {
                const tensor_desc& t = tensors[members[k]];
                const std::size_t s = starts[k];
                offer(s);
                offer(s + t.size);
                // Inside: block boundaries x with 0 < x < size (and, for min_piece, the
                // pieces on both sides, from the previous cut or the start and to the end,
                // at least min_piece).
                const std::size_t from = previous > s ? previous - s : 0;
                const std::size_t lo = std::max<std::size_t>(codec_block, (from + t.min_piece + codec_block - 1) / codec_block * codec_block);
                const std::size_t top = t.size > t.min_piece ? t.size - t.min_piece : 0;
                const std::size_t hi = t.size > 0 ? std::min((t.size - 1) / codec_block * codec_block, top / codec_block * codec_block) : 0;
                if (lo <= hi)
                {
                    const std::size_t x = ideal - s;
                    const std::size_t down = std::clamp(x / codec_block * codec_block, lo, hi);
                    const std::size_t up = std::clamp((x + codec_block - 1) / codec_block * codec_block, lo, hi);
                    offer(s + down);
                    offer(s + up);
                }
            }
            return best;
        }

        // Cuts the concatenation of `members` into `parts` ranges; returns parts + 1 bounds.
        inline std::vector<std::size_t> cut_evenly(const std::vector<tensor_desc>& tensors,
                                                   const std::vector<std::size_t>& members, std::size_t parts)
        {
            std::vector<std::size_t> starts;
            std::size_t total = 0;
            for (std::size_t i : members)
            {
                starts.push_back(total);
                total += tensors[i].size;
            }
            std::vector<std::size_t> bounds(parts + 1, 0);
            bounds[parts] = total;
            for (std::size_t r = 1; r < parts; ++r)
            {
                bounds[r] = members.empty() ? 0
                                            : place_cut(tensors, members, starts, total, std::uint64_t(total) * r, parts,
                                                        bounds[r - 1]);
            }
            return bounds;
        }

        class plan_builder
        {
        public:

            plan_builder(const std::vector<tensor_desc>& tensors, std::size_t ranks, mode how, std::size_t bucket_bytes)
                : m_tensors(tensors), m_ranks(ranks), m_bucket_bytes(bucket_bytes)
            {
                m_plan.how = how;
                m_plan.ranks = ranks;
                m_plan.owner = how == mode::zero1 ? assign_owners(tensors, ranks) : std::vector<int>(tensors.size(), -1);
                m_plan.shard.assign(how == mode::zero1 ? ranks : 0, {0, 0});
                m_plan.buckets_of.resize(tensors.size());
            }

            plan build()
            {
                for (const dtype type : {dtype::float32, dtype::float64})
                {
                    m_type = type;
                    m_cap = std::max<std::size_t>(1, m_bucket_bytes / dtype_size(type));
                    for (std::size_t i = 0; i < m_tensors.size(); ++i)
                    {
                        if (m_tensors[i].type == type)
                        {
                            m_plan.how == mode::zero1 ? add_zero1(i) : add_data_parallel(i);
                        }
                    }
                    flush();
                }
                order();
                return std::move(m_plan);
            }

        private:

            std::size_t& flat() noexcept
            {
                return m_plan.flat[type_index(m_type)];
            }

            // Data-parallel: the tensor joins the open bucket, or fills buckets of its own.
            void add_data_parallel(std::size_t i)
            {
                const std::size_t n = m_tensors[i].size;
                std::size_t done = 0;
                if (!m_members.empty() && m_open + n > m_cap)
                {
                    flush();
                }
                m_plan.pieces.push_back({i, 0, n, flat() + m_open, -1});
                while (n - done > m_cap)
                {
                    m_members.push_back(i);
                    m_spans.push_back({done, m_cap - m_open});
                    done += m_cap - m_open;
                    m_open = m_cap;
                    flush();
                }
                m_members.push_back(i);
                m_spans.push_back({done, n - done});
                m_open += n - done;
            }

            void add_zero1(std::size_t i)
            {
                const std::size_t n = m_tensors[i].size;
                if (!m_members.empty() && m_open + n > m_cap)
                {
                    flush();
                }
                if (m_plan.owner[i] < 0 && n > m_cap)
                {
                    add_large_sharded(i);
                    return;
                }
                m_members.push_back(i);
                m_spans.push_back({0, n});
                m_open += n;
            }

            // A sharded tensor larger than a bucket: contiguous chunks of it, one bucket
            // each, each cut among the ranks, so that such a bucket is one run of the
            // tensor in rank order (its collectives can read the gradient and write the
            // parameter in place). An 8-bit tensor's chunks are long enough for every
            // piece to stay 8-bit.
            void add_large_sharded(std::size_t i)
            {
                const tensor_desc& t = m_tensors[i];
                const std::size_t n = t.size;
                // Chunks of whole blocks, each at most a bucket (at least a block, and at
                // least min_piece); a tail shorter than min_piece joins the chunk before.
                const auto blocks = [](std::size_t x) { return (x + codec_block - 1) / codec_block * codec_block; };
                const std::size_t chunk = std::max({codec_block, m_cap / codec_block * codec_block, blocks(t.min_piece)});
                for (std::size_t begin = 0; begin < n;)
                {
                    std::size_t end = std::min(n, begin + chunk);
                    end = n - end < std::max<std::size_t>(1, t.min_piece) ? n : end;
                    tensor_desc part = t;
                    part.size = end - begin;
                    const std::vector<std::size_t> bounds = cut_evenly({part}, {0}, m_ranks);
                    bucket b = open_bucket();
                    b.contiguous = true;
                    for (std::size_t r = 0; r < m_ranks; ++r)
                    {
                        const std::size_t len = bounds[r + 1] - bounds[r];
                        if (len > 0)
                        {
                            m_plan.pieces.push_back({i, begin + bounds[r], len, m_plan.shard[r][type_index(m_type)], int(r)});
                            b.segments.push_back({i, begin + bounds[r], len, b.begin + b.length});
                        }
                        b.length += len;
                        b.counts[r] = len;
                    }
                    b.last = i;
                    close_bucket(std::move(b));
                    begin = end;
                }
            }

            bucket open_bucket() const
            {
                bucket b{m_type, m_plan.flat[type_index(m_type)], 0, {}, {}, {}, 0, false};
                if (m_plan.how == mode::zero1)
                {
                    b.counts.assign(m_ranks, 0);
                    b.shard_at.assign(m_ranks, 0);
                }
                return b;
            }

            void close_bucket(bucket b)
            {
                if (b.length == 0)
                {
                    return;  // only empty tensors: nothing to send
                }
                if (m_plan.how == mode::zero1)
                {
                    for (std::size_t r = 0; r < m_ranks; ++r)
                    {
                        b.shard_at[r] = m_plan.shard[r][type_index(m_type)];
                        m_plan.shard[r][type_index(m_type)] += b.counts[r];
                    }
                }
                flat() += b.length;
                const std::size_t index = m_plan.buckets.size();
                for (const segment& s : b.segments)
                {
                    auto& of = m_plan.buckets_of[s.tensor];
                    if (of.empty() || of.back() != index)
                    {
                        of.push_back(index);
                    }
                }
                m_plan.buckets.push_back(std::move(b));
            }

            // Closes the open bucket (nothing if it holds no tensor).
            void flush()
            {
                if (m_members.empty())
                {
                    return;
                }
                bucket b = open_bucket();
                b.last = m_members.back();
                if (m_plan.how == mode::data_parallel)
                {
                    for (std::size_t k = 0; k < m_members.size(); ++k)
                    {
                        if (m_spans[k].second > 0)
                        {
                            b.segments.push_back({m_members[k], m_spans[k].first, m_spans[k].second, b.begin + b.length});
                            b.length += m_spans[k].second;
                        }
                    }
                }
                else
                {
                    layout_regions(b);
                }
                close_bucket(std::move(b));
                m_members.clear();
                m_spans.clear();
                m_open = 0;
            }

            // ZeRO-1: region r = rank r's part of the sharded tensors, then its owned ones.
            void layout_regions(bucket& b)
            {
                std::vector<std::size_t> sharded;
                for (std::size_t i : m_members)
                {
                    if (m_plan.owner[i] < 0)
                    {
                        sharded.push_back(i);
                    }
                }
                const std::vector<std::size_t> bounds = cut_evenly(m_tensors, sharded, m_ranks);
                for (std::size_t r = 0; r < m_ranks; ++r)
                {
                    const std::size_t region = b.length;
                    const std::size_t shard = m_plan.shard[r][type_index(m_type)];
                    std::size_t start = 0;  // of the current tensor in the concatenation
                    for (std::size_t i : sharded)
                    {
                        const std::size_t n = m_tensors[i].size;
                        const std::size_t from = std::max(start, bounds[r]);
                        const std::size_t to = std::min(start + n, bounds[r + 1]);
                        if (to > from)
                        {
                            m_plan.pieces.push_back({i, from - start, to - from, shard + b.length - region, int(r)});
                            b.segments.push_back({i, from - start, to - from, b.begin + b.length});
                            b.length += to - from;
                        }
                        start += n;
                    }
                    for (std::size_t i : m_members)
                    {
                        if (m_plan.owner[i] == int(r))
                        {
                            const std::size_t n = m_tensors[i].size;
                            m_plan.pieces.push_back({i, 0, n, shard + b.length - region, int(r)});
                            if (n > 0)
                            {
                                b.segments.push_back({i, 0, n, b.begin + b.length});
                                b.length += n;
                            }
                        }
                    }
                    b.counts[r] = b.length - region;
                }
            }

            // Buckets start in reverse walk order (as a backward pass frees gradients);
            // pieces are listed by tensor.
            void order()
            {
                std::vector<std::size_t> index(m_plan.buckets.size());
                std::iota(index.begin(), index.end(), 0);
                std::stable_sort(index.begin(), index.end(), [&](std::size_t a, std::size_t b) {
                    return m_plan.buckets[a].last > m_plan.buckets[b].last
                           || (m_plan.buckets[a].last == m_plan.buckets[b].last && a > b);
                });
                std::vector<std::size_t> position(index.size());
                std::vector<bucket> sorted;
                for (std::size_t k = 0; k < index.size(); ++k)
                {
                    position[index[k]] = k;
                    sorted.push_back(std::move(m_plan.buckets[index[k]]));
                }
                m_plan.buckets = std::move(sorted);
                for (auto& of : m_plan.buckets_of)
                {
                    for (auto& b : of)
                    {
                        b = position[b];
                    }
                }
                std::stable_sort(m_plan.pieces.begin(), m_plan.pieces.end(), [](const piece& a, const piece& b) {
                    return a.tensor < b.tensor || (a.tensor == b.tensor && a.offset < b.offset);
                });
            }

            const std::vector<tensor_desc>& m_tensors;
            std::size_t m_ranks;
            std::size_t m_bucket_bytes;
            plan m_plan;
            dtype m_type = dtype::float32;
            std::size_t m_cap = 1;
            // The open bucket: its tensors and the span of each it takes (offset, length).
            std::vector<std::size_t> m_members;
            std::vector<std::pair<std::size_t, std::size_t>> m_spans;
            std::size_t m_open = 0;
        };
    }

    inline plan make_plan(const std::vector<tensor_desc>& tensors, std::size_t ranks, mode how, std::size_t bucket_bytes)
    {
        if (ranks < 1)
        {
            throw std::invalid_argument("xoptim::dist::make_plan: ranks must be >= 1");
        }
        if (bucket_bytes < 1)
        {
            throw std::invalid_argument("xoptim::dist::make_plan: bucket_bytes must be >= 1");
        }
        return detail::plan_builder(tensors, ranks, how, bucket_bytes).build();
    }
}

#endif
