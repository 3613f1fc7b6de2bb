// The communicator over MPI (comm.hpp has the concept), and an RAII MPI session.
//
//     int main(int argc, char** argv) {
//         xoptim::dist::mpi_session session(argc, argv);   // or MPI_Init yourself
//         xoptim::dist::mpi_comm comm;                      // MPI_COMM_WORLD, duplicated
//         xoptim::dist::data_parallel dp(comm, xoptim::adamw());
//         ...
//     }
//
// xoptim never calls MPI_Init behind the user's back: an mpi_comm needs MPI initialized.
// It works on a duplicate of the user's communicator (MPI_Comm_dup: collective), so its
// collectives never interleave with the user's own; the duplicate is freed with the last
// copy of the mpi_comm (before MPI_Finalize: destroy xoptim's objects first, as a
// session declared before them does). Only MPI-3 calls are used (OpenMPI, MPICH). MPI's
// default error handler stays: an MPI error aborts the job.
//
// Link xoptim::mpi (CMake), which brings MPI::MPI_CXX.
#ifndef XOPTIM_DIST_MPI_HPP
#define XOPTIM_DIST_MPI_HPP

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <mpi.h>

#include "comm.hpp"

namespace xoptim::dist
{
    namespace detail
    {
        template <class T>
        MPI_Datatype mpi_type() noexcept
        {
            static_assert(is_comm_type_v<T>, "xoptim::dist: a communicator moves float, double, std::uint64_t or char");
            if constexpr (std::is_same_v<T, float>)
            {
                return MPI_FLOAT;
            }
            else if constexpr (std::is_same_v<T, double>)
            {
                return MPI_DOUBLE;
            }
            else if constexpr (std::is_same_v<T, std::uint64_t>)
            {
                return MPI_UINT64_T;
            }
            else
            {
                return MPI_CHAR;
            }
        }

        // MPI counts are int.
        inline int mpi_count(std::size_t n)
        {
            if (n > std::size_t(INT_MAX))
            {
                throw std::length_error("xoptim::dist::mpi_comm: " + std::to_string(n)
                                        + " elements in one call exceed MPI's int count (" + std::to_string(INT_MAX)
                                        + ")");
            }
            return static_cast<int>(n);
        }
    }

    // How mpi_comm's blocking reduce_scatter_sum runs (its non-blocking twin always uses
    // MPI_Ireduce_scatter(_block)). The result is the same; the time is not:
    //   rooted_reduces  one MPI_Reduce per block, rooted at the rank that receives it;
    //   collective      MPI_Reduce_scatter_block (equal blocks) or MPI_Reduce_scatter.
    // rooted_reduces is the default: with OpenMPI 4.1 over shared memory the collective
    // took 1.3-7.5x as long for 8-64 MB (docs/benchmarks.md, "Distributed"); an MPI whose
    // collective is the faster one can be asked for it.
    enum class reduce_scatter_algorithm
    {
        rooted_reduces,
        collective
    };

    class mpi_comm
    {
    public:

        // A non-blocking call's handle; keeps the int counts MPI reads until completion.
        class request
        {
        public:

            request() = default;
            request(const request&) = delete;
            request& operator=(const request&) = delete;
            request(request&&) noexcept = default;
            request& operator=(request&&) noexcept = default;

        private:

            friend class mpi_comm;
            MPI_Request m_request = MPI_REQUEST_NULL;
            std::vector<int> m_counts;
            std::vector<int> m_displs;
        };

        // The most elements one call moves (MPI's counts are int).
        static constexpr std::size_t max_count = std::size_t(INT_MAX);

        // Duplicates `comm` (collective over it). Throws std::logic_error if MPI is not
        // initialized.
        explicit mpi_comm(MPI_Comm comm = MPI_COMM_WORLD,
                          reduce_scatter_algorithm algorithm = reduce_scatter_algorithm::rooted_reduces)
            : m_algorithm(algorithm)
        {
            int initialized = 0;
            MPI_Initialized(&initialized);
            if (!initialized)
            {
                throw std::logic_error("xoptim::dist::mpi_comm: MPI is not initialized (call MPI_Init, or construct an "
                                       "xoptim::dist::mpi_session first)");
            }
            auto owned = std::make_shared<handle>();
            MPI_Comm_dup(comm, &owned->comm);
            MPI_Comm_rank(owned->comm, &m_rank);
            MPI_Comm_size(owned->comm, &m_size);
            m_handle = std::move(owned);
        }

