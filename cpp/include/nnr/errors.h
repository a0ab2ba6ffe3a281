#pragma once
#include <cstddef>
#include <stdexcept>
#include <string>

namespace nnr {

// Failure kinds of the core; the bindings map each to a Python exception class.
enum class ErrorKind { Truncated, NonConforming, Config, Unsupported, ResourceLimit };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message, std::ptrdiff_t offset = -1)
      : std::runtime_error(message), kind_(kind), offset_(offset) {}
  ErrorKind kind() const { return kind_; }
  // Byte offset inside the buffer the core was given, or -1 when unknown.
  std::ptrdiff_t offset() const { return offset_; }

 private:
  ErrorKind kind_;
  std::ptrdiff_t offset_;
};

}  // namespace nnr
