// Sparse embedding rows (the two-optimizer setup of SPEC section 3): SignSGD on an
// embedding table whose gradient comes as (row ids, row gradients). Only the rows a
// batch touched are decayed and updated; a row id given several times has its
// gradients summed first (in the order given, so results are deterministic).
//
//     xoptim::sparse_signsgd emb({/*lr*/ 100 * main_lr, /*weight_decay*/ 0.1});
//     emb.step(table, ids, row_grads);   // table (rows, dim), row_grads (ids.size(), dim)
//
// The whole setup, SignSGD on the table and AdamW (lr 1e-4, betas (0.9, 0.95), wd 0.1)
// on everything else, as one optimizer (the table's lr stays 100x AdamW's, also when
// AdamW's lr follows a schedule: dense().schedule("lr", ...)). The table must not be
// among the dense parameters too.
//
//     xoptim::sparse_embedding_optimizer opt;   // embedding lr = 100 x AdamW's lr
//     opt.step(table, ids, row_grads, params, grads);
#ifndef XOPTIM_OPTIM_SPARSE_HPP
#define XOPTIM_OPTIM_SPARSE_HPP

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "adam.hpp"
#include "signsgd.hpp"

namespace xoptim
{
    namespace detail
    {
        // The table's and row gradients' types, each mistake in a sentence of its own.
        template <class Table, class Grads>
        constexpr bool check_sparse_table() noexcept
        {
            using T = tensor::value_type<Table>;
            constexpr bool number = std::is_same_v<T, float> || std::is_same_v<T, double>;
            constexpr bool writable = mutable_tensor_v<Table>;
            constexpr bool same = std::is_same_v<T, tensor::value_type<Grads>>;
            static_assert(number, "xoptim: sparse_signsgd's table must be a float or double tensor");
            static_assert(writable, "xoptim: sparse_signsgd's table must be mutable (got a const tensor)");
            static_assert(!number || same, "xoptim: row gradients must have the table's element type");
            return number && writable && same;
        }
    }

    class sparse_signsgd
    {
    public:

        explicit sparse_signsgd(const signsgd_options& o = {})
            : m_o(signsgd(o).options())  // the dense optimizer checks the options
        {
        }

        const signsgd_options& options() const noexcept
        {
            return m_o;
        }

        void set_options(const signsgd_options& o)
        {
            signsgd::check(o);
            m_o = o;
        }

        // `table` is (rows, dim); `row_grads` holds ids.size() rows of dim, row k the
        // gradient of table row ids[k]. Checks everything before changing anything.
        template <class Table, class Grads>
        void step(Table& table, const std::vector<std::int64_t>& ids, const Grads& row_grads)
        {
            if constexpr (detail::check_sparse_table<Table, Grads>())
            {
                prepare(table, ids, row_grads);
                commit<tensor::value_type<Table>>();
            }
        }

        // The step in two phases, as the dense optimizers: prepare checks everything
        // and sums duplicate rows, changing nothing; commit updates the rows. The
        // table, ids and gradients must stay alive in between.
        template <class Table, class Grads>
        void prepare(Table& table, const std::vector<std::int64_t>& ids, const Grads& row_grads)
        {
            if constexpr (detail::check_sparse_table<Table, Grads>())
            {
                prepare_rows(table, ids, row_grads);
            }
        }

        template <class T>
        void commit()
        {
            run_program(fuse(signsgd::assignment(m_o)), jobs<T>());
            jobs<T>().clear();  // a second commit without a prepare changes nothing
        }

    private:

        template <class Table, class Grads>
        void prepare_rows(Table& table, const std::vector<std::int64_t>& ids, const Grads& row_grads);

        template <class T>
        job_list<T>& jobs() noexcept
        {
            return detail::by_type<T>(m_float_jobs, m_double_jobs);
        }

        signsgd_options m_o;
        std::vector<std::pair<std::int64_t, std::size_t>> m_order;  // (row id, position), sorted
        std::vector<unsigned char> m_sums;                          // summed rows, element type T
        job_list<float> m_float_jobs;
        job_list<double> m_double_jobs;
    };

