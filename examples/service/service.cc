// A toy inference service: one immutable InferenceSession shared by a pool
// of worker threads that answer requests (batches of 1–8 rows) from a queue.
// Every answer is checked against the answer computed serially beforehand;
// the program prints latency percentiles and exits non-zero on a mismatch.
//
//   mlp_service [workers] [requests]
#include <ballast/model.h>
#include <ballast/session.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

struct Request {
  std::vector<float> input;
  int64_t rows = 0;
  std::vector<float> expected;
};

int main(int argc, char** argv) {
  const int workers = argc > 1 ? std::atoi(argv[1]) : 4;
  const int requests = argc > 2 ? std::atoi(argv[2]) : 2000;
  if (workers < 1 || requests < 1) {
    std::fprintf(stderr, "usage: mlp_service [workers >= 1] [requests >= 1]\n");
    return 2;
  }

  // The book's model; a real service would load a trained .blst file.
  ballast::Sequential net(784, /*seed=*/42);
  net.StandardBlock(256, 0.5).StandardBlock(256, 0.5).Linear(10);
  ballast::Result<ballast::Graph> graph = net.Build();
  if (!graph.ok()) {
    std::fprintf(stderr, "%s\n", graph.status().ToString().c_str());
    return 1;
  }
  ballast::SessionOptions options;
  options.threads = 1;  // parallelism comes from the worker threads
  options.max_batch = 8;
  auto session = ballast::InferenceSession::Create(*graph, options);
  if (!session.ok()) {
    std::fprintf(stderr, "%s\n", session.status().ToString().c_str());
    return 1;
  }
  const ballast::InferenceSession& model = **session;

  // Requests and their serially computed answers.
  std::vector<Request> queue(static_cast<size_t>(requests));
  ballast::Generator gen(7);
  for (int i = 0; i < requests; ++i) {
    Request& r = queue[static_cast<size_t>(i)];
    r.rows = 1 + i % 8;
    r.input.resize(static_cast<size_t>(r.rows * model.input_features()));
    gen.FillNormal(r.input, 0.0, 1.0);
    r.expected.resize(static_cast<size_t>(r.rows * model.output_features()));
    if (!model.Run(r.input.data(), r.rows, r.expected.data()).ok()) return 1;
  }

  std::atomic<int> next{0}, mismatches{0}, errors{0};
  std::mutex mu;
  std::vector<double> latencies_us;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w) {
    pool.emplace_back([&] {
      std::vector<float> out(8 * static_cast<size_t>(model.output_features()));
      std::vector<double> mine;
      for (int i = next++; i < requests; i = next++) {
        const Request& r = queue[static_cast<size_t>(i)];
        const auto start = std::chrono::steady_clock::now();
        const ballast::Status s = model.Run(r.input.data(), r.rows, out.data());
        mine.push_back(std::chrono::duration<double, std::micro>(
                           std::chrono::steady_clock::now() - start)
                           .count());
        if (!s.ok()) {
          ++errors;
        } else if (!std::equal(r.expected.begin(), r.expected.end(),
                               out.begin())) {
          ++mismatches;
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      latencies_us.insert(latencies_us.end(), mine.begin(), mine.end());
    });
  }
  for (std::thread& t : pool) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  std::sort(latencies_us.begin(), latencies_us.end());
  auto pct = [&](double p) {
    return latencies_us[static_cast<size_t>(p * (latencies_us.size() - 1))];
  };
  std::printf(
      "%d requests on %d workers: %.0f requests/s; latency p50 %.1f us, p99 "
      "%.1f us; %d mismatches, %d errors\n",
      requests, workers, requests / seconds, pct(0.5), pct(0.99),
      mismatches.load(), errors.load());
  return mismatches == 0 && errors == 0 ? 0 : 1;
}
