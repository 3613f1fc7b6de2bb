// expect: the parameters are a temporary
#include <vector>
#include <xoptim/optim/adam.hpp>
struct owning { std::vector<float> v; };  // owns its elements, as its traits say
template <>
struct xoptim::tensor_traits<owning>
{
    using value_type = float;
    static float* data(owning& t) { return t.v.data(); }
    static const float* data(const owning& t) { return t.v.data(); }
    static std::size_t size(const owning& t) { return t.v.size(); }
    static constexpr bool owns_elements = true;
};
int main()
{
    owning w{std::vector<float>(3)}, g = w;
    xoptim::adamw().step(std::make_tuple(w), std::tie(g));  // a copy of w: std::tie(w) steps w
}
