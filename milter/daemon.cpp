// daemon: mx-milter's life cycle.
//
// Order matters (and is why this file exists):
//   1. block SIGHUP/SIGTERM/SIGINT before any thread exists, so every thread (libmilter's
//      included) inherits the mask; once all threads run, the main thread alone unblocks them
//      with handlers that write to a self-pipe (util::signal_pipe). The kernel delivers a process
//      signal to the thread-group leader when it does not block it, so libmilter's own signal
//      thread (which would turn SIGHUP into a shutdown) practically never sees one;
//   2. load the config, open both sockets with owner/group/mode set before they become
//      visible (place_unix_socket: bound in a private folder, then renamed into place, so a
//      symlink the daemon account planted in run_dir is replaced, never followed), attach
//      shared memory — all still as root when started as root;
//   3. drop to [user] (util::drop_privileges: initgroups, setgid, setuid; verified);
//   4. run smfi_main() in a thread; the main thread waits on the pipe (SIGTERM/SIGINT:
//      smfi_stop, SIGHUP: reload the config), writes the heartbeat every second and re-reads
//      the config when `reload_requests` in shared memory moves.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <libmilter/mfapi.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <random>
#include <system_error>

#include "global/logging.hpp"
#include "global/postfix_conf.hpp"
#include "milter.hpp"
#include "util/fs.hpp"
#include "util/privdrop.hpp"
#include "util/service.hpp"
#include "util/signals.hpp"

namespace mx::milter {
namespace {

constexpr int ex_config = 78;  // sysexits EX_CONFIG
constexpr int ex_oserr = 71;   // sysexits EX_OSERR

std::string socketmap_spec(const config& cfg) {
    return cfg.milter.socketmap;  // "" disables the socketmap service
}

// The folder of a unix socket, created (0755, for the daemon account) when missing. Created
// by root only in a parent no other account can write (util::make_dir_for).
void ensure_socket_dir(const std::string& path, const std::optional<util::account>& acct) {
    if (path.empty()) return;
    std::filesystem::path dir = std::filesystem::path(path).parent_path();
    std::error_code ec;
    if (dir.empty() || std::filesystem::exists(dir, ec)) return;
    std::filesystem::create_directories(dir.parent_path());
    util::make_dir_for(dir, 0755, acct ? acct->uid : static_cast<uid_t>(-1),
                       acct ? acct->gid : static_cast<gid_t>(-1));
}

[[noreturn]] void fail_errno(const std::string& what) {
    throw std::system_error(errno, std::generic_category(), what);
}

struct fd_holder {
    int fd = -1;
    ~fd_holder() {
        if (fd >= 0) ::close(fd);
    }
};

void reload(daemon_state& st, const std::string& why) {
    try {
        config fresh = load_config(st.cfg.file);
        auto p = std::make_shared<const check_policy>(check_policy::from(fresh));
        st.set_policy(p);
        if (st.tables) st.tables->set_policy(*p);
        spdlog::default_logger()->set_level(spdlog::level::from_str(fresh.log_level));
        if (fresh.milter.socket != st.cfg.milter.socket)
            spdlog::warn("milter.socket changed: takes effect after a restart");
        spdlog::info(
            "configuration reloaded ({}): unknown_domain={} accept_postmaster={} "
            "hide_existence={}",
            why, p->reject_unknown_domains ? "reject" : "continue", p->accept_postmaster,
            p->hide_existence);
    } catch (const std::exception& e) {
        spdlog::error("configuration reload ({}) failed, keeping the old one: {}", why,
                      log_safe(e.what()));
    }
}

// smfi_stop() waits for a mutex that libmilter's listener holds while it sits in poll() (up to
// 5 s). Each connection to the socket wakes that poll, so while smfi_stop() runs in a helper
// thread, knock on the socket until it has returned.
void stop_milter(const std::string& spec) {
    std::atomic<bool> done{false};
    std::thread stopper([&] {
        smfi_stop();
        done.store(true);
    });
    std::string path = unix_socket_path(spec);
    for (int i = 0;
         i < 600 && !done.load() && !path.empty() && path.size() < sizeof(sockaddr_un::sun_path);
         ++i) {
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
            sockaddr_un sa{};
            sa.sun_family = AF_UNIX;
            std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
            (void)::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
            ::close(fd);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    stopper.join();
}

}  // namespace

std::string unix_socket_path(std::string_view spec) {
    for (std::string_view prefix : {"unix:", "local:"})
        if (spec.substr(0, prefix.size()) == prefix) return std::string(spec.substr(prefix.size()));
    if (!spec.empty() && spec.front() == '/') return std::string(spec);
    return {};
}

socket_access socket_access_for(const config& cfg) {
    socket_access a;
    a.mode = cfg.milter.socket_mode;
    if (!cfg.milter.socket_group.empty()) {
        struct group* g = ::getgrnam(cfg.milter.socket_group.c_str());
        if (!g)
            throw std::runtime_error("socket_group '" + cfg.milter.socket_group +
                                     "' does not exist");
        a.gid = g->gr_gid;
    }
    if (cfg.user && geteuid() == 0) {
        if (auto acct = util::lookup_account(*cfg.user)) a.uid = acct->uid;
    }
    return a;
}

void place_unix_socket(const std::string& path, const socket_access& access,
                       const std::function<void(const std::string& bind_path)>& bind_at) {
    std::filesystem::path p(path);
    std::string name = p.filename().string();
    std::filesystem::path dir = p.parent_path().empty() ? "." : p.parent_path();
    if (name.empty()) throw std::runtime_error("socket path names a folder: " + path);
    fd_holder d{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)};
    if (d.fd < 0) fail_errno("open " + dir.string());

