// target_health: circuit breaker per target and its status file (see target_health.hpp).
#include "target_health.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "global/mail_compose.hpp"
#include "global/mail_header.hpp"
#include "target_http.hpp"
#include "util/fs.hpp"
#include "util/prometheus.hpp"

namespace mx::importer {

breaker_settings breaker_settings::from(const config& cfg) {
    config_reader r(cfg, "importer");
    breaker_settings s;
    s.failures = static_cast<int>(r.integer("breaker_failures", s.failures, 0, 1000000));
    s.base = std::chrono::seconds(r.integer("breaker_base_seconds", s.base.count(), 1, 86400));
    // Never below the first pause: a shorter maximum would make the doubling shrink it.
    s.max = std::chrono::seconds(r.integer("breaker_max_seconds",
                                           std::max(s.max.count(), s.base.count()), s.base.count(),
                                           30 * 86400));
    return s;
}

std::optional<std::int64_t> target_health::admit(const std::string& spec, const std::string& shown,
                                                 std::int64_t now) {
    std::lock_guard lk(mu_);
    auto it = t_.find(spec);
    if (it == t_.end() || it->second.until == 0) return std::nullopt;
    auto& st = it->second;
    st.shown = shown;
    if (st.until > now) return st.until;
    if (st.probing) return now + s_.base.count();  // the probe's answer decides for the rest
    st.probing = true;
    changed_ = true;
    return std::nullopt;
}

std::optional<std::int64_t> target_health::paused(const std::string& spec, std::int64_t now) const {
    std::lock_guard lk(mu_);
    auto it = t_.find(spec);
    if (it == t_.end() || it->second.until <= now) return std::nullopt;
    return it->second.until;
}

void target_health::record(const std::string& spec, const std::string& shown, const result& r,
                           std::int64_t now) {
    if (s_.failures <= 0) return;
    std::lock_guard lk(mu_);
    if (r.kind != result_kind::temporary) {
        auto it = t_.find(spec);
        if (it == t_.end()) return;
        auto& st = it->second;
        if (st.until != 0 || st.probing) changed_ = true;
        st.consecutive = 0;
        st.trips = 0;
        st.since = st.until = 0;
        st.probing = false;
        if (st.waiting.empty()) t_.erase(it);
        return;
    }
    auto& st = t_[spec];
    st.shown = shown;
    st.last_error = r.status + " " + r.detail;
    ++st.consecutive;
    bool probe_failed = st.probing;
    st.probing = false;
    if (st.consecutive < s_.failures && !probe_failed) return;
    // Open (or reopen, longer): base doubling per trip, at least what the receiver asked for.
    ++st.trips;
    std::int64_t d = s_.base.count();
    for (int i = 1; i < st.trips && d < s_.max.count(); ++i) d *= 2;
    d = std::min<std::int64_t>(d, s_.max.count());
    if (r.retry_after)
        d = std::max<std::int64_t>(d, std::min<std::int64_t>(r.retry_after->count(), 86400));
    if (st.since == 0) st.since = now;
    st.until = now + d;
    changed_ = true;
}

void target_health::waiting(const std::string& spec, const std::string& file, bool waits) {
    std::lock_guard lk(mu_);
    if (waits) {
        changed_ |= t_[spec].waiting.insert(file).second;
        return;
    }
    auto it = t_.find(spec);
    if (it == t_.end()) return;
    changed_ |= it->second.waiting.erase(file) > 0;
    if (it->second.waiting.empty() && it->second.until == 0 && it->second.consecutive == 0)
        t_.erase(it);
}

bool target_health::changed() const {
    std::lock_guard lk(mu_);
    return changed_;
}

nlohmann::json target_health::snapshot(std::int64_t now) {
    std::lock_guard lk(mu_);
    changed_ = false;
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [spec, st] : t_) {
        if (st.until == 0 && st.waiting.empty() && st.consecutive == 0) continue;
        const char* state = st.probing       ? "probing"
                            : st.until > now ? "paused"
                            : st.until       ? "due"
                                             : "closed";
        list.push_back({{"target", st.shown.empty() ? std::string("(unnamed)") : st.shown},
                        {"state", state},
                        {"since", st.since},
                        {"until", st.until},
                        {"consecutive_failures", st.consecutive},
                        {"trips", st.trips},
                        {"waiting", st.waiting.size()},
                        {"last_error", reason_text(st.last_error, 200)}});
    }
    return {{"time", now}, {"targets", list}};
}

std::filesystem::path target_health_path(const config& cfg) {
    return cfg.state_dir / "importer-targets.json";
}

void write_target_health(const config& cfg, const nlohmann::json& j) {
    util::write_file_durable(target_health_path(cfg), j.dump(2) + "\n", 0644);
}

std::optional<nlohmann::json> read_target_health(const config& cfg) {
    // O_NOFOLLOW, O_NONBLOCK (a FIFO planted there must not hang it) and a cap: mxctl may run as
    // root; the folder is the daemon account's.
    int fd =
        ::open(target_health_path(cfg).c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    std::string data;
    char buf[8192];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0 && data.size() < (1u << 20))
        data.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    auto j = nlohmann::json::parse(data, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return std::nullopt;
    return j;
}

std::vector<std::string> target_health_lines(const nlohmann::json& j) {
    std::vector<std::string> out;
    if (!j.contains("targets") || !j["targets"].is_array()) return out;
    for (const auto& t : j["targets"]) {
        if (!t.is_object()) continue;
        std::string state = t.value("state", "");
        std::string line = "target " + t.value("target", std::string("?"));
        if (state == "paused" || state == "probing" || state == "due")
            line += " paused since " + mail::iso8601(t.value("since", std::int64_t{0})) +
                    " until " + mail::iso8601(t.value("until", std::int64_t{0})) +
                    (state == "probing" ? " (probing)" : "");
        else
            line += " failing (" + std::to_string(t.value("consecutive_failures", 0)) +
                    " consecutive temporary failures)";
        line += ", " + std::to_string(t.value("waiting", 0)) + " waiting";
        auto err = t.value("last_error", std::string());
        if (!err.empty()) line += "; last error: " + err;
        out.push_back(line);
    }
    return out;
}

std::string target_health_prometheus(const nlohmann::json& j) {
    std::string out =
        "# HELP mxconnector_target_paused 1 while the target's circuit breaker pauses it.\n"
        "# TYPE mxconnector_target_paused gauge\n";
    std::string waiting =
        "# HELP mxconnector_target_waiting_files Files waiting for the target after a temporary "
        "failure.\n# TYPE mxconnector_target_waiting_files gauge\n";
    if (j.contains("targets") && j["targets"].is_array())
        for (const auto& t : j["targets"]) {
            if (!t.is_object()) continue;
            std::string label = "{target=\"" +
                                util::prometheus_label_value(t.value("target", std::string())) +
                                "\"} ";
            std::string st = t.value("state", "");
            out += "mxconnector_target_paused" + label +
                   (st == "paused" || st == "probing" || st == "due" ? "1" : "0") + "\n";
            waiting += "mxconnector_target_waiting_files" + label +
                       std::to_string(t.value("waiting", 0)) + "\n";
        }
    return out + waiting;
}

}  // namespace mx::importer
