// Threads for big steps: a small persistent pool and the knobs that govern it.
//
// A step's work is split by element ranges. Every element is computed by the same
// code whatever the split (see run_prepared), so results are bit-identical for any
// thread count.
#ifndef XOPTIM_ENGINE_PARALLEL_HPP
#define XOPTIM_ENGINE_PARALLEL_HPP

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace xoptim
{
    /************
     * Settings *
     ************/

    // Threads a step may use, the calling thread included. Defaults to the hardware's
    // count; 1 turns threading off.
    void set_num_threads(std::size_t n);
    std::size_t num_threads() noexcept;

    // A step goes parallel only with at least this many elements per thread, so the
    // cost of waking threads (a few microseconds) stays small beside the work.
    void set_parallel_threshold(std::size_t elements_per_thread);
    std::size_t parallel_threshold() noexcept;

    // Calls fn(ctx, k, n) for k in [0, n) on up to n threads, the caller running k = 0,
    // and returns when all are done. Allocates nothing once the pool has started.
    using task_function = void (*)(void* ctx, std::size_t k, std::size_t n);
    void parallel_run(task_function fn, void* ctx, std::size_t n);

    namespace detail
    {
        struct parallel_settings
        {
            std::atomic<std::size_t> threads{std::max<std::size_t>(1, std::thread::hardware_concurrency())};
            std::atomic<std::size_t> threshold{std::size_t(1) << 16};
        };

        inline parallel_settings& settings() noexcept
        {
            static parallel_settings s;
            return s;
        }

        class thread_pool
        {
        public:

            static thread_pool& instance()
            {
                static thread_pool pool;
                return pool;
            }

            thread_pool() = default;
            thread_pool(const thread_pool&) = delete;
            thread_pool& operator=(const thread_pool&) = delete;

            ~thread_pool()
            {
                {
                    std::lock_guard<std::mutex> lock(m_mutex);
                    m_stop = true;
                }
                m_wake.notify_all();
                for (auto& t : m_workers)
                {
                    t.join();
                }
            }

            void run(task_function fn, void* ctx, std::size_t n)
            {
                // One step at a time owns the pool; a second caller waits its turn.
                std::lock_guard<std::mutex> serial(m_run_mutex);
                ensure_workers(n - 1);
                {
                    std::lock_guard<std::mutex> lock(m_mutex);
                    m_fn = fn;
                    m_ctx = ctx;
                    m_tasks = n;
                    m_pending = n - 1;
                    ++m_generation;
                }
                m_wake.notify_all();
                fn(ctx, 0, n);
                std::unique_lock<std::mutex> lock(m_mutex);
                m_done.wait(lock, [this] { return m_pending == 0; });
            }

        private:

            void ensure_workers(std::size_t count)
            {
                while (m_workers.size() < count)
                {
                    const std::size_t index = m_workers.size() + 1;
                    m_workers.emplace_back([this, index] { work(index); });
                }
            }

            void work(std::size_t index)
            {
                std::size_t seen = 0;
                std::unique_lock<std::mutex> lock(m_mutex);
                for (;;)
                {
                    m_wake.wait(lock, [&] { return m_stop || m_generation != seen; });
                    if (m_stop)
                    {
                        return;
                    }
                    seen = m_generation;
                    if (index >= m_tasks)
                    {
                        continue;
                    }
                    const task_function fn = m_fn;
                    void* ctx = m_ctx;
                    const std::size_t n = m_tasks;
                    lock.unlock();
                    fn(ctx, index, n);
                    lock.lock();
                    if (--m_pending == 0)
                    {
                        m_done.notify_one();
                    }
                }
            }

            std::mutex m_run_mutex;
            std::mutex m_mutex;
            std::condition_variable m_wake;
            std::condition_variable m_done;
            std::vector<std::thread> m_workers;
            task_function m_fn = nullptr;
            void* m_ctx = nullptr;
            std::size_t m_tasks = 0;
            std::size_t m_pending = 0;
            std::size_t m_generation = 0;
            bool m_stop = false;
        };
    }

    /******************
     * Implementation *
     ******************/

    inline void set_num_threads(std::size_t n)
    {
        if (n == 0)
        {
            throw std::invalid_argument("xoptim::set_num_threads: n must be at least 1 (got 0)");
        }
        detail::settings().threads = n;
    }

    inline std::size_t num_threads() noexcept
    {
        return detail::settings().threads;
    }

    inline void set_parallel_threshold(std::size_t elements_per_thread)
    {
        if (elements_per_thread == 0)
        {
            throw std::invalid_argument("xoptim::set_parallel_threshold: elements_per_thread must be at least 1 (got 0)");
        }
        detail::settings().threshold = elements_per_thread;
    }

    inline std::size_t parallel_threshold() noexcept
    {
        return detail::settings().threshold;
    }

    inline void parallel_run(task_function fn, void* ctx, std::size_t n)
    {
        if (n <= 1)
        {
            fn(ctx, 0, 1);
            return;
        }
        detail::thread_pool::instance().run(fn, ctx, n);
    }
}

#endif
