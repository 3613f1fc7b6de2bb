// The statistics of the memory profiler (memory.hpp): whether a per-step RSS series is a
// leak (Mann-Kendall trend test, Theil-Sen slopes), and sizes as text.
//
//     const auto verdict = xoptim::train::leak_check(rss_per_step);
//     std::puts(verdict.explain().c_str());  // "memory flat: slope +12 KB/step ..."
#ifndef XOPTIM_TRAIN_LEAK_CHECK_HPP
#define XOPTIM_TRAIN_LEAK_CHECK_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "../optim/validate.hpp"

namespace xoptim::train
{
    struct memory_sample
    {
        std::size_t step = 0;
        std::size_t rss = 0;  // bytes
    };

    struct leak_options
    {
        // The first samples are warm-up (allocator arenas, caches, lazy buffers filling)
        // and are left out of the test.
        double warmup_fraction = 0.2;
        // Fewer samples after warm-up give no verdict.
        std::size_t min_samples = 10;
        // One-sided Mann-Kendall significance level for an increase.
        double alpha = 0.01;
        // A significant trend is a leak only if the growth it projects over the tested
        // window exceeds max(min_growth_bytes, min_growth_fraction * median RSS).
        double min_growth_bytes = 32.0 * 1024 * 1024;
        double min_growth_fraction = 0.05;
        // Bounds on the work: longer windows are thinned evenly to max_samples points, and
        // the Theil-Sen slope uses a fixed pseudo-random sample of max_pairs pairs beyond that.
        std::size_t max_samples = 4096;
        std::size_t max_pairs = 200000;
    };

    // The verdict of leak_check. Slopes are Theil-Sen estimates (the median of the
    // slopes between pairs of samples), robust to spikes and jitter.
    struct leak_result
    {
        bool leak = false;
        bool enough_data = false;
        std::size_t samples = 0;       // samples tested (after warm-up and thinning)
        std::size_t min_samples = 0;   // leak_options::min_samples
        std::size_t first_step = 0;    // the tested window
        std::size_t last_step = 0;
        double slope = 0;              // bytes per step over the window
        double late_slope = 0;         // bytes per step over the window's last half
        double growth = 0;             // slope * (last_step - first_step)
        double threshold = 0;          // growth a leak must exceed
        double median_rss = 0;
        double mann_kendall_z = 0;     // > 0: increasing
        double p_value = 1;            // one-sided, for an increase
        double alpha = 0;              // leak_options::alpha

        // One line: "memory flat: slope +12 KB/step over steps 100-499, not significant
        // (p = 0.41)" or "LEAK: slope +1.00 MB/step over steps 40-199 (...)".
        std::string explain() const;
    };

    // A leak is a steady increase: significant by Mann-Kendall (p < alpha), a projected
    // growth over the window above the threshold, and still growing in the window's last
    // half (so a warm-up that outlasts warmup_fraction is not called a leak). Steps must
    // increase strictly. Throws std::invalid_argument for bad options or steps.
    leak_result leak_check(const std::vector<memory_sample>& series, const leak_options& o = {});

    // The same for one RSS value (bytes) per step, the step being the index.
    leak_result leak_check(const std::vector<double>& rss_per_step, const leak_options& o = {});

    // "1.50 GB", "+12.0 KB", "-3.00 MB" (1 KB = 1024 bytes).
    std::string format_bytes(double bytes, bool show_sign = false);

    // ---------------------------------------------------------------------------------

    namespace detail
    {
        inline double median(std::vector<double>& v)
        {
            const auto mid = v.begin() + std::ptrdiff_t(v.size() / 2);
            std::nth_element(v.begin(), mid, v.end());
            const double hi = *mid;
            if (v.size() % 2 == 1)
            {
                return hi;
            }
            return (*std::max_element(v.begin(), mid) + hi) / 2;
        }

