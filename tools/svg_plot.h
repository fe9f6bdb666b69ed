// A small SVG line plot (one x axis of epochs, lines on a left or right
// axis), so that training curves need nothing beyond a browser to view.
#ifndef BALLAST_TOOLS_SVG_PLOT_H_
#define BALLAST_TOOLS_SVG_PLOT_H_

#include <cstdint>
#include <string>
#include <vector>

namespace ballast::cli {

struct PlotSeries {
  std::string name;
  std::vector<double> y;  // y[i] at x = first_x + i
  bool right_axis = false;
  bool log_scale = false;
};

// The points of a series of up to 30 have markers as well, so that a
// one-point series shows.
std::string LinePlotSvg(const std::string& title, const std::string& x_label,
                        const std::vector<PlotSeries>& series,
                        int64_t first_x = 1);

}  // namespace ballast::cli

#endif  // BALLAST_TOOLS_SVG_PLOT_H_
