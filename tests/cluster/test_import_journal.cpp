// The cluster import journal's decisions against a real PostgreSQL (test_import_pg_fixture.hpp):
// reserve / busy (skip) / take over / imported / retaken, leases, marks and bounded keys.
#include <memory>

#include <catch2/catch.hpp>

#include "global/cluster_db.hpp"
#include "global/cluster_journal.hpp"
#include "test_import_pg_fixture.hpp"

using namespace mx::cluster;

namespace {

reserve_request req(const std::string& fp, const std::string& rcpt, const std::string& loc) {
    return {fp, rcpt, "demo", "maildir:/m", loc};
}

template <typename Fn>
auto in_tx(pqxx::connection& c, Fn&& fn) {
    pqxx::work tx(c);
    auto r = fn(tx);
    tx.commit();
    return r;
}

void expire(pqxx::connection& c, const std::string& node) {
    pqxx::work tx(c);
    tx.exec_params0(
        "UPDATE mxc.importer_leases SET expires_at = now() - interval '1 second' WHERE node = $1",
        node);
    tx.commit();
}

// A connection to the private PostgreSQL on a fresh schema; conn is null (and the test says so)
// on a machine that cannot run one: the test then returns without checking anything.
struct pg_db {
    std::unique_ptr<pqxx::connection> conn;
    pg_db() {
        if (mx::test::pg_conninfo().empty()) {
            WARN("no private PostgreSQL here (needs root and postgresql-15): not tested");
            return;
        }
        conn = connect(mx::test::pg_config("a"), "test");
        mx::test::fresh_schema(*conn);
    }
};

// Two importers' journals, node-a and node-b, each with a live lease.
struct two_nodes : pg_db {
    import_journal a{"node-a", std::chrono::seconds(60)}, b{"node-b", std::chrono::seconds(60)};
    two_nodes() {
        if (!conn) return;
        in_tx(*conn, [&](auto& tx) { return a.renew_lease(tx, 1), 0; });
        in_tx(*conn, [&](auto& tx) { return b.renew_lease(tx, 2), 0; });
    }
};

}  // namespace

