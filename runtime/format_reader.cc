// Reading .blst files (layout in include/ballast/format.h). Every offset,
// size and count is checked against the file before use.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>
#include <string>

#include "ballast/format.h"
#include "runtime/byte_io.h"
#include "runtime/format_layout.h"

namespace ballast {
namespace {

struct Section {
  const char* name;
  uint64_t offset, size;
};

struct DirEntry {
  std::string name;
  Shape shape;
  uint64_t offset = 0, nbytes = 0, checksum = 0;
  bool used = false;
};

std::string U(uint64_t v) { return std::to_string(v); }

Status ReadAttr(io::Reader& r, Node& n) {
  std::string name;
  uint8_t tag = 0;
  BALLAST_RETURN_IF_ERROR(r.Str(name, "attribute name"));
  BALLAST_RETURN_IF_ERROR(r.U8(tag, "attribute type"));
  switch (tag) {
    case format::kAttrInt: {
      int64_t v = 0;
      BALLAST_RETURN_IF_ERROR(r.I64(v, "int attribute"));
      n.attrs[name] = v;
      break;
    }
    case format::kAttrFloat: {
      double v = 0;
      BALLAST_RETURN_IF_ERROR(r.F64(v, "float attribute"));
      n.attrs[name] = v;
      break;
    }
    case format::kAttrBool: {
      uint8_t v = 0;
      BALLAST_RETURN_IF_ERROR(r.U8(v, "bool attribute"));
      if (v > 1) {
        return DataLoss("graph: node '" + n.name + "' attribute '" + name +
                        "' holds bool value " + U(v));
      }
      n.attrs[name] = v == 1;
      break;
    }
    case format::kAttrString: {
      std::string v;
      BALLAST_RETURN_IF_ERROR(r.Str(v, "string attribute"));
      n.attrs[name] = v;
      break;
    }
    default:
      return DataLoss("graph: node '" + n.name + "' attribute '" + name +
                      "' has unknown type tag " + U(tag));
  }
  return Status::Ok();
}

Status ReadDirectory(std::span<const uint8_t> bytes, uint64_t data_off,
                     uint64_t file_size, std::vector<DirEntry>& out) {
  io::Reader r(bytes, "tensor directory");
  uint32_t count = 0;
  // name (4) + dtype + rank + offset + size + checksum
  BALLAST_RETURN_IF_ERROR(r.Count(count, 4 + 2 + 24, "tensor count"));
  std::set<std::string> names;
  for (uint32_t i = 0; i < count; ++i) {
    DirEntry e;
    uint8_t dtype = 0, rank = 0;
    BALLAST_RETURN_IF_ERROR(r.Str(e.name, "tensor name"));
    const std::string where =
        "tensor directory: tensor " + U(i) + " '" + e.name + "'";
    if (!names.insert(e.name).second) {
      return DataLoss(where + " appears twice");
    }
    BALLAST_RETURN_IF_ERROR(r.U8(dtype, "dtype"));
    BALLAST_RETURN_IF_ERROR(r.U8(rank, "rank"));
    if (dtype != uint8_t(DType::kF32)) {
      return DataLoss(where + " has unknown dtype " + U(dtype));
    }
    if (rank > kMaxRank) {
      return DataLoss(where + " has rank " + U(rank) + " (at most 4)");
    }
    int64_t dims[kMaxRank] = {};
    for (int d = 0; d < rank; ++d) {
      BALLAST_RETURN_IF_ERROR(r.I64(dims[d], "dimension"));
    }
    Result<Shape> shape = Shape::Make({dims, size_t(rank)});
    if (!shape.ok()) return DataLoss(where + ": " + shape.status().message());
    e.shape = *shape;
    BALLAST_RETURN_IF_ERROR(r.U64(e.offset, "tensor offset"));
    BALLAST_RETURN_IF_ERROR(r.U64(e.nbytes, "tensor byte size"));
    BALLAST_RETURN_IF_ERROR(r.U64(e.checksum, "tensor checksum"));
    if (e.nbytes != uint64_t(e.shape.numel()) * 4) {
      return DataLoss(where + ": byte size " + U(e.nbytes) +
                      " does not match shape " + e.shape.ToString() +
                      " of f32 (" + U(uint64_t(e.shape.numel()) * 4) + ")");
    }
    if (e.offset % format::kDataAlignment != 0) {
      return DataLoss(where + ": offset " + U(e.offset) +
                      " is not a multiple of 64");
    }
    if (e.offset < data_off || e.offset > file_size ||
        e.nbytes > file_size - e.offset) {
      return DataLoss(where + ": bytes [" + U(e.offset) + ", " +
                      U(e.offset + e.nbytes) +
                      ") lie outside the data region [" + U(data_off) + ", " +
                      U(file_size) + ")");
    }
    out.push_back(std::move(e));
  }
  BALLAST_RETURN_IF_ERROR(r.ExpectEnd());
  std::vector<const DirEntry*> sorted;
  for (const DirEntry& e : out) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(),
            [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i - 1]->offset + sorted[i - 1]->nbytes > sorted[i]->offset) {
      return DataLoss("tensor directory: tensors '" + sorted[i - 1]->name +
                      "' and '" + sorted[i]->name + "' overlap");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<Model> ParseModel(std::span<const uint8_t> bytes, const LoadOptions& opt,
                         std::shared_ptr<void> owner) {
  const uint64_t size = bytes.size();
  if (size < format::kHeaderSize) {
    return DataLoss("file is " + U(size) +
                    " bytes, shorter than the 128-byte .blst header");
  }
  if (std::memcmp(bytes.data(), format::kMagic, 8) != 0) {
    return DataLoss(
        "not a ballast model: the file does not start with the "
        ".blst magic bytes \"BLST\\r\\n\\x1a\\n\"");
  }
  io::Reader h(bytes.first(format::kHeaderSize), "header");
  uint8_t magic[8];
  uint16_t major = 0, minor = 0;
  uint32_t flags = 0;
  uint64_t file_size = 0, data_off = 0, checksum = 0;
  Section sections[3] = {
      {"metadata", 0, 0}, {"graph", 0, 0}, {"tensor directory", 0, 0}};
  BALLAST_RETURN_IF_ERROR(h.Raw(magic, 8, "magic"));
  BALLAST_RETURN_IF_ERROR(h.U16(major, "version major"));
  BALLAST_RETURN_IF_ERROR(h.U16(minor, "version minor"));
  if (major > kFormatMajor) {
    return Unimplemented("file format version " + U(major) + "." + U(minor) +
                         " is newer than this reader's " + U(kFormatMajor) +
                         "." + U(kFormatMinor) + "; upgrade ballast");
  }
  if (major == 0) return DataLoss("header: format version major is 0");
  BALLAST_RETURN_IF_ERROR(h.U32(flags, "flags"));
  if (flags & ~format::kKnownFlags) {
    return DataLoss("header: unknown flag bits 0x" +
                    [&] {
                      char b[16];
                      std::snprintf(b, sizeof(b), "%x", flags);
                      return std::string(b);
                    }() +
                    " for format " + U(major) + "." + U(minor));
  }
  BALLAST_RETURN_IF_ERROR(h.U64(file_size, "file size"));
  if (file_size != size) {
    return DataLoss("header says the file has " + U(file_size) +
                    " bytes but it has " + U(size) +
                    (size < file_size ? " (truncated)" : " (extra bytes)"));
  }
  for (Section& s : sections) {
    BALLAST_RETURN_IF_ERROR(h.U64(s.offset, "section offset"));
    BALLAST_RETURN_IF_ERROR(h.U64(s.size, "section size"));
  }
  BALLAST_RETURN_IF_ERROR(h.U64(data_off, "data offset"));
  BALLAST_RETURN_IF_ERROR(h.U64(checksum, "header checksum"));
  if (data_off % format::kDataAlignment != 0 || data_off > size) {
    return DataLoss("header: data offset " + U(data_off) +
                    " is not a multiple of 64 inside the file of " + U(size) +
                    " bytes");
  }
  for (const Section& s : sections) {
    if (s.offset < format::kHeaderSize || s.offset > data_off ||
        s.size > data_off - s.offset) {
      return DataLoss(std::string("header: ") + s.name + " section [" +
                      U(s.offset) + ", +" + U(s.size) +
                      ") lies outside [128, " + U(data_off) + ")");
    }
  }
  for (int i = 0; i < 3; ++i) {
    for (int j = i + 1; j < 3; ++j) {
      const Section &a = sections[i], &b = sections[j];
      if (a.offset < b.offset + b.size && b.offset < a.offset + a.size) {
        return DataLoss(std::string("header: the ") + a.name + " and " +
                        b.name + " sections overlap");
      }
    }
  }
  auto section_bytes = [&](int i) {
    return bytes.subspan(sections[i].offset, sections[i].size);
  };
  if (opt.verify_header_checksum) {
    XXH3_state_t* st = XXH3_createState();
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, bytes.data(), format::kChecksummedHeaderBytes);
    for (int i = 0; i < 3; ++i) {
      XXH3_64bits_update(st, section_bytes(i).data(), section_bytes(i).size());
    }
    const uint64_t actual = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    if (actual != checksum) {
      return DataLoss(
          "checksum mismatch over the header, metadata, graph "
          "and tensor directory: the file is damaged");
    }
  }

  Model model;
  model.version_major = major;
  model.version_minor = minor;
  model.checkpoint = flags & kFlagCheckpoint;

  io::Reader meta(section_bytes(0), "metadata");
  uint32_t count = 0;
  BALLAST_RETURN_IF_ERROR(meta.Count(count, 8, "entry count"));
  for (uint32_t i = 0; i < count; ++i) {
    std::string k, v;
    BALLAST_RETURN_IF_ERROR(meta.Str(k, "key"));
    BALLAST_RETURN_IF_ERROR(meta.Str(v, "value"));
    model.graph.metadata[k] = v;
  }
  BALLAST_RETURN_IF_ERROR(meta.ExpectEnd());

  std::vector<DirEntry> dir;
  BALLAST_RETURN_IF_ERROR(ReadDirectory(section_bytes(2), data_off, size, dir));

  auto make_tensor = [&](DirEntry& e) -> Result<Tensor> {
    const uint8_t* p = bytes.data() + e.offset;
    if (opt.verify_tensor_checksums && XXH3_64bits(p, e.nbytes) != e.checksum) {
      return DataLoss("tensor '" + e.name +
                      "': checksum mismatch, the data "
                      "is damaged");
    }
    Tensor t;
    if (owner && reinterpret_cast<uintptr_t>(p) % alignof(float) == 0) {
      t = Tensor::View(const_cast<float*>(reinterpret_cast<const float*>(p)),
                       e.shape, owner);
    } else {
      t = Tensor::Zeros(e.shape);
      if (e.nbytes) std::memcpy(t.data(), p, e.nbytes);
    }
    for (float v : t.span()) {
      if (!std::isfinite(v)) {
        const std::string msg = "tensor '" + e.name + "' holds " +
                                (std::isnan(v) ? "NaN" : "Inf") + " values";
        if (opt.strict) return InvalidArgument(msg + " (strict)");
        model.warnings.push_back(msg);
        break;
      }
    }
    return t;
  };

  io::Reader gr(section_bytes(1), "graph");
  uint64_t in_features = 0;
  BALLAST_RETURN_IF_ERROR(gr.U64(in_features, "input_features"));
  if (in_features > (uint64_t{1} << 40)) {
    return DataLoss("graph: input_features = " + U(in_features) +
                    " is implausible");
  }
  model.graph.input_features = int64_t(in_features);
  BALLAST_RETURN_IF_ERROR(gr.Count(count, 16, "node count"));
  for (uint32_t i = 0; i < count; ++i) {
    Node n;
    BALLAST_RETURN_IF_ERROR(gr.Str(n.name, "node name"));
    BALLAST_RETURN_IF_ERROR(gr.Str(n.op, "node op"));
    uint32_t attrs = 0, params = 0;
    BALLAST_RETURN_IF_ERROR(gr.Count(attrs, 5, "attribute count"));
    for (uint32_t a = 0; a < attrs; ++a)
      BALLAST_RETURN_IF_ERROR(ReadAttr(gr, n));
    BALLAST_RETURN_IF_ERROR(gr.Count(params, 8, "parameter count"));
    for (uint32_t a = 0; a < params; ++a) {
      std::string pname;
      uint32_t index = 0;
      BALLAST_RETURN_IF_ERROR(gr.Str(pname, "parameter name"));
      BALLAST_RETURN_IF_ERROR(gr.U32(index, "tensor index"));
      if (index >= dir.size()) {
        return DataLoss("graph: node '" + n.name + "' parameter '" + pname +
                        "' refers to tensor " + U(index) + " of " +
                        U(dir.size()));
      }
      DirEntry& e = dir[index];
      if (e.used) {
        return DataLoss("graph: tensor '" + e.name + "' is used twice");
      }
      e.used = true;
      BALLAST_ASSIGN_OR_RETURN(n.params[pname], make_tensor(e));
    }
    model.graph.nodes.push_back(std::move(n));
  }
  BALLAST_RETURN_IF_ERROR(gr.ExpectEnd());
  for (DirEntry& e : dir) {
    if (!e.used) {
      BALLAST_ASSIGN_OR_RETURN(model.extra[e.name], make_tensor(e));
    }
  }
  const Registry& reg = opt.registry ? *opt.registry : Registry::Builtin();
  Status valid = model.graph.Validate(reg).status();
  if (!valid.ok()) return valid.WithContext("graph: ");
  return model;
}

namespace {

struct Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr) ::munmap(addr, size);
  }
};

}  // namespace

Result<Model> LoadModel(const std::string& path, const LoadOptions& opt) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const std::string msg =
        "cannot open model '" + path + "': " + std::strerror(err);
    return err == ENOENT ? NotFound(msg) : IoError(msg);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return IoError("model '" + path + "' is not a regular file");
  }
  auto map = std::make_shared<Mapping>();
  map->size = size_t(st.st_size);
  if (map->size > 0) {
    // Private and writable: pages are copy-on-write, so a caller that writes
    // into a weight changes its copy, never the file.
    map->addr =
        ::mmap(nullptr, map->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (map->addr == MAP_FAILED) {
      map->addr = nullptr;
      ::close(fd);
      return IoError("cannot map model '" + path +
                     "': " + std::strerror(errno));
    }
  }
  ::close(fd);
  Result<Model> m =
      ParseModel({static_cast<const uint8_t*>(map->addr), map->size}, opt, map);
  if (!m.ok()) return m.status().WithContext("model '" + path + "': ");
  return m;
}

}  // namespace ballast
