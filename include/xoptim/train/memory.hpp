// Memory profiler for training loops (SPEC section 6): current and peak resident set
// size, system memory, per-scope measurements (RAII), a per-step RSS series with a trend
// test that flags a leak (its statistics: leak_check.hpp), and a readable report.
//
//     xoptim::train::memory_profiler prof;
//     for (std::size_t step = 0; step < steps; ++step)
//     {
//         {
//             xoptim::train::memory_scope scope(prof, "forward");
//             forward(batch);
//         }
//         prof.record_step(step);
//     }
//     std::cout << prof.report();
//
// Where the numbers come from: on Linux, /proc (getrusage where a line is missing); on
// macOS, the Mach kernel (task_info, host_statistics64, sysctl hw.memsize). The readers
// are one block per system (detail, "What the system says"); the conversions of their
// raw values are plain functions compiled and tested everywhere. Sizes are bytes; in
// text, 1 KB = 1024 bytes, 1 MB = 2^20 bytes.
//
// What a scope's peak is: the kernel's high-water mark of the resident set (VmHWM), reset
// at scope entry by writing "5" to /proc/self/clear_refs (Linux >= 4.0; macOS has no
// reset, so there a scope's peak is exact only where it raised the process's). The kernel
// refreshes the mark whenever memory is unmapped and whenever it is read, so memory
// allocated and freed inside the scope counts; memory a heap keeps mapped after free still
// counts as resident. Where the reset is refused, a scope reports the process's mark if
// that rose during the scope (then it is the scope's peak) and otherwise the larger of
// entry and exit RSS, flagged as a lower bound (peak_exact = false). Nested and concurrent
// scopes stay correct: before any reset, the mark so far is handed to every open scope,
// and kept for peak_rss(), which therefore stays the process's peak whatever scopes do.
#ifndef XOPTIM_TRAIN_MEMORY_HPP
#define XOPTIM_TRAIN_MEMORY_HPP

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__APPLE__)
#include <mach/mach.h>
#include <sys/sysctl.h>
#endif

#include "leak_check.hpp"

namespace xoptim::train
{
    // A /proc file that cannot be read or lacks the expected line, or a system call that
    // failed; the message names it.
    struct memory_error : std::runtime_error
    {
        using std::runtime_error::runtime_error;
    };

    struct system_memory_info
    {
        std::size_t total = 0;      // MemTotal
        std::size_t available = 0;  // MemAvailable: what can still be allocated without swapping
    };

    // Resident set size of this process now (VmRSS of /proc/self/status; macOS:
    // task_info's resident_size).
    std::size_t current_rss();

    // Highest resident set size since the process started (VmHWM of /proc/self/status,
    // together with the marks memory_scope saw before resetting it; macOS: task_info's
    // resident_size_max).
    std::size_t peak_rss();

    // Whether memory_scope can reset the kernel's mark, so that a scope's peak is its own
    // (Linux >= 4.0; some sandboxes refuse; never on macOS). Tries a reset, which changes
    // no reading.
    bool peak_reset_supported();

    // MemTotal and MemAvailable of /proc/meminfo (the host's, not a container's limit);
    // macOS: hw.memsize, and free (less speculative) plus inactive pages, as psutil counts
    // available memory there.
    system_memory_info system_memory();

    // One pass through a memory_scope.
    struct scope_measurement
    {
        std::size_t entry_rss = 0;
        std::size_t exit_rss = 0;
        std::size_t peak_rss = 0;  // highest RSS between entry and exit
        bool peak_exact = true;    // false: peak_rss is a lower bound (see the top of this file)

        std::int64_t delta() const noexcept
        {
            return std::int64_t(exit_rss) - std::int64_t(entry_rss);
        }

        // How far above the entry RSS the scope went.
        std::size_t peak_rise() const noexcept
        {
            return peak_rss > entry_rss ? peak_rss - entry_rss : 0;
        }
    };

    // What a profiler keeps per scope name.
    struct scope_stats
    {
        std::string name;
        std::size_t count = 0;
        std::int64_t last_delta = 0;    // exit - entry RSS of the last pass
        std::int64_t max_delta = 0;     // largest exit - entry RSS of any pass
        std::size_t max_peak = 0;       // highest RSS seen inside the scope
        std::size_t max_peak_rise = 0;  // largest peak - entry RSS of any pass
        bool peak_exact = true;         // false if any pass gave only a lower bound
    };


