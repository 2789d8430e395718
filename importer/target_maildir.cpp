// target_maildir: delivery into a Maildir (tmp/new/cur), Dovecot-compatible file names
// "<secs>.M<usecs>P<pid>Q<n>.<host>,S=<size>".
//
// Fast path: a hard link from the claimed file into new/ (same filesystem: no bytes copied;
// link() is atomic, so new/ never shows a partial message). Otherwise (other filesystem, or a
// file another account owns): copy into tmp/, fsync, rename into new/. Folders are 0750 (the
// application reads through the group). Durability of data and directory entries is left to the
// batch's sync_set. Errors: ENOSPC/EDQUOT/EIO/EROFS/EACCES are temporary (an administrator can fix
// them); nothing here is permanent except a target that cannot exist (path is a file).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>

#include "import_target.hpp"
#include "util/fs.hpp"
#include "util/privdrop.hpp"

namespace mx::importer {
namespace {

// Dovecot escapes '/' and ':' in the host part of a Maildir name.
std::string maildir_host(std::string_view host) {
    std::string out;
    for (char c : host) {
        if (c == '/')
            out += "\\057";
        else if (c == ':')
            out += "\\072";
        else if (static_cast<unsigned char>(c) > 32 && c != 127)
            out.push_back(c);
    }
    return out.empty() ? "localhost" : out;
}

result temporary(std::string status, std::string detail) {
    return {result_kind::temporary, std::move(status), std::move(detail), {}};
}

result from_errno(int e, const std::string& what) {
    std::string d = what + ": " + std::strerror(e);
    switch (e) {
        case ENOSPC:
            return temporary("4.3.1", d);
        case EDQUOT:
            return temporary("4.2.2", d);
        case ENOTDIR:
            return {result_kind::permanent, "5.3.5", d, {}};
        default:
            return temporary("4.3.0", d);
    }
}

class maildir_target final : public import_target {
  public:
    maildir_target(std::filesystem::path root, std::string host)
        : root_(std::move(root)), host_(maildir_host(host)) {}

    std::string describe() const override { return "maildir:" + root_.string(); }

    std::string plan(const delivery& d) override {
        struct timeval tv {};
        ::gettimeofday(&tv, nullptr);
        static std::atomic<std::uint64_t> counter{0};
        static const pid_t pid = ::getpid();
        return std::to_string(tv.tv_sec) + ".M" + std::to_string(tv.tv_usec) + "P" +
               std::to_string(pid) + "Q" + std::to_string(++counter) + "." + host_ +
               ",S=" + std::to_string(d.size);
    }

    result deliver(const delivery& d, const std::string& planned, sync_set& s) override {
        if (auto err = ensure_dirs()) return *err;
        auto dest = root_ / "new" / planned;
        // A file another account owns stays theirs through a hard link (they could change
        // the message in the mailbox): copy it. (The engine already replaces such claimed
        // files by private copies; this holds for every caller.)
        struct stat sb {};
        if (!d.source_private && ::lstat(d.source.c_str(), &sb) == 0 &&
            sb.st_uid != util::effective_uid())
            return copy(d, planned, dest, s);
        if (::link(d.source.c_str(), dest.c_str()) == 0) {
            s.add_file(dest);
            s.add_dir(root_ / "new");
            return {result_kind::imported, "2.0.0", "linked", dest.string()};
        }
        int e = errno;
        if (e == ENOENT) {  // the Maildir was removed under us: create it again, once
            ready_ = false;
            if (auto err = ensure_dirs()) return *err;
            if (::link(d.source.c_str(), dest.c_str()) == 0) {
                s.add_file(dest);
                s.add_dir(root_ / "new");
                return {result_kind::imported, "2.0.0", "linked", dest.string()};
            }
            e = errno;
        }
        if (e == EEXIST && same_file(d.source, dest)) {  // replay of our own earlier link
            s.add_file(dest);
            s.add_dir(root_ / "new");
            return {result_kind::imported, "2.0.0", "linked (already there)", dest.string()};
        }
        if (e != EXDEV && e != EMLINK && e != EPERM) return from_errno(e, "link " + dest.string());
        return copy(d, planned, dest, s);
    }

    bool delivered(const std::string& planned) override {
        struct stat st {};
        if (::stat((root_ / "new" / planned).c_str(), &st) == 0) return true;
        // A mail client may have moved it to cur/ as "<name>:2,<flags>".
        std::error_code ec;
        for (std::filesystem::directory_iterator it(root_ / "cur", ec), end; !ec && it != end;
             it.increment(ec)) {
            auto n = it->path().filename().string();
            if (n == planned || n.rfind(planned + ":", 0) == 0) return true;
        }
        return false;
    }

    std::optional<std::string> recover(const std::string& planned, sync_set& s) override {
        if (!delivered(planned)) return std::nullopt;
        // Delivered before a crash; make sure it is durable now.
        s.add_file(root_ / "new" / planned);
        s.add_dir(root_ / "new");
        return (root_ / "new" / planned).string();
    }

  private:
    std::optional<result> ensure_dirs() {
        if (ready_) return std::nullopt;
        for (const char* sub : {"tmp", "new", "cur"}) {
            try {
                util::make_dirs(root_ / sub, 0750);  // docs/architecture.md: 0750
            } catch (const std::system_error& e) {
                return from_errno(e.code().value(), "mkdir " + (root_ / sub).string());
            }
        }
        struct stat st {};
        if (::stat((root_ / "new").c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
            return result{
                result_kind::permanent, "5.3.5", root_.string() + "/new is not a folder", {}};
        ready_ = true;
        return std::nullopt;
    }

    static bool same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
        struct stat sa {
        }, sb{};
        return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 &&
               sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    }

    result copy(const delivery& d, const std::string& planned, const std::filesystem::path& dest,
                sync_set& s) {
        // Data of a copy is fsynced right away: the copy is the slow path anyway.
        if (int err = util::copy_file_synced(d.source, root_ / "tmp" / planned, dest))
            return from_errno(err, "copy to " + dest.string());
        s.add_dir(root_ / "new");
        s.add_dir(root_ / "tmp");
        return {result_kind::imported, "2.0.0", "copied", dest.string()};
    }

    std::filesystem::path root_;
    std::string host_;
    bool ready_ = false;
};

}  // namespace

std::unique_ptr<import_target> make_maildir_target(const std::filesystem::path& root,
                                                   std::string hostname) {
    return std::make_unique<maildir_target>(root, std::move(hostname));
}

}  // namespace mx::importer
