// Builds an xoptim optimizer from PyTorch-named hyperparameters in JSON, e.g.
// {"lr": 1e-3, "betas": [0.9, 0.999], "amsgrad": true}. Shared by xoptim-replay and
// the reference tests. Unknown keys and values of the wrong type throw
// std::invalid_argument naming the key; ranges are checked by the optimizers.
#ifndef XOPTIM_TOOLS_OPTIMIZER_JSON_HPP
#define XOPTIM_TOOLS_OPTIMIZER_JSON_HPP

#include <algorithm>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <xoptim/optim/ademamix.hpp>
#include <xoptim/optim/ema.hpp>
#include <xoptim/optim/hybrid.hpp>
#include <xoptim/optim/muon.hpp>
#include <xoptim/optim/schedulefree.hpp>
#include <xoptim/xoptim.hpp>

namespace xoptim::tools
{
    namespace detail
    {
        class hyper_reader
        {
        public:

            hyper_reader(const std::string& optimizer, const nlohmann::json& hyper)
                : m_optimizer(optimizer), m_hyper(hyper)
            {
                if (!hyper.is_object())
                {
                    throw std::invalid_argument("\"hyper\" must be an object");
                }
            }

            void read(const char* key, double& x)
            {
                if (const auto* v = find(key))
                {
                    require(v->is_number(), key, "a number");
                    x = v->get<double>();
                }
            }

            // A number or null (none: the option is off).
            void read(const char* key, std::optional<double>& x)
            {
                if (const auto* v = find(key))
                {
                    require(v->is_number() || v->is_null(), key, "a number or null");
                    x = v->is_null() ? std::nullopt : std::optional<double>(v->get<double>());
                }
            }

            // [a number or null, a number] (Adafactor's eps: eps1 may be none).
            void read(const char* key, std::array<std::optional<double>, 2>& x)
            {
                if (const auto* v = find(key))
                {
                    const bool ok = v->is_array() && v->size() == 2 && ((*v)[0].is_number() || (*v)[0].is_null())
                                    && (*v)[1].is_number();
                    require(ok, key, "[a number or null, a number]");
                    x[0] = (*v)[0].is_null() ? std::nullopt : std::optional<double>((*v)[0].get<double>());
                    x[1] = (*v)[1].get<double>();
                }
            }

            void read(const char* key, bool& x)
            {
                if (const auto* v = find(key))
                {
                    require(v->is_boolean(), key, "true or false");
                    x = v->get<bool>();
                }
            }

            template <std::size_t N>
            void read(const char* key, std::array<double, N>& x)
            {
                if (const auto* v = find(key))
                {
                    const bool ok = v->is_array() && v->size() == N
                                    && std::all_of(v->begin(), v->end(), [](const auto& e) { return e.is_number(); });
                    require(ok, key, N == 2 ? "an array of two numbers" : "an array of three numbers");
                    for (std::size_t k = 0; k < N; ++k)
                    {
                        x[k] = (*v)[k].template get<double>();
                    }
                }
            }

            // A count, a JSON integer. Null only for the counts that may be None in their
            // reference (AdEMAMix's warmups), where it reads as 0: none.
            void read(const char* key, std::size_t& x)
            {
                if (const auto* v = find(key))
                {
                    const std::string_view name = key;
                    if (name == "beta3_warmup" || name == "alpha_warmup")
                    {
                        require(v->is_number_unsigned() || v->is_null(), key, "a non-negative integer or null");
                    }
                    else
                    {
                        require(v->is_number_unsigned(), key, "a non-negative integer");
                    }
                    x = v->is_null() ? 0 : v->get<std::size_t>();
                }
            }

            void read(const char* key, caution_normalization& x)
            {
                if (const auto* v = find(key))
                {
                    require(v->is_string() && (*v == "mean" || *v == "count_plus_one"), key,
                            "\"mean\" or \"count_plus_one\"");
                    x = *v == "mean" ? caution_normalization::mean : caution_normalization::count_plus_one;
                }
            }

            void read(const char* key, ema_shadow& x)
            {
                if (const auto* v = find(key))
                {
                    require(v->is_string() && (*v == "same" || *v == "bfloat16"), key, "\"same\" or \"bfloat16\"");
                    x = *v == "same" ? ema_shadow::same : ema_shadow::bfloat16;
                }
            }

