// Local attackers against mx-milter's sockets, with the real binary:
//   - [rootsafe] started as root with `user` set, symlinks the daemon account planted at the
//     socket paths (before start, and swapped in continuously while it starts) are replaced,
//     never followed: the root-owned targets keep owner, mode and content; the sockets come
//     up with the configured owner/mode and answer; the process runs as the account;
//   - [socketmap] 600 idle connections do not keep a new query from being answered;
//   - [protocol] "inet:PORT" listens on loopback only.
// The [rootsafe] cases need root (they create the account `mxtest` when missing) and are
// skipped, with a warning, otherwise.
#include <catch2/catch.hpp>

#include <poll.h>
#include <pwd.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "fixture.hpp"
#include "global/config.hpp"
#include "global/milter_client.hpp"

using namespace mx::milter_test;
using namespace mx::milter_proto;

namespace {

constexpr const char* test_account = "mxtest";

// The unprivileged account the daemons switch to; nullopt when not root or it cannot be made.
std::optional<passwd> daemon_account() {
    if (::geteuid() != 0) return std::nullopt;
    if (!::getpwnam(test_account))
        (void)!std::system(
            "useradd --system --no-create-home --shell /usr/sbin/nologin mxtest 2>/dev/null");
    passwd* pw = ::getpwnam(test_account);
    if (!pw) return std::nullopt;
    return *pw;
}

// A root-owned 0600 file the attacker would like to own.
struct victim {
    std::filesystem::path path;
    explicit victim(const std::string& tag) {
        std::string tmpl = "/tmp/mx-victim-" + tag + "-XXXXXX";
        int fd = ::mkstemp(tmpl.data());
        REQUIRE(fd >= 0);
        REQUIRE(::write(fd, "secret\n", 7) == 7);
        ::fchmod(fd, 0600);
        ::close(fd);
        path = tmpl;
    }
    ~victim() { ::unlink(path.c_str()); }
    void check_untouched() const {
        struct stat st {};
        REQUIRE(::lstat(path.c_str(), &st) == 0);
        INFO(path.string());
        CHECK(S_ISREG(st.st_mode));
        CHECK(st.st_uid == 0);
        CHECK(st.st_gid == 0);
        CHECK((st.st_mode & 07777) == 0600);
        std::ifstream in(path);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        CHECK(text == "secret\n");
    }
};

void chown_tree(const std::filesystem::path& dir, const passwd& pw) {
    REQUIRE(::lchown(dir.c_str(), pw.pw_uid, pw.pw_gid) == 0);
    for (auto& e : std::filesystem::recursive_directory_iterator(dir))
        REQUIRE(::lchown(e.path().c_str(), pw.pw_uid, pw.pw_gid) == 0);
}

void check_socket(const std::string& path, uid_t uid, unsigned mode) {
    struct stat st {};
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    INFO(path);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK(st.st_uid == uid);
    CHECK((st.st_mode & 07777) == mode);
}

uid_t process_uid(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("Uid:", 0) == 0) return static_cast<uid_t>(std::stoul(line.substr(4)));
    return static_cast<uid_t>(-1);
}

// An installation the daemon account owns, as in production: state and run folders its own.
std::string log_of(const installation& inst) {
    std::ifstream in(inst.dir / "mx-milter.log");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.size() > 4000 ? text.substr(text.size() - 4000) : text;
}

void own_installation(installation& inst, const passwd& pw) {
    inst.top_keys = std::string("user = \"") + test_account + "\"";
    inst.write_config("");
    std::filesystem::create_directories(inst.dir / "run");
    chown_tree(inst.dir / "state", pw);
    chown_tree(inst.dir / "run", pw);
}

