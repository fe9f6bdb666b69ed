#include "tools/svg_plot.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>

namespace ballast::cli {
namespace {

// A log-scale axis labels powers of ten; a linear one, plain numbers.
std::string Tick(double v, bool log_scale) {
  return log_scale ? fmt::format("1e{:.0f}", v) : fmt::format("{:.3g}", v);
}

// Past this many points a series is a line alone: markers would crowd it.
constexpr size_t kMaxMarkedPoints = 30;

}  // namespace

std::string LinePlotSvg(const std::string& title, const std::string& x_label,
                        const std::vector<PlotSeries>& series,
                        int64_t first_x) {
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                          "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
                          "#bcbd22", "#17becf", "#000000"};
  const size_t palette = sizeof(colors) / sizeof(colors[0]);
  bool any_right = false, left_log = false, right_log = false;
  size_t n = 1;
  for (const PlotSeries& s : series) {
    n = std::max(n, s.y.size());
    any_right |= s.right_axis;
    (s.right_axis ? right_log : left_log) |= s.log_scale;
  }
  // The legend sits right of the plot when it is long.
  const bool side_legend = series.size() > 4;
  const double W = side_legend ? 980 : 720,
               H = side_legend ? std::max(420.0, 60.0 + 16.0 * series.size())
                               : 420;
  const double L = 70, R = (side_legend ? 330 : 0) + (any_right ? 70 : 30),
               T = 40, B = 50;
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
    if (hi - lo < 1e-12) lo -= 0.5, hi += 0.5;  // one value: mid-height
    if ((right ? right_log : left_log)) lo = std::floor(lo), hi = std::ceil(hi);
    return std::pair<double, double>{lo, hi};
  };
  const auto left = range(false), right = range(true);
  const double plot_w = W - L - R, plot_h = H - T - B;
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" "
      "height=\"100%\" "
      "fill=\"white\"/>\n<text x=\"{}\" y=\"24\" text-anchor=\"middle\" "
      "font-size=\"15\">{}</text>\n",
      W, H, L + plot_w / 2, title);
  svg += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" "
      "stroke=\"#444\"/>\n",
      L, T, plot_w, plot_h);
  auto px = [&](size_t i) {
    return L + plot_w * (n > 1 ? double(i) / double(n - 1) : 0.5);
  };
  const size_t step = std::max<size_t>(1, (n + 9) / 10);
  for (size_t i = 0; i < n; ++i) {
    if (i % step != 0 && i + 1 != n) continue;
    svg += fmt::format(
        "<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", px(i),
        H - B + 16, first_x + int64_t(i));
  }
  svg +=
      fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                  L + plot_w / 2, H - 12, x_label);
  for (int k = 0; k <= 4; ++k) {
    const double y = T + plot_h * (1 - k / 4.0);
    svg += fmt::format(
        "<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" "
        "stroke=\"#ddd\"/>\n",
        L, L + plot_w, y, y);
    svg += fmt::format(
        "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", L - 6,
        y + 4,
        Tick(left.first + (left.second - left.first) * k / 4.0, left_log));
    if (any_right) {
      svg += fmt::format(
          "<text x=\"{}\" y=\"{:.1f}\">{}</text>\n", L + plot_w + 6, y + 4,
          Tick(right.first + (right.second - right.first) * k / 4.0,
               right_log));
    }
  }
  for (size_t si = 0; si < series.size(); ++si) {
    const PlotSeries& s = series[si];
    const auto [lo, hi] = s.right_axis ? right : left;
    const char* color = colors[si % palette];
    const char* dash = (si / palette) % 2 ? " stroke-dasharray=\"6,3\"" : "";
    std::string points, markers;
    for (size_t i = 0; i < s.y.size(); ++i) {
      double v = s.y[i];
      if (!std::isfinite(v) || (s.log_scale && v <= 0))
        continue;  // overflow/underflow: gap
      if (s.log_scale) v = std::log10(v);
      const double x = px(i), y = T + plot_h * (1 - (v - lo) / (hi - lo));
      points += fmt::format("{:.1f},{:.1f} ", x, y);
      if (s.y.size() > kMaxMarkedPoints) continue;
      markers += fmt::format(
          "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", x, y,
          color);
    }
    svg += fmt::format(
        "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{} "
        "points=\"{}\"/>\n",
        color, dash, points);
    svg += markers;
    const double lx = side_legend ? L + plot_w + (any_right ? 60 : 20) : L + 10;
    const double ly = T + 12 + 16 * double(si);
    svg += fmt::format(
        "<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" "
        "stroke-width=\"2\"{}/>\n",
        lx, lx + 18, ly - 4, ly - 4, color, dash);
    svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\">{}{}</text>\n", lx + 24, ly,
                       s.name, s.right_axis ? " (right axis)" : "");
  }
  return svg + "</svg>\n";
}

}  // namespace ballast::cli
