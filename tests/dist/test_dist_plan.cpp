// The distributed layout (dist/plan.hpp), checked without any communication: every
// element of every tensor is stepped by exactly one rank (ZeRO-1) or by all (data
// parallel), travels in exactly one bucket, lands where the rank's piece expects it,
// and every cut respects blocks, 8-bit minimum pieces, whole owned tensors and buckets.
#include <xoptim/dist/plan.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace
{
    using xoptim::dtype;
    using xoptim::dist::make_plan;
    using xoptim::dist::mode;
    using xoptim::dist::plan;
    using xoptim::dist::tensor_desc;

    constexpr std::size_t block = 256;

    tensor_desc sharded(std::size_t n, dtype t = dtype::float32, std::size_t min_piece = 0)
    {
        tensor_desc d;
        d.size = n;
        d.type = t;
        d.min_piece = min_piece;
        return d;
    }

    tensor_desc owned(std::size_t n, double cost, dtype t = dtype::float32)
    {
        tensor_desc d = sharded(n, t);
        d.owned = true;
        d.cost = cost;
        return d;
    }

    // Every invariant of a plan; `bucket_bytes` as given to make_plan.
    void check(const std::vector<tensor_desc>& tensors, const plan& p, std::size_t bucket_bytes)
    {
        const std::size_t ranks = p.ranks;
        const bool zero1 = p.how == mode::zero1;
        // 1. Buckets: contiguous runs of their flat buffer, tiling it; segments tile the bucket.
        std::array<std::vector<std::pair<std::size_t, std::size_t>>, 2> runs;
        std::map<std::pair<std::size_t, std::size_t>, std::size_t> sent;  // (tensor, element) -> times
        for (std::size_t b = 0; b < p.buckets.size(); ++b)
        {
            const auto& bk = p.buckets[b];
            SCOPED_TRACE("bucket " + std::to_string(b));
            runs[bk.type == dtype::float64].push_back({bk.begin, bk.length});
            std::size_t at = bk.begin;
            for (const auto& s : bk.segments)
            {
                EXPECT_EQ(s.at, at);
                EXPECT_EQ(tensors[s.tensor].type, bk.type);
                EXPECT_LE(s.offset + s.length, tensors[s.tensor].size);
                at += s.length;
                for (std::size_t e = s.offset; e < s.offset + s.length; ++e)
                {
                    ++sent[{s.tensor, e}];
                }
            }
            EXPECT_EQ(at, bk.begin + bk.length);
            if (bk.contiguous)
            {
                // One run of one tensor, in rank order.
                for (std::size_t k = 1; k < bk.segments.size(); ++k)
                {
                    EXPECT_EQ(bk.segments[k].tensor, bk.segments[0].tensor);
                    EXPECT_EQ(bk.segments[k].offset, bk.segments[k - 1].offset + bk.segments[k - 1].length);
                }
            }
            const std::size_t cap = std::max<std::size_t>(1, bucket_bytes / xoptim::dtype_size(bk.type));
            const bool one_owned = bk.segments.size() == 1 && tensors[bk.segments[0].tensor].owned && zero1;
            if (bk.contiguous)
            {
                // A chunk of a large tensor: whole blocks, a tail under min_piece joined.
                const std::size_t min_piece = tensors[bk.segments[0].tensor].min_piece;
                EXPECT_LE(bk.length, std::max({cap, block, (min_piece + block - 1) / block * block}) + min_piece);
            }
            else if (!one_owned)
            {
                EXPECT_LE(bk.length, cap);
            }
            if (b > 0)
            {
                EXPECT_LE(bk.last, p.buckets[b - 1].last) << "buckets start in reverse walk order";
            }
            if (zero1)
            {
                ASSERT_EQ(bk.counts.size(), ranks);
                std::size_t total = 0;
                for (std::size_t c : bk.counts)
                {
                    total += c;
                }
                EXPECT_EQ(total, bk.length);
            }
            else
            {
                EXPECT_TRUE(bk.counts.empty());
            }
        }
        for (std::size_t t = 0; t < 2; ++t)
        {
            std::sort(runs[t].begin(), runs[t].end());
            std::size_t at = 0;
            for (const auto& [begin, length] : runs[t])
            {
                EXPECT_EQ(begin, at);
                at += length;
            }
            EXPECT_EQ(at, p.flat[t]);
        }
        // Every element travels exactly once.
        for (std::size_t i = 0; i < tensors.size(); ++i)
        {
            for (std::size_t e = 0; e < tensors[i].size; ++e)
            {
                ASSERT_EQ((sent[{i, e}]), 1u) << "tensor " << i << " element " << e;
            }
        }

        // 2. Pieces: each element stepped by exactly one rank (or by all), one piece per
        // tensor per rank, cuts on blocks, owned tensors whole on their owner.
        std::map<std::pair<std::size_t, std::size_t>, int> stepped;
        std::map<std::pair<std::size_t, int>, std::size_t> per_rank;
        for (const auto& pc : p.pieces)
        {
            const tensor_desc& t = tensors[pc.tensor];
            SCOPED_TRACE("piece of tensor " + std::to_string(pc.tensor) + " on rank " + std::to_string(pc.rank));
            // One piece per tensor and rank, but of a tensor larger than a bucket (one per chunk).
            const std::size_t cap = std::max<std::size_t>(1, bucket_bytes / xoptim::dtype_size(t.type));
            if (t.size <= cap || !zero1)
            {
                EXPECT_EQ((++per_rank[{pc.tensor, pc.rank}]), 1u);
            }
            if (!zero1)
            {
                EXPECT_EQ(pc.rank, -1);
                EXPECT_EQ(pc.length, t.size);
            }
            else if (t.owned)
            {
                EXPECT_EQ(pc.rank, p.owner[pc.tensor]);
                EXPECT_EQ(pc.length, t.size);
            }
            else
            {
                EXPECT_EQ(pc.offset % block, 0u) << "a piece starts on a block boundary";
                EXPECT_TRUE(pc.offset + pc.length == t.size || (pc.offset + pc.length) % block == 0);
                if (t.min_piece > 0 && pc.length < t.size)
                {
                    EXPECT_GE(pc.length, t.min_piece);
                }
                EXPECT_GE(pc.rank, 0);
                EXPECT_LT(std::size_t(pc.rank), ranks);
            }
            for (std::size_t e = pc.offset; e < pc.offset + pc.length; ++e)
            {
                EXPECT_EQ((stepped.count({pc.tensor, e})), 0u);
                stepped[{pc.tensor, e}] = pc.rank;
            }
        }
        for (std::size_t i = 0; i < tensors.size(); ++i)
        {
            for (std::size_t e = 0; e < tensors[i].size; ++e)
            {
                ASSERT_EQ((stepped.count({i, e})), 1u) << "tensor " << i << " element " << e << " is stepped by nobody";
            }
        }

        // 3. Where an element lands: data parallel, at the piece's flat offset; ZeRO-1, the
        // rank's region of the bucket goes to shard_at[r] and the piece finds it there.
        for (const auto& bk : p.buckets)
        {
            std::size_t region = bk.begin;
            std::size_t r = 0;
            for (const auto& s : bk.segments)
            {
                if (zero1)
                {
                    while (s.at >= region + bk.counts[r])
                    {
                        region += bk.counts[r++];
                    }
                    ASSERT_LT(r, ranks);
                    EXPECT_LE(s.at + s.length, region + bk.counts[r]) << "a segment stays in its region";
                }
                for (const auto& pc : p.pieces)
                {
                    if (pc.tensor != s.tensor || s.offset < pc.offset || s.offset >= pc.offset + pc.length)
                    {
                        continue;
                    }
                    EXPECT_LE(s.offset + s.length, pc.offset + pc.length);
                    if (zero1)
                    {
                        EXPECT_EQ(pc.rank, int(r)) << "segment in the region of its piece's rank";
                        EXPECT_EQ(bk.shard_at[r] + (s.at - region), pc.at + (s.offset - pc.offset));
                    }
                    else
                    {
                        EXPECT_EQ(s.at, pc.at + s.offset);
                    }
                }
            }
        }
        // 4. Shard buffers hold exactly the rank's pieces.
        if (zero1)
        {
            for (std::size_t rank = 0; rank < ranks; ++rank)
            {
                std::array<std::size_t, 2> held{};
                for (const auto& pc : p.pieces_of(int(rank)))
                {
                    held[tensors[pc.tensor].type == dtype::float64] += pc.length;
                }
                EXPECT_EQ(held, p.shard[rank]);
            }
        }
    }

    struct named_case
    {
        std::string name;
        std::vector<tensor_desc> tensors;
        std::size_t bucket_bytes;
    };

    std::vector<named_case> cases()
    {
        std::vector<named_case> out;
        out.push_back({"empty", {}, 1024});
        out.push_back({"one element", {sharded(1)}, 1024});
        out.push_back({"zero and tiny", {sharded(0), sharded(1), sharded(3), sharded(0)}, 64});
        out.push_back({"uneven", {sharded(1000), sharded(257), sharded(3), sharded(4099), sharded(1)}, 1 << 20});
        out.push_back({"small buckets", {sharded(1000), sharded(257), sharded(3), sharded(4099), sharded(1)}, 2048});
        out.push_back({"larger than a bucket", {sharded(5), sharded(10000), sharded(7)}, 4096});
        out.push_back({"mixed types", {sharded(700, dtype::float64), sharded(900), sharded(300, dtype::float64)}, 4096});
        out.push_back({"8-bit minimum pieces",
                       {sharded(5000, dtype::float32, 4096), sharded(300), sharded(9000, dtype::float32, 4096),
                        sharded(70000, dtype::float32, 4096)},
                       1 << 20});
        out.push_back({"8-bit larger than a bucket", {sharded(70000, dtype::float32, 4096)}, 65536});
        out.push_back({"8-bit pieces between two cuts",
                       {sharded(3000, dtype::float32, 1024), sharded(4099, dtype::float32, 1024), sharded(100)},
                       1 << 20});
        out.push_back({"8-bit pieces between two cuts, larger than a bucket", {sharded(3000, dtype::float32, 1024)}, 2048});
        out.push_back({"owned and sharded",
                       {sharded(64), owned(4096, 3e6), sharded(100), owned(1024, 5e5), owned(8192, 1e7), sharded(10)},
                       1 << 20});
        out.push_back({"owned larger than a bucket", {sharded(64), owned(4096, 3e6), sharded(100)}, 1024});
        out.push_back({"many small", std::vector<tensor_desc>(300, sharded(37)), 4096});
        std::mt19937_64 rng(42);
        for (int k = 0; k < 6; ++k)
        {
            std::vector<tensor_desc> t;
            const int n = 1 + int(rng() % 12);
            for (int i = 0; i < n; ++i)
            {
                const std::size_t size = rng() % 3 == 0 ? rng() % 8 : rng() % 6000;
                const dtype type = rng() % 4 == 0 ? dtype::float64 : dtype::float32;
                if (rng() % 5 == 0)
                {
                    t.push_back(owned(size, double(rng() % 1000), type));
                }
                else
                {
                    t.push_back(sharded(size, type, size >= 4096 && rng() % 2 ? 4096 : 0));
                }
            }
            out.push_back({"random " + std::to_string(k), t, 1024 + rng() % 20000});
        }
        return out;
    }
}

