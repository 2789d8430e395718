// Engine behaviour beyond the golden set: temporary failures and retries, expiry to 5.4.7,
// size limits, unparseable files (crashing parser, empty file, no envelope), and the admin's
// retry path (.retry/) with no second bounce.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include <set>

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

// --- hostile input against the journal and the file names ---------------------------------

namespace {

std::size_t work_files(fixture& fx, const std::string& host = "test.host") {
    return fx.count(fx.fold.drop / ".work" / host);
}

std::string msg_with_id(const std::string& rcpt, const std::string& mid, const std::string& tag) {
    return "Return-Path: <s@remote.test>\nDelivered-To: " + rcpt + "\nMessage-ID: " + mid +
           "\nSubject: " + tag + "\n\nbody " + tag + "\n";
}

}  // namespace

TEST_CASE("a 600-character Message-ID beside normal messages: every one imported once",
          "[engine][hostile][journal]") {
    fixture fx;
    const std::string long_id = "<" + std::string(600, 'x') + "@remote.test>";
    spit(fx.root / "drop" / "new" / "a", msg_with_id("info@example.test", "<a@remote.test>", "a"));
    spit(fx.root / "drop" / "new" / "hostile", msg_with_id("info@example.test", long_id, "h"));
    spit(fx.root / "drop" / "new" / "b", msg_with_id("sales@example.test", "<b@remote.test>", "b"));
    auto b = fx.eng->run_batch(fx.fold, &*fx.st);  // one batch holds all three
    CHECK(b.files == 3);
    CHECK(b.imported == 3);
    CHECK(b.deferred == 0);
    CHECK(work_files(fx) == 0);
    CHECK(fx.count(fx.maildir_new("info@example.test")) == 2);
    CHECK(fx.count(fx.maildir_new("sales@example.test")) == 1);
    CHECK(fx.drain().files == 0);  // nothing left, nothing imported twice
    CHECK(fx.count(fx.maildir_new("info@example.test")) == 2);
    // the long Message-ID is found by the same key function the writers use
    auto t = fx.jr->read();
    auto fps = fx.jr->lookup(t, journal::by::message_id, long_id);
    REQUIRE(fps.size() == 1);
    auto d = fx.jr->deliveries_of(t, fps[0].first);
    REQUIRE(d.size() == 1);
    CHECK(d[0].first == "info@example.test");
    CHECK(d[0].second["state"] == "imported");
    CHECK(d[0].second["message_id"] == long_id);
}

TEST_CASE("long drop path and host: the retry key is bounded, the file is retried",
          "[engine][hostile][journal]") {
    const std::string host(200, 'h');
    std::string deep = "drop";
    for (int i = 0; i < 3; ++i) deep += "/" + std::string(100, static_cast<char>('a' + i));
    fixture fx("retry_base_seconds = 3600\n", host, deep);
    set_target(fx, "info@example.test", "maildir:/proc/mx-no-such-place/info");
    const std::string name(240, 'n');
    spit(fx.fold.drop / "new" / name, msg_with_id("info@example.test", "<r@remote.test>", "r"));
    auto work = fx.fold.drop / ".work" / host / ("n," + name);
    REQUIRE(work.string().size() > 511);
    auto b1 = fx.eng->run_batch(fx.fold, &*fx.st);
    CHECK(b1.deferred == 1);
    CHECK(fs::exists(work));
    {
        auto t = fx.jr->read();
        auto r = fx.jr->retry(t, work.string());
        REQUIRE(r);
        CHECK((*r)["attempts"] == 1);
        CHECK((*r)["path"] == work.string());
    }
    // the retry is not due: the next batch leaves it waiting (no loop)
    auto b2 = fx.eng->run_batch(fx.fold, &*fx.st);
    CHECK(b2.files == 0);
    CHECK(b2.waiting == 1);
}

