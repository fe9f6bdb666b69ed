// Load + validate speed of a 100 MB .blst model (mmap, every checksum
// verified, graph validated). Target: >= 2 GB/s.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "ballast/format.h"
#include "ballast/model.h"

namespace {

const std::string& ModelPath() {
  static const std::string path = [] {
    const std::string p =
        (std::filesystem::temp_directory_path() /
         ("ballast_format_bench_" + std::to_string(::getpid()) + ".blst"))
            .string();
    // 5000 × 5000 + 5000 floats ≈ 100 MB.
    ballast::Sequential net(5000, 1);
    net.Linear(5000).ReLU();
    ballast::Model m;
    m.graph = *net.Build();
    if (!ballast::SaveModel(m, p).ok()) std::abort();
    return p;
  }();
  return path;
}

void BM_LoadAndVerify100MB(benchmark::State& state) {
  const std::string& path = ModelPath();
  const auto bytes = std::filesystem::file_size(path);
  ballast::LoadOptions opt;
  opt.verify_tensor_checksums = state.range(0) != 0;
  for (auto _ : state) {
    ballast::Result<ballast::Model> m = ballast::LoadModel(path, opt);
    if (!m.ok()) {
      state.SkipWithError(m.status().message().c_str());
      return;
    }
    benchmark::DoNotOptimize(m->graph.nodes.size());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes));
  state.SetLabel(opt.verify_tensor_checksums ? "all checksums" : "header only");
}
BENCHMARK(BM_LoadAndVerify100MB)
    ->Arg(1)
    ->Arg(0)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  std::filesystem::remove(ModelPath());
  benchmark::Shutdown();
  return 0;
}
