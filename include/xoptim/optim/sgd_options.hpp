// The options of SGD (sgd.hpp), with torch.optim.SGD's names and defaults; here apart,
// with the optimizer declared, so compiled.hpp offers it without the engine.
#ifndef XOPTIM_OPTIM_SGD_OPTIONS_HPP
#define XOPTIM_OPTIM_SGD_OPTIONS_HPP

#include <limits>

namespace xoptim
{
    struct sgd_options
    {
        double lr = std::numeric_limits<double>::quiet_NaN();  // required, as in torch.optim.SGD
        double momentum = 0;
        double dampening = 0;
        bool nesterov = false;
        double weight_decay = 0;
        bool maximize = false;

        template <class O, class F>
        static void fields(O& o, F&& f)
        {
            f("lr", o.lr);
            f("momentum", o.momentum);
            f("dampening", o.dampening);
            f("nesterov", o.nesterov);
            f("weight_decay", o.weight_decay);
            f("maximize", o.maximize);
        }
    };

    class sgd;
}

#endif
