#include "postconf.hpp"

#include <unistd.h>

#include <sstream>

namespace mx::admin {
namespace {

std::string trim(const std::string& s) {
    auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return {};
    auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

// The first "fatal:"/"error:"/"warning:" message postmap printed, without the program prefix
// ("postmap: fatal: ..."). Duplicate-entry warnings about main.cf are no lookup problem.
std::string first_problem(const std::string& err) {
    std::istringstream in(err);
    for (std::string line; std::getline(in, line);) {
        if (line.find("overriding earlier entry") != std::string::npos) continue;
        for (const char* tag : {"fatal: ", "error: ", "warning: "})
            if (auto p = line.find(tag); p != std::string::npos) return line.substr(p, 300);
    }
    return {};
}

}  // namespace

util::run_result postconf::run(const std::vector<std::string>& args) {
    std::vector<std::string> argv{"postconf", "-c", dir_};
    argv.insert(argv.end(), args.begin(), args.end());
    return util::run_program(argv);
}

std::optional<std::string> postconf::get(const std::string& name) {
    if (auto it = cache_.find(name); it != cache_.end()) return it->second;
    auto r = run({"-x", "-h", name});
    std::optional<std::string> v;
    if (r.status == 0) v = trim(r.out);
    cache_[name] = v;
    return v;
}

std::optional<std::string> postconf::get_explicit(const std::string& name) {
    if (auto it = explicit_cache_.find(name); it != explicit_cache_.end()) return it->second;
    // -n prints nothing for a parameter main.cf does not set.
    auto r = run({"-n", name});
    std::optional<std::string> v;
    auto eq = r.out.find('=');
    if (r.status == 0 && eq != std::string::npos) v = trim(r.out.substr(eq + 1));
    explicit_cache_[name] = v;
    return v;
}

std::vector<postfix::master_service> postconf::services() {
    if (!services_) {
        auto r = run({"-M"});
        services_ =
            r.status == 0 ? postfix::parse_master(r.out) : std::vector<postfix::master_service>{};
    }
    return *services_;
}

std::optional<std::set<std::string>> postconf::map_types() {
    auto r = run({"-m"});
    if (r.status != 0) return std::nullopt;
    std::set<std::string> out;
    std::istringstream in(r.out);
    for (std::string t; in >> t;) out.insert(t);
    return out;
}

std::string postconf::queue_dir() {
    auto q = get("queue_directory").value_or("");
    return q.empty() ? "/var/spool/postfix" : q;
}

std::optional<util::account> postconf::mail_owner() {
    auto name = get("mail_owner").value_or("postfix");
    return util::lookup_account(name.empty() ? "postfix" : name);
}

postconf::lookup postconf::query(const std::string& table, const std::string& key,
                                 const std::optional<util::account>& as) {
    util::run_options o;
    o.cwd = queue_dir();  // postmap wants Postfix's queue folder for some table types
    if (as && ::geteuid() == 0) {
        o.uid = as->uid;
        o.gid = as->gid;
        o.groups = as->groups;
    }
    auto r = util::run_program({"postmap", "-c", dir_, "-q", key, table}, o);
    lookup l;
    std::string problem = first_problem(r.err);
    // postmap exits 1 both for "not found" and for a fatal error: tell them apart by what it
    // printed on stderr.
    if (r.status == 0 && problem.empty()) {
        l.value = trim(r.out);
    } else if (r.status != 1 || !problem.empty() || r.timed_out) {
        l.error = !problem.empty()   ? problem
                  : r.timed_out      ? "postmap did not answer within 10 s"
                  : !r.error.empty() ? r.error
                                     : "postmap exited with status " + std::to_string(r.status);
    }
    return l;
}

}  // namespace mx::admin
