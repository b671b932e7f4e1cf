// OUTPUT_DIR/loss.png: the loss of every step (light) and its moving average (dark) against
// the step, with labelled axes, drawn with OpenCV.
#pragma once

#include <string>
#include <vector>

namespace xltune {

void write_loss_plot(const std::string& path, const std::vector<double>& losses, const std::string& title);
// The trailing moving average over `window` steps (shorter at the start).
std::vector<double> moving_average(const std::vector<double>& values, size_t window);

}  // namespace xltune
