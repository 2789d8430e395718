// target_shared: what the webhook and exec targets share — idempotency keys, reason text from
// hostile receivers, retry delays, and the cross-process concurrency slots.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <system_error>
#include <thread>

#include <spdlog/spdlog.h>

#include "target_http.hpp"
#include "util/fs.hpp"
#include "util/hex.hpp"

namespace mx::importer {

std::string idempotency_key(std::string_view fingerprint, std::string_view recipient) {
    return std::string(fingerprint) + ":" +
           util::percent_encode(recipient, [](unsigned char c, std::size_t) {
               return c > 0x20 && c < 0x7f && c != '%';
           });
}

std::string reason_text(std::string_view raw, std::size_t max_len) {
    std::string out;
    out.reserve(std::min(raw.size(), max_len) + 4);
    bool blank = true;  // drops leading blanks and collapses runs
    bool cut = false;
    for (std::size_t i = 0; i < raw.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(raw[i]);
        if (c < 0x20 || c == 0x7f) c = ' ';
        if (c == ' ') {
            if (!blank) out.push_back(' ');
            blank = true;
            continue;
        }
        blank = false;
        // Keep well-formed UTF-8 sequences whole; anything else becomes '?'.
        std::size_t len = 1;
        if (c >= 0x80) {
            len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
            bool ok = len >= 2 && i + len <= raw.size() && c != 0xc0 && c != 0xc1 && c < 0xf5;
            for (std::size_t k = 1; ok && k < len; ++k)
                ok = (static_cast<unsigned char>(raw[i + k]) & 0xc0) == 0x80;
            if (!ok) len = 0;
        }
        if (out.size() + std::max<std::size_t>(len, 1) > max_len) {
            cut = true;
            break;
        }
        if (len == 0) {
            out.push_back('?');
            continue;
        }
        out.append(raw.substr(i, len));
        i += len - 1;
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    if (cut) out += "...";
    return out;
}

std::chrono::seconds retry_delay(int attempt, std::chrono::seconds base, std::chrono::seconds max,
                                 std::optional<std::chrono::seconds> retry_after, double jitter_u01,
                                 double jitter) {
    long b = std::max<long>(1, static_cast<long>(base.count()));
    long m = std::max<long>(b, static_cast<long>(max.count()));
    int shift = std::clamp(attempt - 1, 0, 30);
    long d = (b > (m >> shift)) ? m : std::min(m, b << shift);
    if (retry_after) {
        // A receiver may ask for more than our own maximum, within reason.
        long ra = std::clamp<long>(static_cast<long>(retry_after->count()), 0, 86400);
        d = std::max(d, ra);
    }
    double u = std::clamp(jitter_u01, 0.0, 1.0);
    double spread = 1.0 + std::clamp(jitter, 0.0, 1.0) * (2.0 * u - 1.0);
    long out = static_cast<long>(std::llround(static_cast<double>(d) * spread));
    if (retry_after) out = std::max(out, std::min<long>(retry_after->count(), 86400));
    return std::chrono::seconds(std::max<long>(1, out));
}

// ---- slots --------------------------------------------------------------------------------

slot_guard::slot_guard(slot_guard&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), slot_(std::exchange(o.slot_, -1)) {}

slot_guard& slot_guard::operator=(slot_guard&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = std::exchange(o.fd_, -1);
        slot_ = std::exchange(o.slot_, -1);
    }
    return *this;
}

slot_guard::~slot_guard() noexcept {
    if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

std::optional<slot_guard> slot_guard::acquire(const std::filesystem::path& dir,
                                              std::string_view key, unsigned limit,
                                              std::chrono::milliseconds wait) {
    if (limit == 0) limit = 1;
    const std::string base = util::sha256_hex(key).substr(0, 16);
    std::vector<int> fds;
    struct closer {
        std::vector<int>& v;
        ~closer() {
            for (int fd : v)
                if (fd >= 0) ::close(fd);
        }
    } close_all{fds};
    for (unsigned i = 0; i < limit; ++i) {
        auto p = dir / (base + "." + std::to_string(i));
        int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0 && errno == ENOENT) {
            util::make_dirs(dir, 0750);
            fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
        }
        if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + p.string());
        fds.push_back(fd);
    }
    // Start at a different slot each time so waiting processes do not all hammer slot 0.
    static thread_local unsigned rotate = static_cast<unsigned>(::getpid());
    auto deadline = std::chrono::steady_clock::now() + wait;
    for (;;) {
        ++rotate;
        for (unsigned k = 0; k < limit; ++k) {
            unsigned i = (rotate + k) % limit;
            if (::flock(fds[i], LOCK_EX | LOCK_NB) == 0) {
                slot_guard g;
                g.fd_ = std::exchange(fds[i], -1);
                g.slot_ = static_cast<int>(i);
                return g;
            }
            if (errno != EWOULDBLOCK && errno != EINTR)
                throw std::system_error(errno, std::generic_category(), "flock");
        }
        if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

std::optional<slot_guard> acquire_slot(const std::filesystem::path& dir, std::string_view key,
                                       unsigned limit, std::chrono::milliseconds wait,
                                       bool& bounded) {
    try {
        bounded = true;
        return slot_guard::acquire(dir, key, limit, wait);
    } catch (const std::system_error& e) {
        static std::atomic<bool> warned{false};
        if (!warned.exchange(true))
            spdlog::warn("target concurrency limit not enforced: {} (run_dir must be writable)",
                         e.what());
        bounded = false;
        return std::nullopt;
    }
}

}  // namespace mx::importer