        // Theil-Sen slope: the median of the pairwise slopes, over every pair or, beyond
        // max_pairs, a fixed pseudo-random sample of pairs (splitmix64, seeded), so the
        // verdict on a given series is reproducible.
        inline double theil_sen(const double* x, const double* y, std::size_t n, std::size_t max_pairs)
        {
            std::vector<double> slopes;
            if (n < 2)
            {
                return 0;
            }
            if (n * (n - 1) / 2 <= max_pairs)
            {
                slopes.reserve(n * (n - 1) / 2);
                for (std::size_t i = 0; i < n; ++i)
                {
                    for (std::size_t j = i + 1; j < n; ++j)
                    {
                        slopes.push_back((y[j] - y[i]) / (x[j] - x[i]));
                    }
                }
            }
            else
            {
                std::uint64_t state = 0x5eed5eed5eed5eedULL;
                const auto next = [&state] {
                    std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
                    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
                    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
                    return z ^ (z >> 31);
                };
                slopes.reserve(max_pairs);
                while (slopes.size() < max_pairs)
                {
                    std::size_t i = std::size_t(next() % n);
                    std::size_t j = std::size_t(next() % n);
                    if (i == j)
                    {
                        continue;
                    }
                    if (i > j)
                    {
                        std::swap(i, j);
                    }
                    slopes.push_back((y[j] - y[i]) / (x[j] - x[i]));
                }
            }
            return median(slopes);
        }

        // Mann-Kendall trend test (Kendall 1975; Hipel & McLeod 1994, section 23.3):
        // S = sum over i < j of sign(y_j - y_i), its variance corrected for ties, and
        // the normal approximation with continuity correction. Returns z; p = P(Z >= z).
        inline double mann_kendall(const double* y, std::size_t n, double& p_value)
        {
            long long s = 0;
            for (std::size_t i = 0; i < n; ++i)
            {
                for (std::size_t j = i + 1; j < n; ++j)
                {
                    s += (y[j] > y[i]) - (y[j] < y[i]);
                }
            }
            std::vector<double> sorted(y, y + n);
            std::sort(sorted.begin(), sorted.end());
            const double dn = double(n);
            double var = dn * (dn - 1) * (2 * dn + 5);
            for (std::size_t i = 0; i < n;)
            {
                std::size_t j = i;
                while (j < n && sorted[j] == sorted[i])
                {
                    ++j;
                }
                const double t = double(j - i);
                var -= t * (t - 1) * (2 * t + 5);
                i = j;
            }
            var /= 18;
            if (var <= 0)
            {
                p_value = 1;
                return 0;
            }
            const double z = s > 0 ? double(s - 1) / std::sqrt(var) : s < 0 ? double(s + 1) / std::sqrt(var) : 0.0;
            p_value = 0.5 * std::erfc(z / std::sqrt(2.0));
            return z;
        }

    }

    inline std::string format_bytes(double bytes, bool show_sign)
    {
        static const char* const units[] = {"B", "KB", "MB", "GB", "TB", "PB"};
        double a = std::fabs(bytes);
        int u = 0;
        // 1023.6 KB would print as "1024 KB": move up a unit first.
        while (a >= 1023.5 && u < 5)
        {
            a /= 1024;
            ++u;
        }
        const char* sign = bytes < 0 ? "-" : (show_sign ? "+" : "");
        char text[64];
        if (u == 0)
        {
            std::snprintf(text, sizeof text, "%s%.0f B", sign, a);
        }
        else
        {
            std::snprintf(text, sizeof text, "%s%.*f %s", sign, a < 10 ? 2 : a < 100 ? 1 : 0, a, units[u]);
        }
        return text;
    }

    inline std::string leak_result::explain() const
    {
        if (!enough_data)
        {
            return "memory trend: too few samples (" + std::to_string(samples) + " after warm-up, need "
                   + std::to_string(min_samples) + ")";
        }
        char p[48];
        if (p_value < 1e-4)
        {
            std::snprintf(p, sizeof p, "p < 0.0001");
        }
        else
        {
            std::snprintf(p, sizeof p, "p = %.2g", p_value);
        }
        std::string line = std::string(leak ? "LEAK: " : "memory flat: ") + "slope " + format_bytes(slope, true)
                           + "/step over steps " + std::to_string(first_step) + "-" + std::to_string(last_step);
        if (leak)
        {
            return line + " (" + format_bytes(growth, true) + " projected, threshold " + format_bytes(threshold)
                   + "), Mann-Kendall " + p;
        }
        if (p_value >= alpha)
        {
            return line + ", not significant (" + p + ")";
        }
        if (growth <= threshold)
        {
            return line + ", significant (" + p + ") but " + format_bytes(growth, true) + " projected is under the "
                   + format_bytes(threshold) + " threshold";
        }
        return line + ", rose early but flat in the last half (slope " + format_bytes(late_slope, true) + "/step)";
    }

