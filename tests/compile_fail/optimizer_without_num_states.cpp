// expect: an optimizer declares `std::size_t num_states\(const options_type&\) const`
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

    template <class Step>
    void update(const Step& step, const halving_options& o) const
    {
        using namespace xoptim::sym;
        step.run(p = p - o.lr * g);
    }
};

int main()
{
    halving h;
    (void) h;
}
