// InferenceSession::Run allocates nothing once warm (session.h): on the hwy
// and ref backends, on one thread and on two (the batch split by rows, and
// each layer split by columns), at batch sizes on both sides of the split.
// Counts every operator new of the process (std::vector, std::string, the
// kernels' and statuses' objects; not the cache-aligned buffers, which come
// from aligned_alloc); its own binary, since the count replaces the global
// allocation functions.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "ballast/model.h"
#include "ballast/rng.h"
#include "ballast/session.h"

namespace {
std::atomic<long> g_news{0};
}  // namespace

void* operator new(size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace ballast {
namespace {

TEST(SessionAllocTest, AWarmRunAllocatesNothing) {
  Sequential net(784, 3);
  net.StandardBlock(256, 0.5).StandardBlock(256, 0.5).Linear(10);
  const Graph g = *net.Build();
  std::vector<float> x(256 * 784), y(256 * 10);
  Generator(4).FillNormal(x, 0.0, 1.0);
  for (Backend backend : {Backend::kHwy, Backend::kRef}) {
    for (int threads : {1, 2}) {
      for (bool split : {true, false}) {
        SessionOptions opt;
        opt.backend = backend;
        opt.threads = threads;
        opt.split_rows = split;
        const long at_create = g_news.load();
        auto s = InferenceSession::Create(g, opt);
        ASSERT_TRUE(s.ok()) << s.status().ToString();
        ASSERT_GT(g_news.load(), at_create) << "the count counts nothing";
        for (int64_t batch : {1, 5, 8, 64, 256}) {
          ASSERT_TRUE((*s)->Run(x.data(), batch, y.data()).ok());  // warm
          const long before = g_news.load();
          for (int i = 0; i < 20; ++i) {
            ASSERT_TRUE((*s)->Run(x.data(), batch, y.data()).ok());
          }
          EXPECT_EQ(g_news.load() - before, 0)
              << BackendName(backend) << ", " << threads << " thread(s), split "
              << split << ", batch " << batch;
        }
      }
    }
  }
}

}  // namespace
}  // namespace ballast
