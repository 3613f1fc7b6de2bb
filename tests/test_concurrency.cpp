// Steps from several threads, inside the pool's own tasks, and in a forked child: each
// finishes (never a hang) with the bits of a step run alone. tools/tsan.sh runs these
// under ThreadSanitizer.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <future>
#include <iostream>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <xoptim/xoptim.hpp>

#if defined(__SANITIZE_THREAD__)
#define XOPTIM_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define XOPTIM_TEST_TSAN 1
#endif
#endif
#ifndef XOPTIM_TEST_TSAN
#define XOPTIM_TEST_TSAN 0
#endif

namespace
{
    constexpr std::size_t n = 200003;  // odd: pieces end inside batches
    constexpr int steps = 3;

    struct thread_settings
    {
        explicit thread_settings(std::size_t threads)
        {
            xoptim::set_num_threads(threads);
            xoptim::set_parallel_threshold(1024);  // every step here goes parallel
        }

        ~thread_settings()
        {
            xoptim::set_num_threads(std::max(1u, std::thread::hardware_concurrency()));
            xoptim::set_parallel_threshold(std::size_t(1) << 16);
        }
    };

    std::vector<float> values(double shift)
    {
        std::vector<float> x(n);
        for (std::size_t i = 0; i < n; ++i)
        {
            x[i] = static_cast<float>(std::sin(0.37 * double(i) + shift));
        }
        return x;
    }

    // `steps` AdamW steps of one tensor, the gradients depending on `seed`.
    std::vector<float> train(int seed)
    {
        auto p = values(seed);
        xoptim::adamw opt;
        for (int t = 0; t < steps; ++t)
        {
            opt.step(p, values(seed + 1.5 * t + 0.5));
        }
        return p;
    }

    // The result of train(seed) on one thread, where no pool is involved.
    std::vector<float> alone(int seed)
    {
        const std::size_t threads = xoptim::num_threads();
        xoptim::set_num_threads(1);
        auto p = train(seed);
        xoptim::set_num_threads(threads);
        return p;
    }

    // Runs f; a hang is reported as a failure and ends the process (its threads cannot
    // be taken back).
    template <class F>
    void finishes(F&& f, int seconds = 60)
    {
        auto done = std::async(std::launch::async, std::forward<F>(f));
        if (done.wait_for(std::chrono::seconds(seconds)) != std::future_status::ready)
        {
            std::cerr << "HANG: " << ::testing::UnitTest::GetInstance()->current_test_info()->name()
                      << " did not finish in " << seconds << " s\n";
            std::_Exit(1);
        }
        done.get();
    }

    TEST(concurrency, a_step_inside_a_pool_task_runs_inline_on_its_thread)
    {
        thread_settings settings(3);
        const auto expected0 = alone(0), expected1 = alone(1), expected2 = alone(2);
        finishes([&] {
            // Each of the pool's three tasks (the caller's and two workers') steps an
            // optimizer whose step would itself go parallel.
            std::vector<std::vector<float>> results(3);
            xoptim::parallel_run(
                [](void* ctx, std::size_t k, std::size_t) {
                    (*static_cast<std::vector<std::vector<float>>*>(ctx))[k] = train(int(k));
                },
                &results, 3);
            EXPECT_EQ(results[0], expected0);
            EXPECT_EQ(results[1], expected1);
            EXPECT_EQ(results[2], expected2);
        });
    }

    // The threads that ran a parallel_run of n tasks.
    std::set<std::thread::id> threads_of(std::size_t n)
    {
        std::pair<std::mutex, std::set<std::thread::id>> seen;
        xoptim::parallel_run(
            [](void* c, std::size_t, std::size_t) {
                auto& [mutex, ids] = *static_cast<decltype(seen)*>(c);
                std::lock_guard<std::mutex> lock(mutex);
                ids.insert(std::this_thread::get_id());
            },
            &seen, n);
        return seen.second;
    }

    TEST(concurrency, nested_tasks_run_on_the_thread_that_asked)
    {
        thread_settings settings(3);
        finishes([&] {
            std::array<std::set<std::thread::id>, 3> inner;
            std::array<std::thread::id, 3> outer;
            std::pair<decltype(inner)*, decltype(outer)*> ctx{&inner, &outer};
            xoptim::parallel_run(
                [](void* c, std::size_t k, std::size_t) {
                    auto& [in, out] = *static_cast<decltype(ctx)*>(c);
                    (*out)[k] = std::this_thread::get_id();
                    (*in)[k] = threads_of(4);
                },
                &ctx, 3);
            for (std::size_t k = 0; k < 3; ++k)
            {
                EXPECT_EQ(inner[k], std::set<std::thread::id>{outer[k]});
            }
            EXPECT_EQ(std::set<std::thread::id>(outer.begin(), outer.end()).size(), 3u);
        });
    }

