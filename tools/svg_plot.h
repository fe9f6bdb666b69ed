// A small SVG line plot (one x axis of epochs, lines on a left or right
// axis), so that training curves need nothing beyond a browser to view.
#ifndef BALLAST_TOOLS_SVG_PLOT_H_
#define BALLAST_TOOLS_SVG_PLOT_H_

#include <string>
#include <vector>

namespace ballast::cli {

struct PlotSeries {
  std::string name;
  std::vector<double> y;  // y[i] at x = i + 1
  bool right_axis = false;
  bool log_scale = false;
};

std::string LinePlotSvg(const std::string& title, const std::string& x_label,
                        const std::vector<PlotSeries>& series);

}  // namespace ballast::cli

#endif  // BALLAST_TOOLS_SVG_PLOT_H_
