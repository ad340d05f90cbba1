// safetensors.cpp — safetensors reader and writer, atomic file writes and whole-file reads.
#include "nn/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "tensor/ops.h"

namespace copper::nn {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; copper writes host memory as is");

namespace {
constexpr uint64_t kMaxHeader = 100u << 20;  // the reference implementation's limit (100 MB)

struct DTypeName {
  DType t;
  const char* name;
};
constexpr DTypeName kDTypes[] = {{DType::f32, "F32"}, {DType::f64, "F64"}, {DType::i32, "I32"},
                                 {DType::i64, "I64"}, {DType::bf16, "BF16"}, {DType::f16, "F16"}};
}  // namespace

const char* safetensors_dtype_name(DType t) {
  for (auto& d : kDTypes)
    if (d.t == t) return d.name;
  COPPER_THROW("safetensors", "no safetensors name for dtype {}", dtype_name(t));
}

DType dtype_from_safetensors(const std::string& name, const std::string& context) {
  for (auto& d : kDTypes)
    if (name == d.name) return d.t;
  COPPER_THROW("safetensors", "{}: dtype '{}' is not supported. HINT: copper reads F32, F64, I32, I64, BF16, F16",
               context, name);
}

const Tensor* SafetensorsFile::find(const std::string& name) const {
  for (auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

// ---------------------------------------------------------------- atomic writes

void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& write) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  if (target.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    COPPER_CHECK(!ec, "save", "cannot create folder '{}': {}", target.parent_path().string(), ec.message());
  }
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  COPPER_CHECK(f != nullptr, "save", "cannot open '{}' for writing: {}. HINT: check the folder exists and is writable",
               tmp, std::strerror(errno));
  try {
    write(f);
    COPPER_CHECK(std::fflush(f) == 0 && !std::ferror(f), "save", "writing '{}' failed: {}. HINT: is the disk full?", tmp,
                 std::strerror(errno));
    COPPER_CHECK(::fsync(::fileno(f)) == 0, "save", "fsync of '{}' failed: {}", tmp, std::strerror(errno));
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    COPPER_THROW("save", "closing '{}' failed: {}", tmp, std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    COPPER_THROW("save", "cannot rename '{}' to '{}': {}", tmp, path, std::strerror(err));
  }
}

void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, [&](std::FILE* f) {
    COPPER_CHECK(std::fwrite(text.data(), 1, text.size(), f) == text.size(), "save", "short write to '{}'", path);
  });
}

std::string read_text(const std::string& path, const char* op) {
  std::ifstream in(path);
  COPPER_CHECK(in.good(), op, "cannot open '{}'", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---------------------------------------------------------------- writer

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Header entries in the order given; data laid out in the same order.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json md = nlohmann::ordered_json::object();
    for (auto& [k, v] : metadata) md[k] = v;
    header["__metadata__"] = md;
  }
  std::vector<Tensor> host;
  host.reserve(tensors.size());
  uint64_t offset = 0;
  for (auto& [name, t] : tensors) {
    COPPER_CHECK(t.defined(), "save_safetensors", "tensor '{}' is undefined", name);
    COPPER_CHECK(name != "__metadata__" && !name.empty(), "save_safetensors", "'{}' cannot be a tensor name", name);
    COPPER_CHECK(!header.contains(name), "save_safetensors", "tensor name '{}' appears twice", name);
    Tensor h = t.detach();
    if (!h.device().is_cpu()) h = h.to(kCPU);
    h = h.contiguous();
    const uint64_t nbytes = uint64_t(h.numel()) * dtype_size(h.dtype());
    nlohmann::ordered_json e;
    e["dtype"] = safetensors_dtype_name(h.dtype());
    e["shape"] = h.shape();
    e["data_offsets"] = {offset, offset + nbytes};
    header[name] = e;
    offset += nbytes;
    host.push_back(h);
  }
  std::string hs = header.dump();
  hs.append((8 - hs.size() % 8) % 8, ' ');  // pad so the data starts 8-byte aligned
  const uint64_t n = hs.size();
  write_file_atomic(path, [&](std::FILE* f) {
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
    bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(hs.data(), 1, hs.size(), f) == hs.size();
    for (auto& h : host) {
      const size_t nb = size_t(h.numel()) * dtype_size(h.dtype());
      if (nb) ok = ok && std::fwrite(h.raw_data(), 1, nb, f) == nb;
    }
    COPPER_CHECK(ok, "save_safetensors", "short write to '{}'. HINT: is the disk full?", path);
  });
}

// ---------------------------------------------------------------- reader