    // Per-scope statistics and a per-step RSS series. Thread-safe; not copyable.
    //
    // The series is bounded: it keeps every recorded step until `series_capacity`
    // samples, then drops every other sample and from then on keeps every 2nd call,
    // then every 4th, ... The kept samples therefore always cover the whole run evenly,
    // between capacity/2 and capacity of them.
    class memory_profiler
    {
    public:

        explicit memory_profiler(std::size_t series_capacity = 4096);

        memory_profiler(const memory_profiler&) = delete;
        memory_profiler& operator=(const memory_profiler&) = delete;

        // The profiler memory_scope(name) records into.
        static memory_profiler& global();

        void record(std::string_view scope, const scope_measurement& m);

        // Stats per scope name, in the order the names were first recorded.
        std::vector<scope_stats> scopes() const;

        // Appends current_rss(), or a value measured elsewhere, for `step`: steps must
        // increase (std::invalid_argument naming both otherwise, nothing recorded).
        void record_step(std::size_t step);
        void record_step(std::size_t step, std::size_t rss_bytes);

        std::vector<memory_sample> series() const;

        // Calls to record_step, kept or not.
        std::size_t steps_recorded() const;

        // A sample is kept every stride() calls (1 until the series first fills).
        std::size_t stride() const;

        leak_result leak_check(const leak_options& o = {}) const;

        // Current and peak RSS, system memory, the scope table and the trend verdict.
        std::string report(const leak_options& o = {}) const;

        void clear();

    private:

        mutable std::mutex m_mutex;
        std::vector<scope_stats> m_scopes;
        std::vector<memory_sample> m_series;
        std::size_t m_capacity;
        std::size_t m_stride = 1;
        std::size_t m_calls = 0;
        std::size_t m_last_step = 0;  // of the last record_step call (read where m_calls > 0)
    };

    // Measures RSS at entry and exit and the peak in between, and records them into a
    // profiler when it ends (destructor or stop()). Not movable: open scopes are
    // registered by address so that a nested scope's peak reset does not lose theirs.
    class memory_scope
    {
    public:

        memory_scope(memory_profiler& profiler, std::string name);

        // Records into memory_profiler::global().
        explicit memory_scope(std::string name);

        ~memory_scope();

        memory_scope(const memory_scope&) = delete;
        memory_scope& operator=(const memory_scope&) = delete;

        // Ends the measurement now and records it; later calls return the same one.
        const scope_measurement& stop();

    private:

        memory_profiler* m_profiler;
        std::string m_name;
        std::size_t m_entry_hwm = 0;   // the process's mark at entry (no-reset fallback)
        std::size_t m_peak_seen = 0;   // marks handed over before other resets
        bool m_reset = false;          // the entry reset took effect
        bool m_stopped = false;
        scope_measurement m_result;
    };

    // ---------------------------------------------------------------------------------

    namespace detail
    {
        // The whole of a small /proc file; throws memory_error naming it.
        inline std::string read_proc(const char* path, const char* who)
        {
            std::FILE* f = std::fopen(path, "r");
            if (f == nullptr)
            {
                throw memory_error(std::string("xoptim::train::") + who + ": cannot open " + path + ": "
                                   + std::strerror(errno));
            }
            std::string text;
            char buffer[4096];
            std::size_t n = 0;
            while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0)
            {
                text.append(buffer, n);
            }
            std::fclose(f);
            return text;
        }

        // The value of the line "key:   1234 kB", in bytes; false if there is none.
        inline bool find_kb(std::string_view text, std::string_view key, std::size_t& bytes)
        {
            std::size_t pos = 0;
            while (pos < text.size())
            {
                std::size_t end = text.find('\n', pos);
                if (end == std::string_view::npos)
                {
                    end = text.size();
                }
                std::string_view line = text.substr(pos, end - pos);
                pos = end + 1;
                if (line.size() <= key.size() || line.substr(0, key.size()) != key || line[key.size()] != ':')
                {
                    continue;
                }
                std::size_t i = key.size() + 1;
                while (i < line.size() && (line[i] == ' ' || line[i] == '\t'))
                {
                    ++i;
                }
                if (i == line.size() || line[i] < '0' || line[i] > '9')
                {
                    return false;
                }
                std::size_t value = 0;
                for (; i < line.size() && line[i] >= '0' && line[i] <= '9'; ++i)
                {
                    value = value * 10 + std::size_t(line[i] - '0');
                }
                const bool kb = line.find("kB", i) != std::string_view::npos;
                bytes = kb ? value * 1024 : value;
                return true;
            }
            return false;
        }

