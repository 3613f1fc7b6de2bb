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
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

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
    // and returns when all are done. Allocates nothing once the pool has started. Where
    // tasks throw, the first exception is rethrown once every task that started has
    // finished (run inline, the tasks after it do not start).
    //
    // Never waits for the pool: a call made while another thread's call holds it, or
    // from inside a task (a step nested in a task, on the caller's thread or a worker),
    // runs its n tasks itself, in order, on the calling thread. Tasks are pieces of one
    // split whose results do not depend on where they run, so the bits are the same.
    //
    // fork(): the child gets a pool of its own on its first parallel call (the parent's
    // workers do not exist in it); it can step and exit. Fork between steps: a child
    // forked while another thread steps sees that step half done, and one forked from
    // inside a task cannot finish that call.
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

        // Whether this thread is running a task of parallel_run.
        inline bool& in_parallel_task() noexcept
        {
            static thread_local bool inside = false;
            return inside;
        }

        // Marks this thread as inside a task for its lifetime.
        class task_scope
        {
        public:
            task_scope() noexcept : m_outer(in_parallel_task())
            {
                in_parallel_task() = true;
            }
            ~task_scope()
            {
                in_parallel_task() = m_outer;
            }
            task_scope(const task_scope&) = delete;
            task_scope& operator=(const task_scope&) = delete;

        private:
            bool m_outer;
        };

        inline void run_inline(task_function fn, void* ctx, std::size_t n)
        {
            const task_scope scope;
            for (std::size_t k = 0; k < n; ++k)
            {
                fn(ctx, k, n);
            }
        }

        // The pool's life, in atomics that are constant-initialized and never destroyed.
        // A thread may still step while the statics are destroyed at exit (one that the
        // destructor of an object made before the pool joins): pool_users counts the
        // calls inside the pool, which ~thread_pool lets finish before it stops the
        // workers, and a call that finds pool_gone runs its tasks itself.
        inline std::atomic<bool> pool_gone{false};
        inline std::atomic<std::size_t> pool_users{0};

        class thread_pool
        {
        public:

            thread_pool()
            {
#if defined(__unix__) || defined(__APPLE__)
                ::pthread_atfork(nullptr, nullptr, &forked_child);
#endif
            }

            thread_pool(const thread_pool&) = delete;
            thread_pool& operator=(const thread_pool&) = delete;

            ~thread_pool()
            {
                pool_gone.store(true);
                while (pool_users.load() != 0)
                {
                    std::this_thread::yield();
                }
                delete m_crew.exchange(nullptr);
            }

            // Runs the tasks on the workers and the calling thread; false, having run
            // nothing, where another thread is using the pool or the pool is gone.
            static bool try_run(task_function fn, void* ctx, std::size_t n)
            {
                // Sequentially consistent: either ~thread_pool sees this call, or this
                // call sees pool_gone.
                pool_users.fetch_add(1);
                struct leave
                {
                    ~leave()
                    {
                        pool_users.fetch_sub(1);
                    }
                } const left;
                return !pool_gone.load() && instance().current().try_run(fn, ctx, n);
            }

        private:

            // The workers and what they share. A forked child leaves its parent's crew
            // alone (its threads, mutexes and condition variables are the parent's: joining,
            // locking or signalling them could wait forever) and makes its own.
            class crew
            {
            public:

                crew() = default;
                crew(const crew&) = delete;
                crew& operator=(const crew&) = delete;

                ~crew()
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

                crew* abandoned_before = nullptr;  // see forked_child

                bool try_run(task_function fn, void* ctx, std::size_t n)
                {
                    std::unique_lock<std::mutex> serial(m_run_mutex, std::try_to_lock);
                    if (!serial.owns_lock())
                    {
                        return false;
                    }
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
                    std::exception_ptr error;
                    try
                    {
                        const task_scope scope;
                        fn(ctx, 0, n);
                    }
                    catch (...)
                    {
                        error = std::current_exception();
                    }
                    // The workers still read ctx: wait for them even where task 0 threw.
                    std::unique_lock<std::mutex> lock(m_mutex);
                    m_done.wait(lock, [this] { return m_pending == 0; });
                    if (!error)
                    {
                        error = m_error;
                    }
                    m_error = nullptr;
                    lock.unlock();
                    if (error)
                    {
                        std::rethrow_exception(error);
                    }
                    return true;
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
                    const task_scope scope;  // a step inside a task runs inline
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
                        std::exception_ptr error;
                        try
                        {
                            fn(ctx, index, n);
                        }
                        catch (...)
                        {
                            error = std::current_exception();  // for the caller, not this thread's end
                        }
                        lock.lock();
                        if (error && !m_error)
                        {
                            m_error = error;
                        }
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
                std::exception_ptr m_error;  // a worker's, for the caller to rethrow
                bool m_stop = false;
            };

            static thread_pool& instance()
            {
                static thread_pool pool;
                return pool;
            }

            crew& current()
            {
                crew* c = m_crew.load(std::memory_order_acquire);
                if (c == nullptr)
                {
                    auto fresh = std::make_unique<crew>();
                    if (m_crew.compare_exchange_strong(c, fresh.get(), std::memory_order_acq_rel))
                    {
                        c = fresh.release();
                    }
                }
                return *c;
            }

            // pthread_atfork's child handler: the parent's crew is let go, never used or
            // destroyed (it is only memory now, kept reachable in a list), so the child
            // can step and exit.
            static void forked_child() noexcept
            {
                if (pool_gone.load())
                {
                    return;
                }
                thread_pool& pool = instance();
                crew* parents = pool.m_crew.exchange(nullptr, std::memory_order_relaxed);
                if (parents != nullptr)
                {
                    parents->abandoned_before = pool.m_abandoned;
                    pool.m_abandoned = parents;
                }
            }

            std::atomic<crew*> m_crew{nullptr};
            crew* m_abandoned = nullptr;  // the crews of the processes this one was forked from
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
        if (detail::in_parallel_task() || !detail::thread_pool::try_run(fn, ctx, n))
        {
            detail::run_inline(fn, ctx, n);
        }
    }
}

#endif
