// The CBLAS under Muon, named as the library names itself (linalg/blas_info.hpp): in a
// program linked with the CBLAS XOPTIM_BLAS_VENDOR picked, and in one linked with none.
#include <gtest/gtest.h>

#include <cstdio>
#include <regex>
#include <string>

#include <xoptim/linalg/blas_info.hpp>

#ifndef XOPTIM_TEST_NO_BLAS  // test_blas_none: only its own test, so no name is in both programs
#include <xoptim/optim/adam.hpp>
#include <xoptim/optim/muon.hpp>
#include <xoptim/optim/router.hpp>
#endif

namespace
{
#ifdef XOPTIM_TEST_NO_BLAS
    TEST(blas_library, a_program_without_a_cblas_has_none_identified)
    {
        EXPECT_EQ(xoptim::blas::library().name, "");
        EXPECT_FALSE(xoptim::blas::set_library_threads(1));
    }
#else
    using xoptim::blas::generic_kernel_warning;
    using xoptim::blas::library_info;

    library_info openblas(const std::string& core, const std::string& config)
    {
        library_info lib;
        lib.name = "OpenBLAS";
        lib.version = "0.3.21";
        lib.kernels = core;
        lib.config = config;
        return lib;
    }

    const std::string dynamic = "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Prescott MAX_THREADS=64";

    TEST(generic_kernel_warning, names_the_core_and_the_fix_for_the_cpu)
    {
        const std::string avx512 = generic_kernel_warning(openblas("Prescott", dynamic), {true, true});
        EXPECT_NE(avx512.find("runs its Prescott kernels on a CPU with AVX-512"), std::string::npos) << avx512;
        EXPECT_NE(avx512.find("set OPENBLAS_CORETYPE=SkylakeX"), std::string::npos) << avx512;
        EXPECT_NE(avx512.find("XOPTIM_BLAS_QUIET=1"), std::string::npos) << avx512;
        const std::string avx2 = generic_kernel_warning(openblas("Nehalem", dynamic), {true, false});
        EXPECT_NE(avx2.find("runs its Nehalem kernels on a CPU with AVX2"), std::string::npos) << avx2;
        EXPECT_NE(avx2.find("set OPENBLAS_CORETYPE=Haswell"), std::string::npos) << avx2;
        // Without DYNAMIC_ARCH the environment variable does nothing: say what does.
        const std::string fixed = generic_kernel_warning(
            openblas("Sandybridge", "OpenBLAS 0.3.21 NO_AFFINITY SANDYBRIDGE MAX_THREADS=64"), {true, true});
        EXPECT_NE(fixed.find("built for one target"), std::string::npos) << fixed;
        EXPECT_NE(fixed.find("TARGET=skylakex"), std::string::npos) << fixed;
    }