        // The highest RSS or mark this process has read: the kernel's mark is reset by
        // memory_scope, and on some kernels it lags VmRSS by a few per-CPU batches, so
        // peak_rss() also reports the maximum of every reading.
        inline std::atomic<std::size_t>& highest_seen()
        {
            static std::atomic<std::size_t> value{0};
            return value;
        }

        inline std::size_t note_reading(std::size_t bytes)
        {
            std::atomic<std::size_t>& h = highest_seen();
            std::size_t seen = h.load();
            while (bytes > seen && !h.compare_exchange_weak(seen, bytes))
            {
            }
            return bytes;
        }

        struct rss_marks
        {
            std::size_t rss = 0;
            std::size_t hwm = 0;  // the kernel's mark since the last reset; >= rss
        };

        /***************************************************
         * What the system says: conversions, then readers *
         ***************************************************/

        // getrusage's ru_maxrss is kilobytes on Linux and bytes on macOS.
        inline constexpr std::size_t ru_maxrss_unit =
#if defined(__APPLE__)
            1;
#else
            1024;
#endif

        constexpr std::size_t ru_maxrss_bytes(long ru_maxrss, std::size_t unit) noexcept
        {
            return ru_maxrss > 0 ? std::size_t(ru_maxrss) * unit : 0;
        }

        // macOS: mach_task_basic_info's resident_size and resident_size_max, in bytes.
        constexpr rss_marks marks_from_task_info(std::uint64_t resident_size, std::uint64_t resident_size_max) noexcept
        {
            return {std::size_t(resident_size), std::size_t(std::max(resident_size, resident_size_max))};
        }

        // macOS: available memory from host_statistics64's page counts, as psutil counts it
        // (psutil/_psosx.py, virtual_memory: free less speculative, plus inactive).
        constexpr std::size_t available_from_vm_statistics(std::uint64_t free_count, std::uint64_t speculative_count,
                                                           std::uint64_t inactive_count,
                                                           std::uint64_t page_size) noexcept
        {
            const std::uint64_t free = free_count > speculative_count ? free_count - speculative_count : 0;
            return std::size_t((free + inactive_count) * page_size);
        }

        // The process's peak from getrusage, where the system has no better reading.
        inline std::size_t rusage_peak(const char* who)
        {
            rusage usage{};
            if (::getrusage(RUSAGE_SELF, &usage) != 0)
            {
                throw memory_error(std::string("xoptim::train::") + who
                                   + ": getrusage failed: " + std::strerror(errno));
            }
            return ru_maxrss_bytes(usage.ru_maxrss, ru_maxrss_unit);
        }

#if defined(__APPLE__)
        // Compiled on macOS only (not where the test suite runs so far); the conversions
        // above are what it adds to the numbers.
        inline rss_marks read_marks(const char* who)
        {
            mach_task_basic_info_data_t info{};
            mach_msg_type_number_t count = MACH_TASK_BASIC_INFO_COUNT;
            if (::task_info(::mach_task_self(), MACH_TASK_BASIC_INFO, reinterpret_cast<task_info_t>(&info), &count)
                != KERN_SUCCESS)
            {
                throw memory_error(std::string("xoptim::train::") + who + ": task_info(MACH_TASK_BASIC_INFO) failed");
            }
            const rss_marks m = marks_from_task_info(info.resident_size, info.resident_size_max);
            note_reading(m.hwm);
            return m;
        }

        // macOS keeps no resettable mark.
        inline bool write_clear_refs()
        {
            return false;
        }

        inline std::size_t read_current_rss(const char* who)
        {
            return read_marks(who).rss;
        }

        inline std::size_t read_peak_rss(const char* who)
        {
            return read_marks(who).hwm;
        }

