// The project's instantiation unit of test_compiled (include/xoptim/compiled.hpp): the steps
// compiled<O> runs, compiled here once; and the direct steps the test compares them with.
// Muon's needs a CBLAS linked.
#define XOPTIM_INSTANTIATE
#include <xoptim/instances.hpp>
#include <xoptim/instances_muon.hpp>
#include <xoptim/io/checkpoint.hpp>

#include <algorithm>
#include <cmath>

#include "compiled_net.hpp"

namespace compiled_test
{
    // Values of both signs and several magnitudes, from a fixed recurrence.
    class values
    {
    public:

        explicit values(unsigned seed)
            : m_state(seed)
        {
        }

        template <class T>
        void fill(std::vector<T>& x)
        {
            for (auto& e : x)
            {
                m_state = m_state * 1664525u + 1013904223u;
                e = T((double(m_state >> 8) / double(1u << 24) - 0.5) * std::ldexp(1.0, int(m_state % 7) - 3));
            }
        }

    private:

        unsigned m_state;
    };

    net make_net(unsigned seed)
    {
        net n{std::vector<float>(37), std::vector<double>(5), {std::vector<float>(1), std::vector<float>(16)}, {}};
        values v(seed);
        v.fill(n.w);
        v.fill(n.b);
        v.fill(n.layers[0]);
        v.fill(n.layers[1]);
        return n;
    }

    matrices make_matrices(unsigned seed)
    {
        matrices m{std::vector<float>(8 * 6), std::vector<double>(5 * 7)};
        values v(seed);
        v.fill(m.a);
        v.fill(m.b);
        return m;
    }

    template <class O>
    std::vector<std::string> state_names(const O& o)
    {
        std::vector<std::string> names;
        for (std::size_t k = 0; k < o.state().size(); ++k)
        {
            names.push_back(o.state()[k].name);
        }
        std::sort(names.begin(), names.end());
        return names;
    }

    template <class O>
    std::vector<std::string> step_directly(const typename xoptim::compiled<O>::options_type& o, net& params,
                                           const net& grads, int steps)
    {
        O opt(o);
        for (int s = 0; s < steps; ++s)
        {
            opt.step(params, grads);
        }
        return state_names(opt);
    }

    std::vector<std::string> step_matrices_directly(const xoptim::muon_options& o, matrices& params,
                                                    const matrices& grads, int steps)
    {
        xoptim::muon opt(o);
        auto p = matrix_views(params);
        const auto g = matrix_views(grads);
        for (int s = 0; s < steps; ++s)
        {
            opt.step(p, g);
        }
        return state_names(opt);
    }

    void init_through_optimizer(xoptim::compiled<xoptim::adamw>& opt, net& params)
    {
        opt.optimizer().init(params);
    }

    void restart_through_optimizer(xoptim::compiled<xoptim::adamw>& opt, net& params)
    {
        opt.optimizer() = xoptim::adamw();
        opt.optimizer().init(params);
    }

    void checkpoint_through_optimizer(const std::string& file, net& from_params, xoptim::compiled<xoptim::adamw>& from,
                                      net& to_params, xoptim::compiled<xoptim::adamw>& to)
    {
        xoptim::save_checkpoint(file, from_params, from.optimizer());
        xoptim::load_checkpoint(file, to_params, to.optimizer());
    }

#define XOPTIM_COMPILED_TEST_INSTANCES(O)                                                                            \
    template std::vector<std::string> state_names<O>(const O&);                                                      \
    template std::vector<std::string> step_directly<O>(const xoptim::compiled<O>::options_type&, net&, const net&, \
                                                       int);

    XOPTIM_COMPILED_TEST_INSTANCES(xoptim::adamw)
    XOPTIM_COMPILED_TEST_INSTANCES(xoptim::adam)
    XOPTIM_COMPILED_TEST_INSTANCES(xoptim::sgd)
    XOPTIM_COMPILED_TEST_INSTANCES(xoptim::lion)
    template std::vector<std::string> state_names<xoptim::muon>(const xoptim::muon&);
}
