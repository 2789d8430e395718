// The parse worker's sandbox (importer/parse_worker.cpp, shared/util/sandbox.cpp):
// - a worker that tries to open a file (the first step of an exploit after the secrets) is
//   killed with SIGSYS, not refused with EPERM; that file alone fails, the batch goes on;
// - the same for the secret store's own file; without the sandbox the very same request
//   reads it (so the test can fail);
// - every mail of the fuzz corpus and the golden set parses in the sandboxed worker exactly
//   as in-process: no parse path needs a forbidden system call.
// Runs the three worker modes: fork (what tests use), fork+exec of the real mx-importer binary
// (a fresh process that prepares itself) and forked from the binary's prepared factory process
// (what the daemon uses).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "global/secrets.hpp"
#include "importer_fixture.hpp"
#include "lib/test_support.hpp"
#include "parse_worker.hpp"
#include "util/sanitizers.hpp"

using namespace mx::importer;
using mx::importer::testing::spit;
namespace fs = std::filesystem;

namespace {

using mx::test::temp_dir;

// Fault injection is read by the worker when it starts: set around the worker's life.
struct fault_injection_on {
    fault_injection_on() { ::setenv("MX_IMPORTER_FAULT_INJECTION", "1", 1); }
    ~fault_injection_on() { ::unsetenv("MX_IMPORTER_FAULT_INJECTION"); }
};

std::string open_probe(const fs::path& target) {
    return "Return-Path: <s@remote.example>\nDelivered-To: info@example.test\n"
           "X-Mx-Test-Fault: open " +
           target.string() + "\nSubject: probe\n\nbody\n";
}

std::int64_t mtime_of(const fs::path& p) {
    struct stat sb {};
    REQUIRE(::stat(p.c_str(), &sb) == 0);
    return static_cast<std::int64_t>(sb.st_mtime);
}

// How the worker process comes to be: forked from the test (fork), fork+exec of the real
// binary (exec), forked from a prepared factory process of the real binary (factory: what the
// daemon runs).
enum class kind { fork, exec, factory };
const char* name(kind k) {
    return k == kind::fork ? "fork mode" : k == kind::exec ? "fork+exec mode" : "factory mode";
}

worker_options mode(kind k, bool sandbox = true) {
    worker_options o;
    if (k != kind::fork) o.exec_path = MX_IMPORTER_BIN;
    o.sandbox = sandbox;
    if (k == kind::factory) o.factory = std::make_shared<worker_factory>(o);
    return o;
}

}  // namespace

TEST_CASE("parse worker sandbox: opening a file kills the worker with SIGSYS", "[sandbox]") {
    temp_dir d("open");
    spit(d.path / "secret", "not for the parser\n");
    ::chmod((d.path / "secret").c_str(), 0600);
    spit(d.path / "ok", "Delivered-To: info@example.test\nSubject: fine\n\nhi\n");
    spit(d.path / "probe", open_probe(d.path / "secret"));
    spit(d.path / "crash", "Delivered-To: info@example.test\nX-Mx-Test-Fault: crash\n\nhi\n");
    fault_injection_on fi;
    for (kind k : {kind::fork, kind::exec, kind::factory}) {
        INFO(name(k));
        parse_worker w(mode(k));
        REQUIRE(w.sandboxed());
        auto r = w.parse_batch({d.path / "ok", d.path / "probe", d.path / "ok", d.path / "crash"},
                               {0, 0, 0, 0});
        REQUIRE(r.size() == 4);
        CHECK(r[0].st == parse_result::status::ok);
        // Killed, not refused: EPERM would have let it answer "ok" with an open error note.
        CHECK(r[1].st == parse_result::status::crashed);
        CHECK(r[1].term_signal == SIGSYS);
        CHECK(r[1].error.find("sandbox") != std::string::npos);
        CHECK(r[2].st == parse_result::status::ok);  // the batch went on with a new worker
        // abort() still works in the sandbox: a plain crash is not mistaken for the sandbox.
        CHECK(r[3].st == parse_result::status::crashed);
        // (Under ASan/TSan the runtime's abort reporting makes system calls of its own, which
        // the filter kills with SIGSYS first.)
        CHECK((r[3].term_signal == SIGABRT ||
               (mx::util::sanitizer_build && r[3].term_signal == SIGSYS)));
        CHECK(w.restarts() == 2);
        // The envelope-only retry the engine does next works in the sandbox.
        auto env = w.parse(d.path / "probe", 0, true);
        CHECK(env.st == parse_result::status::ok);
        CHECK(env.info.env.recipients == std::vector<std::string>{"info@example.test"});
    }
    {  // control: without the sandbox the same request reads the file
        parse_worker w(mode(kind::fork, false));
        CHECK_FALSE(w.sandboxed());
        auto r = w.parse(d.path / "probe");
        REQUIRE(r.st == parse_result::status::ok);
        CHECK(r.info.note.find("read 19 bytes of") != std::string::npos);
    }
}

