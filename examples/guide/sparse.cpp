// docs/guide.md, "Sparse embedding rows": SignSGD on the rows a batch touched.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <tuple>
#include <vector>

#include <xoptim/optim/sparse.hpp>

#include "require.hpp"

int main()
{
    //! [table]
    constexpr std::size_t rows = 1000, dim = 8;
    std::vector<float> table(rows * dim, 1.0f);
    auto embedding = xoptim::view(table.data(), {rows, dim});  // 2-D: (rows, dim)
    //! [table]
    std::vector<float> w(64, 1.0f), gw(64, 0.5f);
    {
        //! [sparse_signsgd]
        xoptim::sparse_signsgd emb({/*lr*/ 0.1, /*weight_decay*/ 0.1});
        const std::vector<std::int64_t> ids = {7, 3, 7};       // row 7 twice: its gradients are summed
        const std::vector<float> row_grads(ids.size() * dim, 0.5f);
        emb.step(embedding, ids, row_grads);
        //! [sparse_signsgd]
        // Row 7: 1 * (1 - 0.1 * 0.1) - 0.1; row 0 untouched.
        guide::require(std::abs(table[7 * dim] - 0.89f) <= 1e-6f && table[0] == 1.0f, "only the touched rows moved");
    }
    {
        //! [two_optimizers]
        xoptim::sparse_embedding_options o;   // AdamW lr 1e-4, betas (0.9, 0.95), wd 0.1;
        o.adamw.lr = 3e-4;                    // the table's SignSGD at 100 x that lr, wd 0.1
        xoptim::sparse_embedding_optimizer opt(o);
        const std::vector<std::int64_t> ids = {1, 2};
        const std::vector<float> row_grads(ids.size() * dim, -0.5f);
        opt.step(embedding, ids, row_grads, w, gw);
        std::printf("table lr %g, dense lr %g\n", opt.embedding().options().lr, opt.dense().options().lr);
        //! [two_optimizers]
        //! [bad_id]
        try
        {
            const std::vector<std::int64_t> bad = {5, 1000};
            opt.step(embedding, bad, row_grads, w, gw);
        }
        catch (const std::invalid_argument& e)
        {
            std::printf("%s\n", e.what());
        }
        //! [bad_id]
        guide::require(opt.dense().step_count() == 1, "a refused step changed nothing");
    }
}