        // What the ranks must agree on beyond the trainer's settings (data_parallel
        // checks it on the first step: ranks reducing in different ways would wait for
        // each other for ever).
        std::string settings() const
        {
            return std::string("reduce_scatter_algorithm ")
                   + (m_algorithm == reduce_scatter_algorithm::rooted_reduces ? "rooted_reduces" : "collective");
        }

        int rank() const noexcept
        {
            return m_rank;
        }

        int size() const noexcept
        {
            return m_size;
        }

        // The duplicate this communicator works on.
        MPI_Comm native() const noexcept
        {
            return m_handle->comm;
        }

        // Whether threads may call MPI at the same time (MPI_THREAD_MULTIPLE).
        bool concurrent() const noexcept
        {
            int provided = MPI_THREAD_SINGLE;
            MPI_Query_thread(&provided);
            return provided == MPI_THREAD_MULTIPLE;
        }

        template <class T>
        void allreduce_sum(T* data, std::size_t n) const
        {
            MPI_Allreduce(MPI_IN_PLACE, data, detail::mpi_count(n), detail::mpi_type<T>(), MPI_SUM, native());
        }

        template <class T>
        void iallreduce_sum(T* data, std::size_t n, request& r) const
        {
            MPI_Iallreduce(MPI_IN_PLACE, data, detail::mpi_count(n), detail::mpi_type<T>(), MPI_SUM, native(),
                           &r.m_request);
        }

        template <class T>
        void reduce_scatter_sum(const T* send, T* recv, const std::size_t* counts) const
        {
            if (m_algorithm == reduce_scatter_algorithm::rooted_reduces)
            {
                for (int k = 0; k < m_size; ++k)
                {
                    MPI_Reduce(send, k == m_rank ? recv : nullptr, detail::mpi_count(counts[k]), detail::mpi_type<T>(),
                               MPI_SUM, k, native());
                    send += counts[k];
                }
                return;
            }
            request& r = scratch();
            if (set_counts(r, counts, false))
            {
                MPI_Reduce_scatter_block(send, recv, r.m_counts[0], detail::mpi_type<T>(), MPI_SUM, native());
            }
            else
            {
                MPI_Reduce_scatter(send, recv, r.m_counts.data(), detail::mpi_type<T>(), MPI_SUM, native());
            }
        }

        template <class T>
        void ireduce_scatter_sum(const T* send, T* recv, const std::size_t* counts, request& r) const
        {
            if (set_counts(r, counts, false))
            {
                MPI_Ireduce_scatter_block(send, recv, r.m_counts[0], detail::mpi_type<T>(), MPI_SUM, native(),
                                          &r.m_request);
            }
            else
            {
                MPI_Ireduce_scatter(send, recv, r.m_counts.data(), detail::mpi_type<T>(), MPI_SUM, native(),
                                    &r.m_request);
            }
        }