TEST_CASE("a temporary and a permanent recipient in one file: one bounce, counted once",
          "[engine][bounce]") {
    fixture fx("retry_base_seconds = 0\n");
    set_target(fx, "info@example.test", "maildir:/proc/mx-no-such-place/info");
    spit(fx.root / "drop" / "new" / "m",
         "X-Sender: <s@remote.test>\nX-Receiver: <info@example.test>\n"
         "X-Receiver: <nobody@example.test>\nMessage-ID: <tp@remote.test>\n\nbody\n");
    auto b1 = fx.eng->run_batch(fx.fold, &*fx.st);
    CHECK(b1.deferred == 1);
    CHECK(b1.failed == 0);  // held until the file is finished
    CHECK(bounce_jobs(fx) == 0);
    auto b2 = fx.eng->run_batch(fx.fold, &*fx.st);  // still temporary: still held
    CHECK(b2.deferred == 1);
    CHECK(b2.failed == 0);
    CHECK(bounce_jobs(fx) == 0);
    {
        auto t = fx.jr->read();
        auto fps = fx.jr->lookup(t, journal::by::message_id, "<tp@remote.test>");
        REQUIRE(fps.size() == 1);
        auto rec = fx.jr->delivery(t, fps[0].first, "nobody@example.test");
        REQUIRE(rec);
        CHECK((*rec)["state"] == "held");
        CHECK((*rec)["bounce_spooled"] == false);
    }
    set_target(fx, "info@example.test", "maildir:" + (fx.root / "fixed").string());
    auto b3 = fx.drain();
    CHECK(b3.imported == 1);
    CHECK(b3.failed == 1);
    CHECK(bounce_jobs(fx) == 1);  // the non-delivery report goes out, once
    auto r = reason_of(fx, "m");
    CHECK(r["recipient"] == "nobody@example.test");
    CHECK(r["bounce"]["state"] == "pending");
    CHECK(r["recipients"].size() == 1);
    CHECK(work_files(fx) == 0);
    auto t = fx.jr->read();
    auto fps = fx.jr->lookup(t, journal::by::message_id, "<tp@remote.test>");
    REQUIRE(fps.size() == 1);
    auto rec = fx.jr->delivery(t, fps[0].first, "nobody@example.test");
    REQUIRE(rec);
    CHECK((*rec)["state"] == "failed");
    CHECK((*rec)["bounce_spooled"] == true);
}

TEST_CASE("drop file names near NAME_MAX reach ImportFailed (bounded names)", "[engine][hostile]") {
    fixture fx;
    for (std::size_t len : {200u, 240u, 255u}) {
        INFO(len);
        const std::string name = std::string(len - 4, 'f') + std::to_string(len) + "x";
        spit(fx.root / "drop" / "new" / name,
             msg_with_id("nobody@example.test", "<n" + std::to_string(len) + "@remote.test>", "t"));
    }
    auto b = fx.drain();
    CHECK(b.failed == 3);
    CHECK(work_files(fx) == 0);
    CHECK(bounce_jobs(fx) == 3);
    std::set<std::string> originals;
    for (const auto& e : fs::directory_iterator(fx.root / "drop" / "ImportFailed")) {
        auto n = e.path().filename().string();
        CHECK(n.size() <= 180);
        if (n.size() > 5 && n.substr(n.size() - 5) == ".json") {
            auto j = nlohmann::json::parse(slurp(e.path()));
            CHECK(fs::exists(fx.root / "drop" / "ImportFailed" / j["file"].get<std::string>()));
            originals.insert(j["original_name"].get<std::string>());
        }
    }
    CHECK(originals.size() == 3);
    // names that fit in .work/ are kept whole in the reason file
    CHECK(originals.count(std::string(196, 'f') + "200x") == 1);
    CHECK(originals.count(std::string(236, 'f') + "240x") == 1);
}

