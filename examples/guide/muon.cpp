// docs/guide.md, "Muon" and "The Muon + AdamW hybrid". Links a CBLAS (OpenBLAS here).
#include <cstdio>
#include <stdexcept>

#include <xoptim/optim/hybrid.hpp>
#include <xoptim/optim/muon.hpp>

#include "net.hpp"
#include "require.hpp"

int main()
{
    net model = filled(0.0f);
    const net grads = filled(0.01f);
    {
        //! [muon]
        xoptim::muon_options mo;
        mo.lr = 0.02;
        mo.weight_decay = 0.01;
        mo.lr_adjust = xoptim::muon_lr_adjust::match_rms_adamw;  // reuse AdamW's lr and wd
        xoptim::muon muon(mo);
        muon.step(xoptim::named("linear1.weight", model.linear1), grads.linear1);
        //! [muon]
        //! [muon_1d]
        try
        {
            xoptim::muon().step(xoptim::named("linear1.bias", model.bias1), grads.bias1);
        }
        catch (const std::invalid_argument& e)
        {
            std::printf("%s\n", e.what());
        }
        //! [muon_1d]
        //! [muon_newer]
        auto po = xoptim::muon_options::polar_express();  // the table and X / (||X|| 1.01 + eps)
        po.normuon = true;                                 // NorMuon's per-row second moment
        po.ns_precision = xoptim::ns_precision::bf16;      // torch.optim.Muon's bf16 iteration
        xoptim::muon newer(po);
        newer.step(xoptim::named("linear2.weight", model.linear2), grads.linear2);
        //! [muon_newer]
    }
    //! [hybrid]
    xoptim::hybrid_options ho;     // Muon lr 0.02, AdamW lr 1e-3 (and every other default)
    ho.adamw.weight_decay = 0.1;
    auto opt = xoptim::make_hybrid(ho);
    opt.init(model);               // routes and creates the state now
    std::printf("%s", opt.routing_table().c_str());
    opt.step(model, grads);
    //! [hybrid]
    //! [hybrid_parts]
    xoptim::muon& muon_part = opt.optimizer<0>();   // in rule order: muon, then adamw
    xoptim::adamw& adamw_part = opt.optimizer<1>();
    muon_part.schedule("lr", xoptim::cosine_decay(0.02, 10000));
    std::printf("muon: %zu parameters, adamw: %zu\n", muon_part.state().size(), adamw_part.state().size());
    //! [hybrid_parts]
    guide::require(adamw_part.step_count() == 1 && model.linear1(0, 0) != 0.0f, "the hybrid stepped");
}