            void read(const char* key, muon_lr_adjust& x)
            {
                if (const auto* v = find(key))
                {
                    require(v->is_string() && (*v == "original" || *v == "match_rms_adamw"), key,
                            "\"original\" or \"match_rms_adamw\"");
                    x = *v == "original" ? muon_lr_adjust::original : muon_lr_adjust::match_rms_adamw;
                }
            }

            // Muon's per-step coefficients: "polar_express" or [[a, b, c], ...].
            void read(const char* key, std::vector<ns_coefficient_row>& x)
            {
                if (const auto* v = find(key))
                {
                    if (v->is_string() && *v == "polar_express")
                    {
                        x = polar_express_coefficients();
                        return;
                    }
                    const auto row = [](const nlohmann::json& r) {
                        return r.is_array() && r.size() == 3
                               && std::all_of(r.begin(), r.end(), [](const auto& e) { return e.is_number(); });
                    };
                    require(v->is_array() && std::all_of(v->begin(), v->end(), row), key,
                            "\"polar_express\" or an array of [a, b, c] rows");
                    x.clear();
                    for (const auto& r : *v)
                    {
                        x.push_back({r[0].get<double>(), r[1].get<double>(), r[2].get<double>()});
                    }
                }
            }

            void read(const char* key, ns_norm& x)
            {
                read_enum(key, x, {ns_norm::add_eps, ns_norm::clamp_eps});
            }

            void read(const char* key, ns_precision& x)
            {
                read_enum(key, x, {ns_precision::working, ns_precision::bf16});
            }

            void read(const char* key, muon_momentum_form& x)
            {
                read_enum(key, x, {muon_momentum_form::ema, muon_momentum_form::lerp});
            }

            void read(const char* key, normuon_scale& x)
            {
                read_enum(key, x, {normuon_scale::preserve_norm, normuon_scale::rms});
            }

            // Every key given must have been read: a typo is an error, not a default.
            void finish() const
            {
                for (const auto& item : m_hyper.items())
                {
                    if (m_read.count(item.key()) == 0)
                    {
                        throw std::invalid_argument("unknown hyperparameter \"" + item.key() + "\" for "
                                                    + m_optimizer);
                    }
                }
            }

        private:

            // One of `values`, by its to_string name.
            template <class E>
            void read_enum(const char* key, E& x, std::initializer_list<E> values)
            {
                if (const auto* v = find(key))
                {
                    std::string names;
                    for (const E e : values)
                    {
                        if (v->is_string() && *v == to_string(e))
                        {
                            x = e;
                            return;
                        }
                        names += (names.empty() ? "\"" : "\" or \"") + std::string(to_string(e));
                    }
                    require(false, key, (names + "\"").c_str());
                }
            }

            const nlohmann::json* find(const char* key)
            {
                m_read.insert(key);
                const auto it = m_hyper.find(key);
                return it == m_hyper.end() ? nullptr : &*it;
            }

            void require(bool ok, const char* key, const char* what) const
            {
                if (!ok)
                {
                    throw std::invalid_argument("hyperparameter \"" + std::string(key) + "\" of " + m_optimizer
                                                + " must be " + what);
                }
            }

            std::string m_optimizer;
            const nlohmann::json& m_hyper;
            std::set<std::string> m_read;
        };

        template <class Options>
        Options read_options(const std::string& name, const nlohmann::json& hyper)
        {
            Options o;
            hyper_reader r(name, hyper);
            Options::fields(o, [&](const char* key, auto& field) { r.read(key, field); });
            r.finish();
            return o;
        }

        inline std::vector<std::string> read_patterns(const nlohmann::json& routing)
        {
            const auto fail = [] {
                throw std::invalid_argument("\"routing\" must be {\"adamw_patterns\": [name patterns]}");
            };
            if (!routing.is_object() || routing.size() != 1 || !routing.contains("adamw_patterns")
                || !routing["adamw_patterns"].is_array())
            {
                fail();
            }
            std::vector<std::string> patterns;
            for (const auto& p : routing["adamw_patterns"])
            {
                if (!p.is_string())
                {
                    fail();
                }
                patterns.push_back(p.get<std::string>());
            }
            return patterns;
        }
    }

    // Constructs an Optimizer from `hyper` (PyTorch-named options; `name` names it in
    // errors) and calls f(optimizer&). A program that replays one optimizer calls this
    // rather than with_optimizer, which instantiates f for every optimizer.
    template <class Optimizer, class F>
    void with_optimizer_of(const std::string& name, const nlohmann::json& hyper, F&& f)
    {
        Optimizer opt(detail::read_options<typename Optimizer::options_type>(name, hyper));
        f(opt);
    }

