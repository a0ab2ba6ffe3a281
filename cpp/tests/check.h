// A minimal check harness for the C++ unit tests (no framework): CHECK records a failure with
// its location and goes on; a test's main returns check::result() (0 only when all passed).
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace check {

inline int& failures() {
  static int n = 0;
  return n;
}
inline int& checks() {
  static int n = 0;
  return n;
}

inline void record(bool ok, const char* expr, const char* file, int line) {
  ++checks();
  if (!ok) {
    ++failures();
    if (failures() <= 20) std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, expr);
  }
}

inline int result(const char* name) {
  std::printf("%s: %d checks, %d failed\n", name, checks(), failures());
  return failures() == 0 ? 0 : 1;
}

// Bytes placed so that the byte after the last one is the first byte of an inaccessible page:
// a read past the end faults even without a sanitizer.
class GuardedBuffer {
 public:
  GuardedBuffer(const uint8_t* src, size_t n) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    span_ = (n + page - 1) / page * page;
    total_ = span_ + page;
    void* base = mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) std::abort();
    base_ = static_cast<uint8_t*>(base);
    if (mprotect(base_ + span_, page, PROT_NONE) != 0) std::abort();
    data_ = base_ + span_ - n;
    if (n) std::memcpy(data_, src, n);
    size_ = n;
  }
  explicit GuardedBuffer(const std::vector<uint8_t>& v) : GuardedBuffer(v.data(), v.size()) {}
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;
  ~GuardedBuffer() { munmap(base_, total_); }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* base_ = nullptr;
  uint8_t* data_ = nullptr;
  size_t size_ = 0, span_ = 0, total_ = 0;
};

}  // namespace check

#define CHECK(cond) ::check::record(static_cast<bool>(cond), #cond, __FILE__, __LINE__)