SafetensorsFile load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  COPPER_CHECK(in.good(), "load_safetensors", "cannot open '{}': {}. HINT: check the path", path, std::strerror(errno));
  in.seekg(0, std::ios::end);
  const uint64_t size = uint64_t(in.tellg());
  in.seekg(0);
  COPPER_CHECK(size >= 8, "load_safetensors",
               "'{}' is {} bytes, too short to hold the 8-byte header length. HINT: the file is truncated or not "
               "safetensors",
               path, size);
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(len[i]) << (8 * i);
  COPPER_CHECK(n <= kMaxHeader, "load_safetensors",
               "'{}': header length {} is over the 100 MB limit. HINT: the file is not safetensors", path, n);
  COPPER_CHECK(n <= size - 8, "load_safetensors",
               "'{}': header length {} but only {} bytes follow. HINT: the file is truncated", path, n, size - 8);
  std::string hs(n, '\0');
  in.read(hs.data(), std::streamsize(n));
  COPPER_CHECK(in.good(), "load_safetensors", "'{}': reading the header failed", path);

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(hs);
  } catch (const nlohmann::json::exception& e) {
    COPPER_THROW("load_safetensors", "'{}': the header is not valid JSON ({}). HINT: the file is corrupt", path,
                 e.what());
  }
  COPPER_CHECK(header.is_object(), "load_safetensors", "'{}': the header is not a JSON object", path);

  SafetensorsFile out;
  const uint64_t data_size = size - 8 - n;
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (auto& [key, val] : header.items()) {
    if (key == "__metadata__") {
      COPPER_CHECK(val.is_object(), "load_safetensors", "'{}': __metadata__ is not an object", path);
      for (auto& [mk, mv] : val.items()) {
        COPPER_CHECK(mv.is_string(), "load_safetensors", "'{}': __metadata__['{}'] is not a string", path, mk);
        out.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    const std::string ctx = fmt::format("'{}', tensor '{}'", path, key);
    COPPER_CHECK(val.is_object() && val.contains("dtype") && val.contains("shape") && val.contains("data_offsets"),
                 "load_safetensors", "{}: entry needs dtype, shape and data_offsets", ctx);
    COPPER_CHECK(val["dtype"].is_string(), "load_safetensors", "{}: dtype is not a string", ctx);
    Entry e{key, dtype_from_safetensors(val["dtype"].get<std::string>(), ctx), {}, 0, 0};
    const auto& sh = val["shape"];
    COPPER_CHECK(sh.is_array(), "load_safetensors", "{}: shape is not an array", ctx);
    uint64_t numel = 1;
    for (auto& d : sh) {
      COPPER_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), "load_safetensors",
                   "{}: shape {} has an entry that is not a non-negative integer", ctx, sh.dump());
      const uint64_t dv = d.get<uint64_t>();
      COPPER_CHECK(dv < (uint64_t(1) << 40) && (dv == 0 || numel <= (uint64_t(1) << 62) / dv), "load_safetensors",
                   "{}: shape {} is too large", ctx, sh.dump());
      numel *= dv;
      e.shape.push_back(int64_t(dv));
    }
    const auto& off = val["data_offsets"];
    COPPER_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
                 "load_safetensors", "{}: data_offsets {} is not two non-negative integers", ctx, off.dump());
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    COPPER_CHECK(e.begin <= e.end, "load_safetensors", "{}: data_offsets [{}, {}] run backwards", ctx, e.begin, e.end);
    const uint64_t want = numel * dtype_size(e.dtype);
    COPPER_CHECK(e.end - e.begin == want, "load_safetensors",
                 "{}: shape {} of {} needs {} bytes but data_offsets [{}, {}] hold {}", ctx, shape_str(e.shape),
                 val["dtype"].get<std::string>(), want, e.begin, e.end, e.end - e.begin);
    COPPER_CHECK(e.end <= data_size, "load_safetensors",
                 "{}: data ends at byte {} but the data section has only {} bytes. HINT: the file is truncated", ctx,
                 e.end, data_size);
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (auto& e : entries) {
    COPPER_CHECK(e.begin == pos, "load_safetensors",
                 "'{}', tensor '{}': data starts at byte {} where {} was expected (a hole or an overlap). HINT: the "
                 "file is corrupt",
                 path, e.name, e.begin, pos);
    pos = e.end;
  }
  COPPER_CHECK(pos == data_size, "load_safetensors",
               "'{}': the tensors cover {} bytes but the data section holds {}. HINT: the file is corrupt", path, pos,
               data_size);

  for (auto& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    const uint64_t nb = e.end - e.begin;
    if (nb) {
      in.seekg(std::streamoff(8 + n + e.begin));
      in.read(static_cast<char*>(t.raw_data()), std::streamsize(nb));
      COPPER_CHECK(in.good(), "load_safetensors", "'{}', tensor '{}': read failed (file changed while reading?)", path,
                   e.name);
    }
    out.tensors.emplace_back(e.name, t);
  }
  return out;
}

}  // namespace copper::nn
