// Where io's functions that depend on none of the caller's types are compiled (the
// safetensors reader and writer, the checkpoint's metadata functions).
//
// By default, as everything in xoptim, in every unit that uses them: they are `inline`.
// A project that defines XOPTIM_SEPARATE_IO in all its units compiles them once, in its
// instantiation unit (the one that defines XOPTIM_INSTANTIATE, before any xoptim header,
// and includes <xoptim/instances.hpp>, docs/guide.md "Compile time"); the other units see
// their declarations only. Two instantiation units in one program define them twice.
// XOPTIM_IO_DEFINE says whether this unit compiles them, XOPTIM_IO_INLINE is what their
// definitions are declared with.
#ifndef XOPTIM_IO_SEPARATE_HPP
#define XOPTIM_IO_SEPARATE_HPP

#if defined(XOPTIM_SEPARATE_IO)
#define XOPTIM_IO_INLINE
#if defined(XOPTIM_INSTANTIATE)
#define XOPTIM_IO_DEFINE 1
#else
#define XOPTIM_IO_DEFINE 0
#endif
#else
#define XOPTIM_IO_INLINE inline
#define XOPTIM_IO_DEFINE 1
#endif

#endif
