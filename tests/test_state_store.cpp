// Where the state store places a parameter's state arrays: a big state's arrays start at
// their own offsets within a 4 KiB page (detail::page_offset: 640 bytes apart, none near
// a page boundary, where a caller's big parameter and gradient sit), so that a step's
// streams do not alias; a small state's arrays follow one another, 64-byte aligned.
// Either way no two arrays overlap, and every one starts zeroed (8-bit signed: its
// zero code).
#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <xoptim/optim/state.hpp>

namespace
{
    using xoptim::slot_format;

    std::uintptr_t address(const void* p)
    {
        return reinterpret_cast<std::uintptr_t>(p);
    }

    // [start, end) of each array of entry e: its states, their 8-bit scales, the compensation.
    std::vector<std::pair<std::uintptr_t, std::uintptr_t>> arrays_of(const xoptim::state_store::entry& e)
    {
        std::vector<std::pair<std::uintptr_t, std::uintptr_t>> out;
        for (std::size_t k = 0; k < e.count; ++k)
        {
            const std::uintptr_t at = address(e.states[k].data);
            out.emplace_back(at, at + e.state_size(k) * e.element_bytes(k));
            if (e.states[k].absmax != nullptr)
            {
                const std::uintptr_t scales = address(e.states[k].absmax);
                out.emplace_back(scales, scales + e.blocks() * sizeof(float));
            }
        }
        if (e.compensation != nullptr)
        {
            out.emplace_back(address(e.compensation), address(e.compensation) + e.size * 2);
        }
        return out;
    }

    void expect_apart_and_inside(const xoptim::state_store::entry& e)
    {
        const auto arrays = arrays_of(e);
        const std::uintptr_t begin = address(e.data.get());
        for (std::size_t a = 0; a < arrays.size(); ++a)
        {
            EXPECT_EQ(arrays[a].first % 64, 0u) << "array " << a;
            EXPECT_GE(arrays[a].first, begin) << "array " << a;
            EXPECT_LE(arrays[a].second, begin + e.bytes) << "array " << a;
            for (std::size_t b = 0; b < a; ++b)
            {
                EXPECT_TRUE(arrays[a].first >= arrays[b].second || arrays[b].first >= arrays[a].second)
                    << "arrays " << b << " and " << a << " overlap";
            }
        }
    }

    xoptim::state_layout layout_of(std::size_t count, slot_format f, slot_format param = slot_format::native)
    {
        xoptim::state_layout l;
        l.count = count;
        l.formats.fill(f);
        l.param = param;
        return l;
    }

    TEST(state_store, a_big_states_arrays_start_at_their_own_page_offsets)
    {
        xoptim::state_store store;
        const std::size_t n = std::size_t(1) << 18;  // 1 MiB of floats: the smallest state placed so
        const auto& e = store.add("w", xoptim::dtype::float32, {n}, n, layout_of(2, slot_format::native));
        EXPECT_EQ(address(e.data.get()) % 4096, 0u);
        EXPECT_EQ(address(e.state<float>(0)) % 4096, 640u);
        EXPECT_EQ(address(e.state<float>(1)) % 4096, 1280u);
        expect_apart_and_inside(e);
        for (std::size_t k = 0; k < 2; ++k)
        {
            EXPECT_EQ(std::vector<float>(e.state<float>(k), e.state<float>(k) + n), std::vector<float>(n, 0.0f));
        }
    }

    TEST(state_store, six_states_and_a_compensation_take_seven_offsets)
    {
        xoptim::state_store store;
        const std::size_t n = std::size_t(1) << 19;  // the compensation alone is 1 MiB
        const auto& e = store.add("w", xoptim::dtype::bfloat16, {n}, n,
                                  layout_of(6, slot_format::bf16, slot_format::bf16_compensated));
        std::vector<std::uintptr_t> offsets;
        for (std::size_t k = 0; k < 6; ++k)
        {
            offsets.push_back(address(e.states[k].data) % 4096);
        }
        offsets.push_back(address(e.compensation) % 4096);
        EXPECT_EQ(offsets, (std::vector<std::uintptr_t>{640, 1280, 1920, 2560, 3200, 3840, 384}));
        expect_apart_and_inside(e);
    }

    TEST(state_store, big_8bit_codes_are_placed_and_their_scales_follow)
    {
        xoptim::state_store store;
        const std::size_t n = (std::size_t(1) << 20) + 5;  // 1 MiB of codes, a partial block
        const auto& e =
            store.add("w", xoptim::dtype::float32, {n}, n, layout_of(2, slot_format::q8_signed));
        EXPECT_EQ(address(e.states[0].data) % 4096, 640u);
        EXPECT_EQ(address(e.states[1].data) % 4096, 1280u);
        expect_apart_and_inside(e);
        const auto* codes = static_cast<const std::uint8_t*>(e.states[1].data);
        EXPECT_EQ(std::vector<std::uint8_t>(codes, codes + n), std::vector<std::uint8_t>(n, xoptim::dynamic_map::signed_zero));
        EXPECT_EQ(std::vector<float>(e.states[1].absmax, e.states[1].absmax + e.blocks()),
                  std::vector<float>(e.blocks(), 0.0f));
    }

    TEST(state_store, a_small_states_arrays_follow_one_another)
    {
        xoptim::state_store store;
        const std::size_t n = 1000;
        const auto& e = store.add("b", xoptim::dtype::float64, {n}, n, layout_of(3, slot_format::native));
        EXPECT_EQ(address(e.data.get()) % 64, 0u);
        EXPECT_EQ(address(e.state<double>(0)), address(e.data.get()));
        EXPECT_EQ(address(e.state<double>(1)), address(e.data.get()) + 8000);
        EXPECT_EQ(address(e.state<double>(2)), address(e.data.get()) + 16000);
        EXPECT_EQ(e.bytes, 24000u);
        expect_apart_and_inside(e);
    }
}

namespace
{
    // view<T> reads a state kept in T; one kept as codes is named as such, with the way to
    // read it, instead of being said not to exist.
    TEST(state_store, a_coded_state_viewed_as_floats_says_how_to_read_it)
    {
        xoptim::state_store store;
        store.add("w", xoptim::dtype::float32, {300}, 300, layout_of(2, slot_format::q8_signed));
        std::string message = "no error";
        try
        {
            store.view<float>("w", 0);
        }
        catch (const std::out_of_range& e)
        {
            message = e.what();
        }
        EXPECT_EQ(message,
                  "xoptim: state number 0 of parameter 'w' is stored as 8-bit codes: read it decoded with values()");
        EXPECT_THROW(store.view<float>("w", 2), std::out_of_range);
        EXPECT_THROW(store.view<double>("w", 0), std::out_of_range);
    }
}