    template <class Table, class Grads>
    void sparse_signsgd::prepare_rows(Table& table, const std::vector<std::int64_t>& ids, const Grads& row_grads)
    {
        using T = tensor::value_type<Table>;
        m_float_jobs.clear();
        m_double_jobs.clear();
        const auto fail = [](const std::string& what) {
            throw std::invalid_argument("xoptim::sparse_signsgd: " + what);
        };
        if (tensor::rank(table) != 2)
        {
            fail("the table must be 2-D (rows, dim), got " + format_shape(tensor::shape(table)));
        }
        // Rows are read at data + id * dim: a strided view would have other elements there.
        if (!tensor::contiguous(table))
        {
            fail("the table is not contiguous (a strided view cannot be stepped in place)");
        }
        if (!tensor::contiguous(row_grads))
        {
            fail("the row gradients are not contiguous");
        }
        const std::size_t rows = tensor::extent(table, 0);
        const std::size_t dim = tensor::extent(table, 1);
        if (tensor::size(row_grads) != ids.size() * dim)
        {
            fail("row gradients have " + std::to_string(tensor::size(row_grads)) + " elements, expected "
                 + std::to_string(ids.size()) + " ids x " + std::to_string(dim));
        }
        m_order.clear();
        for (std::size_t k = 0; k < ids.size(); ++k)
        {
            if (ids[k] < 0 || std::size_t(ids[k]) >= rows)
            {
                fail("row id " + std::to_string(ids[k]) + " at position " + std::to_string(k)
                     + " is outside the table's " + std::to_string(rows) + " rows");
            }
            m_order.emplace_back(ids[k], k);
        }
        std::sort(m_order.begin(), m_order.end());

        // One summed gradient row per distinct id.
        m_sums.resize(m_order.size() * dim * sizeof(T));
        T* sums = reinterpret_cast<T*>(m_sums.data());
        T* table_data = tensor::data(table);
        const T* grads = tensor::data(row_grads);
        job_list<T>& list = jobs<T>();
        std::size_t unique = 0;
        for (std::size_t k = 0; k < m_order.size(); ++unique)
        {
            T* sum = sums + unique * dim;
            const std::int64_t id = m_order[k].first;
            std::copy(grads + m_order[k].second * dim, grads + (m_order[k].second + 1) * dim, sum);
            for (++k; k < m_order.size() && m_order[k].first == id; ++k)
            {
                const T* g = grads + m_order[k].second * dim;
                for (std::size_t j = 0; j < dim; ++j)
                {
                    sum[j] += g[j];
                }
            }
            tensor_slots<T> slots;
            slots.param = table_data + std::size_t(id) * dim;
            slots.grad = sum;
            slots.size = dim;
            list.push_back(slots);
        }
    }

    namespace detail
    {
        // The first tensor of a walked set whose memory meets bytes [begin, end): "dense
        // parameter 'NAME'" or "gradient of dense parameter 'NAME'", or empty. It walks a
        // set a step has walked already (its structure is checked).
        struct overlap_finder
        {
            std::uintptr_t begin;
            std::uintptr_t end;
            std::string found;

            template <class P, class G>
            void leaf(const name_path& path, P& param, G& grad)
            {
                if (!found.empty())
                {
                    return;
                }
                if (meets(tensor::data(param), tensor::size(param)))
                {
                    found = "dense parameter '" + path.name() + "'";
                }
                else if constexpr (!std::is_same_v<std::remove_const_t<G>, no_grads>)
                {
                    if (meets(tensor::data(grad), tensor::size(grad)))
                    {
                        found = "gradient of dense parameter '" + path.name() + "'";
                    }
                }
            }

            [[noreturn]] void mismatch(const name_path& path, const std::string& what) const
            {
                throw std::invalid_argument("xoptim::sparse_embedding_optimizer: parameter '" + path.name()
                                            + "': " + what);
            }