TEST_CASE_METHOD(two_nodes, "cluster import journal: reserve, busy, imported, take over, retaken") {
    if (!conn) return;

    // A new row is ours; the same node again (its own earlier try) keeps it, with the old plan.
    auto r1 = in_tx(*conn, [&](auto& tx) { return a.reserve(tx, req("f1", "x@d", "loc-a1")); });
    CHECK(r1.what == reserve_outcome::reserved);
    CHECK(r1.location.empty());
    auto r2 = in_tx(*conn, [&](auto& tx) { return a.reserve(tx, req("f1", "x@d", "loc-a2")); });
    CHECK(r2.what == reserve_outcome::reserved);
    CHECK(r2.location == "loc-a1");

    // Another node while the holder lives: busy, naming the holder and its plan; row unchanged.
    auto r3 = in_tx(*conn, [&](auto& tx) { return b.reserve(tx, req("f1", "x@d", "loc-b")); });
    CHECK(r3.what == reserve_outcome::busy);
    CHECK(r3.node == "node-a");
    CHECK(r3.location == "loc-a2");

    // Imported: never again, for anyone (the holder included).
    CHECK(in_tx(*conn, [&](auto& tx) {
        return a.mark(tx,
                      {"f1", "x@d", true, "maildir:/m", "loc-a2", "/m/new/loc-a2", "", "2.0.0"});
    }));
    for (auto* n : {&a, &b}) {
        auto r = in_tx(*conn, [&](auto& tx) { return n->reserve(tx, req("f1", "x@d", "again")); });
        CHECK(r.what == reserve_outcome::imported);
        CHECK(r.node == "node-a");
    }
    // A failure mark never undoes an import.
    in_tx(*conn, [&](auto& tx) {
        return b.mark(tx, {"f1", "x@d", false, "", "", "", "/f", "5.1.1"});
    });
    CHECK(in_tx(*conn, [&](auto& tx) { return b.reserve(tx, req("f1", "x@d", "z")); }).what ==
          reserve_outcome::imported);

    // The holder's lease ends: the next node takes the row over and learns the old plan.
    in_tx(*conn, [&](auto& tx) { return a.reserve(tx, req("f2", "y@d", "loc-a")); });
    expire(*conn, "node-a");
    auto dead = in_tx(*conn, [&](auto& tx) { return b.dead_nodes(tx); });
    CHECK(dead == std::vector<std::string>{"node-a"});
    CHECK(in_tx(*conn, [&](auto& tx) { return a.dead_nodes(tx); }).empty());
    auto r4 = in_tx(*conn, [&](auto& tx) { return b.reserve(tx, req("f2", "y@d", "loc-b")); });
    CHECK(r4.what == reserve_outcome::taken_over);
    CHECK(r4.node == "node-a");
    CHECK(r4.location == "loc-a");
    // The old holder comes back: the row is node b's now (busy for a), and a's late mark says
    // it was not its own any more.
    in_tx(*conn, [&](auto& tx) { return a.renew_lease(tx, 3), 0; });
    auto r5 = in_tx(*conn, [&](auto& tx) { return a.reserve(tx, req("f2", "y@d", "loc-a3")); });
    CHECK(r5.what == reserve_outcome::busy);
    CHECK(r5.node == "node-b");
    CHECK_FALSE(in_tx(*conn, [&](auto& tx) {
        return a.mark(tx, {"f2", "y@d", true, "maildir:/m", "loc-a", "/p", "", "2.0.0"});
    }));

    // A node that never had a lease row is gone as well.
    in_tx(*conn, [&](auto& tx) {
        tx.exec0(
            "INSERT INTO mxc.imports (fingerprint, recipient_key, state, node, location) "
            "VALUES ('f3', 'z@d', 'pending', 'ghost', 'g')");
        return 0;
    });
    CHECK(in_tx(*conn, [&](auto& tx) { return a.reserve(tx, req("f3", "z@d", "l")); }).what ==
          reserve_outcome::taken_over);

    // Failed (ImportFailed): a retry, from any node, takes it again.
    in_tx(*conn, [&](auto& tx) {
        return a.mark(tx, {"f4", "w@d", false, "", "", "", "/f", "5.1.1"});
    });
    auto r6 = in_tx(*conn, [&](auto& tx) { return b.reserve(tx, req("f4", "w@d", "lb")); });
    CHECK(r6.what == reserve_outcome::retaken);
    CHECK(in_tx(*conn, [&](auto& tx) { return a.reserve(tx, req("f4", "w@d", "la")); }).what ==
          reserve_outcome::busy);

    // Release drops only our own pending row.
    in_tx(*conn, [&](auto& tx) { return a.release(tx, "f4", "w@d"), 0; });
    CHECK(in_tx(*conn, [&](auto& tx) { return a.reserve(tx, req("f4", "w@d", "la")); }).what ==
          reserve_outcome::busy);
    in_tx(*conn, [&](auto& tx) { return b.release(tx, "f4", "w@d"), 0; });
    CHECK(in_tx(*conn, [&](auto& tx) { return a.reserve(tx, req("f4", "w@d", "la")); }).what ==
          reserve_outcome::reserved);
}

