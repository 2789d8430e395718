#include "util/fs.hpp"

#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <random>
#include <sstream>
#include <system_error>

namespace mx::util {
namespace {

[[noreturn]] void fail(const char* call, const std::filesystem::path& p) {
    throw std::system_error(errno, std::generic_category(), std::string(call) + " " + p.string());
}

struct fd_guard {
    int fd;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace

int copy_file_synced(const std::filesystem::path& from, const std::filesystem::path& tmp,
                     const std::filesystem::path& to) {
    // O_NONBLOCK: a FIFO put in place of the file must not block the caller.
    int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (in < 0) return errno;
    fd_guard gin{in};
    struct stat st {};
    if (::fstat(in, &st) != 0) return errno;
    if (!S_ISREG(st.st_mode)) return EINVAL;
    int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0) return errno;
    int err = 0;
    {
        fd_guard gout{out};
        off_t off = 0;
        while (off < st.st_size) {
            auto left = static_cast<std::size_t>(st.st_size - off);
            ssize_t n = ::copy_file_range(in, &off, out, nullptr, left, 0);
            if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL))
                n = ::sendfile(out, in, &off, left);
            if (n < 0) {
                if (errno == EINTR) continue;
                err = errno;
                break;
            }
            if (n == 0) break;  // the file shrank under us: copy what is there
        }
        if (!err && ::fsync(out) != 0) err = errno;
        gout.fd = -1;
        if (::close(out) != 0 && !err) err = errno;
    }
    if (!err && ::rename(tmp.c_str(), to.c_str()) != 0) err = errno;
    if (err) ::unlink(tmp.c_str());
    return err;
}

void fsync_dir(const std::filesystem::path& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail("open", dir);
    fd_guard g{fd};
    if (::fsync(fd) != 0) fail("fsync", dir);
}

void write_file_durable(const std::filesystem::path& path, std::string_view data, unsigned mode) {
    auto dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
    thread_local std::mt19937_64 rng{std::random_device{}()};
    auto tmp = dir / ("." + path.filename().string() + ".tmp" + std::to_string(rng()));
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) fail("open", tmp);
    {
        fd_guard g{fd};
        const char* p = data.data();
        std::size_t left = data.size();
        while (left > 0) {
            ssize_t n = ::write(fd, p, left);
            if (n < 0) {
                if (errno == EINTR) continue;
                int e = errno;
                ::unlink(tmp.c_str());
                errno = e;
                fail("write", tmp);
            }
            p += n;
            left -= static_cast<std::size_t>(n);
        }
        if (::fsync(fd) != 0) {
            int e = errno;
            ::unlink(tmp.c_str());
            errno = e;
            fail("fsync", tmp);
        }
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        errno = e;
        fail("rename", path);
    }
    fsync_dir(dir);
}

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("open", path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void rename_durable(const std::filesystem::path& from, const std::filesystem::path& to) {
    if (::rename(from.c_str(), to.c_str()) != 0) fail("rename", from);
    auto to_dir = to.parent_path();
    fsync_dir(to_dir.empty() ? "." : to_dir);
    auto from_dir = from.parent_path();
    if (from_dir != to_dir) fsync_dir(from_dir.empty() ? "." : from_dir);
}

void make_dirs(const std::filesystem::path& dir, unsigned mode) {
    std::filesystem::path cur;
    for (const auto& part : dir) {
        cur /= part;
        if (cur.empty() || cur == "/") continue;
        if (::mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) fail("mkdir", cur);
    }
}

bool make_dir_for(const std::filesystem::path& dir, unsigned mode, uid_t uid, gid_t gid) {
    auto parent = dir.parent_path().empty() ? std::filesystem::path(".") : dir.parent_path();
    int pfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) fail("open", parent);
    fd_guard pg{pfd};
    struct stat pst {};
    if (::fstat(pfd, &pst) != 0) fail("fstat", parent);
    // Another account able to write the parent could rename our new folder away and put its
    // own (or a symlink) under the name between mkdirat and openat.
    bool others_write = (pst.st_mode & (S_IWGRP | S_IWOTH)) != 0 && !(pst.st_mode & S_ISVTX);
    if (::geteuid() == 0 && (pst.st_uid != 0 || others_write)) {
        errno = EPERM;
        fail("make_dir_for: parent writable by another account:", parent);
    }
    auto name = dir.filename();
    if (::mkdirat(pfd, name.c_str(), static_cast<mode_t>(mode)) != 0) {
        if (errno == EEXIST) return false;
        fail("mkdir", dir);
    }
    int fd = ::openat(pfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) fail("open", dir);
    fd_guard g{fd};
    if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) fail("fchmod", dir);  // umask-proof
    if ((uid != static_cast<uid_t>(-1) || gid != static_cast<gid_t>(-1)) &&
        ::fchown(fd, uid, gid) != 0)
        fail("fchown", dir);
    return true;
}

}  // namespace mx::util