TEST_CASE("parse worker sandbox: the secret store cannot be opened", "[sandbox]") {
    temp_dir d("secrets");
    auto dir = d.path / "state" / "secrets";
    fs::create_directories(dir);
    mx::secret_store::open(dir, false).set("smtp/demo", "hunter2-refresh-token");
    auto db = dir / "data.mdb";
    REQUIRE(fs::exists(db));
    spit(d.path / "probe", open_probe(db));
    fault_injection_on fi;
    {
        parse_worker w(mode(kind::factory));  // what the daemon runs
        REQUIRE(w.sandboxed());
        auto r = w.parse(d.path / "probe");
        CHECK(r.st == parse_result::status::crashed);
        CHECK(r.term_signal == SIGSYS);
    }
    {
        parse_worker w(mode(kind::factory, false));  // control: same account, no filter
        auto r = w.parse(d.path / "probe");
        REQUIRE(r.st == parse_result::status::ok);
        CHECK(r.info.note.find("read 4096 bytes of " + db.string()) != std::string::npos);
    }
}

TEST_CASE("parse worker sandbox: refuses what it is not given, the worker survives", "[sandbox]") {
    temp_dir d("paths");
    spit(d.path / "ok", "Delivered-To: info@example.test\n\nhi\n");
    fs::create_symlink(d.path / "ok", d.path / "link");
    fs::create_directories(d.path / "dir");
    parse_worker w(mode(kind::factory));
    auto r = w.parse_batch({d.path / "missing", d.path / "link", d.path / "dir", d.path / "ok"},
                           {0, 0, 0, 0});
    CHECK(r[0].st == parse_result::status::io_error);
    CHECK(r[0].err == ENOENT);
    CHECK(r[1].st == parse_result::status::io_error);
    CHECK(r[1].err == ELOOP);  // O_NOFOLLOW in the parent
    CHECK(r[2].st == parse_result::status::io_error);
    CHECK(r[2].err == EINVAL);  // not a regular file
    CHECK(r[3].st == parse_result::status::ok);
    CHECK(w.restarts() == 0);
}

