// safetensors.h — read and write the safetensors format (the Hugging Face weight format).
//
// The file is: 8 bytes, little-endian u64 N; N bytes of JSON header; the data. The header
// maps each tensor name to {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}
// (byte offsets into the data section, which the tensors tile with no holes) and holds an
// optional "__metadata__" object of string -> string. numpy, PyTorch (safetensors.torch
// .load_file) and others read it with no copper code; copper keeps the model config JSON
// in the metadata under "config".
//
// Reading validates everything (lengths, JSON, dtypes, shapes against byte counts, offsets
// against the file size, holes and overlaps) and throws copper::Error naming the file and
// the tensor; it never reads past the buffer. Writing goes to a temporary file in the same
// folder which is then renamed over the target, so a crash never leaves half a file.
#pragma once
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace copper::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct SafetensorsFile {
  NamedTensors tensors;                          // in the order of their data offsets
  std::map<std::string, std::string> metadata;   // "__metadata__", empty if absent
  const Tensor* find(const std::string& name) const;
};

// Tensors may live on any device and have any strides; they are written contiguous.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});
SafetensorsFile load_safetensors(const std::string& path);

// "F32" <-> DType::f32, ...; throws naming the supported dtypes.
const char* safetensors_dtype_name(DType t);
DType dtype_from_safetensors(const std::string& name, const std::string& context);

// Write a file atomically: `write` fills a temporary file beside `path` (flushed and
// fsync'ed), which is then renamed to `path`. On any error the temporary file is removed,
// the old `path` is left as it was, and copper::Error is thrown.
void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& write);
void write_text_atomic(const std::string& path, const std::string& text);
// The whole file as text; throws "[op] cannot open 'path'" if it cannot be read.
std::string read_text(const std::string& path, const char* op);

}  // namespace copper::nn
