// doctor report model and the helpers the check groups share (see doctor.hpp).
#include <algorithm>
#include <iostream>
#include <sstream>

#include "doctor/doctor.hpp"

namespace mx::admin::doctor {

std::string_view to_string(level l) {
    switch (l) {
        case level::ok:
            return "ok";
        case level::warn:
            return "warn";
        case level::fail:
            return "fail";
    }
    return "fail";
}

bool report::any(level l) const {
    return std::any_of(f_.begin(), f_.end(), [l](const finding& x) { return x.status == l; });
}

void report::print(bool json, bool strict) const {
    bool failed = any(level::fail) || (strict && any(level::warn));
    if (json) {
        nlohmann::json j = {{"ok", !failed}, {"findings", nlohmann::json::array()}};
        for (const auto& f : f_) {
            nlohmann::json x = {{"check", f.check},
                                {"status", std::string(to_string(f.status))},
                                {"message", f.message}};
            if (!f.fix.empty()) x["fix"] = f.fix;
            j["findings"].push_back(x);
        }
        print_json(j);
        return;
    }
    std::size_t fails = 0, warns = 0;
    for (const auto& f : f_) {
        const char* tag = f.status == level::ok     ? "ok  "
                          : f.status == level::warn ? "WARN"
                                                    : "FAIL";
        std::cout << tag << "  " << f.check << ": " << f.message << "\n";
        if (!f.fix.empty()) std::cout << "      fix: " << f.fix << "\n";
        fails += f.status == level::fail;
        warns += f.status == level::warn;
    }
    std::cout << (fails ? "problems found: " : "all good: ") << fails << " failed, " << warns
              << " warning(s)\n";
}

bool doctor_state::want(const std::string& group) const {
    return std::find(opt.skip.begin(), opt.skip.end(), group) == opt.skip.end();
}

std::string doctor_state::cmd_prefix() const {
    std::string s = "mxctl";
    if (!ctx.config_path.empty()) s += " --config " + ctx.config_path;
    return s;
}

// The store, secrets and OAuth cache live in folders the daemon account can plant symlinks
// in, and LMDB opens lock.mdb read-write by path: read them as that account, like every other
// verb. Doctor itself keeps root for what needs it (Postfix's tables, processes, sockets).
std::string doctor_state::read_state(const std::function<std::string()>& fn) {
    try {
        (void)ctx.state_owner();
    } catch (const std::exception&) {
        return fn();  // `user` names no account: reported by the config check
    }
    return ctx.read_as_state_owner(fn);
}

std::string mode_string(unsigned m) {
    std::ostringstream os;
    os << "0" << std::oct << (m & 07777);
    return os.str();
}

std::string age_string(std::int64_t seconds) {
    if (seconds < 120) return std::to_string(seconds) + " s";
    if (seconds < 7200) return std::to_string(seconds / 60) + " min";
    if (seconds < 172800) return std::to_string(seconds / 3600) + " h";
    return std::to_string(seconds / 86400) + " days";
}

std::string concrete_domain(const std::string& pattern) {
    return !pattern.empty() && pattern.front() == '.' ? "mx-doctor" + pattern : pattern;
}

}  // namespace mx::admin::doctor
