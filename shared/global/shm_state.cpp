#include "global/shm_state.hpp"

#include <grp.h>
#include <pwd.h>

#include <cstring>
#include <ctime>
#include <functional>

namespace mx {
namespace {

constexpr std::uint64_t shm_magic = 0x4d58434f4e4e3031ULL;  // "MXCONN01"
constexpr std::uint64_t shm_layout_version = 1;

static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

std::uint64_t fnv1a(std::string_view s) {
    std::uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return h;
}

}  // namespace

std::string shm_state::segment_name(const config& cfg) {
    std::error_code ec;
    auto p = std::filesystem::weakly_canonical(cfg.state_dir, ec);
    if (ec) p = cfg.state_dir;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(fnv1a(p.string())));
    return std::string("mx-connector.") + buf;
}

shm_state::shm_state(util::shm_segment seg) : segment_(std::move(seg)) {
    layout_ = static_cast<shm_layout*>(segment_.data());
}

shm_state shm_state::attach(const config& cfg) {
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
    if (cfg.user) {
        if (struct passwd* pw = getpwnam(cfg.user->c_str())) {
            uid = pw->pw_uid;
            gid = pw->pw_gid;
        }
    }
    shm_state s(
        util::shm_segment::open_or_create(segment_name(cfg), sizeof(shm_layout), 0660, uid, gid));
    s.init_if_needed();
    return s;
}

std::optional<shm_state> shm_state::attach_existing(const config& cfg) {
    auto seg = util::shm_segment::open_existing(segment_name(cfg), sizeof(shm_layout), false);
    if (!seg) seg = util::shm_segment::open_existing(segment_name(cfg), sizeof(shm_layout), true);
    if (!seg) return std::nullopt;
    shm_state s(std::move(*seg));
    if (s.layout_->magic.load() != shm_magic ||
        s.layout_->layout_version.load() != shm_layout_version)
        return std::nullopt;
    return s;
}

void shm_state::remove(const config& cfg) noexcept {
    util::shm_segment::remove(segment_name(cfg));
}

void shm_state::init_if_needed() {
    auto& l = *layout_;
    if (l.magic.load(std::memory_order_acquire) == shm_magic &&
        l.layout_version.load(std::memory_order_acquire) == shm_layout_version)
        return;
    // Fresh (all zero) or foreign/older layout: reset. Two processes doing this at once both
    // write zeros and the same stamp, which is harmless.
    std::memset(static_cast<void*>(layout_), 0, sizeof(shm_layout));
    l.created_time.store(static_cast<std::uint64_t>(std::time(nullptr)));
    l.layout_version.store(shm_layout_version, std::memory_order_release);
    l.magic.store(shm_magic, std::memory_order_release);
}

void shm_state::publish_generation(std::uint64_t gen) {
    auto cur = layout_->generation.load(std::memory_order_relaxed);
    while (cur < gen &&
           !layout_->generation.compare_exchange_weak(cur, gen, std::memory_order_release)) {
    }
}

connector_counters& shm_state::counters(std::string_view name) {
    if (name.empty() || name.size() >= sizeof(connector_counters::name)) return layout_->overflow;
    std::size_t start = std::hash<std::string_view>{}(name) % shm_connector_slots;
    for (std::size_t i = 0; i < shm_connector_slots; ++i) {
        auto& slot = layout_->connectors[(start + i) % shm_connector_slots];
        std::uint32_t st = slot.state.load(std::memory_order_acquire);
        if (st == 2) {
            if (std::string_view(slot.name) == name) return slot;
            continue;
        }
        if (st == 0) {
            std::uint32_t expected = 0;
            if (slot.state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
                std::memcpy(slot.name, name.data(), name.size());
                slot.name[name.size()] = '\0';
                slot.state.store(2, std::memory_order_release);
                return slot;
            }
            st = expected;
        }
        // Another process is claiming this slot right now: wait for it to finish naming it.
        // Bounded: a process killed mid-claim must not hang everyone else.
        for (int spin = 0; spin < 1000000 && slot.state.load(std::memory_order_acquire) == 1;
             ++spin) {
        }
        if (std::string_view(slot.name) == name) return slot;
    }
    return layout_->overflow;
}

std::vector<const connector_counters*> shm_state::used_slots() const {
    std::vector<const connector_counters*> out;
    for (const auto& slot : layout_->connectors)
        if (slot.state.load(std::memory_order_acquire) == 2) out.push_back(&slot);
    return out;
}

}  // namespace mx
