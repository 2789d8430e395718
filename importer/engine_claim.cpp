// engine_claim: step 1 of a batch — the files it takes: our own earlier claims that are due
// (crash recovery, retries) and new files claimed by rename (exactly one importer wins each).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>  // renameat2, RENAME_NOREPLACE
#include <cstring>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "engine_item.hpp"
#include "util/fs.hpp"
#include "util/hex.hpp"
#include "util/privdrop.hpp"

namespace mx::importer {

namespace {
// The first `bytes` bytes of SHA-256(s) in hex.
std::string hash_hex(std::string_view s, unsigned bytes) {
    return util::sha256_hex(s).substr(0, 2 * bytes);
}

}  // namespace

std::string short_hash(std::string_view s) {
    return hash_hex(s, 6);
}

// File names derived from a drop file's name stay below NAME_MAX (255) with everything added
// to them: "<origin>," in .work/, ".<12 hex>" (a name taken) + ".json" in ImportFailed, and
// the temporary name of a durable write (".<name>.tmp<20 digits>").
namespace {
constexpr std::size_t max_work_name = 253;  // + "n," = 255
}  // namespace

// `n` itself when at most `max` bytes; else a readable prefix (not cutting a UTF-8 sequence),
// "~" and 16 hex of SHA-256 of the whole name: exactly `max` bytes or less.
std::string bounded_name(const std::string& n, std::size_t max) {
    if (n.size() <= max) return n;
    std::string h = hash_hex(n, 8);
    std::size_t keep = max - 1 - h.size();
    while (keep > 0 && (static_cast<unsigned char>(n[keep]) & 0xC0) == 0x80) --keep;
    return n.substr(0, keep) + "~" + h;
}

namespace {

// Work file names are valid UTF-8 without control characters: they travel in JSON (parse
// worker requests, reason files, journal records) and log lines. Other bytes become '_' and
// the name gets "~" + 16 hex of SHA-256 of the original, so different names stay different.
std::string safe_name(const std::string& n) {
    std::string out;
    bool changed = false;
    for (std::size_t i = 0; i < n.size();) {
        auto c = static_cast<unsigned char>(n[i]);
        std::size_t len = c < 0x80         ? 1
                          : (c >> 5) == 6  ? 2
                          : (c >> 4) == 14 ? 3
                          : (c >> 3) == 30 ? 4
                                           : 0;
        bool ok = len > 0 && i + len <= n.size() && !(len == 1 && (c < 0x20 || c == 0x7f)) &&
                  !(len == 2 && c < 0xc2) && !(len == 4 && c > 0xf4);
        if (ok && len >= 3) {  // no overlong forms, no surrogates, nothing above U+10FFFF
            auto c1 = static_cast<unsigned char>(n[i + 1]);
            ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0) &&
                 !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
        }
        for (std::size_t k = 1; ok && k < len; ++k)
            ok = (static_cast<unsigned char>(n[i + k]) & 0xC0) == 0x80;
        if (!ok) {
            out.push_back('_');
            changed = true;
            ++i;
            continue;
        }
        out.append(n, i, len);
        i += len;
    }
    return changed ? out + "~" + hash_hex(n, 8) : out;
}

// Moves src to dst only if dst does not exist: 0, or an errno (EEXIST: dst exists; ENOENT:
// another importer won the file, or it vanished). rename() would silently replace an older
// claim of the same name.
int claim_rename(const std::filesystem::path& src, const std::filesystem::path& dst) {
    if (::renameat2(AT_FDCWD, src.c_str(), AT_FDCWD, dst.c_str(), RENAME_NOREPLACE) == 0) return 0;
    int e = errno;
    if (e != EINVAL && e != ENOSYS) return e;
    // No RENAME_NOREPLACE on this filesystem (some network filesystems): link + unlink. Of
    // two importers that both linked, only one unlink succeeds; the other drops its link.
    if (::link(src.c_str(), dst.c_str()) != 0) return errno;
    if (::unlink(src.c_str()) != 0) {
        e = errno;
        ::unlink(dst.c_str());
        return e;
    }
    return 0;
}

// A claimed file another account owns, or with hard links outside our folders, could be
// changed after the import by whoever holds it, and the Maildir target hard-links the claimed
// file into the mailbox: replace it by a copy of our own (temporary dot name, fsync, rename
// over). Returns an error text, empty when the file is ours (or was made ours).
// `size` gets the claimed file's size (the parse timeout's hint: no fstat per file later).
std::string make_private(const std::filesystem::path& work_dir, const std::filesystem::path& p,
                         std::uint64_t& size, std::int64_t& mtime) {
    struct stat sb {};
    if (::lstat(p.c_str(), &sb) != 0 || !S_ISREG(sb.st_mode)) return {};  // the parser decides
    size = static_cast<std::uint64_t>(sb.st_size);
    if (sb.st_uid == util::effective_uid() && sb.st_nlink <= 1) {
        // Ours alone, in our own work folder: the parser may take size and mtime as seen.
        mtime = static_cast<std::int64_t>(sb.st_mtime);
        return {};
    }
    auto tmp = work_dir / (".private." + short_hash(p.string()) + ".tmp");
    if (int err = util::copy_file_synced(p, tmp, p))
        return "copy to " + tmp.string() + ": " + std::strerror(err);
    return {};
}

// When a drop file arrived, from its name alone (no stat per file): Maildir names start with
// the delivery time, "<secs>.", and Postfix's virtual(8) ("<secs>.V<dev>I<inode>M<usecs>.<host>")
// and Dovecot ("<secs>.M<usecs>P<pid>...") add the microseconds. A work name's "<origin>,"
// is skipped. Names without a leading time (IIS pickup *.eml, hand-dropped files) are {0, 0}:
// they go first, and each batch takes them out of the way.
struct arrival {
    std::uint64_t secs = 0, usecs = 0;
};

arrival arrival_of(std::string_view n) {
    if (n.size() > 2 && n[1] == ',') n.remove_prefix(2);
    auto digits = [](std::string_view s, std::uint64_t& v) {
        std::size_t i = 0;
        v = 0;
        for (; i < s.size() && i < 19 && s[i] >= '0' && s[i] <= '9'; ++i)
            v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
        return i;
    };
    arrival a;
    std::size_t len = digits(n, a.secs);
    if (len == 0 || len >= n.size() || n[len] != '.') return {};
    auto part = n.substr(len + 1);
    part = part.substr(0, part.find('.'));
    if (auto m = part.find('M'); m != std::string_view::npos) digits(part.substr(m + 1), a.usecs);
    return a;
}

// Names in a folder we own (dot files, temporaries, skipped) that `keep` accepts: the `want`
// oldest (arrival_of, then by name) go to `fn` in that order, every other one to `passed` while
// the folder is read. Memory stays bounded by `want` however large the backlog; no full sort.
// listed(n), before fn sees the first kept name: how many names were kept or passed (the
// files waiting in the folder).
template <typename Keep, typename Fn, typename Passed, typename Listed>
void list_dir(const std::filesystem::path& dir, std::size_t want, Keep&& keep, Fn&& fn,
              Passed&& passed, Listed&& listed) {
    std::size_t seen = 0;
    struct entry {
        arrival at;
        std::string name;
    };
    auto older = [](const entry& x, const entry& y) {
        if (x.at.secs != y.at.secs) return x.at.secs < y.at.secs;
        if (x.at.usecs != y.at.usecs) return x.at.usecs < y.at.usecs;
        return x.name < y.name;
    };
    std::vector<entry> oldest;  // a max-heap by `older`: its front is the newest kept
    if (DIR* d = ::opendir(dir.c_str())) {
        while (auto* e = ::readdir(d)) {
            if (e->d_name[0] == '.') continue;
            // Symlinks are taken too (and refused by the parser's O_NOFOLLOW): nothing a
            // dropped link points to is ever read, and the link does not linger forever.
            if (e->d_type != DT_REG && e->d_type != DT_LNK && e->d_type != DT_UNKNOWN) continue;
            if (want == 0) {  // a full batch only counts what waits (a backlog: every batch)
                std::string n = e->d_name;
                if (keep(n)) {
                    ++seen;
                    passed(n);
                }
                continue;
            }
            entry en{arrival_of(e->d_name), e->d_name};
            if (!keep(en.name)) continue;
            ++seen;
            if (oldest.size() < want) {
                oldest.push_back(std::move(en));
                std::push_heap(oldest.begin(), oldest.end(), older);
            } else if (!oldest.empty() && older(en, oldest.front())) {
                std::pop_heap(oldest.begin(), oldest.end(), older);
                passed(oldest.back().name);
                oldest.back() = std::move(en);
                std::push_heap(oldest.begin(), oldest.end(), older);
            } else {
                passed(en.name);
            }
        }
        ::closedir(d);
    }
    std::sort_heap(oldest.begin(), oldest.end(), older);
    listed(seen);
    for (const auto& e : oldest)
        if (!fn(e.name)) break;
}

bool ends_with_eml(const std::string& n) {
    if (n.size() < 5) return false;
    std::string suf = n.substr(n.size() - 4);
    for (char& c : suf) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return suf == ".eml";
}

}  // namespace

