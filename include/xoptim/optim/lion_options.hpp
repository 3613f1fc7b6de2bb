// The options of Lion (lion.hpp), with the paper's names and defaults; here apart, with
// the optimizer declared, so compiled.hpp offers it without the engine.
#ifndef XOPTIM_OPTIM_LION_OPTIONS_HPP
#define XOPTIM_OPTIM_LION_OPTIONS_HPP

#include <array>

#include "caution_options.hpp"

namespace xoptim
{
    struct lion_options
    {
        double lr = 1e-4;
        std::array<double, 2> betas = {0.9, 0.99};
        double weight_decay = 0;
        bool caution = false;
        caution_normalization caution_normalize = caution_normalization::mean;

        template <class O, class F>
        static void fields(O& o, F&& f)
        {
            f("lr", o.lr);
            f("betas", o.betas);
            f("weight_decay", o.weight_decay);
            f("caution", o.caution);
            f("caution_normalize", o.caution_normalize);
        }
    };

    class lion;
}

#endif
