// Which files a batch takes and how often a message is delivered: claims go oldest first by
// the arrival time in Maildir names (a backlog never passes a file over batch after batch),
// and two byte-identical files for one recipient are delivered once, also within one batch.
#include <catch2/catch.hpp>

#include <set>

#include "global/bounce_job.hpp"
#include "importer_fixture.hpp"

using namespace mx::importer;
using namespace mx::importer::testing;
namespace fs = std::filesystem;

namespace {

std::string message(const std::string& rcpt, const std::string& tag) {
    return "Return-Path: <s@remote.test>\nDelivered-To: " + rcpt + "\nMessage-ID: <" + tag +
           "@remote.test>\nSubject: " + tag + "\n\nbody " + tag + "\n";
}

// The Subject of every message in a Maildir's new/.
std::set<std::string> subjects(const fs::path& dir) {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) {
        auto text = slurp(e.path());
        auto at = text.find("\nSubject: ");
        if (at == std::string::npos) continue;
        at += 10;
        out.insert(text.substr(at, text.find('\n', at) - at));
    }
    return out;
}

// A name as Postfix's virtual(8) writes it: <secs>.V<dev>I<inode>M<usecs>.<host>.
std::string vname(long secs, int inode, long usecs) {
    return std::to_string(secs) + ".V801I" + std::to_string(inode) + "M" + std::to_string(usecs) +
           ".mx";
}

}  // namespace

TEST_CASE("a batch claims the oldest files first (arrival time in the name)", "[engine][order]") {
    // Directory order (hash order on ext4) used to decide: with a backlog, the first files
    // dropped could wait behind hundreds of later ones, batch after batch.
    fixture fx("batch_size = 4\n");
    const long t0 = 1764000000;
    for (int i = 0; i < 4; ++i)  // dropped first
        spit(fx.root / "drop" / "new" / vname(t0, 900 + i, 10 + i),
             message("info@example.test", "old" + std::to_string(i)));
    for (int i = 0; i < 200; ++i)  // the backlog arriving after them
        spit(fx.root / "drop" / "new" / vname(t0 + 1 + i / 10, i, 500000 + i),
             message("info@example.test", "new" + std::to_string(i)));
    auto b = fx.eng->run_batch(fx.fold, &*fx.st);
    CHECK(b.imported == 4);
    CHECK(subjects(fx.maildir_new("info@example.test")) ==
          std::set<std::string>{"old0", "old1", "old2", "old3"});

    SECTION("within one second, by the microseconds, not by the name") {
        fixture fx1("batch_size = 1\n");
        // The later one has the smaller inode, so it sorts first by name.
        spit(fx1.root / "drop" / "new" / vname(t0, 9, 100), message("info@example.test", "first"));
        spit(fx1.root / "drop" / "new" / vname(t0, 1, 999999),
             message("info@example.test", "second"));
        CHECK(fx1.eng->run_batch(fx1.fold, &*fx1.st).imported == 1);
        CHECK(subjects(fx1.maildir_new("info@example.test")) == std::set<std::string>{"first"});
    }
    SECTION("a file that waited keeps its place while newer files keep arriving") {
        for (int round = 0; round < 3; ++round) {
            for (int i = 0; i < 20; ++i)
                spit(fx.root / "drop" / "new" / vname(t0 + 100 + round, 1000 + 20 * round + i, i),
                     message("info@example.test", "late" + std::to_string(20 * round + i)));
            fx.eng->run_batch(fx.fold, &*fx.st);
        }
        auto got = subjects(fx.maildir_new("info@example.test"));
        CHECK(got.size() == 16);
        for (int i = 0; i < 12; ++i) CHECK(got.count("new" + std::to_string(i)) == 1);
        for (const auto& s : got) CHECK(s.rfind("late", 0) == std::string::npos);
    }
}

TEST_CASE("two identical files in one batch: delivered once, the second is a duplicate",
          "[engine][journal]") {
    // Neither has a journal record when the batch is planned: without a check within the
    // batch both were planned and linked (two copies in the mailbox).
    fixture fx;
    const auto text = message("info@example.test", "twice");
    spit(fx.root / "drop" / "new" / vname(1764000000, 1, 1), text);
    spit(fx.root / "drop" / "new" / vname(1764000000, 2, 2), text);
    auto b = fx.eng->run_batch(fx.fold, &*fx.st);
    CHECK(b.files == 2);
    CHECK(b.imported == 1);
    CHECK(b.duplicates == 1);
    CHECK(fx.count(fx.maildir_new("info@example.test")) == 1);
    CHECK(fx.count(fx.root / "drop" / ".work" / "test.host") == 0);
    CHECK(fx.count(fx.root / "drop" / "ImportFailed") == 0);

    SECTION("a third copy later is a duplicate by the journal") {
        spit(fx.root / "drop" / "new" / vname(1764000001, 3, 3), text);
        auto b2 = fx.drain();
        CHECK(b2.imported == 0);
        CHECK(b2.duplicates == 1);
        CHECK(fx.count(fx.maildir_new("info@example.test")) == 1);
    }
    SECTION("identical files for an unknown recipient: one ImportFailed entry, one bounce") {
        const auto lost = message("nobody@example.test", "lost");
        spit(fx.root / "drop" / "new" / vname(1764000002, 4, 4), lost);
        spit(fx.root / "drop" / "new" / vname(1764000002, 5, 5), lost);
        auto b3 = fx.drain();
        CHECK(b3.failed == 1);
        CHECK(b3.duplicates == 1);
        CHECK(fx.count(fx.root / "drop" / "ImportFailed") == 2);  // the file + its reason
        CHECK(fx.count(mx::bounce_spool_dir(fx.cfg) / "new") == 1);
    }
}

