// input: see input.hpp.
#include "input.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <stdexcept>
#include <thread>

namespace mx::logreport {

namespace {

class fd_source : public byte_source {
  public:
    fd_source(int fd, bool owned) : fd_(fd), owned_(owned) {
#ifdef POSIX_FADV_SEQUENTIAL
        (void)::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    }
    ~fd_source() override {
        if (owned_) ::close(fd_);
    }
    long read(char* buf, std::size_t n) override {
        for (;;) {
            const ssize_t r = ::read(fd_, buf, n);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) err_ = std::strerror(errno);
            return static_cast<long>(r);
        }
    }
    std::string error() const override {
        return err_;
    }

  private:
    int fd_;
    bool owned_;
    std::string err_;
};

class gz_source : public byte_source {
  public:
    explicit gz_source(int fd) : gz_(gzdopen(fd, "rb")) {
        if (!gz_) {
            ::close(fd);
            throw std::runtime_error("cannot start gzip decoder");
        }
        gzbuffer(gz_, 1u << 18);
    }
    ~gz_source() override { gzclose(gz_); }
    long read(char* buf, std::size_t n) override {
        const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n, 1u << 30));
        const int r = gzread(gz_, buf, chunk);
        if (r < 0) {
            int code = 0;
            const char* msg = gzerror(gz_, &code);
            err_ = msg ? msg : "gzip error";
            return -1;
        }
        return r;
    }
    std::string error() const override { return err_; }

  private:
    gzFile gz_;
    std::string err_;
};

}  // namespace

std::unique_ptr<byte_source> open_source(const std::string& path) {
    if (path == "-") {
        // stdin cannot be peeked and rewound; zlib reads plain data transparently.
        const int fd = ::dup(0);
        if (fd < 0) throw std::runtime_error(std::string("stdin: ") + std::strerror(errno));
        return std::make_unique<gz_source>(fd);
    }
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(path + ": " + std::strerror(errno));
    unsigned char magic[2] = {0, 0};
    const ssize_t n = ::pread(fd, magic, 2, 0);
    if (n == 2 && magic[0] == 0x1f && magic[1] == 0x8b) return std::make_unique<gz_source>(fd);
    return std::make_unique<fd_source>(fd, true);
}

line_splitter::line_splitter() : buf_(new char[buffer_size]) {}

void line_splitter::flush(const std::function<void(std::string_view)>& fn) {
    if (end_ > start_ && !skipping_) {
        std::string_view line(buf_.get() + start_, end_ - start_);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        fn(line);
    }
    start_ = end_ = 0;
    skipping_ = false;
}

bool line_splitter::pump(byte_source& src, const std::function<void(std::string_view)>& fn,
                         bool flush_at_end) {
    char* const buf = buf_.get();
    for (;;) {
        if (start_ > 0 && (end_ == buffer_size || start_ == end_)) {
            // Keep the partial line, make room after it.
            std::memmove(buf, buf + start_, end_ - start_);
            end_ -= start_;
            start_ = 0;
        }
        if (end_ == buffer_size) {
            // One line fills the whole buffer: hand out its head, skip its tail.
            if (!skipping_) fn(std::string_view(buf, end_));
            skipping_ = true;
            start_ = end_ = 0;
        }
        const long n = src.read(buf + end_, buffer_size - end_);
        if (n < 0) return false;
        if (n == 0) {
            if (flush_at_end) flush(fn);
            return true;
        }
        const std::size_t scan_from = end_;
        end_ += static_cast<std::size_t>(n);
        const char* p = buf + scan_from;
        const char* const e = buf + end_;
        while (p < e) {
            const char* nl =
                static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(e - p)));
            if (!nl) break;
            if (skipping_) {
                skipping_ = false;
            } else {
                std::size_t len = static_cast<std::size_t>(nl - (buf + start_));
                if (len > 0 && buf[start_ + len - 1] == '\r') --len;
                fn(std::string_view(buf + start_, len));
            }
            p = nl + 1;
            start_ = static_cast<std::size_t>(p - buf);
        }
        if (skipping_) start_ = end_;  // drop the tail of a cut line as it streams by
    }
}

