// Engine behaviour beyond the golden set: temporary failures and retries, expiry to 5.4.7,
// size limits, unparseable files (crashing parser, empty file, no envelope), and the admin's
// retry path (.retry/) with no second bounce.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <sys/stat.h>
#include <utime.h>

#include "global/bounce_job.hpp"
#include "importer_fixture.hpp"

using namespace mx::importer;
using namespace mx::importer::testing;
namespace fs = std::filesystem;

namespace {

nlohmann::json reason_of(fixture& fx, const std::string& name) {
    return nlohmann::json::parse(slurp(fx.root / "drop" / "ImportFailed" / (name + ".json")));
}

std::size_t bounce_jobs(fixture& fx) {
    return fx.count(mx::bounce_spool_dir(fx.cfg) / "new");
}

void set_target(fixture& fx, const std::string& mailbox, const std::string& target) {
    fx.st->write([&](mx::store_tx& tx) {
        auto m = *tx.find_mailbox(mailbox);
        m.target = target;
        tx.update_mailbox(m);
    });
}

}  // namespace

TEST_CASE("temporary target failure: retried, then imported once fixed", "[engine][retry]") {
    fixture fx("retry_base_seconds = 0\n");
    set_target(fx, "info@example.test", "maildir:/proc/mx-no-such-place/info");
    spit(fx.root / "drop" / "new" / "m1", "Delivered-To: info@example.test\nSubject: t\n\nbody\n");
    auto b1 = fx.eng->run_batch(fx.fold, &*fx.st);
    CHECK(b1.deferred == 1);
    CHECK(b1.imported == 0);
    CHECK(fx.count(fx.root / "drop" / ".work" / "test.host") == 1);  // kept, not lost
    CHECK(fx.count(fx.root / "drop" / "ImportFailed") == 0);
    auto good = fx.root / "custom-maildir";
    set_target(fx, "info@example.test", "maildir:" + good.string());
    auto b2 = fx.drain();
    CHECK(b2.imported == 1);
    CHECK(fx.count(good / "new") == 1);
    CHECK(fx.count(fx.root / "drop" / ".work" / "test.host") == 0);
}

TEST_CASE("temporary failure past the maximum age: ImportFailed 5.4.7 (expired)",
          "[engine][retry]") {
    fixture fx;
    set_target(fx, "info@example.test", "maildir:/proc/mx-no-such-place/info");
    auto p = fx.root / "drop" / "new" / "old";
    spit(p, "Return-Path: <s@x.org>\nDelivered-To: info@example.test\nSubject: t\n\nbody\n");
    struct utimbuf ut {};
    ut.actime = ut.modtime = ::time(nullptr) - 6 * 86400;  // arrived six days ago
    REQUIRE(::utime(p.c_str(), &ut) == 0);
    auto b = fx.drain();
    CHECK(b.failed == 1);
    auto r = reason_of(fx, "old");
    CHECK(r["status"] == "5.4.7");
    CHECK(r["reason"] == "expired");
    CHECK(r["diagnostic"].get<std::string>().rfind("4.3.0", 0) == 0);
    CHECK(bounce_jobs(fx) == 1);
}

TEST_CASE("size limit of the connector", "[engine]") {
    fixture fx;
    fx.fold.max_size = 100;
    spit(fx.root / "drop" / "new" / "big",
         "Delivered-To: info@example.test\n\n" + std::string(200, 'x'));
    spit(fx.root / "drop" / "new" / "small", "Delivered-To: info@example.test\n\nsmall\n");
    auto b = fx.drain();
    CHECK(b.imported == 1);
    CHECK(b.failed == 1);
    CHECK(reason_of(fx, "big")["status"] == "5.3.4");
    CHECK(reason_of(fx, "big")["reason"] == "too-large");
}

