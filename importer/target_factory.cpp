// target_factory: mailbox target specs -> import_target objects, and the batch sync set.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <system_error>

#include "import_target.hpp"
#include "mailbox_path.hpp"
#include "target_http.hpp"
#include "util/hex.hpp"

namespace mx::importer {

std::string_view to_string(result_kind k) {
    switch (k) {
        case result_kind::imported:
            return "imported";
        case result_kind::temporary:
            return "temporary";
        case result_kind::permanent:
            return "permanent";
    }
    return "temporary";
}

std::string encode_path_component(std::string_view s) {
    static const std::string_view safe =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&'*+=?^_`{|}~.-";
    return util::percent_encode(s, [](unsigned char c, std::size_t i) {
        return safe.find(static_cast<char>(c)) != std::string_view::npos && !(i == 0 && c == '.');
    });
}

std::optional<std::filesystem::path> mailbox_maildir(const std::filesystem::path& mail_root,
                                                     std::string_view key) {
    auto at = key.rfind('@');
    if (at == std::string_view::npos || at + 1 >= key.size()) return std::nullopt;
    std::string_view local = key.substr(0, at), domain = key.substr(at + 1);
    if (local.size() > 1024 || domain.size() > 1024) return std::nullopt;
    std::string l = local.empty() ? "@" : encode_path_component(local);
    return mail_root / encode_path_component(domain) / l;
}

std::string effective_target(const config& cfg, std::string_view mailbox_target,
                             std::string_view connector_default, std::string_view mailbox_key) {
    if (!mailbox_target.empty()) return std::string(mailbox_target);
    if (!connector_default.empty()) return std::string(connector_default);
    auto dir = mailbox_maildir(cfg.mail_root, mailbox_key);
    if (!dir) throw target_error("mailbox key '" + std::string(mailbox_key) + "' has no Maildir");
    return "maildir:" + dir->string();
}

std::unique_ptr<import_target> make_target(const config& cfg, std::string_view spec) {
    auto colon = spec.find(':');
    std::string_view scheme = spec.substr(0, colon), rest;
    if (colon != std::string_view::npos) rest = spec.substr(colon + 1);
    if (scheme == "maildir") {
        std::filesystem::path p(rest);
        if (rest.empty() || !p.is_absolute())
            throw target_error("maildir target needs an absolute path: '" + std::string(spec) +
                               "'");
        return make_maildir_target(p.lexically_normal(), cfg.hostname);
    }
    if (scheme == "webhook") return make_webhook_target(cfg, rest);  // target_http.hpp
    if (scheme == "exec") return make_exec_target(cfg, rest);
    throw target_error("unknown target scheme '" + std::string(scheme) + "' in '" +
                       std::string(spec) + "'");
}

import_target& target_cache::get(const std::string& spec) {
    auto it = targets_.find(spec);
    if (it == targets_.end()) it = targets_.emplace(spec, make_target(*cfg_, spec)).first;
    return *it->second;
}

sync_set::~sync_set() noexcept = default;

void sync_set::add_file(const std::filesystem::path& p) {
    files_.insert(p);
}
void sync_set::add_dir(const std::filesystem::path& p) {
    dirs_.insert(p);
}

void sync_set::sync() {
    auto fail = [](const char* call, const std::filesystem::path& p) {
        throw std::system_error(errno, std::generic_category(),
                                std::string(call) + " " + p.string());
    };
    if (mode_ == mode::syncfs) {
        // One syncfs() per filesystem flushes every file's data and every directory entry
        // (ext4/xfs: one journal commit plus a cache flush) — the batch's whole durability.
        // A file is on the filesystem of the folder holding it: files whose folder is in the
        // set need no stat of their own (one stat per batch instead of one per file).
        std::map<dev_t, std::filesystem::path> devices;
        for (const auto* set : {&dirs_, &files_})
            for (const auto& p : *set) {
                if (set == &files_ && dirs_.count(p.parent_path())) continue;
                struct stat st {};
                if (::stat(p.c_str(), &st) == 0)
                    devices.emplace(st.st_dev, p);
                else if (errno != ENOENT)
                    fail("stat", p);
            }
        for (const auto& [dev, p] : devices) {
            int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0) fail("open", p);
            int rc = ::syncfs(fd);
            int e = errno;
            ::close(fd);
            errno = e;
            if (rc != 0) fail("syncfs", p);
        }
    } else {
        for (const auto* set : {&files_, &dirs_})
            for (const auto& p : *set) {
                int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                    if (errno == ENOENT) continue;
                    fail("open", p);
                }
                int rc = ::fsync(fd);
                int e = errno;
                ::close(fd);
                errno = e;
                if (rc != 0) fail("fsync", p);
            }
    }
    files_.clear();
    dirs_.clear();
}

}  // namespace mx::importer