        inline system_memory_info read_system_memory(const char* who)
        {
            const std::string name = std::string("xoptim::train::") + who;
            std::uint64_t total = 0;
            std::size_t size = sizeof total;
            if (::sysctlbyname("hw.memsize", &total, &size, nullptr, 0) != 0)
            {
                throw memory_error(name + ": sysctl hw.memsize failed: " + std::strerror(errno));
            }
            vm_statistics64_data_t vm{};
            mach_msg_type_number_t count = HOST_VM_INFO64_COUNT;
            vm_size_t page = 0;
            if (::host_statistics64(::mach_host_self(), HOST_VM_INFO64, reinterpret_cast<host_info64_t>(&vm), &count)
                    != KERN_SUCCESS
                || ::host_page_size(::mach_host_self(), &page) != KERN_SUCCESS)
            {
                throw memory_error(name + ": host_statistics64(HOST_VM_INFO64) failed");
            }
            system_memory_info info;
            info.total = std::size_t(total);
            info.available = available_from_vm_statistics(vm.free_count, vm.speculative_count, vm.inactive_count, page);
            return info;
        }
#else
        // VmRSS and VmHWM from one read of /proc/self/status.
        inline rss_marks read_marks(const char* who)
        {
            const std::string text = read_proc("/proc/self/status", who);
            rss_marks m;
            if (!find_kb(text, "VmRSS", m.rss) || !find_kb(text, "VmHWM", m.hwm))
            {
                throw memory_error(std::string("xoptim::train::") + who
                                   + ": no VmRSS or VmHWM line in /proc/self/status");
            }
            m.hwm = std::max(m.hwm, m.rss);
            note_reading(m.hwm);
            return m;
        }

        inline bool write_clear_refs()
        {
            const int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
            if (fd < 0)
            {
                return false;
            }
            const bool ok = ::write(fd, "5", 1) == 1;
            ::close(fd);
            return ok;
        }

        inline std::size_t read_current_rss(const char* who)
        {
            // /proc/self/statm (pages) stands in where status lacks the line.
            const std::string text = read_proc("/proc/self/status", who);
            std::size_t bytes = 0;
            if (find_kb(text, "VmRSS", bytes))
            {
                return bytes;
            }
            const std::string statm = read_proc("/proc/self/statm", who);
            unsigned long long size = 0;
            unsigned long long resident = 0;
            if (std::sscanf(statm.c_str(), "%llu %llu", &size, &resident) != 2)
            {
                throw memory_error(std::string("xoptim::train::") + who
                                   + ": no VmRSS line in /proc/self/status and no resident page count in "
                                     "/proc/self/statm");
            }
            return std::size_t(resident) * std::size_t(::sysconf(_SC_PAGESIZE));
        }

        // VmHWM (never below VmRSS); ru_maxrss where status lacks the line. Unlike VmHWM,
        // ru_maxrss is never reset by clear_refs.
        inline std::size_t read_peak_rss(const char* who)
        {
            const std::string text = read_proc("/proc/self/status", who);
            std::size_t bytes = 0;
            if (find_kb(text, "VmHWM", bytes))
            {
                std::size_t rss = 0;
                find_kb(text, "VmRSS", rss);
                return std::max(bytes, rss);
            }
            return rusage_peak(who);
        }

        inline system_memory_info read_system_memory(const char* who)
        {
            const std::string name = std::string("xoptim::train::") + who;
            const std::string text = read_proc("/proc/meminfo", who);
            system_memory_info info;
            if (!find_kb(text, "MemTotal", info.total))
            {
                throw memory_error(name + ": no MemTotal line in /proc/meminfo");
            }
            if (!find_kb(text, "MemAvailable", info.available))
            {
                // Before Linux 3.14: free memory plus the page cache, the usual estimate.
                std::size_t free = 0;
                std::size_t buffers = 0;
                std::size_t cached = 0;
                if (!find_kb(text, "MemFree", free))
                {
                    throw memory_error(name + ": no MemAvailable or MemFree line in /proc/meminfo");
                }
                find_kb(text, "Buffers", buffers);
                find_kb(text, "Cached", cached);
                info.available = free + buffers + cached;
            }
            return info;
        }
#endif

        // Open scopes' peak slots. Before the mark is reset, its value so far is folded
        // into each, so that a reset by one scope does not hide a peak from another (and,
        // by read_marks, into highest_seen() for peak_rss()).
        struct peak_registry
        {
            std::mutex mutex;
            std::vector<std::size_t*> open;

