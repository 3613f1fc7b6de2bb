// Compiled (not run) by the isa_build.* tests for instruction sets between the ones CI
// runs: AVX without AVX2, AVX2 without FMA, AVX-512F without BW. Each arch file's
// kernels must be registered only for the instruction sets their intrinsics need; this
// unit reaches the 8-bit and bf16 codecs, the narrowing moves and the sums of squares.
#include <vector>

#include <xoptim/xoptim.hpp>

int main()
{
    std::vector<float> w(8192, 1.0f), g(8192, 0.5f);
    xoptim::adamw adamw;
    xoptim::storage_options s;
    s.states = xoptim::state_storage::blockwise_8bit;
    adamw.set_storage(s);
    adamw.step(w, g);

    std::vector<xoptim::bfloat16> b(100, xoptim::bfloat16(1.0f));
    std::vector<xoptim::bfloat16> gb(100, xoptim::bfloat16(0.5f));
    xoptim::lion lion;
    s.states = xoptim::state_storage::bf16;
    s.parameters = xoptim::bf16_rounding::stochastic;
    lion.set_storage(s);
    lion.step(b, gb);

    xoptim::lamb lamb;  // per-tensor sums of squares
    lamb.step(w, g);
    return 0;
}
