// A batch loader: worker threads fill batches ahead of the training step, and the step takes
// them strictly in index order, so a run is deterministic however the workers are timed.
//
//   xoptim::train::batch_loader<my_batch> loader(
//       [&](std::size_t index, my_batch& b) { /* fill b for batch `index` */ }, options);
//   while (auto batch = loader.next())   // batch 0, 1, 2, ...; empty at the end
//   {
//       step(*batch);                     // the buffer goes back to the pool on scope exit
//   }
//
// Buffers: a fixed pool of capacity + workers + 1 batches is made up front and cycled, so
// in steady state nothing is allocated per batch (a fill that resizes its vectors to the
// same size keeps their memory). Each worker fills one while up to `capacity` filled
// batches wait and the step holds one: the double buffering that keeps the step from
// waiting when filling a batch is cheaper than a step. When the step is slower, all free
// buffers end up filled and the workers sleep until one comes back.
#ifndef XOPTIM_TRAIN_LOADER_HPP
#define XOPTIM_TRAIN_LOADER_HPP

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace xoptim::train
{
    struct loader_options
    {
        std::size_t workers = 8;           // threads calling fill
        std::size_t capacity = 6;          // filled batches that may wait for the step
        std::size_t first = 0;             // index of the first batch (resuming at step N: N)
        std::optional<std::size_t> count;  // batches to deliver; none: endless
    };

    struct loader_stats
    {
        std::size_t workers = 0;
        std::size_t produced = 0;   // batches filled (successfully) by the workers
        std::size_t delivered = 0;  // batches next() has handed out
        double wait_seconds = 0;    // time the consumer spent blocked in next()
        double fill_seconds = 0;    // time spent in fill, summed over workers

        // Batches per second the workers sustain when all are busy: compare with the
        // step's rate to see the loader's headroom (wait_seconds near 0 says the same).
        double throughput() const noexcept
        {
            return fill_seconds > 0 ? static_cast<double>(produced) * static_cast<double>(workers) / fill_seconds
                                    : 0.0;
        }
    };

    namespace loader_detail
    {
        template <class Batch>
        struct shared_state;
    }

    // Batch: any type, default-constructible or given as a prototype that is copied into
    // each pool buffer (to size its vectors once, up front).
    //
    // fill(index, batch) is called from the worker threads, several at once (on different
    // batches), so it must be safe to call concurrently; for a deterministic run it
    // depends on `index` only (seed its random draws with it), not on what the buffer
    // held before. An exception it throws is rethrown by the next() that reaches that
    // index, after the batches before it were delivered; the loader is then stopped.
    //
    // next() and the handles are meant for one consumer thread; stop() may be called
    // from any thread.
    template <class Batch>
    class batch_loader
    {
    public:

        using fill_function = std::function<void(std::size_t index, Batch& batch)>;

        // A delivered batch. Owns its buffer until released (or destroyed): then the
        // buffer goes back to the pool for the workers. Move-only; may outlive the loader.
        class handle
        {
        public:

            handle() noexcept = default;
            handle(handle&& other) noexcept;
            handle& operator=(handle&& other) noexcept;
            handle(const handle&) = delete;
            handle& operator=(const handle&) = delete;

            ~handle()
            {
                release();
            }

            // False for the handle next() returns at the end or after stop().
            explicit operator bool() const noexcept
            {
                return m_state != nullptr;
            }

            Batch& operator*() const noexcept;
            Batch* operator->() const noexcept;

            Batch& get() const noexcept
            {
                return **this;
            }

            // The batch's index: first, first + 1, ...
            std::size_t index() const noexcept
            {
                return m_index;
            }

            // Gives the buffer back now; the handle is then empty.
            void release() noexcept;

        private:

            friend class batch_loader;

            handle(std::shared_ptr<loader_detail::shared_state<Batch>> state, std::size_t buffer,
                   std::size_t index) noexcept
                : m_state(std::move(state)), m_buffer(buffer), m_index(index)
            {
            }

            std::shared_ptr<loader_detail::shared_state<Batch>> m_state;
            std::size_t m_buffer = 0;
            std::size_t m_index = 0;
        };

        // Starts the workers. Throws std::invalid_argument where fill is empty or workers
        // or capacity is 0.
        explicit batch_loader(fill_function fill, const loader_options& options = {}, const Batch& prototype = Batch());

        batch_loader(batch_loader&&) noexcept = default;
        batch_loader& operator=(batch_loader&& other) noexcept;
        batch_loader(const batch_loader&) = delete;
        batch_loader& operator=(const batch_loader&) = delete;

        // Stops and joins the workers.
        ~batch_loader()
        {
            stop();
        }

        // The next batch in index order, waiting for it where it is not filled yet; an empty
        // handle after the last batch (with a count) or once stopped. Rethrows the exception
        // fill threw for this index (and stops). Throws std::logic_error where the caller
        // holds every buffer of the pool, since waiting would never end.
        handle next();

        // Wakes and joins the workers: at once where they wait for a buffer, after their
        // current fill where they are filling (a fill is never interrupted). Batches not
        // delivered are dropped; next() returns empty handles from now on. Idempotent; may
        // be called from any thread but a worker (not from inside fill: it would join itself).
        void stop();

        loader_stats stats() const;

        // The pool size: capacity + workers + 1.
        std::size_t buffers() const noexcept;

    private:

        std::shared_ptr<loader_detail::shared_state<Batch>> m_state;
    };

    namespace loader_detail
    {
        using clock = std::chrono::steady_clock;

        // Everything the workers and the handles share. The loader keeps it alive until
        // the workers are joined; handles keep it alive after that, so a handle may outlive
        // its loader.
        template <class Batch>
        struct shared_state
        {
            // A claimed index whose fill has finished: its buffer and what fill threw.
            struct slot
            {
                std::size_t buffer = 0;
                std::exception_ptr error;
                bool ready = false;
            };

            static constexpr std::size_t none = std::numeric_limits<std::size_t>::max();

            void work();

            slot& slot_of(std::size_t index) noexcept
            {
                // Indices in [next_deliver, next_claim) each hold a distinct buffer, so at
                // most buffers.size() of them are live at once and the ring never collides.
                return ring[(index - first) % ring.size()];
            }

            typename batch_loader<Batch>::fill_function fill;
            std::vector<Batch> buffers;
            std::vector<std::size_t> free;  // reserved at the pool size: push/pop never allocate
            std::vector<slot> ring;
            std::size_t first = 0;
            std::size_t end = none;  // one past the last index; `none` when endless
            std::size_t worker_count = 0;

            std::mutex mutex;                   // guards everything below and `free`, `ring`
            std::condition_variable work_cv;    // a buffer came back, or stopping
            std::condition_variable ready_cv;   // the awaited index is filled, or stopping
            std::size_t next_claim = 0;
            std::size_t next_deliver = 0;
            bool failed = false;  // some fill threw: claim nothing more
            bool stopping = false;
            std::size_t produced = 0;
            std::size_t delivered = 0;
            double wait_seconds = 0;
            double fill_seconds = 0;

            std::mutex join_mutex;  // stop() may be called from two threads at once
            std::vector<std::thread> threads;
        };

        template <class Batch>
        void shared_state<Batch>::work()
        {
            std::unique_lock<std::mutex> lock(mutex);
            for (;;)
            {
                work_cv.wait(lock, [this] { return stopping || failed || next_claim >= end || !free.empty(); });
                if (stopping || failed || next_claim >= end)
                {
                    return;
                }
                // Index and buffer are taken together, in index order: the lowest index
                // not yet delivered is always being filled or next to be claimed.
                const std::size_t index = next_claim++;
                const std::size_t buffer = free.back();
                free.pop_back();
                if (next_claim >= end)
                {
                    work_cv.notify_all();  // the others waiting for a buffer can leave
                }
                lock.unlock();

                std::exception_ptr error;
                const auto start = clock::now();
                try
                {
                    fill(index, buffers[buffer]);
                }
                catch (...)
                {
                    error = std::current_exception();
                }
                const std::chrono::duration<double> took = clock::now() - start;

                lock.lock();
                fill_seconds += took.count();
                slot& s = slot_of(index);
                s.buffer = buffer;
                s.ready = true;
                if (error)
                {
                    s.error = std::move(error);
                    failed = true;
                    work_cv.notify_all();
                }
                else
                {
                    ++produced;
                }
                if (index == next_deliver)
                {
                    ready_cv.notify_all();
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Definitions

    template <class Batch>
    batch_loader<Batch>::handle::handle(handle&& other) noexcept
        : m_state(std::move(other.m_state)), m_buffer(other.m_buffer), m_index(other.m_index)
    {
    }

    template <class Batch>
    auto batch_loader<Batch>::handle::operator=(handle&& other) noexcept -> handle&
    {
        if (this != &other)
        {
            release();
            m_state = std::move(other.m_state);
            m_buffer = other.m_buffer;
            m_index = other.m_index;
        }
        return *this;
    }

    template <class Batch>
    Batch& batch_loader<Batch>::handle::operator*() const noexcept
    {
        return m_state->buffers[m_buffer];
    }

    template <class Batch>
    Batch* batch_loader<Batch>::handle::operator->() const noexcept
    {
        return &m_state->buffers[m_buffer];
    }

    template <class Batch>
    void batch_loader<Batch>::handle::release() noexcept
    {
        if (m_state == nullptr)
        {
            return;
        }
        {
            std::lock_guard<std::mutex> lock(m_state->mutex);
            m_state->free.push_back(m_buffer);
        }
        m_state->work_cv.notify_one();
        m_state.reset();
    }

    template <class Batch>
    batch_loader<Batch>::batch_loader(fill_function fill, const loader_options& options, const Batch& prototype)
    {
        if (!fill)
        {
            throw std::invalid_argument("xoptim::train::batch_loader: the fill function is empty");
        }
        if (options.workers == 0)
        {
            throw std::invalid_argument("xoptim::train::batch_loader: workers must be at least 1, got 0");
        }
        if (options.capacity == 0)
        {
            throw std::invalid_argument("xoptim::train::batch_loader: capacity must be at least 1, got 0");
        }
        if (options.capacity > std::numeric_limits<std::size_t>::max() - options.workers - 1)
        {
            throw std::invalid_argument("xoptim::train::batch_loader: capacity " + std::to_string(options.capacity)
                                        + " with " + std::to_string(options.workers)
                                        + " workers is a pool of more buffers than a size_t counts");
        }
        auto state = std::make_shared<loader_detail::shared_state<Batch>>();
        state->fill = std::move(fill);
        state->first = options.first;
        state->next_claim = options.first;
        state->next_deliver = options.first;
        if (options.count)
        {
            const std::size_t room = loader_detail::shared_state<Batch>::none - options.first;
            state->end = options.first + std::min(*options.count, room);
        }
        // No more threads than batches: a short run does not start idle workers.
        state->worker_count = std::min(options.workers, state->end - state->first);
        const std::size_t pool = options.capacity + state->worker_count + 1;
        state->buffers.assign(pool, prototype);
        state->ring.resize(pool);
        state->free.reserve(pool);
        for (std::size_t i = pool; i-- > 0;)
        {
            state->free.push_back(i);  // buffer 0 is taken first
        }
        m_state = std::move(state);
        try
        {
            m_state->threads.reserve(m_state->worker_count);
            for (std::size_t i = 0; i < m_state->worker_count; ++i)
            {
                m_state->threads.emplace_back([s = m_state.get()] { s->work(); });
            }
        }
        catch (...)
        {
            stop();
            throw;
        }
    }

    template <class Batch>
    batch_loader<Batch>& batch_loader<Batch>::operator=(batch_loader&& other) noexcept
    {
        if (this != &other)
        {
            stop();
            m_state = std::move(other.m_state);
        }
        return *this;
    }

    template <class Batch>
    auto batch_loader<Batch>::next() -> handle
    {
        if (m_state == nullptr)
        {
            return handle();
        }
        auto& s = *m_state;
        std::unique_lock<std::mutex> lock(s.mutex);
        const auto ready = [&s] { return s.stopping || s.next_deliver >= s.end || s.slot_of(s.next_deliver).ready; };
        if (!ready())
        {
            // Not claimed yet with no free buffer: every buffer is in a handle (claims are
            // in order, so none is filled or filling), and only a release could help.
            if (s.next_claim == s.next_deliver && s.free.empty())
            {
                throw std::logic_error("xoptim::train::batch_loader::next: the caller holds all "
                                       + std::to_string(s.buffers.size())
                                       + " batch buffers; release a batch before asking for the next");
            }
            const auto start = loader_detail::clock::now();
            s.ready_cv.wait(lock, ready);
            const std::chrono::duration<double> waited = loader_detail::clock::now() - start;
            s.wait_seconds += waited.count();
        }
        if (s.stopping || s.next_deliver >= s.end)
        {
            return handle();
        }
        auto& slot = s.slot_of(s.next_deliver);
        slot.ready = false;
        const std::size_t index = s.next_deliver++;
        if (slot.error)
        {
            const std::exception_ptr error = std::move(slot.error);
            slot.error = nullptr;
            s.free.push_back(slot.buffer);
            lock.unlock();
            stop();
            std::rethrow_exception(error);
        }
        ++s.delivered;
        return handle(m_state, slot.buffer, index);
    }

    template <class Batch>
    void batch_loader<Batch>::stop()
    {
        if (m_state == nullptr)
        {
            return;
        }
        auto& s = *m_state;
        {
            std::lock_guard<std::mutex> lock(s.mutex);
            s.stopping = true;
        }
        s.work_cv.notify_all();
        s.ready_cv.notify_all();
        std::lock_guard<std::mutex> join_lock(s.join_mutex);
        for (std::thread& t : s.threads)
        {
            if (t.joinable())
            {
                t.join();
            }
        }
    }

    template <class Batch>
    loader_stats batch_loader<Batch>::stats() const
    {
        loader_stats out;
        if (m_state == nullptr)
        {
            return out;
        }
        std::lock_guard<std::mutex> lock(m_state->mutex);
        out.workers = m_state->worker_count;
        out.produced = m_state->produced;
        out.delivered = m_state->delivered;
        out.wait_seconds = m_state->wait_seconds;
        out.fill_seconds = m_state->fill_seconds;
        return out;
    }

    template <class Batch>
    std::size_t batch_loader<Batch>::buffers() const noexcept
    {
        return m_state == nullptr ? 0 : m_state->buffers.size();
    }
}

#endif