    // A private folder of ours next to the socket. The account owning `dir` may rename it or
    // put something else under its name at any time, so it is used only through the
    // descriptor opened (O_NOFOLLOW) and checked right after the mkdir.
    std::string tmp;
    fd_holder t;
    for (int attempt = 0; t.fd < 0; ++attempt) {
        char suffix[] = "XXXXXX";
        static const char* chars = "abcdefghijklmnopqrstuvwxyz0123456789";
        std::random_device rd;
        for (int i = 0; i < 6; ++i) suffix[i] = chars[rd() % 36];
        tmp = "." + name + ".new-" + suffix;
        if (::mkdirat(d.fd, tmp.c_str(), 0700) != 0) {
            if (errno == EEXIST && attempt < 100) continue;
            fail_errno("mkdir " + (dir / tmp).string());
        }
        t.fd = ::openat(d.fd, tmp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st {};
        if (t.fd < 0 || ::fstat(t.fd, &st) != 0 || st.st_uid != ::geteuid() ||
            (st.st_mode & 077) != 0) {
            // Swapped between mkdir and open: not ours, try another name.
            if (t.fd >= 0) ::close(t.fd);
            t.fd = -1;
            if (attempt >= 100)
                throw std::runtime_error("cannot make a private folder in " + dir.string());
        }
    }
    struct stat tst {};
    (void)::fstat(t.fd, &tst);
    auto cleanup = [&] {
        ::unlinkat(t.fd, name.c_str(), 0);
        struct stat now {};
        // Remove our folder only if the name still designates it (else it is not ours).
        if (::fstatat(d.fd, tmp.c_str(), &now, AT_SYMLINK_NOFOLLOW) == 0 &&
            now.st_dev == tst.st_dev && now.st_ino == tst.st_ino)
            ::unlinkat(d.fd, tmp.c_str(), AT_REMOVEDIR);
    };
    try {
        std::string bind_path = "/proc/self/fd/" + std::to_string(t.fd) + "/" + name;
        if (bind_path.size() >= sizeof(sockaddr_un::sun_path))
            throw std::runtime_error("socket name too long: " + name);
        mode_t old = ::umask(0177);  // born 0600: nobody but us until the mode is set below
        try {
            bind_at(bind_path);
        } catch (...) {
            ::umask(old);
            throw;
        }
        ::umask(old);
        // Nobody else can add entries to our 0700 folder: `name` is the socket just bound.
        // Mode first, while we still own it (no CAP_FOWNER needed), then owner and group.
        if (::fchmodat(t.fd, name.c_str(), static_cast<mode_t>(access.mode & 07777), 0) != 0)
            fail_errno("fchmodat " + path);
        if ((access.uid != static_cast<uid_t>(-1) || access.gid != static_cast<gid_t>(-1)) &&
            ::fchownat(t.fd, name.c_str(), access.uid, access.gid, AT_SYMLINK_NOFOLLOW) != 0)
            fail_errno("fchownat " + path);
        // rename(2) replaces the directory entry itself: a symlink there is not followed.
        if (::renameat(t.fd, name.c_str(), d.fd, name.c_str()) != 0) fail_errno("rename " + path);
    } catch (...) {
        cleanup();
        throw;
    }
    cleanup();
}

namespace {

// The config, the table writer and the socketmap address; an exit code when the daemon
// cannot (or, with --check-config, need not) go on.
std::optional<int> load(const options& opts, daemon_state& st, std::string& smap) {
    try {
        st.cfg = load_config(resolve_config_path(opts.config_path));
        smap = socketmap_spec(st.cfg);
        // The same paths doctor and `mxctl postfix setup` wire Postfix to (one reader).
        auto t = postfix::milter_tables_of(st.cfg);
        st.tables = std::make_unique<postfix_tables_writer>(t.virtual_map, t.domain_table,
                                                            t.drop_table, t.recipient_table);
        st.tables->set_policy(check_policy::from(st.cfg));
    } catch (const std::exception& e) {
        std::cerr << "mx-milter: " << e.what() << "\n";
        return ex_config;
    }
    if (opts.check_config) {
        std::cout << "mx-milter: configuration " << st.cfg.file.string() << " is valid\n";
        return 0;
    }
    return std::nullopt;
}

// Step 2 (still as root when started as root): shared memory, libmilter's socket placed
// safely, the socketmap's socket. Throws on failure.
std::unique_ptr<socketmap_server> open_sockets(daemon_state& st, const std::string& smap,
                                               const std::optional<util::account>& pw) {
    try {
        st.shm = shm_state::attach(st.cfg);
    } catch (const std::exception& e) {
        spdlog::warn("shared memory unavailable, counters disabled: {}", log_safe(e.what()));
    }
    const std::string& spec = st.cfg.milter.socket;
    std::string milter_path = unix_socket_path(spec);
    socket_access access = socket_access_for(st.cfg);
    if (smfi_settimeout(st.cfg.milter.timeout_seconds) != MI_SUCCESS)
        throw std::runtime_error("smfi_settimeout failed");
    smfi_setbacklog(128);
    register_milter();
    // libmilter binds the path it is given itself: give it one inside the private folder.
    auto open_milter_socket = [&](const std::string& conn) {
        std::string c = conn;  // smfi_setconn keeps its own copy
        if (smfi_setconn(c.data()) != MI_SUCCESS)
            throw std::runtime_error("smfi_setconn(" + spec + ") failed");
        if (smfi_opensocket(true) != MI_SUCCESS)
            throw std::runtime_error("smfi_opensocket(" + spec +
                                     ") failed (directory missing or not writable?)");
    };
    if (milter_path.empty()) {
        open_milter_socket(spec);  // inet: loopback unless allow_remote (config.cpp)
    } else {
        ensure_socket_dir(milter_path, pw);
        place_unix_socket(milter_path, access,
                          [&](const std::string& p) { open_milter_socket("unix:" + p); });
    }
    std::unique_ptr<socketmap_server> smap_server;
    if (!smap.empty()) {
        ensure_socket_dir(unix_socket_path(smap), pw);
        smap_server = std::make_unique<socketmap_server>(st, smap, access);
    }
    return smap_server;
}

// Step 4, the main thread's loop while smfi_main() runs: signals, heartbeat, reload requests,
// table refresh, the decision log's flush. True when it ended on SIGTERM/SIGINT.
bool serve(daemon_state& s, util::signal_pipe& sigs, const std::atomic<bool>& milter_done) {
    std::uint64_t reloads_seen = s.shm ? s.shm->layout().reload_requests.load() : 0;
    std::uint64_t generation_seen = 0;
    // Table mode: Postfix itself decides from the recipient table, so a mailbox change must
    // reach that file quickly (a mailbox added is accepted within a second); the store's
    // generation is then looked at every 100 ms (one short read transaction).
    const bool table_mode = !s.tables->recipient_table_path().empty();
    const auto interval = table_mode ? std::chrono::milliseconds(100) : std::chrono::seconds(1);
    const unsigned per_minute = table_mode ? 600 : 60;
    for (unsigned tick = 1; !milter_done.load(); ++tick) {
        int sig = sigs.wait(interval);
        if (sig == SIGTERM || sig == SIGINT) {
            spdlog::info("signal {}: stopping", sig == SIGTERM ? "TERM" : "INT");
            util::service::notify_stopping();
            stop_milter(s.cfg.milter.socket);
            return true;
        }
        if (sig == SIGHUP) reload(s, "SIGHUP");
        util::service::notify_watchdog();  // no-op unless WatchdogSec= is set
        if (s.shm) {
            auto& l = s.shm->layout();
            l.milter_heartbeat.store(static_cast<std::uint64_t>(std::time(nullptr)),
                                     std::memory_order_relaxed);
            auto r = l.reload_requests.load();
            if (r != reloads_seen) {
                reloads_seen = r;
                reload(s, "reload request in shared memory");
            }
            auto g = s.shm->generation();
            if (g != generation_seen) {
                generation_seen = g;
                spdlog::debug("store generation {}", g);
            }
        }
        // Also catches changes made without shared memory (reads the store's own generation).
        s.tables->refresh(*s.store, false);
        flush_log();  // decision lines reach stderr within a second
        if (tick % per_minute == 0) s.store->clear_stale_readers();
    }
    return false;
}

}  // namespace

int run(const options& opts) {
    // 1. Signals first, blocked before any thread exists: every thread created later
    // inherits this mask.
    std::optional<util::signal_pipe> sigs;
    try {
        sigs.emplace(std::initializer_list<int>{SIGHUP, SIGTERM, SIGINT});
    } catch (const std::exception& e) {
        std::cerr << "mx-milter: " << e.what() << "\n";
        return ex_oserr;
    }
    ::signal(SIGPIPE, SIG_IGN);
    auto st = std::make_unique<daemon_state>();
    std::string smap;
    if (auto rc = load(opts, *st, smap)) return *rc;
    setup_logging(st->cfg, "mx-milter");
    if (st->cfg.log_sink != "syslog") use_buffered_stderr_log("mx-milter");
    st->set_policy(std::make_shared<const check_policy>(check_policy::from(st->cfg)));
    st->store = std::make_unique<store_holder>(st->cfg.store_dir());

    std::optional<util::account> pw;
    if (st->cfg.user && geteuid() == 0) {
        pw = util::lookup_account(*st->cfg.user);
        if (!pw) {
            spdlog::critical("user '{}' (config key `user`) does not exist",
                             log_safe(*st->cfg.user));
            return ex_config;
        }
    }
    std::unique_ptr<socketmap_server> smap_server;
    try {
        smap_server = open_sockets(*st, smap, pw);  // 2.
        if (pw) util::drop_privileges(*pw);         // 3.
    } catch (const std::exception& e) {
        spdlog::critical("start-up failed: {}", log_safe(e.what()));
        return ex_oserr;
    }

    daemon_state& s = *st;
    set_state(std::move(st));
    if (smap_server) smap_server->start();
    spdlog::info("mx-milter started: milter {} socketmap {} store {} user {}", s.cfg.milter.socket,
                 smap.empty() ? "(disabled)" : smap, s.cfg.store_dir().string(),
                 pw ? pw->name : std::string("(unchanged)"));
    s.store->ready();  // open now if it exists (and log it); otherwise on the first RCPT
    s.tables->refresh(*s.store, true);

    std::atomic<bool> milter_done{false};
    int milter_rc = 0;
    std::thread milter_thread([&] {  // 4.
        milter_rc = smfi_main();
        milter_done.store(true);
    });
    // All other threads exist (or will be created by threads that block the signals): now the
    // main thread alone takes them.
    sigs->start();
    util::service::notify_ready("serving " + s.cfg.milter.socket);  // systemd Type=notify
    bool stopping = serve(s, *sigs, milter_done);
    milter_thread.join();
    if (smap_server) smap_server->stop();
    // libmilter leaves its unix socket behind; a stopped milter must not look alive.
    if (auto path = unix_socket_path(s.cfg.milter.socket); !path.empty()) ::unlink(path.c_str());
    if (!stopping) {
        spdlog::critical("milter loop ended unexpectedly (smfi_main returned {})", milter_rc);
        return 1;
    }
    // A stop asked for is a clean stop whatever smfi_main() returned: smfi_stop() closes the
    // listening socket at once, so a SIGTERM that comes before libmilter's listener has
    // started makes that listener fail to reopen it (syslog: "Unable to create listening
    // socket") and smfi_main() return MI_FAILURE although nothing went wrong.
    if (milter_rc != MI_SUCCESS)
        spdlog::info(
            "libmilter's listener ended with a failure while stopping (stopped before "
            "it had started)");
    spdlog::info("mx-milter stopped");
    flush_log();
    return 0;
}

}  // namespace mx::milter