TEST(dist_plan, every_element_once_for_1_to_4_ranks_both_modes)
{
    for (const auto& c : cases())
    {
        for (std::size_t ranks = 1; ranks <= 5; ++ranks)
        {
            for (const mode how : {mode::data_parallel, mode::zero1})
            {
                SCOPED_TRACE(c.name + ", " + std::to_string(ranks) + " ranks, " + xoptim::dist::to_string(how));
                check(c.tensors, make_plan(c.tensors, ranks, how, c.bucket_bytes), c.bucket_bytes);
            }
        }
    }
}

TEST(dist_plan, zero1_shards_are_even_within_a_block_per_bucket)
{
    // 4,096 tensors of 4,096 floats and one of 2^24 (the benchmark's cases).
    const std::vector<tensor_desc> many(4096, sharded(4096));
    const std::vector<tensor_desc> one{sharded(std::size_t(1) << 24)};
    for (const auto* tensors : {&many, &one})
    {
        for (std::size_t ranks = 1; ranks <= 4; ++ranks)
        {
            const plan p = make_plan(*tensors, ranks, mode::zero1, 32 << 20);
            const std::size_t total = p.flat[0];
            for (std::size_t r = 0; r < ranks; ++r)
            {
                const double ideal = double(total) / double(ranks);
                EXPECT_LE(std::abs(double(p.shard[r][0]) - ideal), double(block * p.buckets.size()))
                    << ranks << " ranks, rank " << r;
            }
        }
    }
}

