// sanitizers: what a sanitizer build (MX_SANITIZE, docs/testing.md) changes at run time.
//
// Promises: address_space_limit_usable is false exactly when this translation unit is compiled
// with AddressSanitizer or ThreadSanitizer (gcc's __SANITIZE_*__ macros, clang's __has_feature).
// Those runtimes reserve terabytes of shadow memory at start, so an RLIMIT_AS below that makes
// every later mmap of the process (its allocator, its error reports) fail, and an exec'd
// instrumented program cannot start at all.
// Security note: only sanitizer builds, which are test builds, skip an address-space limit;
// release builds always set it.
#pragma once

namespace mx::util {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool address_space_limit_usable = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool address_space_limit_usable = false;
#else
inline constexpr bool address_space_limit_usable = true;
#endif
#else
inline constexpr bool address_space_limit_usable = true;
#endif

// True in ASan/TSan builds. Their runtimes make system calls of their own where a release build
// makes none (abort() reporting, leak checks at exit), which a seccomp-sandboxed process is
// killed for: tests that expect a specific signal from a sandboxed process accept SIGSYS there.
inline constexpr bool sanitizer_build = !address_space_limit_usable;

}  // namespace mx::util
