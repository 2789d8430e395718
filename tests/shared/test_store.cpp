// Store tests: RAII behaviour, atomicity, rules, growth, generation (global/store.hpp).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>

#include "global/recipient_check.hpp"
#include "global/secrets.hpp"
#include "global/shm_state.hpp"
#include "global/store.hpp"
#include "lib/store_fixture.hpp"

namespace fs = std::filesystem;

namespace {

using mx::test::make_connector;
using mx::test::make_mailbox;
using mx::test::temp_dir;

}  // namespace

TEST_CASE("lmdb handles are RAII: an uncommitted write is aborted", "[store][lmdb]") {
    temp_dir d;
    auto env = mx::lmdb::env::open(d.path, {});
    {
        auto t = mx::lmdb::txn::begin(env, false);
        auto db = mx::lmdb::dbi::open(t, "x", MDB_CREATE);
        db.put(t, "k", "v");
        t.commit();
    }
    {
        auto t = mx::lmdb::txn::begin(env, false);
        auto db = mx::lmdb::dbi::open(t, "x");
        db.put(t, "k", "changed");
        db.put(t, "k2", "new");
        // no commit: destructor aborts
    }
    auto t = mx::lmdb::txn::begin(env, true);
    auto db = mx::lmdb::dbi::open(t, "x");
    CHECK(db.get(t, "k") == "v");
    CHECK_FALSE(db.get(t, "k2"));
    // Moved-from handles are inert.
    auto moved = std::move(t);
    CHECK(moved.handle() != nullptr);
    CHECK(t.handle() == nullptr);
}

TEST_CASE("lmdb errors carry the C function's name", "[store][lmdb]") {
    try {
        mx::lmdb::env::options o;
        o.read_only = true;
        auto e = mx::lmdb::env::open("/nonexistent/mx/store", o);
        FAIL("open should fail");
    } catch (const mx::lmdb::error& e) {
        CHECK(std::string(e.function()) == "mdb_env_open");
        CHECK(std::string(e.what()).find("mdb_env_open") != std::string::npos);
    }
}

TEST_CASE("a refused change leaves the store untouched", "[store][atomic]") {
    temp_dir d;
    auto s = mx::store::open(d.path / "store", false);
    s.write([](mx::store_tx& tx) { tx.add_connector(make_connector("a", {"a.example"})); });
    auto gen = s.read().generation();
    CHECK_THROWS_AS(s.write([](mx::store_tx& tx) {
        tx.add_mailbox(make_mailbox("x@a.example", "a"));
        tx.add_mailbox(make_mailbox("y@b.example", "a"));  // domain not served
    }),
                    mx::rule_error);
    auto v = s.read();
    CHECK_FALSE(v.has_mailbox("x@a.example"));
    CHECK(v.generation() == gen);
}

