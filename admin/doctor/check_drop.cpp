// doctor check groups "drop" and "failed": each connector's drop folder exists and both the
// importer's account and Postfix's delivery account (virtual_uid_maps) can use it; files
// waiting in ImportFailed, and an old backlog the importer has not claimed.
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <sstream>

#include "doctor/doctor.hpp"
#include "target_health.hpp"

namespace mx::admin::doctor {
namespace {

// Permission bits that apply to `a` for a file with stat `st` (root: everything).
bool allowed(const util::account& a, const struct stat& st, unsigned want /* 4 r, 2 w, 1 x */) {
    if (a.uid == 0) return true;
    unsigned bits;
    if (st.st_uid == a.uid)
        bits = (st.st_mode >> 6) & 7;
    else if (std::find(a.groups.begin(), a.groups.end(), st.st_gid) != a.groups.end() ||
             st.st_gid == a.gid)
        bits = (st.st_mode >> 3) & 7;
    else
        bits = st.st_mode & 7;
    return (bits & want) == want;
}

}  // namespace

std::optional<std::string> access_problem(const util::account& a, const std::string& path,
                                          unsigned want) {
    std::filesystem::path p(path);
    std::filesystem::path cur;
    for (const auto& part : p.parent_path()) {
        cur /= part;
        struct stat st {};
        if (::stat(cur.c_str(), &st) != 0) return cur.string() + ": " + std::strerror(errno);
        if (!allowed(a, st, 1)) return "cannot traverse " + cur.string();
    }
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return p.string() + ": " + std::strerror(errno);
    if (!allowed(a, st, want)) {
        std::ostringstream os;
        os << "no " << ((want & 2) ? "write" : "read") << " permission on " << p.string()
           << " (mode " << std::oct << (st.st_mode & 07777) << std::dec << ", owner " << st.st_uid
           << ":" << st.st_gid << ")";
        return os.str();
    }
    return std::nullopt;
}

namespace {

struct folder_count {
    std::size_t files = 0;
    std::int64_t oldest = 0;  // mtime
};

folder_count count_files(const std::filesystem::path& dir, bool skip_json) {
    folder_count c;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        std::string n = e.path().filename().string();
        if (n.empty() || n[0] == '.') continue;
        if (skip_json && e.path().extension() == ".json") continue;
        struct stat st {};
        if (::lstat(e.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
        ++c.files;
        if (c.oldest == 0 || st.st_mtime < c.oldest) c.oldest = st.st_mtime;
    }
    return c;
}

// Postfix's delivery account for virtual(8) (static:UID in virtual_uid_maps), if any.
std::optional<util::account> postfix_delivery_account(doctor_state& d) {
    if (!d.pf) return std::nullopt;
    auto v = d.pf->get("virtual_uid_maps").value_or("");
    if (v.rfind("static:", 0) != 0) return std::nullopt;
    try {
        auto uid = static_cast<uid_t>(std::stoul(v.substr(7)));
        if (auto a = util::lookup_uid(uid)) return a;
        return util::account{std::to_string(uid), uid, static_cast<gid_t>(-1), {}};
    } catch (...) {
        return std::nullopt;
    }
}

}  // namespace

void check_drop_folders(doctor_state& d) {
    if (!d.have_store) return;
    auto delivery = postfix_delivery_account(d);
    for (const auto& c : d.connectors) {
        if (c.drop_folder.empty()) continue;
        std::filesystem::path drop(c.drop_folder);
        std::string tag = "connector " + c.name + ": drop folder " + drop.string();
        struct stat st {};
        if (::stat(drop.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
            std::string owner = d.user ? d.user->name : std::string("mxconnector");
            (c.active ? (void)d.r.fail(
                            "drop", tag + " does not exist",
                            "install -d -o " + owner + " -g " + owner + " -m 0750 " + drop.string())
                      : (void)d.r.warn("drop", tag + " does not exist (connector inactive)",
                                       "install -d -o " + owner + " -g " + owner + " -m 0750 " +
                                           drop.string()));
            continue;
        }
        bool bad = false;
        if (d.user) {
            if (auto p = access_problem(*d.user, drop.string(), 7)) {
                bad = true;
                d.r.fail("drop", tag + ": mx-importer (" + d.user->name + ") " + *p,
                         "chown " + d.user->name + ": " + drop.string() + " && chmod 0750 " +
                             drop.string());
            }
        }
        if (delivery && (!d.user || delivery->uid != d.user->uid)) {
            if (auto p = access_problem(*delivery, drop.string(), 3)) {
                bad = true;
                d.r.fail("drop",
                         tag + ": Postfix's delivery account (" + delivery->name +
                             ", virtual_uid_maps) " + *p,
                         "give " + delivery->name + " write access (group) to " + drop.string() +
                             " or set virtual_uid_maps = static:<uid of " +
                             (d.user ? d.user->name : std::string("the daemon user")) + ">");
            }
        }
        if (st.st_mode & 002) {
            bad = true;
            d.r.fail("drop", tag + " is world-writable (mode " + mode_string(st.st_mode) + ")",
                     "chmod o-w " + drop.string());
        }
        if (!bad)
            d.r.ok("drop", tag + " (mode " + mode_string(st.st_mode) + ", owner " +
                               std::to_string(st.st_uid) + ") usable by the importer" +
                               (delivery ? " and Postfix" : ""));
    }
    if (d.connectors.empty())
        d.r.warn("drop", "no connector configured",
                 d.cmd_prefix() + " connector add NAME --drop-folder PATH --domain DOMAIN");
}

void check_failed(doctor_state& d) {
    if (!d.have_store) return;
    auto now = static_cast<std::int64_t>(std::time(nullptr));
    for (const auto& c : d.connectors) {
        if (c.drop_folder.empty()) continue;
        std::filesystem::path drop(c.drop_folder);
        auto failed = count_files(drop / "ImportFailed", true);
        if (failed.files > 0)
            d.r.warn("failed",
                     "connector " + c.name + ": " + std::to_string(failed.files) +
                         " message(s) in ImportFailed (oldest " + age_string(now - failed.oldest) +
                         ")",
                     d.cmd_prefix() + " failed list " + c.name + "; then failed retry or purge");
        else
            d.r.ok("failed", "connector " + c.name + ": ImportFailed is empty");
        if (!c.active) continue;
        auto waiting = count_files(drop / "new", false);
        auto eml = count_files(drop, false);
        folder_count all{waiting.files + eml.files, waiting.oldest && eml.oldest
                                                        ? std::min(waiting.oldest, eml.oldest)
                                                        : std::max(waiting.oldest, eml.oldest)};
        if (all.files > 0 && now - all.oldest > d.opt.backlog_warn_seconds)
            d.r.warn("failed",
                     "connector " + c.name + ": " + std::to_string(all.files) +
                         " file(s) waiting in the drop folder, oldest " +
                         age_string(now - all.oldest),
                     "check that mx-importer runs (systemctl status mx-importer) and can read " +
                         drop.string());
    }
    // Targets paused by the importer's circuit breaker (its status file).
    if (auto health = importer::read_target_health(d.cfg()))
        for (const auto& line : importer::target_health_lines(*health))
            d.r.warn("failed", line, "check the target; " + d.cmd_prefix() + " stats shows it too");
}

}  // namespace mx::admin::doctor
