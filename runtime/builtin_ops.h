// Registration of the built-in ops (runtime/builtin_ops.cc).
#ifndef BALLAST_RUNTIME_BUILTIN_OPS_H_
#define BALLAST_RUNTIME_BUILTIN_OPS_H_

#include "ballast/registry.h"

namespace ballast::internal {

Status RegisterBuiltins(Registry& registry);

}  // namespace ballast::internal

#endif  // BALLAST_RUNTIME_BUILTIN_OPS_H_
