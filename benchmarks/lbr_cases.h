// One benchmark case of the standard block: an op variant × backend ×
// fused/unfused × mode × shape × threads, ready to run repeatedly. Shared by
// the Google Benchmark binary and `ballast bench kernels`.
#ifndef BALLAST_BENCHMARKS_LBR_CASES_H_
#define BALLAST_BENCHMARKS_LBR_CASES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ballast/status.h"

namespace ballast::bench {

enum class Mode { kEval, kTrainFwd, kTrainFwdBwd };
enum class Backend { kRef, kHwy, kOnednn };

const char* ModeName(Mode m);        // "eval" | "train_fwd" | "train_fwd_bwd"
const char* BackendName(Backend b);  // "ref" | "hwy" | "onednn"

struct CaseSpec {
  Mode mode = Mode::kEval;
  Backend backend = Backend::kHwy;
  bool fused = true;
  int64_t M = 1, K = 784, N = 256;
  int threads = 1;
  double dropout = 0.0;  // training modes
  // FLOPs of one call: 2MKN forward, 6MKN forward + backward.
  double Flops() const;
  std::string Label() const;  // "eval hwy fused M=1 K=784 N=256 t=1"
};

class Case {
 public:
  virtual ~Case() = default;
  virtual Status Run() = 0;  // one call
};

// Fails (Unimplemented) for combinations that do not exist, e.g. onednn
// when built without it, or unfused backward.
Result<std::unique_ptr<Case>> MakeCase(const CaseSpec& spec);

}  // namespace ballast::bench

#endif  // BALLAST_BENCHMARKS_LBR_CASES_H_

namespace ballast::bench {

// Warms the case up and returns how many calls make a batch lasting about
// `batch_seconds`.
Result<int64_t> CalibrateBatch(Case& c, double batch_seconds);
// Seconds per call over one batch of `reps` calls.
Result<double> TimeBatch(Case& c, int64_t reps);

// Times several cases in interleaved rounds — every round runs one batch of
// each case — and returns each case's median seconds per call. Interleaving
// spreads the drift of a shared machine evenly over the cases compared.
Result<std::vector<double>> InterleavedMedians(std::vector<Case*> cases,
                                               double seconds_per_case,
                                               int rounds = 9);

}  // namespace ballast::bench