    // A task that throws: the exception reaches the caller, after every task has
    // finished (the others still read their context), whichever task threw.
    TEST(concurrency, a_throwing_task_is_rethrown_after_the_others_finish)
    {
        finishes([&] {
            for (std::size_t thrower : {std::size_t(0), std::size_t(1)})
            {
                struct context
                {
                    std::size_t thrower;
                    std::atomic<int> finished{0};
                } ctx{thrower};
                std::string what;
                try
                {
                    xoptim::parallel_run(
                        [](void* c, std::size_t k, std::size_t) {
                            auto& x = *static_cast<context*>(c);
                            if (k == x.thrower)
                            {
                                throw std::runtime_error("task " + std::to_string(k) + " failed");
                            }
                            std::this_thread::sleep_for(std::chrono::milliseconds(50));
                            ++x.finished;
                        },
                        &ctx, 3);
                }
                catch (const std::runtime_error& e)
                {
                    what = e.what();
                }
                EXPECT_EQ(what, "task " + std::to_string(thrower) + " failed");
                EXPECT_EQ(ctx.finished.load(), 2);
            }
            // The pool works on after it.
            EXPECT_EQ(threads_of(3).size(), 3u);
        });
    }

    TEST(concurrency, two_optimizers_step_at_once_on_the_shared_pool)
    {
        thread_settings settings(2);
        const auto expected0 = alone(10), expected1 = alone(11);
        finishes([&] {
            for (int round = 0; round < 5; ++round)
            {
                std::vector<float> a, b;
                std::thread other([&] { b = train(11); });
                a = train(10);
                other.join();
                EXPECT_EQ(a, expected0);
                EXPECT_EQ(b, expected1);
            }
        });
    }

    TEST(concurrency, set_num_threads_between_and_during_steps)
    {
        thread_settings settings(2);
        const auto expected = alone(20);
        finishes([&] {
            std::atomic<bool> stop{false};
            std::thread knob([&] {
                for (std::size_t k = 0; !stop; ++k)
                {
                    xoptim::set_num_threads(1 + k % 4);
                    xoptim::set_parallel_threshold(512 + k % 1024);
                    std::this_thread::yield();
                }
            });
            for (int round = 0; round < 5; ++round)
            {
                EXPECT_EQ(train(20), expected);
            }
            stop = true;
            knob.join();
            for (std::size_t threads : {1, 3, 2, 4, 1})  // and between steps from this thread
            {
                xoptim::set_num_threads(threads);
                EXPECT_EQ(train(20), expected);
            }
        });
    }

    // Another pool: a thread of the caller's own, stepping while this thread steps and
    // while its own thread is inside one of xoptim's pool tasks.
    TEST(concurrency, a_step_from_another_pools_worker)
    {
        thread_settings settings(2);
        const auto expected0 = alone(30), expected1 = alone(31);
        finishes([&] {
            std::vector<float> theirs;
            std::atomic<bool> in_task{false};
            std::thread their_worker([&] {
                while (!in_task)
                {
                    std::this_thread::yield();
                }
                theirs = train(31);
            });
            std::pair<std::atomic<bool>*, std::vector<float>*> ctx{&in_task, nullptr};
            std::vector<float> ours;
            ctx.second = &ours;
            xoptim::parallel_run(
                [](void* c, std::size_t k, std::size_t) {
                    auto& [flag, out] = *static_cast<decltype(ctx)*>(c);
                    if (k == 1)
                    {
                        *flag = true;
                        *out = train(30);  // on a worker of xoptim's pool, nested
                    }
                },
                &ctx, 2);
            their_worker.join();
            EXPECT_EQ(ours, expected0);
            EXPECT_EQ(theirs, expected1);
        });
    }

    // Waits for a child, at most `seconds`; its exit status, or -1 for a hang (killed).
    int wait_child(pid_t child, int seconds = 30)
    {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
        int status = 0;
        while (::waitpid(child, &status, WNOHANG) == 0)
        {
            if (std::chrono::steady_clock::now() > deadline)
            {
                ::kill(child, SIGKILL);
                ::waitpid(child, &status, 0);
                return -1;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

    TEST(concurrency, a_forked_child_can_exit)
    {
        thread_settings settings(3);
        train(40);  // the pool has started its workers
        std::cout.flush();
        const pid_t child = ::fork();
        ASSERT_GE(child, 0);
        if (child == 0)
        {
            std::exit(0);  // static destructors run, the pool's among them
        }
        EXPECT_EQ(wait_child(child), 0) << "-1: the child hung";
    }

    TEST(concurrency, a_forked_child_can_step_on_threads_and_exit)
    {
        thread_settings settings(3);
        const auto expected = alone(41);
        EXPECT_EQ(train(41), expected);  // the pool has started its workers
        std::cout.flush();
        const pid_t child = ::fork();
        ASSERT_GE(child, 0);
        if (child == 0)
        {
#if XOPTIM_TEST_TSAN
            // ThreadSanitizer cannot follow threads started after a fork of a process with
            // threads (a new thread reusing a reclaimed stack is "dup thread with used id"):
            // under it the child steps on its own thread. Other builds check the new pool.
            xoptim::set_num_threads(1);
            std::exit(train(41) == expected ? 0 : 3);
#else
            // A new pool for the child: its steps go parallel again.
            const bool same = train(41) == expected;
            const bool parallel = threads_of(3).size() == 3;
            std::exit(!same ? 3 : !parallel ? 4 : 0);
#endif
        }
        EXPECT_EQ(wait_child(child), 0) << "-1: the child hung; 3: it stepped differently; 4: on one thread";
        EXPECT_EQ(train(41), expected);  // the parent's pool is unharmed
    }
}
