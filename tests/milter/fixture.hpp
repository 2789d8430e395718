// fixture: a temporary installation for mx-milter tests: config, store with a fixed set of
// connectors/mailboxes, and (optionally) a running mx-milter process on a private socket.
//   demo   active    example.test       info@, sales@
//   catch  active    catch.test         @catch.test (catch-all)
//   off    inactive  off.test           a@off.test
//   subs   active    .sub.test          @x.sub.test
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "global/config.hpp"
#include "global/shm_state.hpp"
#include "global/store.hpp"

namespace mx::milter_test {

inline std::filesystem::path make_temp_dir(const char* tag) {
    std::string tmpl = std::string("/tmp/mx-milter-test-") + tag + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    std::filesystem::permissions(tmpl, std::filesystem::perms(0755));
    return tmpl;
}

struct installation {
    std::filesystem::path dir;
    std::filesystem::path conf;
    config cfg;
    pid_t pid = -1;
    std::string socketmap_spec;  // empty: "unix:" + socketmap_socket()
    std::string milter_spec;     // empty: "unix:" + milter_socket()
    std::string top_keys;        // extra top-level config lines (e.g. user = "...")

    explicit installation(const char* tag, const std::string& extra_milter_keys = "",
                          bool with_store = true) {
        dir = make_temp_dir(tag);
        conf = dir / "mx-connector.toml";
        write_config(extra_milter_keys);
        if (with_store) populate();
    }
    ~installation() {
        stop();
        shm_state::remove(cfg);
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }

    std::string milter_socket() const { return (dir / "run/milter.sock").string(); }
    std::string socketmap_socket() const { return (dir / "run/socketmap.sock").string(); }

    void write_config(const std::string& extra_milter_keys) {
        std::ofstream(conf) << "state_dir = \"" << (dir / "state").string() << "\"\n"
                            << "run_dir = \"" << (dir / "run").string() << "\"\n"
                            << "mail_root = \"" << (dir / "mail").string() << "\"\n"
                            << "log_level = \"info\"\n"
                            << top_keys << "\n"
                            << "[milter]\nsocket = \""
                            << (milter_spec.empty() ? "unix:" + milter_socket() : milter_spec)
                            << "\"\n"
                            << "socketmap = \""
                            << (socketmap_spec.empty() ? "unix:" + socketmap_socket()
                                                       : socketmap_spec)
                            << "\"\n"
                            << extra_milter_keys << "\n";
        cfg = load_config(conf);
    }

    void populate() {
        auto shm = shm_state::attach(cfg);
        auto s = store::open(cfg, false);
        s.attach(&shm);
        s.write([&](store_tx& tx) {
            auto add = [&](const char* name, bool active, const char* domain) {
                connector c;
                c.name = name;
                c.active = active;
                c.drop_folder = (dir / "drop" / name).string();
                c.domains = {domain};
                tx.add_connector(c);
            };
            add("demo", true, "example.test");
            add("catch", true, "catch.test");
            add("off", false, "off.test");
            add("subs", true, ".sub.test");
            for (auto [a, c] :
                 {std::pair{"info@example.test", "demo"}, std::pair{"sales@example.test", "demo"},
                  std::pair{"@catch.test", "catch"}, std::pair{"a@off.test", "off"},
                  std::pair{"@x.sub.test", "subs"}}) {
                mailbox m;
                m.address = a;
                m.connector = c;
                tx.add_mailbox(m);
            }
        });
    }

    void start(const std::string& binary) {
        std::filesystem::create_directories(dir / "run");
        pid = ::fork();
        if (pid == 0) {
            std::string log = (dir / "mx-milter.log").string();
            FILE* f = std::freopen(log.c_str(), "a", stderr);
            (void)f;
            ::execl(binary.c_str(), binary.c_str(), "--config", conf.c_str(), (char*)nullptr);
            ::_exit(127);
        }
        // is_socket(): a symlink planted at the path (rootsafe tests) is not the socket.
        for (int i = 0; i < 200; ++i) {
            if ((!milter_spec.empty() || std::filesystem::is_socket(milter_socket())) &&
                (!socketmap_spec.empty() || std::filesystem::is_socket(socketmap_socket())))
                return;
            int st = 0;
            if (::waitpid(pid, &st, WNOHANG) == pid) {
                pid = -1;
                throw std::runtime_error("mx-milter exited at start; see " +
                                         (dir / "mx-milter.log").string());
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(25));
        }
        throw std::runtime_error("mx-milter socket did not appear");
    }

    // False once the process has exited (it is then reaped: pid becomes -1).
    bool alive() {
        if (pid <= 0) return false;
        int st = 0;
        if (::waitpid(pid, &st, WNOHANG) == pid) {
            pid = -1;
            return false;
        }
        return ::kill(pid, 0) == 0;
    }

    // SIGTERM and wait; returns the exit status (or -1).
    int stop() {
        if (pid <= 0) return -1;
        ::kill(pid, SIGTERM);
        int st = 0;
        for (int i = 0; i < 400; ++i) {
            if (::waitpid(pid, &st, WNOHANG) == pid) {
                pid = -1;
                return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(25));
        }
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &st, 0);
        pid = -1;
        return -1;
    }
};

// A config directory for Postfix's command-line clients (postmap needs a main.cf).
inline std::filesystem::path postfix_client_conf(const std::filesystem::path& dir) {
    auto conf = dir / "postfix-conf";
    std::filesystem::create_directories(conf);
    std::ofstream(conf / "main.cf") << "compatibility_level = 3.6\n";
    return conf;
}

// What Postfix's own client finds: `postmap -q KEY MAP` (e.g. "lmdb:/x/domains",
// "socketmap:inet:127.0.0.1:10031:domain"); the value without its newline, nullopt when
// postmap finds nothing (exit 1) or fails.
inline std::optional<std::string> postmap_query(const std::filesystem::path& conf,
                                                const std::string& map, const std::string& key) {
    std::string cmd =
        "postmap -c '" + conf.string() + "' -q '" + key + "' '" + map + "' 2>/dev/null";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) throw std::runtime_error("popen postmap failed");
    std::string out;
    char buf[256];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    if (::pclose(p) != 0) return std::nullopt;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
}

}  // namespace mx::milter_test