void engine::batch::note_waiting(const std::filesystem::path& p) {
    ++bs.waiting;
    if (!want_oldest) return;
    // Maildir names carry their delivery time: no stat per waiting file of a backlog (a
    // rescan used to stat every one). Other names (*.eml, hand-dropped files) are stat'ed,
    // a bounded number per scan (the gauge then covers those).
    std::int64_t when = 0;
    if (auto a = arrival_of(p.filename().native());
        a.secs >= 1000000000 && a.secs <= static_cast<std::uint64_t>(now))
        when = static_cast<std::int64_t>(a.secs);
    else if (gauge_stats_left > 0) {
        --gauge_stats_left;
        if (struct stat sb{}; ::stat(p.c_str(), &sb) == 0) when = sb.st_mtime;
    }
    if (when != 0 && (bs.oldest == 0 || when < bs.oldest)) bs.oldest = when;
}

void engine::claim_own(batch& b) {
    // Still on a lane (parked), or claimed and parsed ahead (take_prefetched): taken already.
    std::unordered_set<std::string> in_flight;
    {
        std::lock_guard lk(done_mu_);
        for (const auto& it : parked_) in_flight.insert(it->work.native());
    }
    std::unordered_set<std::string> mine;
    for (const auto& it : b.items) mine.insert(it->work.native());
    const auto& work = b.work;

    auto rt = journal_.read();
    // Every name is looked at (a due retry may come after many that are not due yet).
    auto all = [](const std::string&) { return true; };
    auto none = [](const std::string&) {};
    list_dir(
        work, SIZE_MAX, all,
        [&](const std::string& n) {
            auto p = work / n;
            if (mine.count(p.native())) return true;
            const bool full = b.items.size() >= b.budget;
            if (full && b.own_left > 0) {  // one due file left over is enough to know
                b.note_waiting(p);
                return true;
            }
            auto rr = journal_.retry(rt, p.string());
            bool due = !(rr && rr->is_object() && rr->value("next", std::int64_t{0}) > b.now);
            if (auto m = unrecorded_retries_.find(p.string()); m != unrecorded_retries_.end()) {
                if (m->second > b.now)
                    due = false;
                else if (!full)
                    unrecorded_retries_.erase(m);
            }
            if (in_flight.count(p.native())) due = false;
            if (full || !due) {
                b.own_left += full && due;
                b.note_waiting(p);
                return true;
            }
            auto itp = std::make_unique<item>(s_.durability);
            auto& it = *itp;
            it.work = p;
            auto comma = n.find(',');
            it.origin = (comma == 1) ? n[0] : 'n';
            it.name = (comma == 1) ? n.substr(2) : n;
            if (rr && rr->is_object()) {
                it.first_seen = rr->value("first_seen", std::int64_t{0});
                it.attempts = rr->value("attempts", 0);
            }
            b.items.push_back(std::move(itp));
            return true;
        },
        none, [](std::size_t) {});
}