TEST_CASE("a backlog: the next batch is claimed and parsed ahead, a stop leaves it claimed",
          "[engine][order][prefetch]") {
    fixture fx("batch_size = 8\n");
    const long t0 = 1764000000;
    for (int i = 0; i < 30; ++i)
        spit(fx.root / "drop" / "new" / vname(t0, 100 + i, 1000 + i),
             message("info@example.test", "m" + std::to_string(i)));
    auto work = fx.root / "drop" / ".work" / "test.host";
    auto names = [](int from, int to) {
        std::set<std::string> s;
        for (int i = from; i < to; ++i) s.insert("m" + std::to_string(i));
        return s;
    };
    CHECK(fx.eng->run_batch(fx.fold, &*fx.st).imported == 8);
    CHECK(subjects(fx.maildir_new("info@example.test")) == names(0, 8));
    // The stop (the engine ends) while the next eight are claimed ahead: they stay claimed,
    // nothing of them is delivered, the rest waits in new/.
    fx.eng.reset();
    CHECK(fx.count(work) == 8);
    CHECK(fx.count(fx.root / "drop" / "new") == 14);
    CHECK(fx.count(fx.maildir_new("info@example.test")) == 8);
    // The restart takes its own claims first (oldest first holds across the stop), then the
    // backlog, batch after batch: each message once.
    auto s = settings::from(fx.cfg);
    s.worker.exec_path.clear();
    fx.eng = std::make_unique<engine>(fx.cfg, s, *fx.jr, nullptr);
    CHECK(fx.eng->run_batch(fx.fold, &*fx.st).imported == 8);
    CHECK(subjects(fx.maildir_new("info@example.test")) == names(0, 16));
    auto rest = fx.drain();
    CHECK(rest.imported == 14);
    CHECK(rest.duplicates == 0);
    CHECK(fx.count(fx.maildir_new("info@example.test")) == 30);
    CHECK(subjects(fx.maildir_new("info@example.test")) == names(0, 30));
    CHECK(fx.count(work) == 0);
    CHECK(fx.count(fx.root / "drop" / "new") == 0);
}

TEST_CASE("a backlog is taken in batches of backlog_batch_size, a few files in batch_size",
          "[engine][order]") {
    // More than 4 x batch_size files waiting: a backlog, up to backlog_batch_size per batch
    // (oldest first still); fewer: batch_size per batch, so a file arriving at a steady rate
    // does not wait for a large batch.
    fixture fx("batch_size = 4\nbacklog_batch_size = 10\n");
    const long t0 = 1764000000;
    auto drop_into = [&](fixture& into, int from, int n) {
        for (int i = from; i < from + n; ++i)
            spit(into.root / "drop" / "new" / vname(t0 + i, i, 0),
                 message("info@example.test", "m" + std::to_string(i)));
    };
    auto drop = [&](int from, int n) { drop_into(fx, from, n); };
    SECTION("30 waiting: 10, 10, then 4 at a time") {
        drop(0, 30);
        auto b1 = fx.eng->run_batch(fx.fold, &*fx.st);
        CHECK(b1.files == 10);
        std::set<std::string> oldest;
        for (int i = 0; i < 10; ++i) oldest.insert("m" + std::to_string(i));
        CHECK(subjects(fx.maildir_new("info@example.test")) == oldest);
        CHECK(fx.eng->run_batch(fx.fold, &*fx.st).files == 10);  // 20 were waiting
        CHECK(fx.eng->run_batch(fx.fold, &*fx.st).files == 4);   // 10 were waiting
        CHECK(fx.eng->run_batch(fx.fold, &*fx.st).files == 4);
        CHECK(fx.eng->run_batch(fx.fold, &*fx.st).files == 2);
        CHECK(subjects(fx.maildir_new("info@example.test")).size() == 30);
    }
    SECTION("16 waiting (not more than 4 x batch_size): 4 at a time") {
        drop(0, 16);
        CHECK(fx.eng->run_batch(fx.fold, &*fx.st).files == 4);
        CHECK(fx.eng->run_batch(fx.fold, &*fx.st).files == 4);
    }
    SECTION("the work folder's own claims still go first") {
        // 40 waiting: a batch of 10, the next 10 claimed ahead when the engine stops.
        drop(0, 40);
        CHECK(fx.eng->run_batch(fx.fold, &*fx.st).files == 10);
        fx.eng.reset();
        CHECK(fx.count(fx.root / "drop" / ".work" / "test.host") == 10);
        auto s = settings::from(fx.cfg);
        s.worker.exec_path.clear();
        fx.eng = std::make_unique<engine>(fx.cfg, s, *fx.jr, nullptr);
        // 20 new files are a backlog, but 10 claims of our own wait: batch_size of those only.
        CHECK(fx.eng->run_batch(fx.fold, &*fx.st).files == 4);
        std::set<std::string> first;
        for (int i = 0; i < 14; ++i) first.insert("m" + std::to_string(i));
        CHECK(subjects(fx.maildir_new("info@example.test")) == first);
        auto rest = fx.drain();
        CHECK(rest.duplicates == 0);
        CHECK(subjects(fx.maildir_new("info@example.test")).size() == 40);
    }
    SECTION("batch_size alone fixes every batch") {
        fixture fixed("batch_size = 4\n");
        drop_into(fixed, 0, 30);
        CHECK(fixed.eng->run_batch(fixed.fold, &*fixed.st).files == 4);
    }
}
