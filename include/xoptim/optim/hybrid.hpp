// The Muon + AdamW hybrid: Muon for hidden matrices (ndim >= 2), AdamW for everything
// else, embeddings and the output head excluded from Muon by name pattern. Defaults:
// Muon lr 0.02, AdamW lr 1e-3 (SPEC section 3).
//
//     auto opt = xoptim::make_hybrid();          // or with options and patterns
//     opt.step(model, grads);
//     std::cout << opt.routing_table();
#ifndef XOPTIM_OPTIM_HYBRID_HPP
#define XOPTIM_OPTIM_HYBRID_HPP

#include "adam.hpp"
#include "muon.hpp"
#include "router.hpp"

namespace xoptim
{
    struct hybrid_options
    {
        muon_options muon;
        adamw_options adamw;
        // Names kept off Muon even when they are matrices; add e.g. "layers.0.*" to keep
        // the first layer on AdamW too.
        std::vector<std::string> adamw_patterns = {"*embed*", "*head*", "output*", "*.output*", "lm_head*"};
    };

    using hybrid = router<muon, adamw>;

    inline hybrid make_hybrid(const hybrid_options& o = {})
    {
        routing rules;
        rules.add("muon", hidden_matrix(o.adamw_patterns)).fallback("adamw");
        return hybrid(std::move(rules), muon(o.muon), adamw(o.adamw));
    }
}

#endif
