// expect: an optimizer declares `template <class Step> void update\(const Step& step, const options_type& o\)`
// An optimizer that leaves out a required member of the contract (optim/contract.hpp).
#include "halving.hpp"

class halving : public xoptim::optimizer<halving, halving_options>
{
public:

    static constexpr const char* name = "halving";
    static constexpr std::array<const char*, 0> state_names = {};

    halving()
        : optimizer(halving_options{})
    {
    }

    static void check(const halving_options&) {}

    static std::size_t num_states(const halving_options&) { return 0; }

    // update(step) without the options: the contract's form is update(step, options).
    template <class Step>
    void update(const Step& step) const
    {
        using namespace xoptim::sym;
        step.run(p = p - options().lr * g);
    }
};

int main()
{
    std::array<float, 4> p{}, g{};
    halving h;
    h.step(p, g);
}