TEST_CASE("claiming never replaces an older claim of the same name", "[engine][hostile]") {
    fixture fx("retry_base_seconds = 3600\n");
    set_target(fx, "info@example.test", "maildir:/proc/mx-no-such-place/info");
    const std::string first = msg_with_id("info@example.test", "<old@remote.test>", "old");
    spit(fx.root / "drop" / "new" / "same", first);
    CHECK(fx.eng->run_batch(fx.fold, &*fx.st).deferred == 1);  // kept in .work for a retry
    auto old_work = fx.root / "drop" / ".work" / "test.host" / "n,same";
    REQUIRE(fs::exists(old_work));
    spit(fx.root / "drop" / "new" / "same",
         msg_with_id("sales@example.test", "<new@remote.test>", "new"));
    auto b = fx.eng->run_batch(fx.fold, &*fx.st);
    CHECK(b.imported == 1);
    CHECK(slurp(old_work) == first);  // the older claim is intact
    CHECK(fx.count(fx.maildir_new("sales@example.test")) == 1);
    CHECK(work_files(fx) == 1);
}

TEST_CASE("a dropped file another account owns or links is copied, Maildirs are 0750",
          "[engine][hostile]") {
    fixture fx;
    auto foreign = fx.root / "drop" / "new" / "foreign";
    spit(foreign, msg_with_id("info@example.test", "<f@remote.test>", "f"));
    bool can_chown = ::geteuid() == 0 && ::chown(foreign.c_str(), 65534, 65534) == 0;
    auto linked = fx.root / "drop" / "new" / "linked";
    spit(linked, msg_with_id("sales@example.test", "<l@remote.test>", "l"));
    auto outside = fx.root / "outside-link";
    REQUIRE(::link(linked.c_str(), outside.c_str()) == 0);
    CHECK(fx.drain().imported == 2);
    for (const char* mb : {"info@example.test", "sales@example.test"}) {
        INFO(mb);
        auto dir = fx.maildir_new(mb);
        REQUIRE(fx.count(dir) == 1);
        auto file = fs::directory_iterator(dir)->path();
        struct stat sb {};
        REQUIRE(::stat(file.c_str(), &sb) == 0);
        CHECK(sb.st_uid == ::geteuid());
        CHECK(sb.st_nlink == 1);  // nobody else holds this inode
        struct stat md {};
        REQUIRE(::stat(dir.c_str(), &md) == 0);
        CHECK((md.st_mode & 07777) == 0750);
    }
    struct stat ob {};
    REQUIRE(::stat(outside.c_str(), &ob) == 0);
    CHECK(ob.st_nlink == 1);  // the outside link no longer shares the imported bytes
    if (!can_chown) WARN("not root: the foreign-owner half only checks the link half");
}

TEST_CASE("journal retention: old final records and their indexes go, pending ones stay",
          "[engine][journal]") {
    fixture fx;
    spit(fx.root / "drop" / "new" / "m", msg_with_id("info@example.test", "<p@remote.test>", "p"));
    CHECK(fx.drain().imported == 1);
    std::string fp;
    {
        auto t = fx.jr->read();
        auto fps = fx.jr->lookup(t, journal::by::message_id, "<p@remote.test>");
        REQUIRE(fps.size() == 1);
        fp = fps[0].first;
    }
    fx.jr->write([&](mx::lmdb::txn& t) {
        fx.jr->put_delivery(t, "f00d", "x@example.test", {{"state", "pending"}, {"time", 1}});
        fx.jr->put_retry(t, (fx.root / "gone").string(), {{"attempts", 1}, {"next", 0}});
    });
    auto now = static_cast<std::int64_t>(::time(nullptr));
    CHECK(fx.jr->prune(now - 86400) == 1);  // only the retry of a file that is gone
    CHECK(fx.jr->size(fx.cfg.journal_dir()).deliveries == 2);
    CHECK(fx.jr->prune(now + 10) == 3);  // the delivery, its file and message-id entries
    auto t = fx.jr->read();
    CHECK(fx.jr->deliveries_of(t, fp).empty());
    CHECK(fx.jr->lookup(t, journal::by::message_id, "<p@remote.test>").empty());
    CHECK(fx.jr->lookup(t, journal::by::file, "m").empty());
    CHECK(fx.jr->delivery(t, "f00d", "x@example.test"));  // pending: crash recovery needs it
    auto sz = fx.jr->size(fx.cfg.journal_dir());
    CHECK(sz.deliveries == 1);
    CHECK(sz.retries == 0);
    CHECK(sz.bytes > 0);
}

