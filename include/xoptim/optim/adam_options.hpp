// The options of Adam and AdamW (adam.hpp), with PyTorch's names and defaults; here apart,
// with the optimizers declared, so compiled.hpp offers them without the engine.
#ifndef XOPTIM_OPTIM_ADAM_OPTIONS_HPP
#define XOPTIM_OPTIM_ADAM_OPTIONS_HPP

#include <array>

#include "caution_options.hpp"

namespace xoptim
{
    template <bool Decoupled>
    struct adam_options_base
    {
        double lr = 1e-3;
        std::array<double, 2> betas = {0.9, 0.999};
        double eps = 1e-8;
        double weight_decay = Decoupled ? 1e-2 : 0;
        bool amsgrad = false;
        bool maximize = false;
        bool bias_correction = true;
        bool caution = false;  // timm's name
        caution_normalization caution_normalize = caution_normalization::mean;

        // Every hyperparameter with its PyTorch name: f(name, field).
        template <class O, class F>
        static void fields(O& o, F&& f)
        {
            f("lr", o.lr);
            f("betas", o.betas);
            f("eps", o.eps);
            f("weight_decay", o.weight_decay);
            f("amsgrad", o.amsgrad);
            f("maximize", o.maximize);
            f("bias_correction", o.bias_correction);
            f("caution", o.caution);
            f("caution_normalize", o.caution_normalize);
        }
    };

    using adam_options = adam_options_base<false>;
    using adamw_options = adam_options_base<true>;

    template <bool Decoupled>
    class adam_base;

    using adam = adam_base<false>;
    using adamw = adam_base<true>;
}

#endif
