#include "tools/svg_plot.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>

namespace ballast::cli {

std::string LinePlotSvg(const std::string& title, const std::string& x_label,
                        const std::vector<PlotSeries>& series) {
  const double W = 720, H = 420, L = 70, R = 70, T = 40, B = 50;
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c",
                          "#9467bd", "#ff7f0e", "#8c564b"};
  size_t n = 1;
  for (const PlotSeries& s : series) n = std::max(n, s.y.size());
  auto range = [&](bool right) {
    double lo = INFINITY, hi = -INFINITY;
    for (const PlotSeries& s : series) {
      if (s.right_axis != right) continue;
      for (double v : s.y) {
        if (!std::isfinite(v) || (s.log_scale && v <= 0)) continue;
        const double t = s.log_scale ? std::log10(v) : v;
        lo = std::min(lo, t), hi = std::max(hi, t);
      }
    }
    if (!std::isfinite(lo)) lo = 0, hi = 1;
    if (hi - lo < 1e-12) hi = lo + 1;
    return std::pair<double, double>{lo, hi};
  };
  const auto left = range(false), right = range(true);
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" "
      "height=\"100%\" "
      "fill=\"white\"/>\n<text x=\"{}\" y=\"24\" text-anchor=\"middle\" "
      "font-size=\"15\">{}</text>\n",
      W, H, W / 2, title);
  svg += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" "
      "stroke=\"#444\"/>\n",
      L, T, W - L - R, H - T - B);
  auto px = [&](size_t i) {
    return L + (W - L - R) * (n > 1 ? double(i) / double(n - 1) : 0.5);
  };
  for (size_t i = 0; i < n; ++i) {
    svg += fmt::format(
        "<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", px(i),
        H - B + 16, i + 1);
  }
  svg +=
      fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                  W / 2, H - 12, x_label);
  for (int k = 0; k <= 4; ++k) {
    const double y = T + (H - T - B) * (1 - k / 4.0);
    svg += fmt::format(
        "<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" "
        "stroke=\"#ddd\"/>\n",
        L, W - R, y, y);
    svg += fmt::format(
        "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.3g}</text>\n",
        L - 6, y + 4, left.first + (left.second - left.first) * k / 4.0);
    svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\">{:.3g}</text>\n", W - R + 6,
                       y + 4,
                       right.first + (right.second - right.first) * k / 4.0);
  }
  for (size_t si = 0; si < series.size(); ++si) {
    const PlotSeries& s = series[si];
    const auto [lo, hi] = s.right_axis ? right : left;
    std::string points;
    for (size_t i = 0; i < s.y.size(); ++i) {
      double v = s.y[i];
      if (!std::isfinite(v) || (s.log_scale && v <= 0)) continue;
      if (s.log_scale) v = std::log10(v);
      const double y = T + (H - T - B) * (1 - (v - lo) / (hi - lo));
      points += fmt::format("{:.1f},{:.1f} ", px(i), y);
    }
    const char* color = colors[si % 6];
    svg += fmt::format(
        "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" "
        "points=\"{}\"/>\n",
        color, points);
    svg += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"{}\">{}{}</text>\n",
                       L + 10, T + 16 + 16 * si, color, s.name,
                       s.right_axis ? " (right axis)" : "");
  }
  return svg + "</svg>\n";
}

}  // namespace ballast::cli
