// Threads split the work by element ranges; results are bit-identical for any
// thread count and any threshold, because every element runs the same code.
#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <thread>

#include <xoptim/xoptim.hpp>

namespace
{
    struct thread_settings
    {
        ~thread_settings()
        {
            xoptim::set_num_threads(std::max(1u, std::thread::hardware_concurrency()));
            xoptim::set_parallel_threshold(std::size_t(1) << 16);
        }
    };

    std::vector<std::vector<float>> tensors(const std::vector<std::size_t>& sizes, double shift)
    {
        std::vector<std::vector<float>> t;
        for (std::size_t n : sizes)
        {
            std::vector<float> x(n);
            for (std::size_t i = 0; i < n; ++i)
            {
                x[i] = static_cast<float>(std::sin(0.37 * double(i) + shift));
            }
            t.push_back(std::move(x));
        }
        return t;
    }

    std::vector<std::vector<float>> run(std::size_t threads, std::size_t threshold, const std::vector<std::size_t>& sizes)
    {
        xoptim::set_num_threads(threads);
        xoptim::set_parallel_threshold(threshold);
        auto p = tensors(sizes, 0.0);
        xoptim::adamw_options o;
        o.amsgrad = true;
        xoptim::adamw opt(o);
        for (int t = 0; t < 3; ++t)
        {
            opt.step(p, tensors(sizes, 1.0 + t));
        }
        return p;
    }

    TEST(threads, pool_runs_tasks_on_distinct_threads)
    {
        std::mutex m;
        std::set<std::thread::id> ids;
        std::pair<std::mutex*, std::set<std::thread::id>*> ctx{&m, &ids};
        xoptim::parallel_run(
            [](void* c, std::size_t, std::size_t) {
                auto& [mutex, set] = *static_cast<decltype(ctx)*>(c);
                std::lock_guard<std::mutex> lock(*mutex);
                set->insert(std::this_thread::get_id());
            },
            &ctx, 3);
        EXPECT_EQ(ids.size(), 3u);
    }

    TEST(threads, one_and_two_threads_bit_identical_on_a_big_tensor)
    {
        thread_settings restore;
        const std::vector<std::size_t> sizes = {(std::size_t(1) << 20) + 3};
        EXPECT_EQ(run(1, 1 << 16, sizes), run(2, 1 << 16, sizes));
    }

    TEST(threads, split_points_inside_tiny_and_odd_tensors_change_nothing)
    {
        thread_settings restore;
        std::vector<std::size_t> sizes;
        for (std::size_t k = 0; k < 1000; ++k)
        {
            sizes.push_back(k % 37);  // zero-length tensors included
        }
        sizes.push_back(100003);
        const auto serial = run(1, 64, sizes);
        EXPECT_EQ(serial, run(2, 64, sizes));
        EXPECT_EQ(serial, run(3, 64, sizes));  // more threads than cores: still the same
    }
}