TEST_CASE("journal_days: default 30, configurable, never negative", "[engine][journal]") {
    fixture fx;
    CHECK(settings::from(fx.cfg).journal_retention == std::chrono::hours(30 * 24));
    auto c = mx::parse_config("state_dir = \"/tmp/x\"\n[importer]\njournal_days = 2\n", "x.toml");
    CHECK(settings::from(c).journal_retention == std::chrono::hours(48));
    auto bad =
        mx::parse_config("state_dir = \"/tmp/x\"\n[importer]\njournal_days = -1\n", "x.toml");
    CHECK_THROWS(settings::from(bad));
}

TEST_CASE("a journal write that fails for one file defers that file only", "[engine][journal]") {
    ::setenv("MX_IMPORTER_FAULT_INJECTION", "1", 1);
    fixture fx("retry_base_seconds = 0\n");
    for (const char* n : {"a", "mx-test-journal-fault-final", "mx-test-journal-fault-pending", "b"})
        spit(fx.root / "drop" / "new" / n,
             msg_with_id("info@example.test", std::string("<") + n + "@remote.test>", n));
    auto b1 = fx.eng->run_batch(fx.fold, &*fx.st);
    CHECK(b1.files == 4);
    CHECK(b1.imported == 2);  // a and b: the batch went on
    CHECK(b1.deferred == 2);
    CHECK(work_files(fx) == 2);
    {
        auto t = fx.jr->read();
        for (const char* n : {"mx-test-journal-fault-final", "mx-test-journal-fault-pending"}) {
            INFO(n);
            auto r = fx.jr->retry(
                t, (fx.root / "drop" / ".work" / "test.host" / (std::string("n,") + n)).string());
            REQUIRE(r);
            CHECK((*r)["attempts"] == 1);
        }
    }
    // "final": delivered, its record still pending; "pending": nothing delivered yet
    CHECK(fx.count(fx.maildir_new("info@example.test")) == 3);
    ::unsetenv("MX_IMPORTER_FAULT_INJECTION");
    auto b2 = fx.drain();
    CHECK(b2.imported == 2);  // the recovered one counts once, now
    CHECK(work_files(fx) == 0);
    CHECK(fx.count(fx.maildir_new("info@example.test")) == 4);  // each message exactly once
}

TEST_CASE("drop file names with control characters or invalid UTF-8 are imported, not looped",
          "[engine][hostile]") {
    // Found by fuzz_importer_file: such a name did not survive the parse worker's JSON request,
    // the file looked "vanished" and was retried every batch, forever.
    fixture fx;
    const std::string bad = std::string("bad\x1f") + "name\xc8\xff" + "\xed\xa0\x80";
    spit(fx.root / "drop" / "new" / bad, msg_with_id("info@example.test", "<u@remote.test>", "u"));
    spit(fx.root / "drop" / "new" / (bad + "x"),
         msg_with_id("nobody@example.test", "<v@remote.test>", "v"));
    auto b = fx.eng->run_batch(fx.fold, &*fx.st);
    CHECK(b.imported == 1);
    CHECK(b.failed == 1);
    CHECK(work_files(fx) == 0);
    CHECK(fx.count(fx.maildir_new("info@example.test")) == 1);
    CHECK(fx.drain().files == 0);
    for (const auto& e : fs::directory_iterator(fx.root / "drop" / "ImportFailed")) {
        auto n = e.path().filename().string();
        CHECK(n.rfind("bad_name__", 0) == 0);
        CHECK(n.find('\x1f') == std::string::npos);
    }
}
