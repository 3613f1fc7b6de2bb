// Sparse embedding rows (the two-optimizer setup of SPEC section 3): SignSGD on an
// embedding table whose gradient comes as (row ids, row gradients). Only the rows a
// batch touched are decayed and updated; a row id given several times has its
// gradients summed first (in the order given, so results are deterministic).
//
//     xoptim::sparse_signsgd emb({/*lr*/ 100 * main_lr, /*weight_decay*/ 0.1});
//     emb.step(table, ids, row_grads);   // table (rows, dim), row_grads (ids.size(), dim)
#ifndef XOPTIM_OPTIM_SPARSE_HPP
#define XOPTIM_OPTIM_SPARSE_HPP

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "signsgd.hpp"

namespace xoptim
{
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

        // `table` is (rows, dim); `row_grads` holds ids.size() rows of dim, row k the
        // gradient of table row ids[k]. Checks everything before changing anything.
        template <class Table, class Grads>
        void step(Table& table, const std::vector<std::int64_t>& ids, const Grads& row_grads);

    private:

        template <class T>
        job_list<T>& jobs() noexcept
        {
            if constexpr (std::is_same_v<T, float>)
            {
                return m_float_jobs;
            }
            else
            {
                return m_double_jobs;
            }
        }

        signsgd_options m_o;
        std::vector<std::pair<std::int64_t, std::size_t>> m_order;  // (row id, position), sorted
        std::vector<unsigned char> m_sums;                          // summed rows, element type T
        job_list<float> m_float_jobs;
        job_list<double> m_double_jobs;
    };

    template <class Table, class Grads>
    void sparse_signsgd::step(Table& table, const std::vector<std::int64_t>& ids, const Grads& row_grads)
    {
        using T = tensor::value_type<Table>;
        static_assert(std::is_same_v<T, tensor::value_type<Grads>>,
                      "xoptim: row gradients must have the table's element type");
        const auto fail = [](const std::string& what) {
            throw std::invalid_argument("xoptim::sparse_signsgd: " + what);
        };
        if (tensor::rank(table) != 2)
        {
            fail("the table must be 2-D (rows, dim), got " + format_shape(tensor::shape(table)));
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
        list.clear();
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
        run_program(fuse(signsgd::assignment(m_o)), list);
    }
}

#endif