    TEST(generic_kernel_warning, is_empty_when_nothing_is_wrong)
    {
        // Kernels that use AVX2, a CPU without AVX2, a library other than OpenBLAS.
        for (const char* core : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "sapphirerapids"})
        {
            EXPECT_EQ(generic_kernel_warning(openblas(core, dynamic), {true, true}), "") << core;
        }
        EXPECT_EQ(generic_kernel_warning(openblas("Prescott", dynamic), {false, false}), "");
        library_info blis;
        blis.name = "BLIS";
        blis.kernels = "generic";
        EXPECT_EQ(generic_kernel_warning(blis, {true, true}), "");
        EXPECT_EQ(generic_kernel_warning(library_info{}, {true, true}), "");
    }

    TEST(library_info, text_is_one_line_of_what_is_known)
    {
        library_info lib = openblas("Zen", "OpenBLAS 0.3.21 DYNAMIC_ARCH Zen");
        lib.threads = 2;
        EXPECT_EQ(lib.text(), "OpenBLAS 0.3.21, kernels Zen, 2 threads (OpenBLAS 0.3.21 DYNAMIC_ARCH Zen)");
        library_info blis;
        blis.name = "BLIS";
        blis.version = "0.9.0";
        blis.kernels = "zen3";
        blis.threads = 1;
        EXPECT_EQ(blis.text(), "BLIS 0.9.0, kernels zen3, 1 thread");
        EXPECT_EQ(library_info{}.text(), "CBLAS (not identified)");
    }

    // The name the library gives itself for each XOPTIM_BLAS_VENDOR; "" for Accelerate and
    // Generic, which name no one library (Generic is whatever libblas the system has:
    // on Debian, OpenBLAS or BLIS by alternatives).
    std::string expected_name()
    {
        const std::string vendor = XOPTIM_TEST_BLAS_VENDOR;
        return vendor == "OpenBLAS" ? "OpenBLAS" : vendor == "BLIS" ? "BLIS" : vendor == "MKL" ? "Intel MKL" : "";
    }

    TEST(blas_library, is_the_one_linked)
    {
        const library_info lib = xoptim::blas::library();
        std::printf("CBLAS: %s\n", lib.text().c_str());
        if (expected_name().empty())
        {
            GTEST_SKIP() << "XOPTIM_BLAS_VENDOR=" << XOPTIM_TEST_BLAS_VENDOR << " names no one library";
        }
        ASSERT_EQ(lib.name, expected_name()) << lib.text();
        EXPECT_TRUE(std::regex_match(lib.version, std::regex("[0-9]+\\.[0-9]+(\\.[0-9]+)?"))) << lib.text();
        EXPECT_NE(lib.kernels, "") << lib.text();
        EXPECT_EQ(lib.text().rfind(lib.name + " " + lib.version + ", kernels " + lib.kernels, 0), 0u) << lib.text();
    }

    TEST(blas_library, threads_are_set_through_an_identified_library)
    {
        const bool identified = !xoptim::blas::library().name.empty();
        ASSERT_EQ(xoptim::blas::set_library_threads(1), identified);
        if (identified)
        {
            EXPECT_EQ(xoptim::blas::library().threads, 1);
        }
    }

    TEST(blas_library, muon_and_a_router_holding_it_report_it)
    {
        std::vector<float> w(8 * 4, 0.5f), b(4, 0.0f), gw(8 * 4, 0.25f), gb(4, 1.0f);
        xoptim::muon muon;
        EXPECT_EQ(muon.report().blas, xoptim::blas::library().text());
        xoptim::adamw adamw;
        EXPECT_EQ(adamw.report().blas, "");

        xoptim::routing rules;
        rules.add("muon", xoptim::min_ndim(2)).fallback("adamw");
        xoptim::router r(rules, xoptim::muon{}, xoptim::adamw{});
        auto wv = xoptim::view(w.data(), {8, 4});
        const auto gwv = xoptim::view(gw.data(), {8, 4});
        r.step(std::make_tuple(xoptim::named("w", wv), xoptim::named("b", b)),
               std::make_tuple(xoptim::named("w", gwv), xoptim::named("b", gb)));
        const xoptim::state_report total = r.report();
        EXPECT_EQ(total.blas, xoptim::blas::library().text());
        EXPECT_EQ(total.param_bytes, (w.size() + b.size()) * sizeof(float));
        EXPECT_EQ(total.state_bytes, r.optimizer<0>().report().state_bytes + r.optimizer<1>().report().state_bytes);
    }

    // The blas_probe program's stdout and stderr, started with `environment` before it.
    std::string run_probe(const std::string& environment)
    {
        const std::string command = environment + " " + XOPTIM_BLAS_PROBE + " 2>&1";
        FILE* pipe = popen(command.c_str(), "r");
        EXPECT_NE(pipe, nullptr) << command;
        std::string out;
        char chunk[512];
        for (std::size_t n; pipe != nullptr && (n = std::fread(chunk, 1, sizeof chunk, pipe)) > 0;)
        {
            out.append(chunk, n);
        }
        EXPECT_EQ(pipe != nullptr ? pclose(pipe) : -1, 0) << command << "\n" << out;
        return out;
    }

    std::size_t count(const std::string& text, const std::string& part)
    {
        std::size_t n = 0;
        for (std::size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1))
        {
            ++n;
        }
        return n;
    }

    // OpenBLAS told to run its Prescott (SSE3) kernels, as it does on CPUs it does not
    // recognise: Muon's first product warns once with the fix where the CPU has AVX2,
    // XOPTIM_BLAS_QUIET=1 silences it.
    TEST(blas_library, generic_openblas_kernels_are_warned_about_once)
    {
        const std::string warning = "xoptim: OpenBLAS ";
        const std::string told = run_probe("OPENBLAS_CORETYPE=Prescott");
        const std::string quiet = run_probe("OPENBLAS_CORETYPE=Prescott XOPTIM_BLAS_QUIET=1");
        EXPECT_EQ(count(quiet, warning), 0u) << quiet;
        if (xoptim::blas::library().name != "OpenBLAS")
        {
            EXPECT_EQ(count(told, warning), 0u) << told;
            return;
        }
        EXPECT_NE(told.find("blas: OpenBLAS"), std::string::npos) << told;
        EXPECT_NE(told.find(", kernels Prescott"), std::string::npos) << told;
        if (!xoptim::blas::this_cpu().avx2)
        {
            EXPECT_EQ(count(told, warning), 0u) << told;
            GTEST_SKIP() << "this CPU has no AVX2: Prescott kernels are no loss here, so no warning is due";
        }
        EXPECT_EQ(count(told, warning), 1u) << told;
        EXPECT_NE(told.find("Fix: set OPENBLAS_CORETYPE="), std::string::npos) << told;
    }
#endif
}
