// A test model for the distributed tests: named float and double tensors of any shapes,
// with the gradients each rank computes (a different one per rank and step), their
// mean (what one process steps on), checksums and comparisons.
#ifndef XOPTIM_TESTS_DIST_NET_HPP
#define XOPTIM_TESTS_DIST_NET_HPP

#include <xoptim/dist/inner.hpp>
#include <xoptim/io/xxh64.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <xoptim/optim/adam.hpp>

#include "../support/reference.hpp"

namespace dist_test
{
    // A row-major tensor with its shape (the container protocol: data, size, shape).
    template <class T>
    struct tensor
    {
        std::vector<T> values;
        std::vector<std::size_t> dims;

        explicit tensor(std::vector<std::size_t> shape = {})
            : values(count(shape)), dims(std::move(shape))
        {
        }

        static std::size_t count(const std::vector<std::size_t>& shape)
        {
            std::size_t n = 1;
            for (std::size_t d : shape)
            {
                n *= d;
            }
            return n;
        }

        T* data() { return values.data(); }
        const T* data() const { return values.data(); }
        std::size_t size() const { return values.size(); }
        const std::vector<std::size_t>& shape() const { return dims; }
        T& operator[](std::size_t i) { return values[i]; }
        const T& operator[](std::size_t i) const { return values[i]; }
    };

    struct spec
    {
        std::string name;
        std::vector<std::size_t> shape;
        bool is_double = false;
    };

    // Float tensors first, then double ones, each in the order given.
    struct net
    {
        std::vector<std::string> float_names, double_names;
        std::vector<tensor<float>> f;
        std::vector<tensor<double>> d;
        std::vector<xoptim::named_ref<tensor<float>>> named_f;
        std::vector<xoptim::named_ref<tensor<double>>> named_d;

        explicit net(const std::vector<spec>& specs = {})
        {
            for (const spec& s : specs)
            {
                if (s.is_double)
                {
                    double_names.push_back(s.name);
                    d.emplace_back(s.shape);
                }
                else
                {
                    float_names.push_back(s.name);
                    f.emplace_back(s.shape);
                }
            }
        }

        net(const net& o)
            : float_names(o.float_names), double_names(o.double_names), f(o.f), d(o.d)
        {
        }

        net& operator=(const net& o)
        {
            float_names = o.float_names;
            double_names = o.double_names;
            f = o.f;
            d = o.d;
            return *this;
        }

        auto params()
        {
            named_f.clear();
            named_d.clear();
            for (std::size_t k = 0; k < f.size(); ++k)
            {
                named_f.push_back(xoptim::named(float_names[k], f[k]));
            }
            for (std::size_t k = 0; k < d.size(); ++k)
            {
                named_d.push_back(xoptim::named(double_names[k], d[k]));
            }
            return std::make_tuple(xoptim::named("", named_f), xoptim::named("", named_d));
        }

        auto grads()
        {
            return std::tie(f, d);
        }

        // Every element from the test hash: u(seed*1000 + k, t, i) * scale, rounded to a
        // multiple of scale * 2^-19 when `exact_sums` (20 significant bits: a sum of up to
        // 16 such numbers is exact in float, in any order).
        void fill(std::uint64_t seed, std::uint64_t t, double scale = 1.0, bool exact_sums = false)
        {
            const auto value = [&](std::uint64_t s, std::size_t i) {
                const double x = xoptim_test::u(s, t, i);
                return (exact_sums ? std::round(x * 524288.0) / 524288.0 : x) * scale;
            };
            for (std::size_t k = 0; k < f.size(); ++k)
            {
                for (std::size_t i = 0; i < f[k].size(); ++i)
                {
                    f[k][i] = float(value(seed * 1000 + k, i));
                }
            }
            for (std::size_t k = 0; k < d.size(); ++k)
            {
                for (std::size_t i = 0; i < d[k].size(); ++i)
                {
                    d[k][i] = value(seed * 1000 + 500 + k, i);
                }
            }
        }

        // Rank r's gradient at call t. Its sums over ranks are exact in any order, so one
        // process stepping on the mean sees the gradients the ranks reduce (up to the
        // rounding of the mean itself where the rank count is not a power of two).
        void fill_gradient(std::uint64_t seed, std::uint64_t t, int rank, double scale = 0.125)
        {
            fill(seed, 1 + t * 64 + std::uint64_t(rank), scale, true);
        }