void engine::claim_new(batch& b) {
    auto claim = [&](const std::filesystem::path& dir, char origin, bool eml_only) {
        auto keep = [&](const std::string& n) { return !eml_only || ends_with_eml(n); };
        auto passed = [&](const std::string& n) {
            ++b.new_left;
            b.note_waiting(dir, n);
        };
        // Listed up to the backlog size; claimed up to budget, raised to it by a backlog.
        std::size_t most = std::max(b.budget, b.backlog_budget);
        list_dir(
            dir, most > b.items.size() ? most - b.items.size() : 0, keep,
            [&](const std::string& n) {
                if (b.items.size() >= b.budget) {
                    passed(n);
                    return true;
                }
                auto src = dir / n;
                if (eml_only && s_.eml_settle.count() > 0) {
                    struct stat sb {};
                    if (::stat(src.c_str(), &sb) != 0 || !S_ISREG(sb.st_mode)) return true;
                    if (b.now - sb.st_mtime < s_.eml_settle.count()) {
                        b.note_waiting(src);
                        return true;
                    }
                }
                std::string wn = bounded_name(safe_name(n), max_work_name);
                auto dst = b.work / (std::string(1, origin) + "," + wn);
                int rc = claim_rename(src, dst);
                for (int i = 0; rc == EEXIST && i < 8; ++i) {
                    // An older claim of the same name is still here (a retry, a crash): both
                    // stay; the newcomer gets a unique suffix.
                    wn = bounded_name(
                        safe_name(n) + "." +
                            short_hash(dst.string() + std::to_string(b.now) + std::to_string(i) +
                                       std::to_string(b.items.size())),
                        max_work_name);
                    dst = b.work / (std::string(1, origin) + "," + wn);
                    rc = claim_rename(src, dst);
                }
                if (rc != 0) {
                    if (rc != ENOENT)  // ENOENT: another importer won, or it vanished
                        spdlog::warn("connector {}: cannot claim {}: {}", b.f->connector,
                                     log_safe(src.string()), std::strerror(rc));
                    return true;
                }
                std::uint64_t size = 0;
                std::int64_t mtime = 0;
                if (auto err = make_private(b.work, dst, size, mtime); !err.empty())
                    spdlog::warn(
                        "connector {}: cannot make a private copy of {} ({}); importing "
                        "it as it is",
                        b.f->connector, log_safe(wn), err);
                auto itp = std::make_unique<item>(s_.durability);
                auto& it = *itp;
                it.work = dst;
                it.name = wn;
                it.origin = origin;
                it.size_hint = size;
                it.mtime_hint = mtime;
                b.items.push_back(std::move(itp));
                return true;
            },
            passed,
            [&](std::size_t waiting) {
                // Not while due files of the work folder wait (crash leftovers, retries):
                // they go before new ones, also in a backlog.
                if (waiting > 4 * s_.batch_size && b.own_left == 0)
                    b.budget = std::max(b.budget, b.backlog_budget);
            });
    };
    claim(b.f->retry_dir(), 'r', false);
    claim(b.f->new_dir(), 'n', false);
    claim(b.f->drop, 'e', true);
}

}  // namespace mx::importer
