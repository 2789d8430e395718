// shm_state: the installation's shared-memory segment: change generation and counters.
//
// Layout (version-stamped, fixed size, lock-free atomics only):
//   generation                  last committed store generation (mxctl bumps, daemons poll)
//   reload_requests             bumped by `mxctl reload`-style tools; daemons re-read config
//   global counters             not-ours, syntax rejects
//   per-connector slots         claimed by name on first use (compare-and-swap)
// Promises: attach() creates the segment when missing; a segment from an older layout or left
// by a crashed process is re-initialised, never trusted blindly; readers (mxctl stats) never
// need the daemons to be running. Counters are monotonic since the segment was created.
// Security: mode 0660, owned by the configured daemon user; it holds counters only, no secrets.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "global/config.hpp"
#include "util/shm_segment.hpp"

namespace mx {

struct connector_counters {
    std::atomic<std::uint32_t> state;  // 0 free, 1 claiming, 2 in use
    char name[68];
    // milter decisions
    std::atomic<std::uint64_t> accepted;
    std::atomic<std::uint64_t> rejected_unknown;
    std::atomic<std::uint64_t> tempfailed_inactive;
    std::atomic<std::uint64_t> tempfailed_error;
    // importer outcomes
    std::atomic<std::uint64_t> imported;
    std::atomic<std::uint64_t> failed_no_mailbox;
    std::atomic<std::uint64_t> failed_unparseable;
    std::atomic<std::uint64_t> failed_too_large;
    std::atomic<std::uint64_t> failed_refused;
    std::atomic<std::uint64_t> failed_expired;
    std::atomic<std::uint64_t> retried;
    std::atomic<std::uint64_t> backlog;           // gauge: files waiting
    std::atomic<std::uint64_t> oldest_file_time;  // gauge: unix time of the oldest waiting file
    std::atomic<std::uint64_t> bounces_sent;
    std::atomic<std::uint64_t> bounces_suppressed;
    std::atomic<std::uint64_t> bounces_pending;  // gauge
    std::atomic<std::uint64_t> reserved[8];
};

inline constexpr std::size_t shm_connector_slots = 256;

struct shm_layout {
    std::atomic<std::uint64_t> magic;
    std::atomic<std::uint64_t> layout_version;
    std::atomic<std::uint64_t> generation;
    std::atomic<std::uint64_t> reload_requests;
    std::atomic<std::uint64_t> created_time;
    std::atomic<std::uint64_t> not_ours;
    std::atomic<std::uint64_t> rejected_syntax;
    std::atomic<std::uint64_t>
        tempfailed_error_unattributed;              // store down before a connector is known
    std::atomic<std::uint64_t> milter_heartbeat;    // unix time, written by mx-milter
    std::atomic<std::uint64_t> importer_heartbeat;  // unix time, written by mx-importer
    // Cluster mode (docs/cluster.md), written by mx-replica: unix ms of its last successful
    // contact with PostgreSQL (mx-milter's max_staleness compares against it) and the primary
    // generation it saw then.
    std::atomic<std::uint64_t> cluster_contact_ms;
    std::atomic<std::uint64_t> cluster_primary_generation;
    std::atomic<std::uint64_t> reserved[20];
    connector_counters connectors[shm_connector_slots];
    connector_counters overflow;  // when all slots are taken
};

class shm_state {
  public:
    // Creates or opens the segment of this installation (named after its state directory).
    static shm_state attach(const config& cfg);
    // Opens it if it exists (for readers like `mxctl stats`).
    static std::optional<shm_state> attach_existing(const config& cfg);
    static std::string segment_name(const config& cfg);
    static void remove(const config& cfg) noexcept;

    std::uint64_t generation() const { return layout_->generation.load(std::memory_order_acquire); }
    // Raises the generation to at least `gen` (commits from several processes may race).
    void publish_generation(std::uint64_t gen);
    shm_layout& layout() { return *layout_; }
    const shm_layout& layout() const { return *layout_; }
    // The slot for a connector, claimed on first use; never null (overflow slot when full).
    connector_counters& counters(std::string_view connector);
    // Slots in use (name + pointer), for readers.
    std::vector<const connector_counters*> used_slots() const;

  private:
    explicit shm_state(util::shm_segment seg);
    void init_if_needed();
    util::shm_segment segment_;
    shm_layout* layout_ = nullptr;
};

}  // namespace mx