    // Adafactor from `hyper`, whose optional `variant` (trajectories_2026.json) is "torch"
    // (torch.optim.Adafactor, the default) or "transformers" (HF transformers' Adafactor,
    // xoptim::adafactor_transformers); calls f(optimizer&).
    template <class F>
    void with_adafactor(const nlohmann::json& hyper, F&& f)
    {
        nlohmann::json h = hyper;
        std::string variant = "torch";
        if (h.is_object() && h.contains("variant"))
        {
            if (h["variant"].is_string())
            {
                variant = h["variant"].get<std::string>();
            }
            if (!h["variant"].is_string() || (variant != "torch" && variant != "transformers"))
            {
                throw std::invalid_argument("hyperparameter \"variant\" of adafactor must be \"torch\" or "
                                            "\"transformers\"");
            }
            h.erase("variant");
        }
        if (variant == "transformers")
        {
            with_optimizer_of<adafactor_transformers>("adafactor", h, f);
        }
        else
        {
            with_optimizer_of<adafactor>("adafactor", h, f);
        }
    }

    // Constructs the Muon + AdamW hybrid from {"muon": {...}, "adamw": {...}} (each
    // optional, PyTorch-named as for the single optimizers) and the routing entry
    // {"adamw_patterns": [...]}, and calls f(hybrid&).
    template <class F>
    void with_hybrid(const nlohmann::json& hyper, const nlohmann::json& routing, F&& f)
    {
        if (!hyper.is_object())
        {
            throw std::invalid_argument("\"hyper\" must be an object");
        }
        for (const auto& item : hyper.items())
        {
            if (item.key() != "muon" && item.key() != "adamw")
            {
                throw std::invalid_argument("unknown hyperparameter group \"" + item.key()
                                            + "\" for hybrid (expected muon or adamw)");
            }
            if (!item.value().is_object())
            {
                throw std::invalid_argument("hyperparameter group \"" + item.key() + "\" of hybrid must be an object");
            }
        }
        const auto group = [&](const char* key) { return hyper.contains(key) ? hyper[key] : nlohmann::json::object(); };
        hybrid_options o;
        o.muon = detail::read_options<muon_options>("muon", group("muon"));
        o.adamw = detail::read_options<adamw_options>("adamw", group("adamw"));
        o.adamw_patterns = detail::read_patterns(routing);
        auto opt = make_hybrid(o);
        f(opt);
    }

    // Constructs the optimizer called `name` ("sgd", "adam", "adamw", "lion", "lamb", "adafactor", "signsgd",
    // "muon", "ademamix", "adamw_schedulefree", "sgd_schedulefree")
    // from `hyper` and calls f(optimizer&).
    template <class F>
    void with_optimizer(const std::string& name, const nlohmann::json& hyper, F&& f)
    {
        if (name == "adamw")
        {
            with_optimizer_of<adamw>(name, hyper, f);
        }
        else if (name == "adam")
        {
            with_optimizer_of<adam>(name, hyper, f);
        }
        else if (name == "sgd")
        {
            with_optimizer_of<sgd>(name, hyper, f);
        }
        else if (name == "lamb")
        {
            with_optimizer_of<lamb>(name, hyper, f);
        }
        else if (name == "adafactor")
        {
            with_adafactor(hyper, f);
        }
        else if (name == "lion")
        {
            with_optimizer_of<lion>(name, hyper, f);
        }
        else if (name == "signsgd")
        {
            with_optimizer_of<signsgd>(name, hyper, f);
        }
        else if (name == "muon")
        {
            with_optimizer_of<muon>(name, hyper, f);
        }
        else if (name == "ademamix")
        {
            with_optimizer_of<ademamix>(name, hyper, f);
        }
        else if (name == "adamw_schedulefree")
        {
            with_optimizer_of<adamw_schedulefree>(name, hyper, f);
        }
        else if (name == "sgd_schedulefree")
        {
            with_optimizer_of<sgd_schedulefree>(name, hyper, f);
        }
        else
        {
            throw std::invalid_argument("unknown optimizer \"" + name
                                        + "\" (expected adamw, adam, sgd, lion, lamb, adafactor, signsgd, muon, ademamix, "
                                        "adamw_schedulefree, sgd_schedulefree or hybrid)");
        }
    }
}

#endif
