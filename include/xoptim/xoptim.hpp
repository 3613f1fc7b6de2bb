// xoptim: fused, header-only training optimizers on xsimd.
#ifndef XOPTIM_XOPTIM_HPP
#define XOPTIM_XOPTIM_HPP

#include "optim/adafactor.hpp"
#include "optim/adam.hpp"
#include "optim/ademamix.hpp"
#include "optim/lion.hpp"
#include "optim/lamb.hpp"
#include "optim/sgd.hpp"
#include "optim/signsgd.hpp"

#endif
