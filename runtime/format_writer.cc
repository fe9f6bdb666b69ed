// Writing .blst files (layout in include/ballast/format.h).
#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "ballast/format.h"
#include "runtime/byte_io.h"
#include "runtime/format_layout.h"

namespace ballast {
namespace {

struct Entry {
  std::string name;
  const Tensor* tensor;
  uint64_t offset = 0;
};

void WriteAttr(io::Writer& w, const std::string& name, const AttrValue& v) {
  w.Str(name);
  if (const int64_t* i = std::get_if<int64_t>(&v)) {
    w.U8(format::kAttrInt), w.I64(*i);
  } else if (const double* d = std::get_if<double>(&v)) {
    w.U8(format::kAttrFloat), w.F64(*d);
  } else if (const bool* b = std::get_if<bool>(&v)) {
    w.U8(format::kAttrBool), w.U8(*b ? 1 : 0);
  } else {
    w.U8(format::kAttrString), w.Str(std::get<std::string>(v));
  }
}

void WriteDirectory(io::Writer& w, const std::vector<Entry>& entries) {
  w.U32(uint32_t(entries.size()));
  for (const Entry& e : entries) {
    const Tensor& t = *e.tensor;
    w.Str(e.name);
    w.U8(uint8_t(t.dtype()));
    w.U8(uint8_t(t.rank()));
    for (int i = 0; i < t.rank(); ++i) w.I64(t.dim(i));
    w.U64(e.offset);
    w.U64(t.nbytes());
    w.U64(t.empty() ? XXH3_64bits(nullptr, 0)
                    : XXH3_64bits(t.data(), t.nbytes()));
  }
}

std::string Errno() { return std::strerror(errno); }

}  // namespace

Result<std::vector<uint8_t>> SerializeModel(const Model& model,
                                            const Registry* registry) {
  const Graph& g = model.graph;
  BALLAST_RETURN_IF_ERROR(g.Validate(registry ? *registry : Registry::Builtin())
                              .status()
                              .WithContext("save: "));
  std::vector<Entry> entries;
  io::Writer meta, graph;
  meta.U32(uint32_t(g.metadata.size()));
  for (const auto& [k, v] : g.metadata) meta.Str(k), meta.Str(v);

  graph.U64(uint64_t(g.input_features));
  graph.U32(uint32_t(g.nodes.size()));
  for (const Node& n : g.nodes) {
    graph.Str(n.name);
    graph.Str(n.op);
    graph.U32(uint32_t(n.attrs.size()));
    for (const auto& [name, v] : n.attrs) WriteAttr(graph, name, v);
    graph.U32(uint32_t(n.params.size()));
    for (const auto& [name, t] : n.params) {
      if (t.empty()) {
        return InvalidArgument("save: node '" + n.name + "' parameter '" +
                               name + "' is an empty tensor");
      }
      graph.Str(name);
      graph.U32(uint32_t(entries.size()));
      entries.push_back({n.name + "." + name, &t});
    }
  }
  for (const auto& [name, t] : model.extra) {
    if (t.empty()) {
      return InvalidArgument("save: extra tensor '" + name + "' is empty");
    }
    entries.push_back({name, &t});
  }
  // The directory's size does not depend on the offsets it holds.
  io::Writer probe;
  WriteDirectory(probe, entries);
  const uint64_t meta_off = format::kHeaderSize;
  const uint64_t graph_off = meta_off + meta.bytes().size();
  const uint64_t dir_off = graph_off + graph.bytes().size();
  const uint64_t data_off = format::AlignUp(dir_off + probe.bytes().size());
  uint64_t end = data_off;
  for (Entry& e : entries) {
    e.offset = format::AlignUp(end);
    end = e.offset + e.tensor->nbytes();
  }
  io::Writer dir;
  WriteDirectory(dir, entries);

  io::Writer header;
  header.Raw(format::kMagic, sizeof(format::kMagic));
  header.U16(kFormatMajor);
  header.U16(kFormatMinor);
  header.U32(model.checkpoint ? kFlagCheckpoint : 0u);
  header.U64(end);
  header.U64(meta_off), header.U64(meta.bytes().size());
  header.U64(graph_off), header.U64(graph.bytes().size());
  header.U64(dir_off), header.U64(dir.bytes().size());
  header.U64(data_off);
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, header.bytes().data(),
                     format::kChecksummedHeaderBytes);
  XXH3_64bits_update(st, meta.bytes().data(), meta.bytes().size());
  XXH3_64bits_update(st, graph.bytes().data(), graph.bytes().size());
  XXH3_64bits_update(st, dir.bytes().data(), dir.bytes().size());
  header.U64(XXH3_64bits_digest(st));
  XXH3_freeState(st);
  header.bytes().resize(format::kHeaderSize, 0);

  std::vector<uint8_t> out;
  out.reserve(end);
  for (io::Writer* w : {&header, &meta, &graph, &dir}) {
    out.insert(out.end(), w->bytes().begin(), w->bytes().end());
  }
  for (const Entry& e : entries) {
    out.resize(e.offset, 0);
    const auto* p = reinterpret_cast<const uint8_t*>(e.tensor->data());
    out.insert(out.end(), p, p + e.tensor->nbytes());
  }
  out.resize(end, 0);
  return out;
}

Status WriteFileAtomically(const std::string& path,
                           std::span<const uint8_t> bytes) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : ".";
  std::string name = target.filename().string();
  name.insert(name.begin(), '.');
  // A name of this call's own: saves from several threads (or processes)
  // to one path each write their own file, and the last rename wins. A name
  // taken (a file a crash left, another process) moves on to the next.
  static std::atomic<uint64_t> saves{0};
  name += ".tmp-" + std::to_string(getpid()) + "-";
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp =
        (dir /
         (name + std::to_string(saves.fetch_add(1, std::memory_order_relaxed))))
            .string();
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    return IoError("save '" + path + "': cannot create '" + tmp +
                   "': " + Errno());
  }
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = Errno();
      ::close(fd);
      ::unlink(tmp.c_str());
      return IoError("save '" + path + "': write failed after " +
                     std::to_string(done) + " bytes: " + why);
    }
    done += size_t(n);
  }
  if (::fsync(fd) != 0) {
    const std::string why = Errno();
    ::close(fd);
    ::unlink(tmp.c_str());
    return IoError("save '" + path + "': fsync failed: " + why);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = Errno();
    ::unlink(tmp.c_str());
    return IoError("save '" + path + "': rename from '" + tmp +
                   "' failed: " + why);
  }
  // Make the rename itself durable.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

Status SaveModel(const Model& model, const std::string& path,
                 const Registry* registry) {
  BALLAST_ASSIGN_OR_RETURN(const std::vector<uint8_t> bytes,
                           SerializeModel(model, registry));
  return WriteFileAtomically(path, bytes);
}

}  // namespace ballast