TEST_CASE("parse worker sandbox: corpus and golden mails parse as they do in-process",
          "[sandbox]") {
    std::vector<fs::path> files;
    for (const fs::path& dir :
         {fs::path(MX_FUZZ_CORPUS_DIR), fs::path(MX_GOLDEN_DIR) / "new", fs::path(MX_GOLDEN_DIR)})
        for (auto& e : fs::directory_iterator(dir))
            if (e.is_regular_file() && e.path().filename() != "expected.json")
                files.push_back(e.path());
    REQUIRE(files.size() > 100);
    std::vector<std::uint64_t> sizes(files.size(), 0);
    for (bool envelope_only : {false, true}) {
        parse_worker w(mode(kind::factory));
        REQUIRE(w.sandboxed());
        auto r = w.parse_batch(files, sizes, envelope_only);
        REQUIRE(r.size() == files.size());
        std::size_t same = 0;
        for (std::size_t i = 0; i < files.size(); ++i) {
            INFO(files[i].string());
            CHECK(r[i].term_signal != SIGSYS);
            nlohmann::json here;
            try {
                here = analyse_file(files[i].string(), {}, envelope_only);
            } catch (const std::exception& e) {
                CHECK(r[i].st == parse_result::status::crashed);  // a parser exception
                continue;
            }
            REQUIRE(r[i].st == parse_result::status::ok);
            CHECK(r[i].fingerprint == here.at("fingerprint").get<std::string>());
            // Compared as the worker sends it: invalid UTF-8 replaced by U+FFFD.
            auto text = [](const nlohmann::json& j) {
                return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
            };
            CHECK(text(to_json(r[i].info)) == text(here.at("info")));
            ++same;
        }
        CHECK(w.restarts() == 0);
        CHECK(same > 100);
    }
}

TEST_CASE("parse worker sandbox: RFC 2047 words in rare charsets decode as in-process",
          "[sandbox]") {
    // Each charset's converter is a module glibc would dlopen() on first use, i.e. an open()
    // under the filter, unless the worker loaded it before entering the sandbox.
    temp_dir d("charsets");
    std::vector<fs::path> files;
    const char* words[] = {
        "=?KOI8-R?B?8NLJ18XU?=",
        "=?GB2312?B?xOO6ww==?=",
        "=?BIG5?B?pKSk5Q==?=",
        "=?EUC-KR?B?x9GxuQ==?=",
        "=?SHIFT_JIS?B?g2WDWINn?=",
        "=?ISO-8859-2?Q?=AClu=BBou=E8k=FD?=",
        "=?windows-1251?Q?=CF=F0=E8?=",
        "=?IBM850?Q?=81ber?=",
        "=?EUC-JP?B?pMukyw==?=",
        "=?GB18030?B?1tC5+g==?=",
        "=?TIS-620?Q?=CA=C7?=",
        "=?x-no-such-charset?Q?abc?=",
        "=?UTF-7?Q?+AOQ-?=",
        "=?ISO-8859-16?Q?=AA?=",
    };
    int n = 0;
    for (const char* w : words) {
        auto p = d.path / ("m" + std::to_string(n++));
        spit(p, std::string("Delivered-To: info@example.test\nSubject: ") + w + "\nFrom: " + w +
                    " <a@example.test>\n\nbody\n");
        files.push_back(p);
    }
    parse_worker w(mode(kind::factory));
    REQUIRE(w.sandboxed());
    auto r = w.parse_batch(files, std::vector<std::uint64_t>(files.size(), 0));
    for (std::size_t i = 0; i < files.size(); ++i) {
        INFO(words[i]);
        REQUIRE(r[i].st == parse_result::status::ok);
        auto here = analyse_file(files[i].string(), {});
        CHECK(r[i].info.subject == here.at("info").at("subject").get<std::string>());
    }
    CHECK(w.restarts() == 0);
}

