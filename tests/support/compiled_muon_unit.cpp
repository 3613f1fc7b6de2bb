// A unit that steps AdamW itself (so it includes instances.hpp, as the guide says) and
// Muon through compiled<muon>, with neither muon.hpp nor instances_muon.hpp: it must compile
// (ctest instances.compiled_muon_elsewhere), taking compiled<muon>'s members from the
// unit that includes instances_muon.hpp.
#include <tuple>
#include <vector>

#include <xoptim/compiled.hpp>
#include <xoptim/instances.hpp>
#include <xoptim/xoptim.hpp>

void step_both(std::vector<float>& w, const std::vector<float>& g, std::vector<float>& m, const std::vector<float>& gm)
{
    xoptim::adamw adamw;
    adamw.step(std::tie(w), std::tie(g));
    xoptim::compiled<xoptim::muon> muon;
    muon.step(xoptim::view(m.data(), {4, 4}), xoptim::view(gm.data(), {4, 4}));
}
