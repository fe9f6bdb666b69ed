// The .blst model file: one format for inference models and training
// checkpoints. Byte layout (format 1.0, all integers little-endian):
//
//   offset size  field
//   ------ ----  -----------------------------------------------------------
//        0    8  magic "BLST\r\n\x1a\n" (catches text-mode and 7-bit damage)
//        8    2  u16 version major (a reader refuses a newer major)
//       10    2  u16 version minor (additions a 1.x reader may ignore)
//       12    4  u32 flags: bit 0 = training checkpoint; other bits zero
//       16    8  u64 file size in bytes (detects truncation and appending)
//       24   16  u64 offset, u64 size of the metadata section
//       40   16  u64 offset, u64 size of the graph section
//       56   16  u64 offset, u64 size of the tensor directory
//       72    8  u64 offset of the tensor data region (a multiple of 64)
//       80    8  u64 XXH3-64 of bytes [0, 80) followed by the metadata,
//                graph and directory sections, in that order
//       88   40  zero (reserved)
//      128       sections, then tensor data
//
// Strings are a u32 byte count and that many UTF-8 bytes. A count is a u32.
//   metadata:  count, then count × (string key, string value)
//   graph:     u64 input_features; node count; per node: string name,
//              string op, attribute count, per attribute: string name,
//              u8 type (0 int: i64, 1 float: f64, 2 bool: u8, 3 string),
//              value; parameter count, per parameter: string name,
//              u32 index into the tensor directory
//   directory: count, then per tensor: string name, u8 dtype (0 = f32),
//              u8 rank (<= 4), rank × i64 dims, u64 offset, u64 byte size,
//              u64 XXH3-64 of the tensor's bytes
// Tensor data start at offsets that are multiples of 64, inside the data
// region, without overlapping; a reader maps the file and uses aligned f32
// weights in place. Tensors the graph does not reference (optimizer state
// in a checkpoint) are kept as `extra` tensors.
//
// A reader checks every offset, size and count against the file before it
// uses it, so a damaged file is an error naming the field — never a crash
// or an allocation larger than the file. Writers write a temporary file in
// the target directory, fsync it and rename it over the target, so a crash
// never leaves a half-written model under the final name.
#ifndef BALLAST_FORMAT_H_
#define BALLAST_FORMAT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ballast/graph.h"
#include "ballast/registry.h"
#include "ballast/status.h"
#include "ballast/tensor.h"

namespace ballast {

inline constexpr uint16_t kFormatMajor = 1;
inline constexpr uint16_t kFormatMinor = 0;
inline constexpr uint32_t kFlagCheckpoint = 1u << 0;

struct Model {
  Graph graph;                          // graph.metadata holds the metadata
  bool checkpoint = false;              // flag bit 0
  std::map<std::string, Tensor> extra;  // tensors outside the graph
  // The version of the file it was read from; a save writes kFormatMajor
  // and kFormatMinor whatever these hold.
  uint16_t version_major = kFormatMajor, version_minor = kFormatMinor;
  std::vector<std::string> warnings;  // e.g. NaN in a weight (not strict)
};

struct LoadOptions {
  bool verify_header_checksum = true;  // off only to fuzz the parsers behind it
  bool verify_tensor_checksums = true;
  bool strict = false;  // NaN or Inf in a tensor is an error, not a warning
  const Registry* registry = nullptr;  // graph validation; nullptr: builtin
};

// Maps the file (read-only; pages are copy-on-write) and returns a Model
// whose tensors point into the mapping, which lives as long as any of them.
Result<Model> LoadModel(const std::string& path, const LoadOptions& opt = {});
// The same from bytes in memory; `owner` keeps them alive for the tensors
// (nullptr: tensors are copied out).
Result<Model> ParseModel(std::span<const uint8_t> bytes,
                         const LoadOptions& opt = {},
                         std::shared_ptr<void> owner = nullptr);

// The file's bytes for `model` (metadata from model.graph.metadata). The
// graph is validated first against `registry` (nullptr: the builtin ops),
// as LoadModel will: a graph it would refuse is not written.
Result<std::vector<uint8_t>> SerializeModel(const Model& model,
                                            const Registry* registry = nullptr);
// Serializes and writes atomically (a temporary file of its own, fsync,
// rename, fsync of the directory): a crash leaves the old file or the new.
Status SaveModel(const Model& model, const std::string& path,
                 const Registry* registry = nullptr);

// Writes bytes atomically to `path` (used by SaveModel and checkpoints).
Status WriteFileAtomically(const std::string& path,
                           std::span<const uint8_t> bytes);

}  // namespace ballast

#endif  // BALLAST_FORMAT_H_
