// doctor check group "daemons": mx-milter and mx-importer run (a process using this
// configuration) and their heartbeats in shared memory are fresh.
#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "doctor/doctor.hpp"
#include "global/shm_state.hpp"

namespace mx::admin::doctor {
namespace {

std::string trim(std::string s) {
    auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return {};
    auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

std::string read_small_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::string s;
    if (!in) return s;
    char buf[8192];
    in.read(buf, sizeof buf);
    s.assign(buf, static_cast<std::size_t>(in.gcount()));
    return s;
}

std::vector<std::string> split_nul(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < s.size()) {
        auto end = s.find('\0', start);
        if (end == std::string::npos) end = s.size();
        out.push_back(s.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

// Pids of running `program` processes that use the configuration file `config_file`
// (--config PATH, else $MX_CONFIG, else the default path). Heartbeats alone cannot tell a
// daemon that stopped a few seconds ago from a running one; several installations (tests,
// staging) may run side by side, hence the match on the configuration.
std::vector<long> find_daemon(const std::string& program,
                              const std::filesystem::path& config_file) {
    std::vector<long> pids;
    std::error_code ec;
    auto want = std::filesystem::weakly_canonical(config_file, ec);
    for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
        const std::string name = e.path().filename().string();
        if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
        std::string comm = trim(read_small_file(e.path() / "comm"));
        if (comm != program) continue;
        auto args = split_nul(read_small_file(e.path() / "cmdline"));
        std::string cfg;
        for (std::size_t i = 1; i < args.size(); ++i) {
            if (args[i] == "--config" && i + 1 < args.size())
                cfg = args[i + 1];
            else if (args[i].rfind("--config=", 0) == 0)
                cfg = args[i].substr(9);
            if (args[i] == "--parse-worker") cfg = "\x01";  // a worker, not the daemon
        }
        if (cfg == "\x01") continue;
        if (cfg.empty()) {
            for (const auto& kv : split_nul(read_small_file(e.path() / "environ")))
                if (kv.rfind("MX_CONFIG=", 0) == 0) cfg = kv.substr(10);
        }
        if (cfg.empty()) cfg = default_config_path;
        std::filesystem::path p(cfg);
        if (p.is_relative()) {
            std::error_code ec2;
            auto cwd = std::filesystem::read_symlink(e.path() / "cwd", ec2);
            if (!ec2) p = cwd / p;
        }
        if (std::filesystem::weakly_canonical(p, ec) == want) pids.push_back(std::stol(name));
    }
    return pids;
}

}  // namespace

void check_daemons(doctor_state& d) {
    std::optional<shm_state> shm;
    try {
        shm = shm_state::attach_existing(d.cfg());
    } catch (const std::exception&) {
    }
    auto now = static_cast<std::int64_t>(std::time(nullptr));
    auto one = [&](const char* name, std::uint64_t hb, const char* unit) {
        std::int64_t age = hb ? now - static_cast<std::int64_t>(hb) : -1;
        auto pids = find_daemon(name, d.cfg().file);
        bool fresh = hb != 0 && age <= d.opt.heartbeat_seconds;
        if (!pids.empty() && fresh) {
            d.r.ok("daemons", std::string(name) + " is running (pid " +
                                  std::to_string(pids.front()) + ", heartbeat " +
                                  std::to_string(std::max<std::int64_t>(age, 0)) + " s ago)");
        } else if (!pids.empty()) {
            d.r.fail("daemons",
                     std::string(name) + " (pid " + std::to_string(pids.front()) +
                         ") is hung: no heartbeat for " +
                         (hb ? age_string(age) : std::string("ever")),
                     std::string("systemctl restart ") + unit + "; see journalctl -u " + unit);
        } else {
            d.r.fail(
                "daemons",
                std::string(name) + " is not running" +
                    (hb ? " (last heartbeat " + age_string(std::max<std::int64_t>(age, 0)) + " ago)"
                        : ""),
                std::string("systemctl start ") + unit + "; see journalctl -u " + unit);
        }
    };
    if (!shm) {
        d.r.fail("daemons", "no shared-memory segment: neither daemon has run since boot",
                 "systemctl start mx-milter mx-importer");
        return;
    }
    one("mx-milter", shm->layout().milter_heartbeat.load(), "mx-milter");
    one("mx-importer", shm->layout().importer_heartbeat.load(), "mx-importer");
}

}  // namespace mx::admin::doctor
