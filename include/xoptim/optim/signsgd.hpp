// SignSGD with decoupled weight decay: p = p * (1 - lr * wd) - lr * sign(g), sign(0) = 0.
// Stateless; meant for sparse embeddings at ~100x the main learning rate.
#ifndef XOPTIM_OPTIM_SIGNSGD_HPP
#define XOPTIM_OPTIM_SIGNSGD_HPP

#include "optimizer.hpp"
#include "validate.hpp"

namespace xoptim
{
    struct signsgd_options
    {
        double lr = 1e-2;
        double weight_decay = 0.1;

        template <class O, class F>
        static void fields(O& o, F&& f)
        {
            f("lr", o.lr);
            f("weight_decay", o.weight_decay);
        }
    };

    class signsgd : public optimizer<signsgd, signsgd_options>
    {
    public:

        static constexpr const char* name = "signsgd";
        static constexpr std::array<const char*, 0> state_names = {};

        explicit signsgd(const signsgd_options& o = {})
            : optimizer(o)
        {
        }

        static void check(const signsgd_options& o)
        {
            detail::require_non_negative(o.lr, name, "lr");
            detail::require_non_negative(o.weight_decay, name, "weight_decay");
        }

        static std::size_t num_states(const signsgd_options&) noexcept
        {
            return 0;
        }

        // The update as one assignment, shared with the sparse-row variant (sparse.hpp).
        // Defined before update(): clang resolves the non-dependent call there, and a
        // deduced return type cannot be used before its definition.
        static auto assignment(const signsgd_options& o)
        {
            using namespace sym;
            return p = p * (1 - arch::product(o.lr, o.weight_decay)) - o.lr * sign(g);
        }

        template <class Step>
        void update(const Step& step, const signsgd_options& o) const
        {
            step.run(assignment(o));
        }
    };
}

#endif