        // The mean of every rank's gradient at call t (as one process would step on it).
        void fill_mean_gradient(std::uint64_t seed, std::uint64_t t, int ranks, double scale = 0.125)
        {
            net one = *this;
            std::vector<std::vector<double>> sf(f.size()), sd(d.size());
            for (std::size_t k = 0; k < f.size(); ++k)
            {
                sf[k].assign(f[k].size(), 0.0);
            }
            for (std::size_t k = 0; k < d.size(); ++k)
            {
                sd[k].assign(d[k].size(), 0.0);
            }
            for (int r = 0; r < ranks; ++r)
            {
                one.fill_gradient(seed, t, r, scale);
                for (std::size_t k = 0; k < f.size(); ++k)
                {
                    for (std::size_t i = 0; i < f[k].size(); ++i)
                    {
                        sf[k][i] += one.f[k][i];
                    }
                }
                for (std::size_t k = 0; k < d.size(); ++k)
                {
                    for (std::size_t i = 0; i < d[k].size(); ++i)
                    {
                        sd[k][i] += one.d[k][i];
                    }
                }
            }
            for (std::size_t k = 0; k < f.size(); ++k)
            {
                for (std::size_t i = 0; i < f[k].size(); ++i)
                {
                    f[k][i] = float(sf[k][i] / ranks);
                }
            }
            for (std::size_t k = 0; k < d.size(); ++k)
            {
                for (std::size_t i = 0; i < d[k].size(); ++i)
                {
                    d[k][i] = sd[k][i] / ranks;
                }
            }
        }

        std::uint64_t checksum() const
        {
            std::uint64_t h = 0;
            for (const auto& t : f)
            {
                h = xoptim::io::xxh64(t.data(), t.size() * sizeof(float), h);
            }
            for (const auto& t : d)
            {
                h = xoptim::io::xxh64(t.data(), t.size() * sizeof(double), h);
            }
            return h;
        }

        bool same_bits(const net& o) const
        {
            return checksum() == o.checksum();
        }
    };

    // The largest error relative to its tensor's scale: max over tensors of
    // max_i |a_i - b_i| / max_i |b_i| (a NaN on one side only is an infinite error).
    template <class T>
    double max_relative(const std::vector<tensor<T>>& a, const std::vector<tensor<T>>& b)
    {
        double worst = 0;
        for (std::size_t k = 0; k < a.size(); ++k)
        {
            double error = 0;
            double scale = 0;
            for (std::size_t i = 0; i < a[k].size(); ++i)
            {
                const double x = a[k][i];
                const double y = b[k][i];
                error = std::isnan(x) != std::isnan(y) ? INFINITY : std::max(error, std::fabs(x - y));
                scale = std::max(scale, std::fabs(y));
            }
            worst = std::max(worst, scale > 0 ? error / scale : error);
        }
        return worst;
    }

    // A hash of every optimizer state tensor of a trainer (as the step sees it).
    template <class Trainer>
    std::uint64_t state_checksum(Trainer& trainer)
    {
        std::uint64_t h = 0;
        xoptim::dist::detail::for_each_inner(xoptim::dist::detail::inner(trainer),
                                            [&](std::size_t, const std::string&, const auto& o) {
                                                const auto& store = o.state();
                                                for (std::size_t e = 0; e < store.size(); ++e)
                                                {
                                                    for (std::size_t s = 0; s < store[e].count; ++s)
                                                    {
                                                        const auto v = store.values(store[e].name, s);
                                                        h = xoptim::io::xxh64(v.data(), v.size() * sizeof(double), h);
                                                    }
                                                }
                                            });
        return h;
    }

    inline std::string read_bytes(const std::filesystem::path& p)
    {
        std::ifstream in(p, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }

    // AdamW with 8-bit states for tensors of at least `min_8bit_size` elements.
    inline xoptim::adamw eight_bit_adamw(std::size_t min_8bit_size)
    {
        xoptim::adamw opt;
        xoptim::storage_options s;
        s.states = xoptim::state_storage::blockwise_8bit;
        s.min_8bit_size = min_8bit_size;
        opt.set_storage(s);
        return opt;
    }
}

#endif