TEST_CASE("parse worker: many files per request, a crash and a hang blamed on their own file",
          "[sandbox]") {
    // Requests carry up to max_fds_per_request files each; the worker still answers file by
    // file, so the crash and the hang in the middle of a request are blamed on those two
    // files alone and the rest of their requests is sent again to the new worker.
    fault_injection_on fi;
    temp_dir d("groups");
    std::vector<fs::path> files;
    std::vector<std::uint64_t> sizes;
    std::vector<std::int64_t> mtimes;
    const std::size_t n = 3 * max_fds_per_request + 5, crash_at = 7, hang_at = 20;
    for (std::size_t i = 0; i < n; ++i) {
        auto p = d.path / ("m" + std::to_string(i));
        std::string fault = i == crash_at  ? "X-Mx-Test-Fault: crash\n"
                            : i == hang_at ? "X-Mx-Test-Fault: hang\n"
                                           : "";
        spit(p, "Delivered-To: info@example.test\n" + fault + "Subject: m" + std::to_string(i) +
                    "\n\nbody\n");
        files.push_back(p);
        sizes.push_back(fs::file_size(p));
        // Hints as the claim gives them: every other file with a (deliberately odd) mtime
        // the worker must take instead of an fstat, the rest unknown (the worker fstat()s).
        mtimes.push_back(i % 2 ? 1000000000 + static_cast<std::int64_t>(i) : 0);
    }
    for (kind k : {kind::fork, kind::exec, kind::factory}) {
        INFO(name(k));
        auto o = mode(k);
        o.base_timeout = std::chrono::milliseconds(mx::util::sanitizer_build ? 3000 : 1000);
        parse_worker w(o);
        auto r = w.parse_batch(files, sizes, false, mtimes);
        REQUIRE(r.size() == n);
        for (std::size_t i = 0; i < n; ++i) {
            INFO(i);
            if (i == crash_at) {
                CHECK(r[i].st == parse_result::status::crashed);
            } else if (i == hang_at) {
                CHECK(r[i].st == parse_result::status::timeout);
            } else {
                REQUIRE(r[i].st == parse_result::status::ok);
                CHECK(r[i].info.subject == "m" + std::to_string(i));
                CHECK(r[i].size == sizes[i]);
                if (mtimes[i] != 0)
                    CHECK(r[i].mtime == mtimes[i]);
                else
                    CHECK(r[i].mtime == mtime_of(files[i]));
            }
        }
        CHECK(w.restarts() == 2);
    }
}

namespace {

pid_t parent_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    // pid (comm) state ppid ...: comm may hold spaces, so read after its closing parenthesis.
    std::istringstream rest(line.substr(line.rfind(')') + 1));
    std::string state;
    pid_t ppid = -1;
    rest >> state >> ppid;
    return ppid;
}

// Where libc is mapped in that process: the same in a forked copy, new after an exec (ASLR).
std::string libc_at(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
    std::string line;
    while (std::getline(in, line))
        if (line.find("/libc.so") != std::string::npos) return line.substr(0, line.find('-'));
    return {};
}

std::string cmdline_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::replace(s.begin(), s.end(), '\0', ' ');
    return s;
}

}  // namespace