            static peak_registry& instance()
            {
                static peak_registry r;
                return r;
            }

            // Caller holds `mutex`. Returns whether the kernel took the reset; `mark` is
            // the mark just before it.
            bool reset_locked(const char* who, std::size_t& mark)
            {
                mark = read_marks(who).hwm;
                for (std::size_t* slot : open)
                {
                    *slot = std::max(*slot, mark);
                }
                return write_clear_refs();
            }
        };

    }

    inline std::size_t current_rss()
    {
        return detail::note_reading(detail::read_current_rss("current_rss"));
    }

    inline std::size_t peak_rss()
    {
        detail::note_reading(detail::read_peak_rss("peak_rss"));
        return detail::highest_seen().load();
    }

    inline bool peak_reset_supported()
    {
        auto& registry = detail::peak_registry::instance();
        std::lock_guard<std::mutex> lock(registry.mutex);
        std::size_t mark = 0;
        return registry.reset_locked("peak_reset_supported", mark);
    }

    inline system_memory_info system_memory()
    {
        return detail::read_system_memory("system_memory");
    }

    inline memory_profiler::memory_profiler(std::size_t series_capacity)
        : m_capacity(series_capacity)
    {
        if (series_capacity < 2)
        {
            throw std::invalid_argument("xoptim::train::memory_profiler: series_capacity must be >= 2 (got "
                                        + std::to_string(series_capacity) + ")");
        }
        m_series.reserve(series_capacity);
    }

    inline memory_profiler& memory_profiler::global()
    {
        static memory_profiler profiler;
        return profiler;
    }

    inline void memory_profiler::record(std::string_view scope, const scope_measurement& m)
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        auto it = std::find_if(m_scopes.begin(), m_scopes.end(), [&](const scope_stats& s) { return s.name == scope; });
        if (it == m_scopes.end())
        {
            m_scopes.push_back(scope_stats{});
            it = m_scopes.end() - 1;
            it->name = std::string(scope);
            it->max_delta = m.delta();
        }
        ++it->count;
        it->last_delta = m.delta();
        it->max_delta = std::max(it->max_delta, m.delta());
        it->max_peak = std::max(it->max_peak, m.peak_rss);
        it->max_peak_rise = std::max(it->max_peak_rise, m.peak_rise());
        it->peak_exact = it->peak_exact && m.peak_exact;
    }

    inline std::vector<scope_stats> memory_profiler::scopes() const
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_scopes;
    }

    inline void memory_profiler::record_step(std::size_t step)
    {
        record_step(step, current_rss());
    }

    inline void memory_profiler::record_step(std::size_t step, std::size_t rss_bytes)
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        if (m_calls > 0 && step <= m_last_step)
        {
            throw std::invalid_argument("xoptim::train::memory_profiler: record_step: steps must increase (step "
                                        + std::to_string(step) + " follows step " + std::to_string(m_last_step) + ")");
        }
        m_last_step = step;
        if (m_calls++ % m_stride != 0)
        {
            return;
        }
        m_series.push_back(memory_sample{step, rss_bytes});
        if (m_series.size() == m_capacity)
        {
            // Kept samples are the calls 0, s, 2s, ...: keeping the even ones leaves 0, 2s, 4s, ...
            std::size_t kept = 0;
            for (std::size_t i = 0; i < m_series.size(); i += 2)
            {
                m_series[kept++] = m_series[i];
            }
            m_series.resize(kept);
            m_stride *= 2;
        }
    }

    inline std::vector<memory_sample> memory_profiler::series() const
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_series;
    }

    inline std::size_t memory_profiler::steps_recorded() const
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_calls;
    }

    inline std::size_t memory_profiler::stride() const
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_stride;
    }

    inline leak_result memory_profiler::leak_check(const leak_options& o) const
    {
        return train::leak_check(series(), o);
    }

    inline std::string memory_profiler::report(const leak_options& o) const
    {
        std::string out = "memory report\n";
        // A missing /proc file spoils one line, not the report.
        try
        {
            // Current first: peak_rss() then includes that reading.
            const std::size_t now = current_rss();
            const std::size_t peak = peak_rss();
            out += "  RSS: current " + format_bytes(double(now)) + ", peak " + format_bytes(double(peak)) + "\n";
        }
        catch (const std::exception& e)
        {
            out += std::string("  RSS: unavailable (") + e.what() + ")\n";
        }
        try
        {
            const system_memory_info sys = system_memory();
            out += "  system: total " + format_bytes(double(sys.total)) + ", available "
                   + format_bytes(double(sys.available)) + "\n";
        }
        catch (const std::exception& e)
        {
            out += std::string("  system: unavailable (") + e.what() + ")\n";
        }

        const std::vector<scope_stats> table = scopes();
        if (table.empty())
        {
            out += "  scopes: none\n";
        }
        else
        {
            std::size_t width = 5;
            for (const scope_stats& s : table)
            {
                width = std::max(width, s.name.size());
            }
            // The name column as wide as the longest name; the numbers in a fixed buffer.
            const auto row = [&](const std::string& name, const char* numbers) {
                out += "  " + name + std::string(width - name.size(), ' ') + numbers;
            };
            char numbers[128];
            std::snprintf(numbers, sizeof numbers, " %8s %12s %12s %12s %12s\n", "count", "last delta", "max delta",
                          "max peak", "peak rise");
            row("scope", numbers);
            for (const scope_stats& s : table)
            {
                std::snprintf(numbers, sizeof numbers, " %8zu %12s %12s %12s %12s%s\n", s.count,
                              format_bytes(double(s.last_delta), true).c_str(),
                              format_bytes(double(s.max_delta), true).c_str(), format_bytes(double(s.max_peak)).c_str(),
                              format_bytes(double(s.max_peak_rise), true).c_str(), s.peak_exact ? "" : " (at least)");
                row(s.name, numbers);
            }
        }

        const std::vector<memory_sample> samples = series();
        if (samples.empty())
        {
            out += "  trend: no steps recorded\n";
        }
        else
        {
            out += "  steps: " + std::to_string(steps_recorded()) + " recorded, " + std::to_string(samples.size())
                   + " samples kept (every " + std::to_string(stride()) + ")\n";
            out += "  trend: " + train::leak_check(samples, o).explain() + "\n";
        }
        return out;
    }

    inline void memory_profiler::clear()
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_scopes.clear();
        m_series.clear();
        m_stride = 1;
        m_calls = 0;
    }

    inline memory_scope::memory_scope(memory_profiler& profiler, std::string name)
        : m_profiler(&profiler), m_name(std::move(name))
    {
        auto& registry = detail::peak_registry::instance();
        std::lock_guard<std::mutex> lock(registry.mutex);
        m_reset = registry.reset_locked("memory_scope", m_entry_hwm);
        m_result.entry_rss = detail::read_marks("memory_scope").rss;
        m_peak_seen = m_result.entry_rss;
        registry.open.push_back(&m_peak_seen);
    }

    inline memory_scope::memory_scope(std::string name)
        : memory_scope(memory_profiler::global(), std::move(name))
    {
    }

    inline memory_scope::~memory_scope()
    {
        try
        {
            stop();
        }
        catch (...)
        {
            // A /proc read failing at exit loses this measurement; a destructor must not throw.
        }
    }

    inline const scope_measurement& memory_scope::stop()
    {
        if (m_stopped)
        {
            return m_result;
        }
        m_stopped = true;
        {
            auto& registry = detail::peak_registry::instance();
            std::lock_guard<std::mutex> lock(registry.mutex);
            auto& open = registry.open;
            open.erase(std::remove(open.begin(), open.end(), &m_peak_seen), open.end());
            const detail::rss_marks now = detail::read_marks("memory_scope");
            const std::size_t mark = now.hwm;
            m_result.exit_rss = now.rss;
            if (m_reset)
            {
                m_result.peak_rss = std::max({m_peak_seen, mark, m_result.exit_rss});
            }
            else if (mark > m_entry_hwm)
            {
                // The process's peak rose during the scope, so it is the scope's peak.
                m_result.peak_rss = mark;
            }
            else
            {
                m_result.peak_rss = std::max(m_result.entry_rss, m_result.exit_rss);
                m_result.peak_exact = false;
            }
        }
        m_profiler->record(m_name, m_result);
        return m_result;
    }
}

#endif
