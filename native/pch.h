// Precompiled header: the torch and N-API includes every translation unit needs.
// Parsing torch/script.h dominates compile time (~13 s a file on 2 cores), so it is
// compiled once here and reused.
#pragma once
#include <torch/script.h>
#include <torch/csrc/jit/runtime/custom_operator.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>