            template <class T>
            bool meets(const T* data, std::size_t n) const noexcept
            {
                const auto at = reinterpret_cast<std::uintptr_t>(data);
                return n > 0 && at < end && begin < at + n * sizeof(T);
            }

            template <class X>
            static overlap_finder of(const X& x) noexcept
            {
                const auto at = reinterpret_cast<std::uintptr_t>(tensor::data(x));
                return {at, at + tensor::size(x) * sizeof(tensor::value_type<X>), {}};
            }
        };
    }

    struct sparse_embedding_options
    {
        // AdamW on everything but the table; its lr is the main learning rate.
        adamw_options adamw = {1e-4, {0.9, 0.95}, 1e-8, 0.1};
        double embedding_lr_ratio = 100;     // SignSGD's lr = ratio x adamw.lr
        double embedding_weight_decay = 0.1;
    };

    // SignSGD on the rows of an embedding table that a batch touched, AdamW on the
    // other parameters, in one step that changes nothing unless both halves check out.
    class sparse_embedding_optimizer
    {
    public:

        explicit sparse_embedding_optimizer(const sparse_embedding_options& o = {})
            : m_adamw(o.adamw), m_embedding(embedding_options(o)), m_ratio(o.embedding_lr_ratio)
        {
        }

        template <class Table, class Grads, class P, class G>
        void step(Table& table, const std::vector<std::int64_t>& ids, const Grads& row_grads, P&& params,
                  G&& grads)
        {
            if constexpr (detail::check_sparse_table<Table, Grads>())
            {
                step_checked(table, ids, row_grads, std::forward<P>(params), std::forward<G>(grads));
            }
        }

        adamw& dense() noexcept
        {
            return m_adamw;
        }

        sparse_signsgd& embedding() noexcept
        {
            return m_embedding;
        }

    private:

        template <class Table, class Grads, class P, class G>
        void step_checked(Table& table, const std::vector<std::int64_t>& ids, const Grads& row_grads, P&& params,
                          G&& grads)
        {
            detail::require_stepped_in_place<P>();
            m_adamw.prepare(std::forward<P>(params), std::forward<G>(grads));
            try
            {
                // The embedding's lr follows AdamW's, schedules included: set once both
                // halves checked out (prepare does not read it).
                m_embedding.prepare(table, ids, row_grads);
                check_apart(table, row_grads, params, grads);
                signsgd_options e = m_embedding.options();
                e.lr = m_ratio * m_adamw.options().lr;
                m_embedding.set_options(e);
            }
            catch (...)
            {
                m_adamw.abandon();
                throw;
            }
            m_adamw.commit();
            m_embedding.commit<tensor::value_type<Table>>();
        }

        // The table is not among the dense parameters or their gradients, and the row
        // gradients are not among the dense parameters: each half would write what the
        // other reads or writes.
        template <class Table, class Grads, class P, class G>
        static void check_apart(const Table& table, const Grads& row_grads, P& params, G& grads)
        {
            detail::overlap_finder t = detail::overlap_finder::of(table);
            walk_params(t, params, grads);
            detail::overlap_finder r = detail::overlap_finder::of(row_grads);
            walk_params(r, params, no_grads{});
            if (!t.found.empty() || !r.found.empty())
            {
                throw std::invalid_argument(std::string("xoptim::sparse_embedding_optimizer: the ")
                                            + (t.found.empty() ? "row gradients share" : "embedding table shares")
                                            + " memory with the " + (t.found.empty() ? r.found : t.found)
                                            + " (the table and its gradients must not be among the dense set)");
            }
        }

        static signsgd_options embedding_options(const sparse_embedding_options& o)
        {
            detail::require_non_negative(o.embedding_lr_ratio, "sparse_embedding_optimizer", "embedding_lr_ratio");
            return {o.embedding_lr_ratio * o.adamw.lr, o.embedding_weight_decay};
        }

        adamw m_adamw;
        sparse_signsgd m_embedding;
        double m_ratio;
    };
}

#endif