    inline leak_result leak_check(const std::vector<memory_sample>& series, const leak_options& o)
    {
        using xoptim::detail::require;
        const char* who = "train::leak_check";
        require(o.warmup_fraction >= 0 && o.warmup_fraction < 1, who, "warmup_fraction", "in [0, 1)",
                o.warmup_fraction);
        require(o.alpha > 0 && o.alpha < 1, who, "alpha", "in (0, 1)", o.alpha);
        require(o.min_samples >= 4, who, "min_samples", ">= 4", double(o.min_samples));
        require(o.max_samples >= o.min_samples, who, "max_samples", ">= min_samples", double(o.max_samples));
        require(o.max_pairs >= 1, who, "max_pairs", ">= 1", double(o.max_pairs));
        require(o.min_growth_bytes >= 0, who, "min_growth_bytes", ">= 0", o.min_growth_bytes);
        require(o.min_growth_fraction >= 0, who, "min_growth_fraction", ">= 0", o.min_growth_fraction);
        for (std::size_t i = 1; i < series.size(); ++i)
        {
            if (series[i].step <= series[i - 1].step)
            {
                throw std::invalid_argument("xoptim::train::leak_check: steps must increase (step "
                                            + std::to_string(series[i].step) + " follows step "
                                            + std::to_string(series[i - 1].step) + ")");
            }
        }

        leak_result r;
        r.min_samples = o.min_samples;
        r.alpha = o.alpha;
        const std::size_t skip = std::size_t(std::floor(double(series.size()) * o.warmup_fraction));
        const std::size_t window = series.size() - skip;
        const std::size_t m = std::min(window, o.max_samples);
        r.samples = m;
        if (m < o.min_samples)
        {
            return r;
        }
        r.enough_data = true;

        std::vector<double> x(m);
        std::vector<double> y(m);
        for (std::size_t k = 0; k < m; ++k)
        {
            // Evenly spaced over the window, first and last included.
            const std::size_t i = skip + (m == window ? k : std::size_t(double(k) * double(window - 1) / double(m - 1)));
            x[k] = double(series[i].step);
            y[k] = double(series[i].rss);
        }
        r.first_step = std::size_t(x.front());
        r.last_step = std::size_t(x.back());
        const double span = x.back() - x.front();

        r.slope = detail::theil_sen(x.data(), y.data(), m, o.max_pairs);
        const std::size_t half = m / 2;
        r.late_slope = detail::theil_sen(x.data() + half, y.data() + half, m - half, o.max_pairs);
        r.growth = r.slope * span;
        r.mann_kendall_z = detail::mann_kendall(y.data(), m, r.p_value);
        std::vector<double> values = y;
        r.median_rss = detail::median(values);
        r.threshold = std::max(o.min_growth_bytes, o.min_growth_fraction * r.median_rss);
        r.leak = r.p_value < o.alpha && r.growth > r.threshold && r.late_slope * span > r.threshold;
        return r;
    }

    inline leak_result leak_check(const std::vector<double>& rss_per_step, const leak_options& o)
    {
        std::vector<memory_sample> series(rss_per_step.size());
        for (std::size_t i = 0; i < series.size(); ++i)
        {
            const double x = rss_per_step[i];
            // 2^64 bytes and up do not fit a size_t (the conversion would be undefined).
            if (!(x >= 0 && x < 18446744073709551616.0))
            {
                throw std::invalid_argument("xoptim::train::leak_check: rss_per_step[" + std::to_string(i) + "] is "
                                            + std::to_string(x) + ", not a byte count");
            }
            series[i].step = i;
            series[i].rss = std::size_t(x);
        }
        return leak_check(series, o);
    }
}

#endif
