// The communicator: what distributed training needs from MPI, as a small concept held
// by value. A communicator `c` of type C provides, for T in float, double,
// std::uint64_t and char:
//
//   int c.rank(), c.size()
//   c.allreduce_sum(T* data, n)                          in place, every rank gets the sum
//   c.iallreduce_sum(T* data, n, C::request& r)          the same, non-blocking
//   c.reduce_scatter_sum(const T* send, T* recv, counts) rank r gets the sum of block r;
//                                                        send holds the blocks in rank order
//   c.ireduce_scatter_sum(send, recv, counts, r)         the same, non-blocking
//   c.allgather(T* data, counts)                         in place: every rank's block (at its
//                                                        offset in data) goes to every rank
//   c.iallgather(data, counts, r)                        the same, non-blocking
//   c.gather(const T* send, n, T* recv, counts, root)    blocks of every rank to `root`
//   c.broadcast(T* data, n, root)
//   c.wait(C::request&), bool c.test(C::request&)
//
// `counts` points at size() block lengths (elements). A non-blocking call's buffers and
// its request must stay in place until wait (or a test that returns true). Every rank
// must call the collectives in the same order. A request is reused: a steady-state step
// allocates nothing.
//
// local_comm is the one-rank communicator: the same code runs in one process, with no
// MPI anywhere. mpi.hpp holds mpi_comm, over an MPI communicator.
#ifndef XOPTIM_DIST_COMM_HPP
#define XOPTIM_DIST_COMM_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace xoptim::dist
{
    // The element types a communicator moves.
    template <class T>
    inline constexpr bool is_comm_type_v = std::is_same_v<T, float> || std::is_same_v<T, double>
                                           || std::is_same_v<T, std::uint64_t> || std::is_same_v<T, char>;

    class local_comm
    {
    public:

        struct request
        {
        };

        int rank() const noexcept
        {
            return 0;
        }

        int size() const noexcept
        {
            return 1;
        }

        template <class T>
        void allreduce_sum(T*, std::size_t) const noexcept
        {
        }

        template <class T>
        void iallreduce_sum(T*, std::size_t, request&) const noexcept
        {
        }

        template <class T>
        void reduce_scatter_sum(const T* send, T* recv, const std::size_t* counts) const noexcept
        {
            copy(send, counts[0], recv);
        }

        template <class T>
        void ireduce_scatter_sum(const T* send, T* recv, const std::size_t* counts, request&) const noexcept
        {
            copy(send, counts[0], recv);
        }

        template <class T>
        void allgather(T*, const std::size_t*) const noexcept
        {
        }

        template <class T>
        void iallgather(T*, const std::size_t*, request&) const noexcept
        {
        }

        template <class T>
        void gather(const T* send, std::size_t n, T* recv, const std::size_t*, int) const noexcept
        {
            copy(send, n, recv);
        }

        template <class T>
        void broadcast(T*, std::size_t, int) const noexcept
        {
        }

        void wait(request&) const noexcept
        {
        }

        bool test(request&) const noexcept
        {
            return true;
        }

    private:

        template <class T>
        static void copy(const T* from, std::size_t n, T* to) noexcept
        {
            static_assert(is_comm_type_v<T>, "xoptim::dist: a communicator moves float, double, std::uint64_t or char");
            if (from != to && n > 0)
            {
                std::copy(from, from + n, to);
            }
        }
    };
}

#endif
