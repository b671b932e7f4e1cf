// Precompiled header for every xltune target (see CMakeLists.txt, xltune_pch).
// Only .cc files see it: headers of ours never include <torch/torch.h>, so a change to them
// does not recompile libtorch's headers.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn.h>
#include <torch/optim.h>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>
