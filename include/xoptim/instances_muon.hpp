// Muon's steps, and compiled<muon>, compiled once per project (see instances.hpp); the
// program links a CBLAS (xoptim::muon in CMake).
#ifndef XOPTIM_INSTANCES_MUON_HPP
#define XOPTIM_INSTANCES_MUON_HPP

#include "instances.hpp"
#include "optim/muon.hpp"

namespace xoptim
{
    XOPTIM_INSTANCES(muon)
    XOPTIM_EXTERN template class compiled<muon>;
}

#endif
