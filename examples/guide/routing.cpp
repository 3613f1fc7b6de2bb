// docs/guide.md, "Routing" and "Parameter groups".
#include <cstdio>
#include <stdexcept>

#include <xoptim/optim/router.hpp>
#include <xoptim/xoptim.hpp>

#include "net.hpp"
#include "require.hpp"

int main()
{
    net model = filled(0.0f);
    const net grads = filled(0.1f);
    {
        //! [router]
        xoptim::routing rules;
        rules.add("signsgd", xoptim::name_matches({"embed*"}))                  // first match wins
            .add("lion", xoptim::all_of(xoptim::min_ndim(2), xoptim::none_of(xoptim::name_matches({"output*"}))))
            .fallback("adamw");                                                // everything else
        xoptim::router opt(rules, xoptim::signsgd(), xoptim::lion(), xoptim::adamw());
        opt.init(model);
        std::printf("%s", opt.routing_table().c_str());
        opt.step(model, grads);
        //! [router]
        guide::require(opt.optimizer<2>().state().size() == 2 && opt.optimizer<1>().step_count() == 1,
                       "the router split as printed");
    }
    {
        //! [unrouted]
        xoptim::routing partial;
        partial.add("lion", xoptim::min_ndim(2));  // no fallback: a 1-D parameter has nowhere to go
        xoptim::router opt(partial, xoptim::lion());
        try
        {
            opt.step(model, grads);
        }
        catch (const std::invalid_argument& e)
        {
            std::printf("%s\n", e.what());
        }
        //! [unrouted]
    }
    {
        //! [groups]
        xoptim::adamw_options no_decay;
        no_decay.weight_decay = 0;
        xoptim::param_groups<xoptim::adamw> groups;
        groups.add("no_decay", xoptim::name_matches({"*.bias", "*norm*"}), xoptim::adamw(no_decay))
            .fallback("decay", xoptim::adamw());
        groups.group("decay").schedule("lr", xoptim::warmup_cosine(1e-3, /*total_steps*/ 10000, /*warmup*/ 100));
        groups.step(model, grads);
        std::printf("%s", groups.routing_table().c_str());
        //! [groups]
        guide::require(groups.group(0).state().size() == 1 && groups.size() == 2, "the groups split as printed");
    }
}
