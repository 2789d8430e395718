// console history: fixed-size ring files of counter samples (cumulative, all connectors and
// one per connector), one point per [console] sample_seconds; 7 days at one a minute is 10080
// slots of 64 bytes (645 KB a ring). Bounded by construction: a file never grows beyond
// header + slots, and there is at most one per shared-memory slot (256) plus the total.
// Written with pwrite at the slot's offset; a torn write costs one point, never the file.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <system_error>

#include "console.hpp"

namespace mx::console {
namespace {

constexpr std::uint64_t ring_magic = 0x4d58434f4e534831ULL;  // "MXCONSH1"
struct ring_header {
    std::uint64_t magic, slots, next, count;
};
struct ring_slot {
    std::int64_t time;
    std::uint64_t v[7];
};
static_assert(sizeof(ring_slot) == 64);

struct fd_guard {
    int fd;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace

sample take_sample(const connector_counters& c) {
    sample s;
    s.time = static_cast<std::int64_t>(::time(nullptr));
    s.accepted = c.accepted;
    s.rejected = c.rejected_unknown;
    s.tempfailed = c.tempfailed_inactive + c.tempfailed_error;
    s.imported = c.imported;
    s.failed = c.failed_no_mailbox + c.failed_unparseable + c.failed_too_large + c.failed_refused +
               c.failed_expired;
    s.backlog = c.backlog;
    s.bounces = c.bounces_sent;
    return s;
}

sample take_sample(const shm_state& shm) {
    sample s;
    s.time = static_cast<std::int64_t>(::time(nullptr));
    for (auto* c : shm.used_slots()) {
        auto one = take_sample(*c);
        s.accepted += one.accepted;
        s.rejected += one.rejected;
        s.tempfailed += one.tempfailed;
        s.imported += one.imported;
        s.failed += one.failed;
        s.backlog += one.backlog;
        s.bounces += one.bounces;
    }
    s.rejected += shm.layout().rejected_syntax;
    return s;
}

std::filesystem::path history_path(const std::filesystem::path& dir, std::string_view connector) {
    // Only valid connector names ('-', '_', '.', letters, digits) ever become a file name.
    if (connector.empty() || !valid_connector_name(connector)) return dir / "history.bin";
    return dir / ("history-" + std::string(connector) + ".bin");
}

void sample_all(const std::filesystem::path& dir, const shm_state& shm, std::size_t slots) {
    history(history_path(dir, ""), slots).append(take_sample(shm));
    for (auto* c : shm.used_slots()) {
        std::string name(c->name, ::strnlen(c->name, sizeof c->name));
        if (valid_connector_name(name))
            history(history_path(dir, name), slots).append(take_sample(*c));
    }
}

history::history(std::filesystem::path file, std::size_t slots)
    : file_(std::move(file)), slots_(slots) {}

void history::append(const sample& s) {
    fd_guard f{::open(file_.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600)};
    if (f.fd < 0) throw std::system_error(errno, std::generic_category(), "open " + file_.string());
    ring_header hdr{};
    if (::pread(f.fd, &hdr, sizeof hdr, 0) != sizeof hdr || hdr.magic != ring_magic ||
        hdr.slots != slots_)
        hdr = ring_header{ring_magic, slots_, 0, 0};  // new, or another size: start over
    ring_slot slot{
        s.time, {s.accepted, s.rejected, s.tempfailed, s.imported, s.failed, s.backlog, s.bounces}};
    off_t at = static_cast<off_t>(sizeof hdr + hdr.next * sizeof slot);
    if (::pwrite(f.fd, &slot, sizeof slot, at) != sizeof slot)
        throw std::system_error(errno, std::generic_category(), "pwrite " + file_.string());
    hdr.next = (hdr.next + 1) % slots_;
    hdr.count = std::min<std::uint64_t>(hdr.count + 1, slots_);
    if (::pwrite(f.fd, &hdr, sizeof hdr, 0) != sizeof hdr)
        throw std::system_error(errno, std::generic_category(), "pwrite " + file_.string());
}

std::vector<sample> history::read() const {
    std::vector<sample> out;
    fd_guard f{::open(file_.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)};
    if (f.fd < 0) return out;
    ring_header hdr{};
    if (::pread(f.fd, &hdr, sizeof hdr, 0) != sizeof hdr || hdr.magic != ring_magic ||
        hdr.slots != slots_ || hdr.count > slots_ || hdr.next >= slots_)
        return out;
    // One read of every slot (645 KB), then the ring's order: the pages read it per request.
    // A young ring's file ends after its last written slot.
    std::vector<ring_slot> slots(slots_);
    ssize_t got = ::pread(f.fd, slots.data(), slots_ * sizeof(ring_slot), sizeof hdr);
    if (got < 0) return out;
    auto present = static_cast<std::uint64_t>(got) / sizeof(ring_slot);
    std::uint64_t first = (hdr.next + slots_ - hdr.count) % slots_;
    out.reserve(hdr.count);
    for (std::uint64_t i = 0; i < hdr.count; ++i) {
        if ((first + i) % slots_ >= present) break;
        const auto& slot = slots[(first + i) % slots_];
        out.push_back(sample{slot.time, slot.v[0], slot.v[1], slot.v[2], slot.v[3], slot.v[4],
                             slot.v[5], slot.v[6]});
    }
    return out;
}

}  // namespace mx::console
