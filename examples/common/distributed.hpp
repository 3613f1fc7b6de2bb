// --data-parallel for the examples: `mpiexec -n N EXAMPLE --data-parallel` trains on N
// ranks, each on its share of every batch, with ZeRO-1 (sharded optimizer states; Muon's
// matrices owned whole by ranks). Rank 0 prints and writes; the others stay quiet.
// Built without MPI, --data-parallel is refused with a message.
#ifndef XOPTIM_EXAMPLES_DISTRIBUTED_HPP
#define XOPTIM_EXAMPLES_DISTRIBUTED_HPP

#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include <xoptim/dist/checkpoint.hpp>
#include <xoptim/dist/data_parallel.hpp>
#include <xoptim/step/stepper.hpp>
#ifdef XOPTIM_EXAMPLES_MPI
#include <xoptim/dist/mpi.hpp>
#endif

namespace examples
{
    class cluster
    {
    public:

        cluster(bool data_parallel, int& argc, char**& argv)
        {
            if (!data_parallel)
            {
                return;
            }
#ifdef XOPTIM_EXAMPLES_MPI
            m_session = std::make_unique<xoptim::dist::mpi_session>(argc, argv);
            m_comm = std::make_unique<xoptim::dist::mpi_comm>(MPI_COMM_WORLD);
            m_rank = m_comm->rank();
            m_size = m_comm->size();
            if (m_rank != 0 && std::freopen("/dev/null", "w", stdout) == nullptr)
            {
                std::cout.rdbuf(nullptr);  // rank 0 speaks for all
            }
#else
            (void)argc;
            (void)argv;
            throw std::invalid_argument("--data-parallel: this example is built without MPI");
#endif
        }

        int rank() const noexcept
        {
            return m_rank;
        }

        int size() const noexcept
        {
            return m_size;
        }

        // Waits until every rank is here.
        void barrier() const
        {
            mean(0.0);
        }

        // This rank's rows of a batch of `rows`: [first, first + count).
        std::pair<std::size_t, std::size_t> share(std::size_t rows) const noexcept
        {
            const std::size_t r = std::size_t(rank()), n = std::size_t(size());
            return {rows * r / n, rows * (r + 1) / n - rows * r / n};
        }

        // Refuses a batch of `rows` that leaves a rank without rows of its own; `what`
        // names the batch's size in the message (an option, say).
        void require_rows(std::size_t rows, const std::string& what) const
        {
            if (rows < std::size_t(size()))
            {
                throw std::invalid_argument(
                    what + " must be at least the " + std::to_string(size())
                    + " ranks of --data-parallel, each of which trains on its share of a batch (got "
                    + std::to_string(rows) + ")");
            }
        }

        // The mean over ranks of a number (a loss).
        double mean(double x) const
        {
#ifdef XOPTIM_EXAMPLES_MPI
            if (m_comm)
            {
                m_comm->allreduce_sum(&x, 1);
                return x / double(m_comm->size());
            }
#endif
            return x;
        }

        // Calls f(trainer): a stepper around `opt` in one process, a ZeRO-1 data_parallel
        // around that stepper with --data-parallel (its assignment printed first).
        template <class Optimizer, class F>
        void with_trainer(Optimizer opt, const xoptim::stepper_options& o, F&& f) const
        {
            xoptim::stepper<Optimizer> step(std::move(opt), o);
#ifdef XOPTIM_EXAMPLES_MPI
            if (m_comm)
            {
                xoptim::dist::options d;
                d.mode = xoptim::dist::mode::zero1;
                xoptim::dist::data_parallel dp(*m_comm, std::move(step), d);
                f(dp);
                return;
            }
#endif
            f(step);
        }

    private:

        int m_rank = 0;
        int m_size = 1;
#ifdef XOPTIM_EXAMPLES_MPI
        std::unique_ptr<xoptim::dist::mpi_session> m_session;
        std::unique_ptr<xoptim::dist::mpi_comm> m_comm;
#endif
    };

    // The assignment of a distributed trainer after its first step (nothing otherwise).
    template <class Trainer>
    std::string assignment_of(const Trainer&)
    {
        return {};
    }

    template <class T, class C>
    std::string assignment_of(const xoptim::dist::data_parallel<T, C>& dp)
    {
        return dp.assignment();
    }
}

#endif