TEST_CASE("store rules", "[store][rules]") {
    temp_dir d;
    auto s = mx::store::open(d.path / "store", false);
    s.write([](mx::store_tx& tx) {
        tx.add_connector(make_connector("a", {"example.com", ".example.com"}));
        tx.add_connector(make_connector("b", {"special.example.com"}));
        tx.add_connector(make_connector("all", {"."}));
    });
    SECTION("a domain belongs to one connector") {
        CHECK_THROWS_WITH(s.write([](mx::store_tx& tx) { tx.add_domain("b", "Example.COM"); }),
                          Catch::Contains("already belongs to connector 'a'"));
        CHECK_THROWS_WITH(
            s.write([](mx::store_tx& tx) { tx.add_connector(make_connector("c", {"."})); }),
            Catch::Contains("already belongs to connector 'all'"));
    }
    SECTION("most specific pattern wins") {
        auto v = s.read();
        CHECK(v.match_domain("example.com")->connector == "a");
        CHECK(v.match_domain("x.example.com")->connector == "a");
        CHECK(v.match_domain("special.example.com")->connector == "b");
        CHECK(v.match_domain("deep.special.example.com")->connector == "a");
        CHECK(v.match_domain("other.org")->connector == "all");
        CHECK(v.match_domain("other.org")->pattern == ".");
    }
    SECTION("a mailbox's domain must be served by its connector") {
        CHECK_THROWS_WITH(s.write([](mx::store_tx& tx) {
            tx.add_mailbox(make_mailbox("x@special.example.com", "a"));
        }),
                          Catch::Contains("belongs to connector 'b'"));
        CHECK_NOTHROW(s.write(
            [](mx::store_tx& tx) { tx.add_mailbox(make_mailbox("x@special.example.com", "b")); }));
        CHECK_THROWS_WITH(s.write([](mx::store_tx& tx) {
            tx.add_mailbox(make_mailbox("x@special.example.com", "b"));
        }),
                          Catch::Contains("already exists"));
        CHECK_THROWS_WITH(s.write([](mx::store_tx& tx) {
            tx.add_mailbox(make_mailbox("x@y.example.com", "nope"));
        }),
                          Catch::Contains("no connector named 'nope'"));
    }
    SECTION("connector names and drop folders are validated") {
        auto bad = make_connector("bad name", {});
        CHECK_THROWS_AS(s.write([&](mx::store_tx& tx) { tx.add_connector(bad); }), mx::rule_error);
        auto rel = make_connector("rel", {});
        rel.drop_folder = "relative/path";
        CHECK_THROWS_WITH(s.write([&](mx::store_tx& tx) { tx.add_connector(rel); }),
                          Catch::Contains("absolute"));
    }
    SECTION("removing a domain that would orphan mailboxes is refused") {
        s.write(
            [](mx::store_tx& tx) { tx.add_mailbox(make_mailbox("x@special.example.com", "b")); });
        CHECK_THROWS_WITH(
            s.write([](mx::store_tx& tx) { tx.remove_domain("b", "special.example.com"); }),
            Catch::Contains("without its connector"));
        CHECK(s.read().domain_owner("special.example.com") == "b");
    }
    SECTION("removing a connector with mailboxes needs force") {
        s.write(
            [](mx::store_tx& tx) { tx.add_mailbox(make_mailbox("x@special.example.com", "b")); });
        CHECK_THROWS_WITH(s.write([](mx::store_tx& tx) { tx.remove_connector("b", false); }),
                          Catch::Contains("--force"));
        s.write([](mx::store_tx& tx) { tx.remove_connector("b", true); });
        auto v = s.read();
        CHECK_FALSE(v.find_connector("b"));
        CHECK_FALSE(v.has_mailbox("x@special.example.com"));
        CHECK_FALSE(v.domain_owner("special.example.com"));
    }
}

TEST_CASE("mailbox_connector reads a record's connector as find_mailbox does", "[store][rules]") {
    temp_dir d;
    auto s = mx::store::open(d.path / "store", false);
    s.write([](mx::store_tx& tx) {
        tx.add_connector(make_connector("a", {"example.com"}));
        tx.add_mailbox(make_mailbox("x@example.com", "a"));
    });
    {
        auto v = s.read();
        CHECK(v.mailbox_connector("x@example.com") == std::optional<std::string>("a"));
        CHECK(v.find_mailbox("x@example.com")->connector == "a");
        CHECK_FALSE(v.mailbox_connector("y@example.com"));
    }
    // Records written by hand: what the full parse refuses is refused here too.
    {
        auto t = mx::lmdb::txn::begin(s.env(), false);
        auto db = mx::lmdb::dbi::open(t, "mailboxes");
        db.put(t, "arr@example.com", "[1]");
        db.put(t, "num@example.com", R"({"connector":3})");
        db.put(t, "cut@example.com", R"({"connector":"a")");
        db.put(t, "nested@example.com", R"({"x":{"connector":"z"},"connector":"a","y":[1]})");
        db.put(t, "none@example.com", R"({"target":""})");
        t.commit();
    }
    auto v = s.read();
    for (const char* bad : {"arr@example.com", "num@example.com", "cut@example.com"}) {
        CHECK_THROWS(v.mailbox_connector(bad));
        CHECK_THROWS(v.find_mailbox(bad));
    }
    CHECK(v.mailbox_connector("nested@example.com") == std::optional<std::string>("a"));
    CHECK(v.find_mailbox("nested@example.com")->connector == "a");
    CHECK(v.mailbox_connector("none@example.com") == std::optional<std::string>(""));
    CHECK(v.find_mailbox("none@example.com")->connector.empty());
}

