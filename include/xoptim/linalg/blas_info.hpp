// Which CBLAS runs Muon's matrix products, as the library itself says: its name, version,
// the kernels it picked for this CPU and its build configuration (docs/design.md §4).
// Muon's report() carries it, benchmarks put it in their context, and a process whose
// OpenBLAS runs pre-AVX2 kernels on an AVX2 or AVX-512 CPU is told so once, with the fix.
//
// How the library is found: on ELF platforms (Linux, BSD) with GCC or clang, through weak
// references to functions only one library has (openblas_get_config, bli_info_get_version_str,
// MKL_Get_Version_String): a weak reference is null unless the process has that library.
// They carry names of their own (asm labels), so they never clash with the library's
// declarations (cblas.h, blis.h, mkl.h). MKL's probes follow its documented API and
// were not run here (no MKL on Debian's main archive). Elsewhere (macOS, Windows), or for a CBLAS with no
// such function (Apple Accelerate, the reference CBLAS), the library is "not identified" and
// the text names what the build linked where CMake said so (xoptim::muon defines
// XOPTIM_BLAS_LINKED).
#ifndef XOPTIM_LINALG_BLAS_INFO_HPP
#define XOPTIM_LINALG_BLAS_INFO_HPP

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace xoptim::blas
{
    struct library_info
    {
        std::string name;     // "OpenBLAS", "BLIS", "Intel MKL"; empty when not identified
        std::string version;  // e.g. "0.3.21"
        std::string kernels;  // the kernels picked for this CPU: OpenBLAS's core, BLIS's arch
        std::string config;   // the library's own build description, where it has one
        int threads = 0;      // the library's thread count, 0 when it does not say

        // One line, e.g. "OpenBLAS 0.3.21, kernels Zen, 2 threads (OpenBLAS 0.3.21
        // DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64)".
        std::string text() const;
    };

    // The CBLAS this process runs (a few calls into it; not cached, so the thread count
    // is the current one).
    library_info library();

    // Sets the CBLAS's own thread count where the library has a call for it (OpenBLAS,
    // BLIS, MKL); false where it was not identified.
    bool set_library_threads(int n);

    // What the CPU can run, for the kernel check (x86-64 with GCC or clang; all false
    // elsewhere).
    struct cpu_features
    {
        bool avx2 = false;    // AVX2 and FMA: OpenBLAS's Haswell kernels
        bool avx512 = false;  // AVX-512 F, BW, DQ and VL: OpenBLAS's SkylakeX kernels
    };

    cpu_features this_cpu() noexcept;

    // The warning due when `lib` is OpenBLAS running kernels older than AVX2 (Prescott,
    // Nehalem, Sandybridge, ...) on a CPU with AVX2 or better, with the fix; empty otherwise.
    std::string generic_kernel_warning(const library_info& lib, const cpu_features& cpu);

    // Prints generic_kernel_warning for this process to stderr, once per process (Muon's
    // Newton-Schulz calls it). XOPTIM_BLAS_QUIET=1 in the environment silences it.
    void warn_once_about_kernels();

    /******************
     * Implementation *
     ******************/

    namespace detail
    {
#if defined(__ELF__) && (defined(__GNUC__) || defined(__clang__))
#define XOPTIM_BLAS_PROBES 1
        // Weak references: null unless the process has the library. Signatures as the
        // libraries declare them (enums as int).
        char* probe_openblas_get_config() __asm__("openblas_get_config") __attribute__((weak));
        char* probe_openblas_get_corename() __asm__("openblas_get_corename") __attribute__((weak));
        int probe_openblas_get_num_threads() __asm__("openblas_get_num_threads") __attribute__((weak));
        void probe_openblas_set_num_threads(int) __asm__("openblas_set_num_threads") __attribute__((weak));
        char* probe_bli_info_get_version_str() __asm__("bli_info_get_version_str") __attribute__((weak));
        int probe_bli_arch_query_id() __asm__("bli_arch_query_id") __attribute__((weak));
        char* probe_bli_arch_string(int) __asm__("bli_arch_string") __attribute__((weak));
        std::int64_t probe_bli_thread_get_num_threads() __asm__("bli_thread_get_num_threads") __attribute__((weak));
        void probe_bli_thread_set_num_threads(std::int64_t) __asm__("bli_thread_set_num_threads") __attribute__((weak));
        void probe_mkl_get_version_string(char*, int) __asm__("MKL_Get_Version_String") __attribute__((weak));
        int probe_mkl_get_max_threads() __asm__("MKL_Get_Max_Threads") __attribute__((weak));
        void probe_mkl_set_num_threads(int) __asm__("MKL_Set_Num_Threads") __attribute__((weak));
#endif

        inline std::string lower(std::string s)
        {
            std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
            return s;
        }

        // The n-th blank-separated word of s (empty if none).
        inline std::string word(const std::string& s, std::size_t n)
        {
            std::size_t begin = 0;
            for (std::size_t k = 0;; ++k)
            {
                begin = s.find_first_not_of(' ', begin);
                if (begin == std::string::npos)
                {
                    return {};
                }
                const std::size_t end = std::min(s.find(' ', begin), s.size());
                if (k == n)
                {
                    return s.substr(begin, end - begin);
                }
                begin = end;
            }
        }

        inline library_info probe_library()
        {
            library_info lib;
#ifdef XOPTIM_BLAS_PROBES
            if (probe_openblas_get_config != nullptr)
            {
                // "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64"
                lib.name = "OpenBLAS";
                lib.config = probe_openblas_get_config();
                lib.version = word(lib.config, 1);
                lib.kernels = probe_openblas_get_corename != nullptr ? probe_openblas_get_corename() : "";
                lib.threads = probe_openblas_get_num_threads != nullptr ? probe_openblas_get_num_threads() : 0;
            }
            else if (probe_bli_info_get_version_str != nullptr)
            {
                lib.name = "BLIS";
                lib.version = probe_bli_info_get_version_str();
                if (probe_bli_arch_query_id != nullptr && probe_bli_arch_string != nullptr)
                {
                    lib.kernels = probe_bli_arch_string(probe_bli_arch_query_id());
                }
                lib.threads = probe_bli_thread_get_num_threads != nullptr ? int(probe_bli_thread_get_num_threads()) : 0;
            }
            else if (probe_mkl_get_version_string != nullptr)
            {
                // "Intel(R) oneAPI Math Kernel Library Version 2023.0 Product Build ..."
                char text[256] = {};
                probe_mkl_get_version_string(text, int(sizeof text));
                lib.name = "Intel MKL";
                lib.config = text;
                const std::size_t at = lib.config.find("Version ");
                lib.version = at == std::string::npos ? "" : word(lib.config.substr(at), 1);
                lib.threads = probe_mkl_get_max_threads != nullptr ? probe_mkl_get_max_threads() : 0;
            }
#endif
            return lib;
        }

        // OpenBLAS's cores (driver/others/dynamic.c) with no AVX2 kernels.
        inline bool pre_avx2_core(const std::string& core)
        {
            static const char* const cores[] = {
                "unknown",  "katmai",    "coppermine", "northwood",    "prescott",  "banias",      "atom",
                "core2",    "penryn",    "dunnington", "nehalem",      "athlon",    "opteron",     "opteron_sse3",
                "barcelona", "nano",     "sandybridge", "bobcat",      "bulldozer", "piledriver",  "steamroller"};
            const std::string c = lower(core);
            return std::any_of(std::begin(cores), std::end(cores), [&](const char* k) { return c == k; });
        }
    }

    inline std::string library_info::text() const
    {
        std::string out = name.empty() ? std::string("CBLAS (not identified") : name;
        if (name.empty())
        {
#ifdef XOPTIM_BLAS_LINKED
            out += "; linked: " XOPTIM_BLAS_LINKED;
#endif
            out += ")";
        }
        out += version.empty() ? "" : " " + version;
        out += kernels.empty() ? "" : ", kernels " + kernels;
        out += threads <= 0 ? "" : ", " + std::to_string(threads) + (threads == 1 ? " thread" : " threads");
        out += config.empty() ? "" : " (" + config + ")";
        return out;
    }

    inline library_info library()
    {
        return detail::probe_library();
    }

    inline bool set_library_threads(int n)
    {
#ifdef XOPTIM_BLAS_PROBES
        if (detail::probe_openblas_get_config != nullptr && detail::probe_openblas_set_num_threads != nullptr)
        {
            detail::probe_openblas_set_num_threads(n);
            return true;
        }
        if (detail::probe_bli_info_get_version_str != nullptr && detail::probe_bli_thread_set_num_threads != nullptr)
        {
            detail::probe_bli_thread_set_num_threads(n);
            return true;
        }
        if (detail::probe_mkl_get_version_string != nullptr && detail::probe_mkl_set_num_threads != nullptr)
        {
            detail::probe_mkl_set_num_threads(n);
            return true;
        }
#endif
        (void)n;
        return false;
    }

    inline cpu_features this_cpu() noexcept
    {
        cpu_features cpu;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
        __builtin_cpu_init();
        cpu.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        cpu.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                     && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#endif
        return cpu;
    }

    inline std::string generic_kernel_warning(const library_info& lib, const cpu_features& cpu)
    {
        if (lib.name != "OpenBLAS" || !cpu.avx2 || !detail::pre_avx2_core(lib.kernels))
        {
            return {};
        }
        const char* isa = cpu.avx512 ? "AVX-512" : "AVX2";
        const char* core = cpu.avx512 ? "SkylakeX" : "Haswell";
        std::string fix = lib.config.find("DYNAMIC_ARCH") != std::string::npos
                              ? std::string("set OPENBLAS_CORETYPE=") + core + " in the environment"
                                    + (cpu.avx512 ? " (Haswell for AVX2 kernels)" : "")
                              : std::string("this OpenBLAS is built for one target: use one built with DYNAMIC_ARCH=1 "
                                            "or TARGET=")
                                    + detail::lower(core) + ", or another CBLAS";
        return "xoptim: OpenBLAS " + lib.version + " runs its " + lib.kernels + " kernels on a CPU with " + isa
               + ", so Muon's matrix products run several times slower than they could (OpenBLAS falls back "
                 "to them on a CPU it does not recognise, or when OPENBLAS_CORETYPE names them). Fix: "
               + fix + ". (XOPTIM_BLAS_QUIET=1 silences this message.)";
    }

    inline void warn_once_about_kernels()
    {
        static const bool warned = [] {
            const char* quiet = std::getenv("XOPTIM_BLAS_QUIET");
            if (quiet != nullptr && *quiet != '\0' && std::string(quiet) != "0")
            {
                return false;
            }
            const std::string w = generic_kernel_warning(library(), this_cpu());
            if (!w.empty())
            {
                std::fprintf(stderr, "%s\n", w.c_str());
            }
            return !w.empty();
        }();
        (void)warned;
    }
}

#endif
