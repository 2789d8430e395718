// Cluster catalog, the parts without PostgreSQL: the store's change recorder (what a cluster
// write sends) and its replay on another store (what a replica applies), the replica's position
// in meta, and the text[] literal the batched statements use.
#include <catch2/catch.hpp>

#include "global/cluster_catalog.hpp"
#include "lib/store_fixture.hpp"

using namespace mx;
using mx::test::make_connector;
using mx::test::make_mailbox;

namespace {

std::vector<store_change> record(store& s, const std::function<void(store_tx&)>& fn) {
    std::vector<store_change> log;
    s.write([&](store_tx& tx) {
        log.clear();
        tx.record_into(&log);
        fn(tx);
        tx.record_into(nullptr);
    });
    return log;
}

void replay(store& s, const std::vector<store_change>& log) {
    s.write([&](store_tx& tx) {
        for (auto& c : log) tx.apply(c);
    });
}

// Every record of both stores, byte for byte.
std::vector<std::string> dump(store& s) {
    std::vector<std::string> out;
    auto v = s.read();
    for (auto& c : v.connectors()) {
        out.push_back("c " + c.name + " " + to_json(c).dump());
    }
    for (auto& [p, o] : v.domains()) out.push_back("d " + p + " " + o);
    v.for_each_mailbox([&](const mailbox& m) {
        out.push_back("m " + m.address + " " + to_json(m).dump());
        return true;
    });
    return out;
}

}  // namespace

TEST_CASE("the recorder sees every put and delete, and a replay gives the same store",
          "[cluster]") {
    test::store_fixture a, b;
    auto log = record(*a.s, [](store_tx& tx) {
        tx.add_connector(make_connector("erp", {"example.com", ".sub.example.com"}));
        tx.add_mailbox(make_mailbox("alice@example.com", "erp"));
        tx.add_mailbox(make_mailbox("bob@example.com", "erp"));
    });
    REQUIRE(log.size() == 5);  // connector, 2 domains, 2 mailboxes
    CHECK(log[0].table == store_table::connectors);
    CHECK(log[1].table == store_table::domains);
    CHECK(log[3].key == "alice@example.com");
    replay(*b.s, log);
    CHECK(dump(*a.s) == dump(*b.s));

    // Removal with --force: every mailbox, every domain, the connector — all recorded.
    auto gone = record(*a.s, [](store_tx& tx) { tx.remove_connector("erp", true); });
    CHECK(gone.size() == 5);
    for (auto& c : gone) CHECK_FALSE(c.value);
    replay(*b.s, gone);
    CHECK(dump(*b.s).empty());
}

TEST_CASE("a refused change records nothing that reaches the log", "[cluster]") {
    test::store_fixture a;
    a.s->write([](store_tx& tx) { tx.add_connector(make_connector("erp", {"example.com"})); });
    std::vector<store_change> log;
    CHECK_THROWS_AS(a.s->write([&](store_tx& tx) {
        log.clear();
        tx.record_into(&log);
        tx.add_mailbox(make_mailbox("x@example.com", "erp"));
        tx.add_mailbox(make_mailbox("y@other.org", "erp"));  // no such domain: rule_error
    }),
                    rule_error);
    // The caller discards the log with the aborted transaction; the store has nothing.
    CHECK_FALSE(a.s->read().has_mailbox("x@example.com"));
}

TEST_CASE("clear_all records a delete per record; replay empties the replica", "[cluster]") {
    test::store_fixture a, b;
    auto log = record(*a.s, [](store_tx& tx) {
        tx.add_connector(make_connector("erp", {"example.com"}));
        tx.add_mailbox(make_mailbox("alice@example.com", "erp"));
    });
    replay(*b.s, log);
    auto cleared = record(*a.s, [](store_tx& tx) {
        tx.clear_all();
        tx.add_connector(make_connector("crm", {"example.org"}));
    });
    replay(*b.s, cleared);
    CHECK(dump(*a.s) == dump(*b.s));
    CHECK(b.s->read().find_connector("crm"));
    CHECK_FALSE(b.s->read().find_connector("erp"));
}

TEST_CASE("append replay tolerates keys out of order (no silent loss)", "[cluster]") {
    test::store_fixture b;
    b.s->write([](store_tx& tx) {
        tx.apply({store_table::domains, "b.example", std::string("x")}, true);
        tx.apply({store_table::domains, "a.example", std::string("x")}, true);
    });
    CHECK(b.s->read().domains().size() == 2);
}

TEST_CASE("the replica's position lives in cluster_* meta keys only", "[cluster]") {
    test::store_fixture a;
    a.s->write([](store_tx& tx) { cluster::set_local_position(tx, {"abc", 42}); });
    auto v = a.s->read();
    auto p = cluster::local_position_of(v);
    CHECK(p.catalog_id == "abc");
    CHECK(p.generation == 42);
    CHECK(p.applied_ms > 0);
    CHECK_THROWS_AS(a.s->write([](store_tx& tx) { tx.set_meta("generation", "7"); }),
                    std::invalid_argument);
}

TEST_CASE("text[] literals quote, escape and carry NULL", "[cluster]") {
    CHECK(cluster::pg_array({}) == "{}");
    CHECK(cluster::pg_array({std::string("a"), std::nullopt, std::string("")}) ==
          "{\"a\",NULL,\"\"}");
    CHECK(cluster::pg_array({std::string("a\"b\\c")}) == "{\"a\\\"b\\\\c\"}");
}
