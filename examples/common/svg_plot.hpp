// Line charts as a standalone SVG file: a row of panels, each with its own axes and
// any number of named series. Enough to compare optimizers' curves without a plotting
// package; opens in any browser.
#ifndef XOPTIM_EXAMPLES_SVG_PLOT_HPP
#define XOPTIM_EXAMPLES_SVG_PLOT_HPP

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace examples
{
    struct series
    {
        std::string name;
        std::vector<double> x, y;
    };

    struct panel
    {
        std::string title, x_label, y_label;
        std::vector<series> lines;
        bool log_y = false;
    };

    namespace detail
    {
        inline std::string number(double v)
        {
            char b[32];
            std::snprintf(b, sizeof b, "%.4g", v);
            return b;
        }

        inline std::string escape(const std::string& s)
        {
            std::string out;
            for (char c : s)
            {
                out += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : std::string(1, c);
            }
            return out;
        }

        // About five round tick values covering [lo, hi].
        inline std::vector<double> ticks(double lo, double hi)
        {
            const double span = hi - lo;
            const double raw = span / 5;
            const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
            const double step = raw / magnitude < 2 ? 2 * magnitude : raw / magnitude < 5 ? 5 * magnitude : 10 * magnitude;
            std::vector<double> out;
            for (double t = std::ceil(lo / step) * step; t <= hi + 1e-9 * span; t += step)
            {
                out.push_back(t);
            }
            return out;
        }
    }

    inline void write_svg(const std::string& path, const std::string& title, const std::vector<panel>& panels)
    {
        static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
        const double w = 460, h = 340, left = 64, right = 16, top = 40, bottom = 48;
        std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + detail::number(w * double(panels.size()))
                          + "\" height=\"" + detail::number(h + 30) + "\" font-family=\"sans-serif\" font-size=\"12\">\n"
                          + "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"20\" font-size=\"15\">"
                          + detail::escape(title) + "</text>\n";
        for (std::size_t k = 0; k < panels.size(); ++k)
        {
            const panel& p = panels[k];
            const double ox = w * double(k), oy = 30;
            const auto ty = [&](double v) { return p.log_y ? std::log10(std::max(v, 1e-12)) : v; };
            double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
            for (const auto& s : p.lines)
            {
                for (std::size_t i = 0; i < s.x.size(); ++i)
                {
                    x0 = std::min(x0, s.x[i]);
                    x1 = std::max(x1, s.x[i]);
                    y0 = std::min(y0, ty(s.y[i]));
                    y1 = std::max(y1, ty(s.y[i]));
                }
            }
            if (!(x1 > x0))
            {
                x1 = x0 + 1;
            }
            if (!(y1 > y0))
            {
                y1 = y0 + 1;
            }
            const auto px = [&](double v) { return ox + left + (v - x0) / (x1 - x0) * (w - left - right); };
            const auto py = [&](double v) { return oy + top + (y1 - ty(v)) / (y1 - y0) * (h - top - bottom); };
            svg += "<text x=\"" + detail::number(ox + left) + "\" y=\"" + detail::number(oy + 20) + "\" font-size=\"13\">"
                   + detail::escape(p.title) + "</text>\n";
            svg += "<rect x=\"" + detail::number(ox + left) + "\" y=\"" + detail::number(oy + top) + "\" width=\""
                   + detail::number(w - left - right) + "\" height=\"" + detail::number(h - top - bottom)
                   + "\" fill=\"none\" stroke=\"#888\"/>\n";
            for (double t : detail::ticks(x0, x1))
            {
                svg += "<text x=\"" + detail::number(px(t)) + "\" y=\"" + detail::number(oy + h - bottom + 16)
                       + "\" text-anchor=\"middle\">" + detail::number(t) + "</text>\n";
            }
            for (double t : detail::ticks(y0, y1))
            {
                const double v = p.log_y ? std::pow(10.0, t) : t;
                svg += "<line x1=\"" + detail::number(ox + left) + "\" x2=\"" + detail::number(ox + w - right)
                       + "\" y1=\"" + detail::number(py(v)) + "\" y2=\"" + detail::number(py(v))
                       + "\" stroke=\"#eee\"/>\n<text x=\"" + detail::number(ox + left - 6) + "\" y=\""
                       + detail::number(py(v) + 4) + "\" text-anchor=\"end\">" + detail::number(v) + "</text>\n";
            }
            svg += "<text x=\"" + detail::number(ox + left + (w - left - right) / 2) + "\" y=\""
                   + detail::number(oy + h - 10) + "\" text-anchor=\"middle\">" + detail::escape(p.x_label) + "</text>\n";
            svg += "<text transform=\"translate(" + detail::number(ox + 14) + "," + detail::number(oy + h / 2)
                   + ") rotate(-90)\" text-anchor=\"middle\">" + detail::escape(p.y_label) + "</text>\n";
            for (std::size_t s = 0; s < p.lines.size(); ++s)
            {
                const series& line = p.lines[s];
                const char* color = colors[s % 6];
                std::string points;
                for (std::size_t i = 0; i < line.x.size(); ++i)
                {
                    points += detail::number(px(line.x[i])) + "," + detail::number(py(line.y[i])) + " ";
                }
                svg += "<polyline fill=\"none\" stroke=\"" + std::string(color) + "\" stroke-width=\"1.5\" points=\""
                       + points + "\"/>\n";
                const double ly = oy + top + 14 + 16 * double(s);
                svg += "<line x1=\"" + detail::number(ox + w - right - 150) + "\" x2=\"" + detail::number(ox + w - right - 130)
                       + "\" y1=\"" + detail::number(ly - 4) + "\" y2=\"" + detail::number(ly - 4) + "\" stroke=\"" + color
                       + "\" stroke-width=\"2\"/>\n<text x=\"" + detail::number(ox + w - right - 125) + "\" y=\""
                       + detail::number(ly) + "\">" + detail::escape(line.name) + "</text>\n";
            }
        }
        svg += "</svg>\n";
        std::ofstream out(path);
        out << svg;
        if (!out.flush())
        {
            throw std::runtime_error("cannot write " + path);
        }
    }
}

#endif
