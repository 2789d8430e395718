// The parse worker's sandbox (importer/parse_worker.cpp, shared/util/sandbox.cpp):
// - a worker that tries to open a file (the first step of an exploit after the secrets) is
//   killed with SIGSYS, not refused with EPERM; that file alone fails, the batch goes on;
// - the same for the secret store's own file; without the sandbox the very same request
//   reads it (so the test can fail);
// - every mail of the fuzz corpus and the golden set parses in the sandboxed worker exactly
//   as in-process: no parse path needs a forbidden system call.
// Runs both worker modes: fork (what tests use) and fork+exec of the real mx-importer binary
// (what the daemon uses: a fresh process that prepares itself).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
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

worker_options mode(bool exec, bool sandbox = true) {
    worker_options o;
    if (exec) o.exec_path = MX_IMPORTER_BIN;
    o.sandbox = sandbox;
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
    for (bool exec : {false, true}) {
        INFO((exec ? "fork+exec mode" : "fork mode"));
        parse_worker w(mode(exec));
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
        parse_worker w(mode(false, false));
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
        parse_worker w(mode(true));  // what the daemon runs
        REQUIRE(w.sandboxed());
        auto r = w.parse(d.path / "probe");
        CHECK(r.st == parse_result::status::crashed);
        CHECK(r.term_signal == SIGSYS);
    }
    {
        parse_worker w(mode(true, false));  // control: same account, no filter
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
    parse_worker w(mode(true));
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
        parse_worker w(mode(true));
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
    parse_worker w(mode(true));
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
    for (bool exec : {false, true}) {
        INFO((exec ? "exec" : "fork"));
        auto o = mode(exec);
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
