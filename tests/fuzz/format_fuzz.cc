// libFuzzer target for the .blst reader: any bytes must give a Model or an
// error, never a crash, a hang or an allocation beyond the input's size.
// A model that parses is also built into a session and run on one row.
//
//   cmake -S . -B build-fuzz -DBALLAST_BUILD_FUZZERS=ON
//   -DCMAKE_CXX_COMPILER=clang++ ...
//   ./build-fuzz/tests/fuzz/format_fuzz -max_total_time=60 tests/fuzz/corpus
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "ballast/format.h"
#include "ballast/session.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An aligned copy that the parsed tensors may point into, as a mapping.
  auto owned = std::shared_ptr<uint8_t[]>(
      new (std::align_val_t(64)) uint8_t[size + 1],
      [](uint8_t* p) { ::operator delete[](p, std::align_val_t(64)); });
  if (size) std::memcpy(owned.get(), data, size);
  // Half of the inputs skip the checksums, so that mutations reach the
  // section parsers and the graph validation behind them.
  ballast::LoadOptions lo;
  lo.verify_header_checksum = lo.verify_tensor_checksums = size % 2 == 0;
  ballast::Result<ballast::Model> m =
      ballast::ParseModel({owned.get(), size}, lo, owned);
  if (!m.ok()) return 0;
  ballast::SessionOptions opt;
  opt.backend = ballast::Backend::kRef;
  opt.max_batch = 2;
  auto session = ballast::InferenceSession::Create(m->graph, opt);
  if (!session.ok()) return 0;
  std::vector<float> x(size_t((*session)->input_features()) * 2, 0.5f);
  std::vector<float> y(size_t((*session)->output_features()) * 2);
  (void)(*session)->Run(x.data(), 2, y.data());
  return 0;
}