// The milter binds each socket in a private folder, renames it into place, then removes the
// folder: the socket can appear a moment before its folder is gone (wait up to 2 s for it).
bool no_private_folders_left(const std::filesystem::path& run) {
    auto left = [&] {
        for (auto& e : std::filesystem::directory_iterator(run))
            if (e.path().filename().string().find(".new-") != std::string::npos) return true;
        return false;
    };
    for (int i = 0; i < 200 && left(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return !left();
}

}  // namespace

TEST_CASE("symlinks planted at the socket paths are replaced, never followed", "[rootsafe]") {
    auto pw = daemon_account();
    if (!pw) {
        WARN("needs root (and useradd) to run as root with user = mxtest: skipped");
        return;
    }
    installation inst("rootsafe");
    own_installation(inst, *pw);
    victim v1("milter"), v2("smap");
    // The daemon account (owner of run/) plants these while the milter is down.
    REQUIRE(::symlink(v1.path.c_str(), inst.milter_socket().c_str()) == 0);
    REQUIRE(::symlink(v2.path.c_str(), inst.socketmap_socket().c_str()) == 0);
    inst.start(MX_MILTER_BIN);

    v1.check_untouched();
    v2.check_untouched();
    check_socket(inst.milter_socket(), pw->pw_uid, 0660);
    check_socket(inst.socketmap_socket(), pw->pw_uid, 0660);
    CHECK(no_private_folders_left(inst.dir / "run"));
    // Dropped root for good (right after the sockets appear: wait for it, instrumented builds
    // are slow).
    for (int i = 0; i < 200 && process_uid(inst.pid) != pw->pw_uid && inst.alive(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK(process_uid(inst.pid) == pw->pw_uid);

    // And it serves on the sockets it made.
    auto c = client::connect_unix(inst.milter_socket());
    c.negotiate();
    REQUIRE_FALSE(c.connect("client.test", "192.0.2.1"));
    REQUIRE_FALSE(c.mail({"<s@sender.test>"}));
    CHECK(c.rcpt("<info@example.test>").code() == "250");
    CHECK(socketmap_query(inst.socketmap_socket(), "domain example.test") == "OK demo");
    int rc = inst.stop();
    INFO(log_of(inst));
    // Stopped by SIGTERM, cleanly (libmilter's own signal thread no longer competes for it:
    // milter/main.cpp).
    CHECK(rc == 0);
    v1.check_untouched();
    v2.check_untouched();
}

TEST_CASE("symlinks swapped in while the milter restarts are never followed", "[rootsafe]") {
    auto pw = daemon_account();
    if (!pw) {
        WARN("needs root (and useradd) to run as root with user = mxtest: skipped");
        return;
    }
    installation inst("rootrace");
    own_installation(inst, *pw);
    victim v1("race-milter"), v2("race-smap");
    auto run = inst.dir / "run";
    // The attacker: as soon as a name appears at a socket path, a symlink to a root-owned file
    // is renamed over it (what a process of the daemon account can do in run/ at any time), and
    // the milter is killed (same uid) so that root starts it again. With the old order (bind
    // at the path, then chown/chmod by path) the attacker wins the window now and then.
    for (int restart = 0; restart < 20; ++restart) {
        std::atomic<bool> racing{true};
        std::thread attacker([&] {
            // inotify: react within microseconds of the socket's name appearing.
            int in = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
            ::inotify_add_watch(in, run.c_str(), IN_CREATE | IN_MOVED_TO);
            int n = 0;
            auto plant = [&](const std::filesystem::path& target, const std::string& path) {
                auto tmp = run / (".plant" + std::to_string(n++));
                if (::symlink(target.c_str(), tmp.c_str()) == 0 &&
                    ::rename(tmp.c_str(), path.c_str()) != 0)
                    ::unlink(tmp.c_str());
            };
            alignas(inotify_event) char buf[4096];
            while (racing.load()) {
                pollfd pfd{in, POLLIN, 0};
                if (::poll(&pfd, 1, 5) <= 0) continue;
                ssize_t len = ::read(in, buf, sizeof buf);
                for (ssize_t off = 0; off < len;) {
                    auto* ev = reinterpret_cast<inotify_event*>(buf + off);
                    std::string name = ev->len ? ev->name : "";
                    if (name == "milter.sock") plant(v1.path, inst.milter_socket());
                    if (name == "socketmap.sock") plant(v2.path, inst.socketmap_socket());
                    off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
                }
            }
            ::close(in);
        });
        pid_t pid = ::fork();
        if (pid == 0) {
            std::string log = (inst.dir / "mx-milter.log").string();
            (void)!std::freopen(log.c_str(), "a", stderr);
            ::execl(MX_MILTER_BIN, MX_MILTER_BIN, "--config", inst.conf.c_str(), (char*)nullptr);
            ::_exit(127);
        }
        inst.pid = pid;
        // Race through start-up (sockets bound, permissions set, privileges dropped).
        for (int i = 0; i < 200 && process_uid(pid) != pw->pw_uid && inst.alive(); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        racing.store(false);
        attacker.join();
        INFO("restart " << restart);
        v1.check_untouched();
        v2.check_untouched();
        if (inst.pid > 0) {
            ::kill(inst.pid, SIGKILL);
            int st = 0;
            ::waitpid(inst.pid, &st, 0);
            inst.pid = -1;
        }
        for (auto& e : std::filesystem::directory_iterator(run))
            if (e.path().filename().string().rfind(".plant", 0) == 0) ::unlink(e.path().c_str());
    }
    // After the race the milter still starts cleanly over whatever was left at the paths.
    inst.start(MX_MILTER_BIN);
    check_socket(inst.milter_socket(), pw->pw_uid, 0660);
    CHECK(socketmap_query(inst.socketmap_socket(), "domain example.test") == "OK demo");
    // And it serves on the sockets it made.
    auto c = client::connect_unix(inst.milter_socket());
    c.negotiate();
    REQUIRE_FALSE(c.connect("client.test", "192.0.2.1"));
    REQUIRE_FALSE(c.mail({"<s@sender.test>"}));
    CHECK(c.rcpt("<info@example.test>").code() == "250");
    int rc = inst.stop();
    INFO(log_of(inst));
    // Stopped by SIGTERM, cleanly (libmilter's own signal thread no longer competes for it:
    // milter/main.cpp).
    CHECK(rc == 0);
    v1.check_untouched();
    v2.check_untouched();
}

TEST_CASE("a SIGTERM right after start is a clean stop (exit 0)", "[protocol]") {
    // The sockets exist before libmilter's listener runs; smfi_stop() then closes the
    // listening socket under it and smfi_main() returns MI_FAILURE (the CI check saw exit 1
    // under ASan). A stop asked for is still a clean stop.
    installation inst("early-term");
    for (int i = 0; i < 20; ++i) {
        inst.start(MX_MILTER_BIN);
        int rc = inst.stop();
        INFO("round " << i << "\n" << log_of(inst));
        REQUIRE(rc == 0);
    }
}

TEST_CASE("600 idle socketmap connections never starve a new query", "[socketmap]") {
    installation inst("smap-idle");
    inst.start(MX_MILTER_BIN);
    std::vector<int> idle;
    for (int i = 0; i < 600; ++i) {
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::strcpy(sa.sun_path, inst.socketmap_socket().c_str());
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        idle.push_back(fd);  // connected, never sends anything
    }
    // socketmap_query gives up after 10 s without an answer (the old limit parked new clients
    // for the 10-minute idle timeout).
    CHECK(socketmap_query(inst.socketmap_socket(), "domain example.test") == "OK demo");
    CHECK(socketmap_query(inst.socketmap_socket(), "mailbox info@example.test").rfind("OK ", 0) ==
          0);
    for (int fd : idle) ::close(fd);
    CHECK(inst.alive());
    int rc = inst.stop();
    INFO(log_of(inst));
    CHECK(rc == 0);
}

TEST_CASE("inet milter socket without a host listens on loopback only", "[protocol]") {
    // Config: the default host is loopback; anything else needs allow_remote.
    auto parse = [](const std::string& milter) {
        return mx::parse_config("[milter]\n" + milter, "/etc/mx-connector/test.toml");
    };
    CHECK(parse("socket = \"inet:10025\"").milter.socket == "inet:10025@127.0.0.1");
    CHECK(parse("socket = \"inet6:10025\"").milter.socket == "inet6:10025@[::1]");
    CHECK(parse("socket = \"inet:10025@localhost\"").milter.socket == "inet:10025@localhost");
    CHECK(parse("socket = \"inet:10025@127.0.0.2\"").milter.socket == "inet:10025@127.0.0.2");
    CHECK_THROWS_WITH(parse("socket = \"inet:10025@0.0.0.0\""),
                      Catch::Contains("not a loopback address") && Catch::Contains("allow_remote"));
    CHECK_THROWS_AS(parse("socket = \"inet:10025@192.0.2.1\""), mx::config_error);
    CHECK(parse("socket = \"inet:10025@0.0.0.0\"\nallow_remote = true").milter.socket ==
          "inet:10025@0.0.0.0");

    // The daemon: a listening TCP socket on 127.0.0.1 only (/proc/net/tcp, state 0A).
    installation inst("milter-inet");
    inst.milter_spec = "inet:10035";
    inst.write_config("");
    inst.start(MX_MILTER_BIN);
    std::string local;
    for (int i = 0; i < 200 && local.empty(); ++i) {
        std::ifstream tcp("/proc/net/tcp");
        std::string line;
        while (std::getline(tcp, line)) {
            std::istringstream ls(line);
            std::string sl, loc, rem, st;
            ls >> sl >> loc >> rem >> st;
            if (st == "0A" && loc.size() > 5 && loc.substr(loc.size() - 5) == ":2733") local = loc;
        }
        if (local.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    CHECK(local == "0100007F:2733");  // 127.0.0.1:10035, not 00000000 (every interface)
    CHECK(inst.stop() == 0);
}
