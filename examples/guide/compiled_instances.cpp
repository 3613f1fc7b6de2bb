// The instantiation unit of the guide's compiled.cpp: the steps of AdamW, Adam, SGD and
// Lion, and compiled<O> for each, compiled here once.
#define XOPTIM_INSTANTIATE
#include <xoptim/instances.hpp>
