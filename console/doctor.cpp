// console doctor: the findings of `mxctl doctor --json` for the dashboard. The console runs
// the same program (the checks of admin/doctor, as the console's own account: everything that
// needs no root; --probe is never used, it would count as mail) on a worker thread at most
// every [console] doctor_seconds, and pages show the last result with its age — a slow check
// (an SMTP server that does not answer) never holds a page.
// Security: no shell (util::run_program), a deadline, output bounded by run_program; the
// findings are text from our own program but are escaped like everything else.
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <ctime>
#include <filesystem>

#include "console.hpp"
#include "util/spawn.hpp"

namespace mx::console {
namespace {

constexpr auto doctor_deadline = std::chrono::seconds(60);  // also bounds a shutdown

std::int64_t unix_now() {
    return static_cast<std::int64_t>(std::time(nullptr));
}

doctor_result run_doctor(const std::vector<std::string>& argv) {
    doctor_result r;
    util::run_options o;
    o.timeout = doctor_deadline;
    auto res = util::run_program(argv, o);
    r.time = unix_now();
    if (res.timed_out) {
        r.error =
            "mxctl doctor did not finish within " + std::to_string(doctor_deadline.count()) + " s";
        return r;
    }
    try {
        auto j = nlohmann::json::parse(res.out);
        r.findings = j.at("findings");
        if (!r.findings.is_array()) throw std::runtime_error("findings is not a list");
    } catch (const std::exception& e) {
        r.error = "cannot run " + argv[0] + " doctor" +
                  (res.error.empty() ? "" : ": " + res.error) +
                  (res.err.empty() ? "" : ": " + res.err.substr(0, 500));
        r.findings = nlohmann::json::array();
    }
    return r;
}

}  // namespace

std::vector<std::string> doctor_command(const std::string& mxctl, const std::string& config_path) {
    std::string bin = mxctl;
    if (bin.empty()) {
        // Installed: next to mx-console (both in sbin); a build tree: admin/mxctl beside console/.
        std::error_code ec;
        auto self = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
        for (auto p : {self / "mxctl", self.parent_path() / "admin" / "mxctl"})
            if (!ec && ::access(p.c_str(), X_OK) == 0) {
                bin = p.string();
                break;
            }
        if (bin.empty()) bin = "mxctl";  // $PATH
    }
    return {bin, "--config", config_path, "doctor", "--json", "--skip", "probe"};
}

doctor_cache::~doctor_cache() {
    std::thread w;
    {
        std::lock_guard lock(mu_);
        w = std::move(worker_);
    }
    if (w.joinable()) w.join();
}

void doctor_cache::start_locked() {
    if (last_.running) return;
    if (worker_.joinable()) worker_.join();  // finished (running was cleared by it)
    last_.running = true;
    stale_ = false;
    worker_ = std::thread([this] {
        auto r = run_doctor(argv_);
        if (!r.error.empty()) spdlog::warn("console: {}", r.error);
        std::lock_guard lock(mu_);
        last_ = std::move(r);
    });
}

doctor_result doctor_cache::get() {
    std::lock_guard lock(mu_);
    if (stale_ || (!last_.running && unix_now() - last_.time >= max_age_)) start_locked();
    return last_;
}

void doctor_cache::refresh() {
    std::lock_guard lock(mu_);
    stale_ = true;
}

doctor_result doctor_cache::run_now() {
    return run_doctor(argv_);
}

}  // namespace mx::console