TEST(dist_plan, owners_balance_newton_schulz_cost_largest_first)
{
    // Costs 9, 7, 5, 3, 1 on 2 ranks: 9 -> 0, 7 -> 1, 5 -> 1, 3 -> 0, 1 -> 0 (loads 13, 12).
    const std::vector<tensor_desc> t{owned(10, 1), owned(10, 9), owned(10, 5), owned(10, 7), owned(10, 3)};
    const plan p = make_plan(t, 2, mode::zero1, 1 << 20);
    EXPECT_EQ(p.owner, (std::vector<int>{0, 0, 1, 1, 0}));
    // Data parallel: nothing is owned.
    EXPECT_EQ(make_plan(t, 2, mode::data_parallel, 1 << 20).owner, (std::vector<int>(5, -1)));
}

TEST(dist_plan, a_cut_never_leaves_an_8bit_tensor_a_piece_under_its_minimum)
{
    // One 8-bit tensor of 6,000 elements on 2 ranks: the even cut (3,000) would leave two
    // pieces under 4,096, so the tensor stays whole on one rank.
    const plan p = make_plan({sharded(6000, dtype::float32, 4096)}, 2, mode::zero1, 1 << 20);
    ASSERT_EQ(p.pieces.size(), 1u);
    EXPECT_EQ(p.pieces[0].length, 6000u);
    // Without the minimum it is cut at the block nearest 3,000.
    const plan q = make_plan({sharded(6000)}, 2, mode::zero1, 1 << 20);
    ASSERT_EQ(q.pieces.size(), 2u);
    EXPECT_EQ(q.pieces[0].length, 3072u);
}

TEST(dist_plan, refuses_zero_ranks_and_empty_buckets)
{
    EXPECT_THROW(make_plan({}, 0, mode::zero1, 10), std::invalid_argument);
    EXPECT_THROW(make_plan({}, 1, mode::zero1, 0), std::invalid_argument);
}
