// docs/guide.md, "Your own tensor type": a tensor_traits specialization.
#include <cstdio>
#include <stdexcept>
#include <vector>

#include <xoptim/xoptim.hpp>

#include "require.hpp"

//! [type]
namespace my
{
    // A row-major tensor that owns its elements (a stand-in for your own type).
    class tensor
    {
    public:
        tensor(std::vector<std::size_t> dims, float value)
            : m_dims(std::move(dims)), m_values(count(m_dims), value)
        {
        }

        float* ptr() { return m_values.data(); }
        const float* ptr() const { return m_values.data(); }
        std::size_t numel() const { return m_values.size(); }
        std::size_t dims() const { return m_dims.size(); }
        std::size_t dim(std::size_t d) const { return m_dims[d]; }

    private:
        static std::size_t count(const std::vector<std::size_t>& dims)
        {
            std::size_t n = 1;
            for (std::size_t d : dims)
            {
                n *= d;
            }
            return n;
        }

        std::vector<std::size_t> m_dims;
        std::vector<float> m_values;
    };
}
//! [type]

//! [traits]
template <>
struct xoptim::tensor_traits<my::tensor>
{
    using value_type = float;  // float, double or xoptim::bfloat16

    // The parameter's elements, written by the step.
    static float* data(my::tensor& t) { return t.ptr(); }
    // A gradient's elements, read only: gradients are usually passed const.
    static const float* data(const my::tensor& t) { return t.ptr(); }
    static std::size_t size(const my::tensor& t) { return t.numel(); }

    // Optional: the shape (shape checks, Muon's matrix view, routing by ndim).
    static std::size_t rank(const my::tensor& t) { return t.dims(); }
    static std::size_t extent(const my::tensor& t, std::size_t d) { return t.dim(d); }
    // Optional: a copy is another tensor, so a step through a copy or a temporary is refused.
    static constexpr bool owns_elements = true;
};
//! [traits]

//! [use]
void train_step(my::tensor& w, const my::tensor& grad, xoptim::adamw& opt)
{
    opt.step(xoptim::named("w", w), grad);
}
//! [use]

int main()
{
    my::tensor w({3, 4}, 1.0f);
    const my::tensor grad({3, 4}, 0.5f);
    xoptim::adamw opt;
    train_step(w, grad, opt);
    guide::require(w.ptr()[11] < 1.0f && opt.state()[0].shape == std::vector<std::size_t>{3, 4},
                   "the step saw the tensor and its shape");
    //! [mismatch]
    const my::tensor wrong({4, 3}, 0.5f);  // 12 elements, but not the parameter's shape
    try
    {
        train_step(w, wrong, opt);
    }
    catch (const std::invalid_argument& e)
    {
        std::printf("%s\n", e.what());
    }
    //! [mismatch]
}