        template <class T>
        void allgather(T* data, const std::size_t* counts) const
        {
            request& r = scratch();
            if (set_counts(r, counts, true))
            {
                MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, r.m_counts[0], detail::mpi_type<T>(), native());
            }
            else
            {
                MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, r.m_counts.data(), r.m_displs.data(),
                               detail::mpi_type<T>(), native());
            }
        }

        template <class T>
        void iallgather(T* data, const std::size_t* counts, request& r) const
        {
            if (set_counts(r, counts, true))
            {
                MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, r.m_counts[0], detail::mpi_type<T>(), native(),
                               &r.m_request);
            }
            else
            {
                MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, r.m_counts.data(), r.m_displs.data(),
                                detail::mpi_type<T>(), native(), &r.m_request);
            }
        }

        // Rank `root` receives every rank's n elements at recv, in rank order (counts and
        // recv are read at the root only). One MPI_Gatherv where they add up to at most
        // `most` (max_count: MPI_Gatherv's displacements are int too), otherwise messages
        // of at most `most` elements, rank after rank. The total comes from an allreduce.
        template <class T>
        void gather(const T* send, std::size_t n, T* recv, const std::size_t* counts, int root,
                    std::size_t most = max_count) const
        {
            std::uint64_t total = n;
            allreduce_sum(&total, 1);
            most = std::max<std::size_t>(1, std::min(most, max_count));
            if (total <= most)
            {
                request& r = scratch();
                if (m_rank == root)
                {
                    set_counts(r, counts, true);
                }
                MPI_Gatherv(send, detail::mpi_count(n), detail::mpi_type<T>(), recv, r.m_counts.data(),
                            r.m_displs.data(), detail::mpi_type<T>(), root, native());
                return;
            }
            const auto part = [&](std::size_t length, std::size_t at) { return int(std::min(most, length - at)); };
            if (m_rank != root)
            {
                for (std::size_t at = 0; at < n; at += most)
                {
                    MPI_Send(send + at, part(n, at), detail::mpi_type<T>(), root, gather_tag, native());
                }
                return;
            }
            std::size_t offset = 0;
            for (int k = 0; k < m_size; ++k)
            {
                const std::size_t length = counts[k];
                if (k == m_rank)
                {
                    std::copy(send, send + n, recv + offset);
                }
                for (std::size_t at = 0; k != m_rank && at < length; at += most)
                {
                    MPI_Recv(recv + offset + at, part(length, at), detail::mpi_type<T>(), k, gather_tag, native(),
                             MPI_STATUS_IGNORE);
                }
                offset += length;
            }
        }

        template <class T>
        void broadcast(T* data, std::size_t n, int root) const
        {
            MPI_Bcast(data, detail::mpi_count(n), detail::mpi_type<T>(), root, native());
        }

        void wait(request& r) const
        {
            MPI_Wait(&r.m_request, MPI_STATUS_IGNORE);
        }

        // True when the call has completed (its buffers may be used); drives MPI's progress.
        bool test(request& r) const
        {
            int done = 0;
            MPI_Test(&r.m_request, &done, MPI_STATUS_IGNORE);
            return done != 0;
        }

    private:

        // The tag of gather's messages (the only point-to-point messages on the duplicate).
        static constexpr int gather_tag = 1;

        struct handle
        {
            MPI_Comm comm = MPI_COMM_NULL;

            handle() = default;
            handle(const handle&) = delete;
            handle& operator=(const handle&) = delete;

            ~handle()
            {
                int finalized = 0;
                MPI_Finalized(&finalized);
                if (!finalized && comm != MPI_COMM_NULL)
                {
                    MPI_Comm_free(&comm);
                }
            }
        };

        // The counts of a blocking call, kept per thread: a steady state allocates nothing.
        static request& scratch()
        {
            thread_local request r;
            return r;
        }

        // Fills r's int counts (and displacements when asked); true if all are equal.
        bool set_counts(request& r, const std::size_t* counts, bool displacements) const
        {
            const auto n = static_cast<std::size_t>(m_size);
            r.m_counts.resize(n);
            r.m_displs.resize(displacements ? n : 0);
            std::size_t offset = 0;
            bool equal = true;
            for (std::size_t k = 0; k < n; ++k)
            {
                r.m_counts[k] = detail::mpi_count(counts[k]);
                if (displacements)
                {
                    r.m_displs[k] = detail::mpi_count(offset);
                }
                offset += counts[k];
                equal = equal && counts[k] == counts[0];
            }
            return equal;
        }

        std::shared_ptr<handle> m_handle;
        reduce_scatter_algorithm m_algorithm;
        int m_rank = 0;
        int m_size = 1;
    };

    // MPI_Init_thread on construction and MPI_Finalize on destruction, unless MPI was
    // already initialized (then it does neither). Declare it before xoptim's objects. It
    // asks for MPI_THREAD_MULTIPLE: data_parallel then runs the gradients' collectives on
    // a thread of their own (options::progress_thread).
    class mpi_session
    {
    public:

        mpi_session(int& argc, char**& argv, int required = MPI_THREAD_MULTIPLE)
        {
            start(&argc, &argv, required);
        }

        explicit mpi_session(int required = MPI_THREAD_MULTIPLE)
        {
            start(nullptr, nullptr, required);
        }

        mpi_session(const mpi_session&) = delete;
        mpi_session& operator=(const mpi_session&) = delete;

        ~mpi_session()
        {
            int finalized = 0;
            MPI_Finalized(&finalized);
            if (m_owner && !finalized)
            {
                MPI_Finalize();
            }
        }

        // The thread support MPI gave (MPI_THREAD_SINGLE ... MPI_THREAD_MULTIPLE).
        int thread_level() const noexcept
        {
            return m_provided;
        }

    private:

        void start(int* argc, char*** argv, int required)
        {
            int initialized = 0;
            MPI_Initialized(&initialized);
            if (!initialized)
            {
                MPI_Init_thread(argc, argv, required, &m_provided);
                m_owner = true;
            }
            else
            {
                MPI_Query_thread(&m_provided);
            }
        }

        int m_provided = MPI_THREAD_SINGLE;
        bool m_owner = false;
    };
}

#endif
