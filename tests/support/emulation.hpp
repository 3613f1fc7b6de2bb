// Test sizes under an emulator. tools/test.sh's arm64 stage runs the tests under
// qemu-aarch64, where each instruction costs tens of native ones; tests/CMakeLists.txt
// defines XOPTIM_TEST_EMULATED for every test whenever CMAKE_CROSSCOMPILING_EMULATOR runs
// them. The slowest tests then run the same checks on a smaller size, never fewer checks.
#ifndef XOPTIM_TEST_SUPPORT_EMULATION_HPP
#define XOPTIM_TEST_SUPPORT_EMULATION_HPP

namespace xoptim_test
{
#ifdef XOPTIM_TEST_EMULATED
    inline constexpr bool emulated = true;
#else
    inline constexpr bool emulated = false;
#endif

    // `native` on the machine itself, `emulated_size` under an emulator.
    template <class T>
    constexpr T smaller_when_emulated(T native, T emulated_size) noexcept
    {
        return emulated ? emulated_size : native;
    }
}

#endif