TEST_CASE(
    "parse worker factory: workers are forked prepared, are our children, outlive the "
    "thread that asked",
    "[sandbox]") {
    temp_dir d("factory");
    spit(d.path / "ok", "Delivered-To: info@example.test\nSubject: fine\n\nhi\n");
    spit(d.path / "crash", "Delivered-To: info@example.test\nX-Mx-Test-Fault: crash\n\nhi\n");
    fault_injection_on fi;
    auto o = mode(kind::factory);
    auto& factory = *o.factory;
    REQUIRE(factory.pid() > 0);
    parse_worker w(o);
    REQUIRE(w.sandboxed());
    CHECK(factory.spawned() == 1);
    // Not exec'd: the worker is a copy of the prepared factory, yet the test's own child
    // (CLONE_PARENT), so waitpid() and kill() work on it as on any worker.
    CHECK(cmdline_of(w.pid()).find("--parse-worker-factory") != std::string::npos);
    CHECK(parent_of(w.pid()) == ::getpid());
    CHECK(parent_of(factory.pid()) == ::getpid());
    CHECK(libc_at(w.pid()) == libc_at(factory.pid()));
    CHECK_FALSE(libc_at(w.pid()).empty());

    SECTION("after a crash the next worker comes from a renewed factory: a new layout") {
        std::string before = libc_at(w.pid());
        pid_t factory_pid = factory.pid();
        auto r = w.parse_batch({d.path / "ok", d.path / "crash", d.path / "ok"}, {0, 0, 0});
        CHECK(r[0].st == parse_result::status::ok);
        CHECK(r[1].st == parse_result::status::crashed);
        CHECK(r[2].st == parse_result::status::ok);
        CHECK(factory.renewed() == 1);
        CHECK(factory.pid() == factory_pid);  // the same process, exec'd again
        CHECK(factory.spawned() == 2);
        CHECK(libc_at(w.pid()) == libc_at(factory.pid()));
        // ASLR gives libc a new place at each exec (randomize_va_space is 2 here).
        std::ifstream aslr("/proc/sys/kernel/randomize_va_space");
        int level = 0;
        aslr >> level;
        if (level > 0) CHECK(libc_at(w.pid()) != before);
        // A worker started without a failure before it is forked as is.
        parse_worker other(o);
        CHECK(factory.renewed() == 1);
        CHECK(libc_at(other.pid()) == libc_at(w.pid()));
    }

    SECTION("a worker restarted on another thread survives that thread") {
        // The engine parses half a batch on a short-lived thread; a worker restarted there
        // must not die with it (PR_SET_PDEATHSIG follows the thread that forked the process:
        // an exec'd worker forked by that thread is killed when it ends).
        std::vector<parse_result> r;
        std::thread t([&] { r = w.parse_batch({d.path / "crash", d.path / "ok"}, {0, 0}); });
        t.join();
        REQUIRE(r.size() == 2);
        CHECK(r[0].st == parse_result::status::crashed);
        CHECK(r[1].st == parse_result::status::ok);
        CHECK(w.restarts() == 1);
        CHECK(factory.spawned() == 2);
        ::usleep(100 * 1000);  // a parent-death signal would have arrived by now
        auto again = w.parse(d.path / "ok");
        CHECK(again.st == parse_result::status::ok);
        CHECK(w.restarts() == 1);  // the same worker answered: nothing died meanwhile
    }
    SECTION("a factory that died is started again, by its owner thread only") {
        pid_t first = factory.pid();
        ::kill(first, SIGKILL);
        // Not its owner: this worker is exec'd instead (and works), the factory stays down.
        std::thread t([&] {
            parse_worker other(o);
            CHECK(other.parse(d.path / "ok").st == parse_result::status::ok);
            CHECK(cmdline_of(other.pid()).find("--parse-worker ") != std::string::npos);
        });
        t.join();
        CHECK(factory.spawned() == 1);
        // Its owner: a new factory, which forks the next worker.
        auto r = w.parse_batch({d.path / "crash", d.path / "ok"}, {0, 0});
        CHECK(r[0].st == parse_result::status::crashed);
        CHECK(r[1].st == parse_result::status::ok);
        CHECK(factory.pid() > 0);
        CHECK(factory.pid() != first);
        CHECK(factory.spawned() == 2);
        CHECK(cmdline_of(w.pid()).find("--parse-worker-factory") != std::string::npos);
    }
}

TEST_CASE(
    "parse worker: one killed before it is ready is replaced, a factory killed while it "
    "prepares is started again",
    "[sandbox]") {
    temp_dir d("early");
    spit(d.path / "ok", "Delivered-To: info@example.test\nSubject: fine\n\nhi\n");
    for (kind k : {kind::exec, kind::factory}) {
        INFO(name(k));
        auto o = mode(k);
        parse_worker w(o, false);  // started, its hello not awaited yet
        REQUIRE(::kill(w.pid(), SIGKILL) == 0);
        w.ready();  // a second worker, not "parse worker did not start"
        CHECK(w.sandboxed());
        CHECK(w.parse(d.path / "ok").st == parse_result::status::ok);
    }
    // The factory killed between its start and the first worker: that worker gets a new
    // factory, not an exec of its own.
    auto o = mode(kind::factory);
    pid_t first = o.factory->pid();
    REQUIRE(::kill(first, SIGKILL) == 0);
    parse_worker w(o);
    CHECK(w.parse(d.path / "ok").st == parse_result::status::ok);
    CHECK(o.factory->pid() > 0);
    CHECK(o.factory->pid() != first);
    CHECK(cmdline_of(w.pid()).find("--parse-worker-factory") != std::string::npos);
}