TEST_CASE("unparseable: crashing parser, empty file, no envelope", "[engine][hostile]") {
    ::setenv("MX_IMPORTER_FAULT_INJECTION", "1", 1);  // before the worker is forked
    fixture fx;
    spit(fx.root / "drop" / "new" / "crash",
         "Return-Path: <s@x.org>\nDelivered-To: info@example.test\nX-Mx-Test-Fault: crash\n\nx\n");
    spit(fx.root / "drop" / "new" / "empty", "");
    spit(fx.root / "drop" / "new" / "noenv", "Subject: who?\n\nnobody knows\n");
    spit(fx.root / "drop" / "new" / "fine", "Delivered-To: info@example.test\n\nfine\n");
    auto b = fx.drain();
    ::unsetenv("MX_IMPORTER_FAULT_INJECTION");
    CHECK(b.imported == 1);
    for (const char* n : {"crash", "empty", "noenv"}) {
        INFO(n);
        auto r = reason_of(fx, n);
        CHECK(r["reason"] == "unparseable");
        CHECK(r["status"] == "5.6.0");
        CHECK(fs::exists(fx.root / "drop" / "ImportFailed" / n));
    }
    CHECK(bounce_jobs(fx) == 3);
    // the parser crashed, but the envelope-only pass still knows sender and recipient
    auto crash = reason_of(fx, "crash");
    CHECK(crash["envelope_sender"] == "s@x.org");
    CHECK(crash["recipient"] == "info@example.test");
    CHECK(crash["fingerprint"].get<std::string>().size() == 64);
    CHECK(fx.count(fx.maildir_new("info@example.test")) == 1);
}

TEST_CASE("admin retry (.retry/): imported exactly once, no second bounce", "[engine][retry]") {
    fixture fx;
    std::string msg =
        "Return-Path: <s@x.org>\nDelivered-To: late@example.test\nSubject: t\n\nbody\n";
    spit(fx.root / "drop" / "new" / "m", msg);
    CHECK(fx.drain().failed == 1);
    CHECK(bounce_jobs(fx) == 1);
    SECTION("still no mailbox: back to ImportFailed, no new bounce") {
        fs::create_directories(fx.root / "drop" / ".retry");
        fs::rename(fx.root / "drop" / "ImportFailed" / "m", fx.root / "drop" / ".retry" / "m");
        fs::remove(fx.root / "drop" / "ImportFailed" / "m.json");
        auto b = fx.drain();
        CHECK(b.failed == 1);
        CHECK(bounce_jobs(fx) == 1);
        CHECK(reason_of(fx, "m")["bounce"]["state"] == "not-sent");
    }
    SECTION("mailbox added: imported once") {
        fx.st->write([](mx::store_tx& tx) {
            mx::mailbox m;
            m.address = "late@example.test";
            m.connector = "demo";
            tx.add_mailbox(m);
        });
        fs::create_directories(fx.root / "drop" / ".retry");
        fs::rename(fx.root / "drop" / "ImportFailed" / "m", fx.root / "drop" / ".retry" / "m");
        auto b = fx.drain();
        CHECK(b.imported == 1);
        CHECK(fx.count(fx.maildir_new("late@example.test")) == 1);
        // the same bytes once more through new/: a duplicate
        spit(fx.root / "drop" / "new" / "m2", msg);
        CHECK(fx.drain().imported == 0);
        CHECK(fx.count(fx.maildir_new("late@example.test")) == 1);
    }
}

TEST_CASE("mailbox of another connector is not this folder's", "[engine]") {
    fixture fx;
    fx.st->write([&](mx::store_tx& tx) {
        mx::connector c;
        c.name = "other";
        c.drop_folder = (fx.root / "other-drop").string();
        c.domains = {"other.test"};
        tx.add_connector(c);
        mx::mailbox m;
        m.address = "x@other.test";
        m.connector = "other";
        tx.add_mailbox(m);
    });
    spit(fx.root / "drop" / "new" / "m", "Delivered-To: x@other.test\n\nbody\n");
    CHECK(fx.drain().failed == 1);
    CHECK(reason_of(fx, "m")["status"] == "5.1.1");
}
