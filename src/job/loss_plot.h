// OUTPUT_DIR/loss.png: the loss of every step (light) and its moving average (dark) against
// the step, and the validation loss at the steps that measured it (dots joined by a line, Note
// [Validation loss]), with labelled axes, drawn with OpenCV.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace xltune {

// `losses[i]` is step i + 1's; `validation` holds (step, validation loss) pairs, possibly none.
void write_loss_plot(const std::string& path, const std::vector<double>& losses, const std::string& title,
                     const std::vector<std::pair<int64_t, double>>& validation = {});
// The trailing moving average over `window` steps (shorter at the start).
std::vector<double> moving_average(const std::vector<double>& values, size_t window);

}  // namespace xltune
