// Status and Result<T>: how every ballast call reports failure.
//
// No ballast function aborts or exits on bad input. A call that can fail
// returns a Status (or a Result<T> holding either a value or a Status) whose
// message names the op or node, the bad value and the rule it broke, e.g.
//   "linear 'fc2': input has 300 features, weight expects 256".
#ifndef BALLAST_STATUS_H_
#define BALLAST_STATUS_H_

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace ballast {

// Grows at the end only: the numeric values are part of the C++ ABI.
enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,     // a value breaks a documented rule
  kOutOfRange = 2,          // an index or size beyond its bound
  kNotFound = 3,            // a file, op or name that does not exist
  kDataLoss = 4,            // a corrupt or truncated file
  kUnimplemented = 5,       // a valid request ballast cannot serve yet
  kInternal = 6,            // a broken internal invariant (a ballast bug)
  kIoError = 7,             // the operating system refused a read or write
  kFailedPrecondition = 8,  // the object is not in a state for this call
  kCancelled = 9,           // stopped at the caller's request (a signal)
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message)
      : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid argument: <message>", or "ok".
  std::string ToString() const;

  // Prefixes the message with context, e.g. "node 'fc1': ". Keeps the code.
  Status WithContext(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status OutOfRange(std::string m) {
  return {StatusCode::kOutOfRange, std::move(m)};
}
inline Status NotFound(std::string m) {
  return {StatusCode::kNotFound, std::move(m)};
}
inline Status DataLoss(std::string m) {
  return {StatusCode::kDataLoss, std::move(m)};
}
inline Status Unimplemented(std::string m) {
  return {StatusCode::kUnimplemented, std::move(m)};
}
inline Status Internal(std::string m) {
  return {StatusCode::kInternal, std::move(m)};
}
inline Status IoError(std::string m) {
  return {StatusCode::kIoError, std::move(m)};
}
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status Cancelled(std::string m) {
  return {StatusCode::kCancelled, std::move(m)};
}

// Either a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  // An OK status holds no value: it becomes an internal error, so that
  // ok() and status() agree and BALLAST_ASSIGN_OR_RETURN passes it on.
  Result(Status status)  // NOLINT
      : v_(status.ok() ? Internal("a Result was made from an OK Status and "
                                  "holds no value")
                       : std::move(status)) {}

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

  T& value() & { return checked(); }
  const T& value() const& { return const_cast<Result*>(this)->checked(); }
  T&& value() && { return std::move(checked()); }
  T& operator*() & { return checked(); }
  const T& operator*() const& { return const_cast<Result*>(this)->checked(); }
  T&& operator*() && { return std::move(checked()); }  // *std::move(result)
  T* operator->() { return &checked(); }
  const T* operator->() const { return &const_cast<Result*>(this)->checked(); }

 private:
  T& checked() {
    assert(ok() && "value() called on an error Result");
    return std::get<T>(v_);
  }
  std::variant<T, Status> v_;
};

}  // namespace ballast

#define BALLAST_CONCAT_INNER_(a, b) a##b
#define BALLAST_CONCAT_(a, b) BALLAST_CONCAT_INNER_(a, b)

// Returns the Status of `expr` from the enclosing function when it is not OK.
#define BALLAST_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::ballast::Status ballast_status_ = (expr);        \
    if (!ballast_status_.ok()) return ballast_status_; \
  } while (0)

// `lhs = *expr` when `expr` (a Result) holds a value; otherwise returns its
// Status from the enclosing function.
#define BALLAST_ASSIGN_OR_RETURN(lhs, expr)                     \
  auto BALLAST_CONCAT_(ballast_result_, __LINE__) = (expr);     \
  if (!BALLAST_CONCAT_(ballast_result_, __LINE__).ok())         \
    return BALLAST_CONCAT_(ballast_result_, __LINE__).status(); \
  lhs = std::move(*BALLAST_CONCAT_(ballast_result_, __LINE__))

#endif  // BALLAST_STATUS_H_