TEST_CASE_METHOD(pg_db,
                 "cluster import journal: keys from mail are bounded; prune keeps pending rows") {
    if (!conn) return;
    import_journal a("node-a", std::chrono::seconds(60));
    const std::string long_rcpt = std::string(5000, 'x') + "@d",
                      other = std::string(5000, 'x') + "@e";
    CHECK(in_tx(*conn, [&](auto& tx) { return a.reserve(tx, req("f", long_rcpt, "l")); }).what ==
          reserve_outcome::reserved);
    CHECK(in_tx(*conn, [&](auto& tx) { return a.reserve(tx, req("f", other, "l")); }).what ==
          reserve_outcome::reserved);  // a different long key stays different
    auto len = in_tx(*conn, [&](auto& tx) {
        return tx.exec1("SELECT max(length(recipient_key)) FROM mxc.imports")[0].template as<int>();
    });
    CHECK(len <= 400);
    in_tx(*conn, [&](auto& tx) { return a.mark(tx, {"g", "r@d", true, "", "", "", "", "2.0.0"}); });
    in_tx(*conn, [&](auto& tx) {
        tx.exec0("UPDATE mxc.imports SET updated_at = now() - interval '2 days'");
        return 0;
    });
    CHECK(in_tx(*conn, [&](auto& tx) { return a.prune(tx, std::chrono::seconds(86400)); }) == 1);
    auto left = in_tx(*conn, [&](auto& tx) {
        return tx.exec1("SELECT count(*) FROM mxc.imports WHERE state = 'pending'")[0]
            .template as<int>();
    });
    CHECK(left == 2);
}

TEST_CASE_METHOD(
    two_nodes,
    "cluster import journal: a batch in one call, pairs given twice, marks in one call") {
    if (!conn) return;
    // Rows of every kind first: imported (i), pending by a live node (p), failed (f).
    in_tx(*conn, [&](auto& tx) {
        a.reserve(tx, std::vector<reserve_request>{req("i", "r@d", "li"), req("p", "r@d", "lp")});
        return a.mark(tx, std::vector<final_mark>{
                              {"i", "r@d", true, "", "li", "/i", "", "2.0.0"},
                              {"f", "r@d", false, "", "", "", "/F", "5.1.1"},
                              {"f", "r@d", false, "", "", "", "/F2", "5.1.1"}});  // twice: one row
    });
    // A key with the characters an array literal quotes.
    const std::string odd = "\"q\\uo,te{}\"@d";
    auto got = in_tx(*conn, [&](auto& tx) {
        return b.reserve(tx, std::vector<reserve_request>{
                                 req("f", "r@d", "b1"), req("i", "r@d", "b2"), req("n", odd, "b3"),
                                 req("n", odd, "b4"), req("p", "r@d", "b5")});
    });
    REQUIRE(got.size() == 5);
    CHECK(got[0].what == reserve_outcome::retaken);
    CHECK(got[1].what == reserve_outcome::imported);
    CHECK(got[1].location == "li");
    CHECK(got[2].what == reserve_outcome::reserved);
    CHECK(got[3].what == reserve_outcome::reserved);  // given twice: the first's reservation
    CHECK(got[3].location == "b3");
    CHECK(got[4].what == reserve_outcome::busy);
    auto stored = in_tx(*conn, [&](auto& tx) {
        return tx.exec_params1("SELECT node FROM mxc.imports WHERE recipient_key = $1", odd)[0]
            .template as<std::string>();
    });
    CHECK(stored == "node-b");
    auto ours = in_tx(*conn, [&](auto& tx) {
        return b.mark(tx, std::vector<final_mark>{{"n", odd, true, "", "b3", "/n", "", "2.0.0"},
                                                  {"p", "r@d", true, "", "lp", "/p", "", "2.0.0"}});
    });
    CHECK(ours == std::vector<bool>{true, false});
    CHECK(in_tx(*conn, [&](auto& tx) { return a.reserve(tx, req("p", "r@d", "x")); }).what ==
          reserve_outcome::imported);
}

TEST_CASE_METHOD(pg_db, "cluster import journal: a second importer with the same node name shows") {
    if (!conn) return;
    import_journal one("node-a", std::chrono::seconds(60)), two("node-a", std::chrono::seconds(60));
    CHECK(one.instance() != two.instance());
    CHECK(in_tx(*conn, [&](auto& tx) { return one.renew_lease(tx, 1); }).empty());
    CHECK(in_tx(*conn, [&](auto& tx) { return one.renew_lease(tx, 1); }) == one.instance());
    CHECK(in_tx(*conn, [&](auto& tx) { return two.renew_lease(tx, 2); }) == one.instance());
    CHECK(in_tx(*conn, [&](auto& tx) { return one.renew_lease(tx, 1); }) == two.instance());
}
