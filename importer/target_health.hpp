// target_health: the circuit breaker of each import target (by spec) and the status file that
// shows it to mxctl (stats, import-status, doctor) and Prometheus.
//
// Promises:
// - After `failures` consecutive temporary results a target is paused: no delivery is tried
//   until `paused_until` (breaker_base doubling per reopening up to breaker_max, at least the
//   receiver's Retry-After). Then ONE delivery probes it (half-open): success closes the
//   breaker, another temporary failure pauses it again for longer. A permanent answer proves the
//   target alive (closes too). The files of a paused target wait in the work folder with their
//   retry record set to the end of the pause: they are not read again meanwhile.
// - Thread-safe: lanes record results while the engine's thread asks whether to plan.
// - The status file (<state_dir>/importer-targets.json) is written atomically by mx-importer
//   when a breaker changes and at most every few seconds otherwise; readers open it with
//   O_NOFOLLOW and a size cap (root may read it: the folder belongs to the daemon account).
// Security: specs may carry a webhook URL's userinfo or query: the status shows describe()
// (scheme://host/path) only, never the spec itself.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "global/config.hpp"
#include "import_target.hpp"

namespace mx::importer {

struct breaker_settings {
    int failures = 5;                // [importer] breaker_failures (0: no breaker)
    std::chrono::seconds base{30};   // [importer] breaker_base_seconds
    std::chrono::seconds max{1800};  // [importer] breaker_max_seconds
    static breaker_settings from(const config& cfg);
};

class target_health {
  public:
    explicit target_health(breaker_settings s) : s_(s) {}
    // Before planning a delivery: the end of the pause when paused (nullopt: go ahead). A due
    // pause lets exactly one probe through; until its result others stay paused.
    std::optional<std::int64_t> admit(const std::string& spec, const std::string& shown,
                                      std::int64_t now);
    // Before running a queued delivery: paused meanwhile (by an earlier delivery of its lane)?
    std::optional<std::int64_t> paused(const std::string& spec, std::int64_t now) const;
    // A delivery's outcome (not called for deliveries skipped because of a pause); `shown` is
    // the target's describe() (no credentials).
    void record(const std::string& spec, const std::string& shown, const result& r,
                std::int64_t now);
    // Files waiting for this target (a temporary result of it): counted for the status.
    void waiting(const std::string& spec, const std::string& file, bool waits);
    // True when something changed since the last snapshot() (breaker opened/closed, waiting).
    bool changed() const;
    // {"targets": [{"target", "state": closed|paused|probing, "since", "until",
    //  "consecutive_failures", "waiting", "last_error", "trips"}], "time"}: targets that are not
    // healthy or have waiting files only.
    nlohmann::json snapshot(std::int64_t now);

  private:
    struct state {
        std::string shown;
        int consecutive = 0;
        int trips = 0;
        std::int64_t since = 0, until = 0;
        bool probing = false;
        std::string last_error;
        std::set<std::string> waiting;
    };
    breaker_settings s_;
    mutable std::mutex mu_;
    std::map<std::string, state> t_;
    bool changed_ = false;
};

// The status file.
std::filesystem::path target_health_path(const config& cfg);
void write_target_health(const config& cfg, const nlohmann::json& j);
// nullopt when absent or unreadable (no importer ran, or not allowed to read it).
std::optional<nlohmann::json> read_target_health(const config& cfg);
// One human line per troubled target: "target X paused since T until U, N waiting (last error)".
std::vector<std::string> target_health_lines(const nlohmann::json& j);
// Prometheus gauges mxconnector_target_paused and mxconnector_target_waiting_files.
std::string target_health_prometheus(const nlohmann::json& j);

}  // namespace mx::importer
