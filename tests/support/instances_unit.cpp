// The project's instantiation unit of test_instances (include/xoptim/instances.hpp): the
// steps of AdamW, Adam, SGD, Lion and Muon, compiled here once.
#define XOPTIM_INSTANTIATE
#include <xoptim/instances.hpp>
#include <xoptim/instances_muon.hpp>