namespace {

struct rotation_key {
    std::string base;
    int kind;  // 0: numbered (.N), 1: dated (-YYYYMMDD), 2: live file
    long number;
    std::string date;
};

rotation_key key_of(const std::string& path) {
    std::string p = path;
    if (p.size() > 3 && p.compare(p.size() - 3, 3, ".gz") == 0) p.resize(p.size() - 3);
    rotation_key k{p, 2, 0, {}};
    // maillog.12
    const std::size_t dot = p.rfind('.');
    if (dot != std::string::npos && dot + 1 < p.size() &&
        std::all_of(p.begin() + static_cast<long>(dot) + 1, p.end(), ::isdigit) &&
        p.size() - dot - 1 <= 6) {
        k.base = p.substr(0, dot);
        k.kind = 0;
        k.number = std::stol(p.substr(dot + 1));
        return k;
    }
    // maillog-20240208
    const std::size_t dash = p.rfind('-');
    if (dash != std::string::npos && p.size() - dash - 1 == 8 &&
        std::all_of(p.begin() + static_cast<long>(dash) + 1, p.end(), ::isdigit)) {
        k.base = p.substr(0, dash);
        k.kind = 1;
        k.date = p.substr(dash + 1);
    }
    return k;
}

}  // namespace

std::vector<std::string> order_rotated(std::vector<std::string> files) {
    // Files of one base name are reordered among the positions that set occupies; other
    // arguments keep their place (the administrator may have had a reason).
    std::map<std::string, std::vector<std::size_t>> sets;
    std::vector<rotation_key> keys;
    keys.reserve(files.size());
    for (std::size_t i = 0; i < files.size(); ++i) {
        keys.push_back(key_of(files[i]));
        sets[keys.back().base].push_back(i);
    }
    std::vector<std::string> out = files;
    for (auto& [base, idx] : sets) {
        if (idx.size() < 2) continue;
        std::vector<std::size_t> sorted = idx;
        std::stable_sort(sorted.begin(), sorted.end(), [&](std::size_t a, std::size_t b) {
            const auto& x = keys[a];
            const auto& y = keys[b];
            // Oldest first: high numbers, then dates ascending, then the live file.
            const int rx = x.kind == 0 ? 0 : (x.kind == 1 ? 1 : 2);
            const int ry = y.kind == 0 ? 0 : (y.kind == 1 ? 1 : 2);
            if (rx != ry) {
                // A dated set and a numbered set never mix in practice; dated before live.
                return rx < ry;
            }
            if (x.kind == 0) return x.number > y.number;
            if (x.kind == 1) return x.date < y.date;
            return false;
        });
        for (std::size_t j = 0; j < idx.size(); ++j) out[idx[j]] = files[sorted[j]];
    }
    return out;
}

void follow_file(const std::string& path, const std::function<void(std::string_view)>& fn,
                 const std::atomic<bool>& stop, const std::function<void()>& tick,
                 double tick_seconds) {
    using clock = std::chrono::steady_clock;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(path + ": " + std::strerror(errno));
    struct stat cur {};
    ::fstat(fd, &cur);
    auto src = std::make_unique<fd_source>(fd, true);
    line_splitter splitter;
    auto last_tick = clock::now();
    while (!stop.load()) {
        splitter.pump(*src, fn, false);
        if (tick && tick_seconds > 0 &&
            std::chrono::duration<double>(clock::now() - last_tick).count() >= tick_seconds) {
            tick();
            last_tick = clock::now();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        struct stat now {};
        if (::stat(path.c_str(), &now) != 0) continue;  // rotated away, not yet recreated
        if (now.st_ino != cur.st_ino || now.st_dev != cur.st_dev) {
            // Rotated: drain what the writer added to the old file, then switch.
            splitter.pump(*src, fn, true);
            const int nfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
            if (nfd < 0) continue;
            ::fstat(nfd, &cur);
            src = std::make_unique<fd_source>(nfd, true);
            fd = nfd;
        } else {
            const off_t pos = ::lseek(fd, 0, SEEK_CUR);
            if (now.st_size < pos) {
                // Truncated in place (copytruncate): start again from the top.
                splitter.flush(fn);
                ::lseek(fd, 0, SEEK_SET);
            }
        }
    }
    splitter.pump(*src, fn, true);
}

}  // namespace mx::logreport