TEST_CASE("the map grows instead of failing", "[store][growth]") {
    temp_dir d;
    auto s =
        mx::store::open(d.path / "store", false, /*no_sync=*/true, /*initial_map_size=*/1 << 20);
    auto before = s.env().map_size();
    s.write([](mx::store_tx& tx) { tx.add_connector(make_connector("a", {"example.com"})); });
    // 40k mailboxes need well over the initial 1 MiB map; each batch is one transaction.
    for (int batch = 0; batch < 4; ++batch) {
        s.write([batch](mx::store_tx& tx) {
            for (int i = 0; i < 10000; ++i)
                tx.add_mailbox(make_mailbox(
                    "user" + std::to_string(batch) + "_" + std::to_string(i) + "@example.com",
                    "a"));
        });
    }
    CHECK(s.env().map_size() > before);
    CHECK(s.read().mailbox_count() == 40000);
}

TEST_CASE("generation is bumped per commit and published to shared memory", "[store][shm]") {
    temp_dir d;
    mx::config cfg;
    cfg.state_dir = d.path;
    mx::shm_state::remove(cfg);
    auto shm = mx::shm_state::attach(cfg);
    auto s = mx::store::open(cfg, false);
    s.attach(&shm);
    auto g1 =
        s.write([](mx::store_tx& tx) { tx.add_connector(make_connector("a", {"example.com"})); });
    CHECK(shm.generation() == g1);
    auto g2 = s.write([](mx::store_tx& tx) { tx.add_mailbox(make_mailbox("x@example.com", "a")); });
    CHECK(g2 == g1 + 1);
    CHECK(shm.generation() == g2);
    // A reader in another "process" (a second attach) sees the same segment.
    auto other = mx::shm_state::attach(cfg);
    CHECK(other.generation() == g2);
    other.counters("a").accepted += 3;
    CHECK(shm.counters("a").accepted.load() == 3);
    mx::shm_state::remove(cfg);
}

TEST_CASE("a stale or foreign shared-memory segment is re-initialised", "[shm]") {
    temp_dir d;
    mx::config cfg;
    cfg.state_dir = d.path;
    mx::shm_state::remove(cfg);
    {
        auto seg =
            mx::util::shm_segment::open_or_create(mx::shm_state::segment_name(cfg), 64, 0600);
        std::memset(seg.data(), 0xAB, 64);  // garbage left by "an older version"
    }
    auto shm = mx::shm_state::attach(cfg);
    CHECK(shm.generation() == 0);
    CHECK(shm.used_slots().empty());
    mx::shm_state::remove(cfg);
}

TEST_CASE("secrets live in their own 0600 store", "[secrets][security]") {
    temp_dir d;
    auto sec = mx::secret_store::open(d.path / "secrets", false);
    sec.set("connector/a/smtp.secret", "hunter2");
    CHECK(sec.get("connector/a/smtp.secret") == "hunter2");
    struct stat st {};
    REQUIRE(::stat((d.path / "secrets" / "data.mdb").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    REQUIRE(::stat((d.path / "secrets").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
    sec.remove_prefix("connector/a/");
    CHECK_FALSE(sec.get("connector/a/smtp.secret"));
}
