// Symbols that Jazzer.js 4.0.0's prebuilt fuzzer addon needs but Debian 12 (glibc 2.36, GCC 12)
// lacks. The addon was linked against glibc 2.38, whose headers redirect strtol/strtoul to the C23
// variants, and libstdc++ 13, which calls ios_base_library_init() to construct the standard streams.
// scripts/fuzz-setup.sh links this library into the addon; see the comment there.
#include <cstdlib>
#include <ios>

extern "C" long __isoc23_strtol(const char* s, char** end, int base) { return std::strtol(s, end, base); }

extern "C" unsigned long __isoc23_strtoul(const char* s, char** end, int base) {
  return std::strtoul(s, end, base);
}

namespace std {
// libstdc++ 13 moved the construction of cin/cout/cerr behind this call; in 12 including <ios>
// does it, and constructing one more Init is harmless (it is reference counted).
void ios_base_library_init() { static ios_base::Init init; }
}  // namespace std
